use std::time::{Duration, Instant};

use mproc::Pool;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Pool overhead and throughput: a trivial task (return the input) over many tasks for
    /// several item kinds (u64 through serde and plain, a 64-byte struct, 20-byte strings, a
    /// range), byte blobs (GB/s beside a memcpy), a serial loop as the floor, and pool start-up
    /// (build + one task + close + join).
    Pool(PoolArgs),
    /// Queue, Pipe and a Unix socket pair between two processes: round-trip latency and
    /// one-way throughput per message size.
    Queue(crate::bench_queue::QueueArgs),
    /// Cluster throughput through Redis Streams with the worker hosts already connected:
    /// trivial tasks one per entry and batched, beside the local Pool on the same tasks.
    Cluster(crate::cluster::BenchArgs),
}

#[derive(clap::Args)]
pub struct PoolArgs {
    /// Tasks per map.
    #[arg(long, default_value_t = 100_000)]
    tasks: u64,
    /// Tasks per chunk: a number, or `auto` (Python's rule). Comma-separated for several.
    #[arg(long, default_value = "1,auto")]
    chunksize: String,
    /// Worker processes.
    #[arg(long, default_value_t = 2)]
    processes: usize,
    /// Runs per figure; the median is reported.
    #[arg(long, default_value_t = 5)]
    repeat: usize,
    /// Item kinds, comma-separated: u64 (map of u64, the first rows, as always), serde (a u64
    /// newtype through serde), plain (map_plain of u64), struct64 (a 64-byte #[repr(C)] struct),
    /// string (~20-byte Strings), range (map_range), slice (map_array over a shared array the
    /// workers read), range-into and slice-into (map_range_into, map_array_into: results stored
    /// by the workers into a shared array; their rayon floor writes into a ready slice too), blob
    /// (byte blobs of 1 KiB, 64 KiB, 1 MiB).
    #[arg(long, default_value = "u64,serde,plain,struct64,string,range,slice,range-into,slice-into,blob")]
    kinds: String,
    /// Bytes per blob run (each blob size moves this much per map).
    #[arg(long, default_value_t = 256 << 20)]
    blob_bytes: usize,
    /// One JSON object per line.
    #[arg(long)]
    json: bool,
}

/// A u64 that goes through serde, not the plain path `map` takes for numbers.
#[derive(serde::Serialize, serde::Deserialize, Clone, Copy)]
struct Wrapped(u64);

/// 64 bytes of plain data.
#[derive(Clone, Copy, serde::Serialize, serde::Deserialize)]
#[repr(C)]
struct S64 {
    a: [u64; 8],
}
// SAFETY: eight u64s, no padding; every bit pattern is valid.
unsafe impl mproc::bytemuck::Zeroable for S64 {}
// SAFETY: as above.
unsafe impl mproc::bytemuck::Pod for S64 {}

#[derive(serde::Serialize)]
struct KindRow {
    bench: &'static str,
    kind: &'static str,
    processes: usize,
    tasks: u64,
    chunksize: String,
    seconds: f64,
    ns_per_item: f64,
    serial_ns_per_item: f64,
    /// The same map in this process on `processes` rayon threads: the floor a process pool
    /// can approach.
    rayon_ns_per_item: f64,
    parallelism: f64,
}

#[derive(serde::Serialize)]
struct BlobRow {
    bench: &'static str,
    bytes: usize,
    direction: &'static str,
    processes: usize,
    blobs: usize,
    chunksize: String,
    seconds: f64,
    gb_per_s: f64,
    memcpy_gb_per_s: f64,
    parallelism: f64,
}

#[derive(serde::Serialize)]
struct Row {
    bench: &'static str,
    processes: usize,
    tasks: u64,
    chunksize: String,
    seconds: f64,
    per_task_us: f64,
    startup_ms: f64,
    parallelism: f64,
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// How many cores two busy processes really get right now (2.0 on a quiet 2-core machine).
/// Printed beside every figure: this machine is shared, and a noisy neighbour shows up here.
pub fn parallelism() -> mproc::Result<f64> {
    fn spin(d: Duration) -> u64 {
        let t = Instant::now();
        let mut n = 0u64;
        while t.elapsed() < d {
            n = n.wrapping_add(std::hint::black_box(1));
        }
        n
    }
    let work = mproc::RawValue::new(0u64)?;
    let d = Duration::from_millis(50);
    let solo = spin(d) as f64;
    let procs: Vec<_> = (0..2)
        .map(|_| {
            mproc::Process::spawn(|| {
                work.fetch_add(spin(d));
            })
        })
        .collect::<Result<_, _>>()?;
    for mut p in procs {
        p.join()?;
    }
    Ok(work.load() as f64 / solo)
}

/// One figure, sampled a run at a time: each call times one run of `f` on a fresh `make()` (made
/// untimed), in seconds; the first call runs it once untimed before (so that no figure pays for
/// first touches: a worker's first access to each page of a shared array, the allocator growing
/// its heap).
type Sampler<'a> = Box<dyn FnMut() -> mproc::Result<f64> + 'a>;

fn sampler<'a, I: 'a, O: 'a>(
    make: impl Fn() -> I + 'a,
    mut f: impl FnMut(I) -> mproc::Result<O> + 'a,
) -> impl FnMut() -> mproc::Result<f64> + 'a {
    let mut warm = false;
    move || {
        if !warm {
            drop(std::hint::black_box(f(make())?));
            warm = true;
        }
        let input = make();
        let t = Instant::now();
        let out = f(input)?;
        let s = t.elapsed().as_secs_f64();
        drop(std::hint::black_box(out));
        Ok(s)
    }
}

/// [`sampler`], boxed.
fn boxed<'a, I: 'a, O: 'a>(make: impl Fn() -> I + 'a, f: impl FnMut(I) -> mproc::Result<O> + 'a) -> Sampler<'a> {
    Box::new(sampler(make, f))
}

/// The medians of `repeat` samples of each figure, taken in rounds (one sample of every figure
/// per round): figures that are compared (a pool against its serial and rayon floors) then see
/// the same spells of a shared machine, whose memory bandwidth was seen to halve for seconds at a
/// time. With several figures, each sample is taken right after an untimed run of the same
/// figure, so that it is measured warm, as back-to-back runs are (the pool's workers awake and
/// spinning, the rayon pool's threads too, caches holding its data), not just after another.
fn rounds<const K: usize>(repeat: usize, mut figures: [&mut Sampler<'_>; K]) -> mproc::Result<[f64; K]> {
    let mut samples: [Vec<f64>; K] = std::array::from_fn(|_| Vec::with_capacity(repeat));
    for _ in 0..repeat {
        for (f, s) in figures.iter_mut().zip(&mut samples) {
            if K > 1 {
                f()?;
            }
            s.push(f()?);
        }
    }
    Ok(samples.map(median))
}

/// Median seconds of `repeat` runs of `f` on a fresh `make()`, after one untimed warm-up run.
fn timed<I, O>(repeat: usize, make: impl Fn() -> I, f: impl FnMut(I) -> mproc::Result<O>) -> mproc::Result<f64> {
    let [s] = rounds(repeat, [&mut boxed(make, f)])?;
    Ok(s)
}

/// The in-process floor of an item kind: `par_iter().map(identity).collect()` over the same `n`
/// items on rayon threads, one sample per [`RayonFloor::sample`]. It runs in a child process of
/// its own, kept for the figure's rounds: rayon's threads outlive their work, and a process with
/// threads may not fork the next pool.
struct RayonFloor {
    ask: mproc::Queue<u32>,
    answer: mproc::Queue<f64>,
    child: mproc::Process,
}

impl RayonFloor {
    /// `input`: the shared array the pool's workers read (`slice` kinds), which the floor reads too.
    fn start(kind: &str, n: u64, threads: usize, input: Option<&[u64]>) -> crate::Result<RayonFloor> {
        let (ask, answer) = (mproc::Queue::<u32>::plain(1)?, mproc::Queue::<f64>::plain(1)?);
        let kind = kind.to_owned();
        let child = mproc::Process::spawn(|| -> mproc::Result<()> {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .map_err(|e| mproc::Error::InvalidArgument(format!("rayon: {e}")))?;
            let mut one = rayon_sampler(&kind, n, input);
            while ask.get_plain()? != 0 {
                let s = pool.install(&mut one)?;
                answer.put_plain(s)?;
            }
            Ok(())
        })?;
        Ok(RayonFloor { ask, answer, child })
    }

    fn sample(&mut self) -> mproc::Result<f64> {
        self.ask.put_plain(1)?;
        loop {
            match self.answer.get_plain_timeout(Duration::from_secs(1)) {
                Err(mproc::Error::Timeout) if !self.child.is_alive()? => {
                    return Err(mproc::Error::InvalidArgument(format!(
                        "the rayon floor's process {}",
                        self.child.join()?
                    )));
                }
                Err(mproc::Error::Timeout) => {}
                r => return r,
            }
        }
    }
}

impl Drop for RayonFloor {
    fn drop(&mut self) {
        let _ = self.ask.put_plain_timeout(0, Duration::from_secs(1));
        if self.child.join_timeout(Duration::from_secs(10)).is_err() {
            let _ = self.child.kill();
            let _ = self.child.join();
        }
    }
}

/// One sample of `kind`'s rayon floor (run inside the rayon pool).
fn rayon_sampler<'a>(
    kind: &str,
    n: u64,
    input: Option<&'a [u64]>,
) -> Box<dyn FnMut() -> mproc::Result<f64> + Send + 'a> {
    use rayon::prelude::*;
    match (kind, input) {
        ("serde", _) => Box::new(sampler(
            || (),
            move |_| Ok((0..n).into_par_iter().map(|x| std::hint::black_box(Wrapped(x))).collect::<Vec<_>>()),
        )),
        ("struct64", _) => Box::new(sampler(
            || (),
            move |_| Ok((0..n).into_par_iter().map(|x| std::hint::black_box(S64 { a: [x; 8] })).collect::<Vec<_>>()),
        )),
        ("string", _) => Box::new(sampler(
            move || (0..n).map(|x| format!("item number {x:08}")).collect::<Vec<String>>(),
            |v| Ok(v.into_par_iter().map(std::hint::black_box).collect::<Vec<_>>()),
        )),
        // The `slice` kinds read the same shared input as the pool's workers.
        ("slice", Some(values)) => Box::new(sampler(
            || (),
            move |_| Ok(values.par_iter().map(|&x| std::hint::black_box(x)).collect::<Vec<_>>()),
        )),
        // The `_into` kinds store into an output that exists (and whose pages are touched): so
        // does this floor.
        ("slice-into", Some(values)) => Box::new(sampler(
            move || vec![1u64; n as usize],
            move |mut v| {
                v.par_iter_mut().zip(values.par_iter()).for_each(|(o, &x)| *o = std::hint::black_box(x));
                Ok(v)
            },
        )),
        ("range-into", _) => Box::new(sampler(
            move || vec![1u64; n as usize],
            |mut v| {
                v.par_iter_mut().enumerate().for_each(|(i, o)| *o = std::hint::black_box(i as u64));
                Ok(v)
            },
        )),
        _ => {
            Box::new(sampler(|| (), move |_| Ok((0..n).into_par_iter().map(std::hint::black_box).collect::<Vec<_>>())))
        }
    }
}

fn parse_chunk(c: &str) -> mproc::Result<Option<usize>> {
    match c.trim() {
        "auto" => Ok(None),
        n => n
            .parse::<usize>()
            .map(Some)
            .map_err(|_| mproc::Error::InvalidArgument(format!("--chunksize: not a number or auto: {n}"))),
    }
}

/// The shared arrays of the `slice` and `_into` kinds: for the chunk-size-1 run's item count
/// and for the full one.
struct Arrays {
    inputs: [mproc::RawArray<u64>; 2],
    outputs: [mproc::RawArray<u64>; 2],
}

impl Arrays {
    fn input(&self, n: u64) -> &mproc::RawArray<u64> {
        if self.inputs[0].len() as u64 == n { &self.inputs[0] } else { &self.inputs[1] }
    }
    fn output(&self, n: u64) -> &mproc::RawArray<u64> {
        if self.outputs[0].len() as u64 == n { &self.outputs[0] } else { &self.outputs[1] }
    }
}

/// One item kind: pool figure, and the serial and rayon floors.
fn kind_rows(a: &PoolArgs, pool: &Pool, kind: &'static str, par: f64, slices: Option<&Arrays>) -> crate::Result<()> {
    for c in a.chunksize.split(',') {
        let chunk = parse_chunk(c)?;
        // Chunk size 1 costs a task record per item: fewer items keep the run short.
        let n = if chunk == Some(1) { a.tasks.min(100_000) } else { a.tasks };
        let (mut pool_run, mut serial_run) = match kind {
            "serde" => (
                boxed(|| (), move |_| pool.map(|_, x: Wrapped| x, (0..n).map(Wrapped), chunk)),
                boxed(|| (), move |_| Ok((0..n).map(|x| std::hint::black_box(Wrapped(x))).collect::<Vec<_>>())),
            ),
            "plain" => (
                boxed(|| (), move |_| pool.map_plain(|_, x: u64| x, 0..n, chunk)),
                boxed(|| (), move |_| Ok((0..n).map(std::hint::black_box).collect::<Vec<_>>())),
            ),
            "struct64" => {
                let s = |x: u64| S64 { a: [x; 8] };
                (
                    boxed(|| (), move |_| pool.map_plain(|_, x: S64| x, (0..n).map(s), chunk)),
                    boxed(|| (), move |_| Ok((0..n).map(|x| std::hint::black_box(s(x))).collect::<Vec<_>>())),
                )
            }
            "string" => {
                let make = move || (0..n).map(|x| format!("item number {x:08}")).collect::<Vec<String>>();
                (
                    boxed(make, move |v| pool.map(|_, s: String| s, v, chunk)),
                    boxed(make, move |v| Ok(v.into_iter().map(std::hint::black_box).collect::<Vec<_>>())),
                )
            }
            "range" => (
                boxed(|| (), move |_| pool.map_range(|_, x: u64| x, 0..n, chunk)),
                boxed(|| (), move |_| Ok((0..n).map(std::hint::black_box).collect::<Vec<_>>())),
            ),
            "range-into" => {
                let out = slices.expect("made when the kind is asked for").output(n);
                (
                    boxed(|| (), move |_| pool.map_range_into(|_, x: u64| x, 0..n, out, chunk)),
                    boxed(
                        move || vec![1u64; n as usize],
                        move |mut v| {
                            v.iter_mut().enumerate().for_each(|(i, o)| *o = std::hint::black_box(i as u64));
                            Ok(v)
                        },
                    ),
                )
            }
            "slice-into" => {
                let arrays = slices.expect("made when the kind is asked for");
                let (arr, out) = (arrays.input(n), arrays.output(n));
                // SAFETY: nothing writes the array while the serial loop reads it.
                let values = unsafe { arr.as_slice() };
                (
                    boxed(|| (), move |_| pool.map_array_into(|_, x: u64| x, arr, out, chunk)),
                    boxed(
                        move || vec![1u64; n as usize],
                        move |mut v| {
                            v.iter_mut().zip(values).for_each(|(o, &x)| *o = std::hint::black_box(x));
                            Ok(v)
                        },
                    ),
                )
            }
            "slice" => {
                let arr = slices.expect("made when the kind is asked for").input(n);
                // SAFETY: nothing writes the array while the serial loop reads it.
                let values = unsafe { arr.as_slice() };
                (
                    boxed(|| (), move |_| pool.map_array(|_, x: u64| x, arr, chunk)),
                    boxed(|| (), move |_| Ok(values.iter().map(|&x| std::hint::black_box(x)).collect::<Vec<_>>())),
                )
            }
            other => return Err(format!("--kinds: unknown kind {other}").into()),
        };
        // SAFETY: nothing writes the input array while the floor reads it.
        let input = slices.filter(|_| kind.starts_with("slice")).map(|s| unsafe { s.input(n).as_slice() });
        let mut floor = RayonFloor::start(kind, n, a.processes, input)?;
        let mut rayon_run: Sampler<'_> = Box::new(move || floor.sample());
        let [pool_s, serial_s, rayon_s] = rounds(a.repeat, [&mut pool_run, &mut serial_run, &mut rayon_run])?;
        drop(rayon_run); // ends the floor's process
        let rayon = rayon_s / n as f64 * 1e9;
        let row = KindRow {
            bench: "pool_kind",
            kind,
            processes: a.processes,
            tasks: n,
            chunksize: c.trim().to_owned(),
            seconds: pool_s,
            ns_per_item: pool_s / n as f64 * 1e9,
            serial_ns_per_item: serial_s / n as f64 * 1e9,
            rayon_ns_per_item: rayon,
            parallelism: par,
        };
        if a.json {
            println!("{}", serde_json::to_string(&row).expect("plain struct serialises"));
        } else {
            println!(
                "pool {:<8} chunksize {:>5}: {:>8.2} ns/item ({} items); serial loop {:.2}, rayon {:.2} ns/item; parallelism check {:.2}",
                row.kind,
                row.chunksize,
                row.ns_per_item,
                row.tasks,
                row.serial_ns_per_item,
                row.rayon_ns_per_item,
                row.parallelism
            );
        }
    }
    Ok(())
}

/// Byte blobs one way (`Vec<u8>` in, its length out) and round trip (the blob back), in GB/s of
/// blob bytes, beside a memcpy of the same size.
fn blob_rows(a: &PoolArgs, pool: &Pool, par: f64) -> crate::Result<()> {
    for size in [1usize << 10, 64 << 10, 1 << 20] {
        let blobs = (a.blob_bytes / size).max(1);
        let total = (blobs * size) as f64;
        let make = || (0..blobs).map(|i| vec![i as u8; size]).collect::<Vec<_>>();
        // Each blob copied once out of the same set the pool gets (not one small buffer over and
        // over, which stays in cache and is no floor for moving this many bytes).
        let memcpy_s = {
            let mut dst = vec![0u8; size];
            timed(a.repeat, make, |src| {
                for b in &src {
                    dst.copy_from_slice(std::hint::black_box(b));
                    std::hint::black_box(&mut dst);
                }
                Ok(src)
            })?
        };
        for c in a.chunksize.split(',') {
            let chunk = parse_chunk(c)?;
            for direction in ["one_way", "round_trip"] {
                let s = if direction == "one_way" {
                    timed(a.repeat, make, |v| pool.map(|_, b: Vec<u8>| b.len(), v, chunk))?
                } else {
                    timed(a.repeat, make, |v| pool.map(|_, b: Vec<u8>| b, v, chunk))?
                };
                let row = BlobRow {
                    bench: "pool_blob",
                    bytes: size,
                    direction,
                    processes: a.processes,
                    blobs,
                    chunksize: c.trim().to_owned(),
                    seconds: s,
                    gb_per_s: total / s / 1e9,
                    memcpy_gb_per_s: total / memcpy_s / 1e9,
                    parallelism: par,
                };
                if a.json {
                    println!("{}", serde_json::to_string(&row).expect("plain struct serialises"));
                } else {
                    println!(
                        "pool blob {:>7} B {:<10} chunksize {:>5}: {:>6.2} GB/s ({} blobs); memcpy {:.2} GB/s; parallelism check {:.2}",
                        row.bytes,
                        row.direction,
                        row.chunksize,
                        row.gb_per_s,
                        row.blobs,
                        row.memcpy_gb_per_s,
                        row.parallelism
                    );
                }
            }
        }
    }
    Ok(())
}

pub fn run(c: Command) -> crate::Result<()> {
    let a = match c {
        Command::Pool(a) => a,
        Command::Queue(a) => return crate::bench_queue::run(a),
        Command::Cluster(a) => return crate::cluster::bench(a),
    };
    let kinds: Vec<&str> = a.kinds.split(',').map(str::trim).collect();
    if a.repeat == 0 {
        return Err(mproc::Error::InvalidArgument("--repeat must be at least 1".into()).into());
    }
    let par = parallelism()?;
    let startup = median(
        (0..a.repeat)
            .map(|_| {
                let t = Instant::now();
                let pool = Pool::builder().processes(a.processes).build()?;
                pool.apply(|_, x: u64| x, 1)?;
                pool.close();
                pool.join()?;
                Ok(t.elapsed().as_secs_f64() * 1e3)
            })
            .collect::<mproc::Result<Vec<f64>>>()?,
    );
    // `slice` and the `_into` kinds: arrays the workers read or write themselves, so made before
    // the pool (chunk size 1 runs over fewer items, as for every kind).
    let slices = if ["slice", "range-into", "slice-into"].iter().any(|k| kinds.contains(k)) {
        let make = |n: u64| mproc::RawArray::from_slice(&(0..n).collect::<Vec<u64>>());
        let small = a.tasks.min(100_000);
        Some(Arrays { inputs: [make(small)?, make(a.tasks)?], outputs: [make(small)?, make(a.tasks)?] })
    } else {
        None
    };
    let pool = Pool::builder().processes(a.processes).build()?;
    for c in a.chunksize.split(',').filter(|_| kinds.contains(&"u64")) {
        let chunk = parse_chunk(c)?;
        let mut times = Vec::with_capacity(a.repeat);
        for _ in 0..a.repeat {
            let t = Instant::now();
            let out = pool.map(|_, x: u64| x, 0..a.tasks, chunk)?;
            times.push(t.elapsed().as_secs_f64());
            if out.len() as u64 != a.tasks {
                return Err(format!("{} results for {} tasks", out.len(), a.tasks).into());
            }
        }
        let seconds = median(times);
        let row = Row {
            bench: "pool",
            processes: a.processes,
            tasks: a.tasks,
            chunksize: c.trim().to_owned(),
            seconds,
            per_task_us: seconds / a.tasks as f64 * 1e6,
            startup_ms: startup,
            parallelism: par,
        };
        if a.json {
            println!("{}", serde_json::to_string(&row).expect("plain struct serialises"));
        } else {
            println!(
                "pool: {} processes, {} tasks, chunksize {:>5}: {:.4} s = {:.3} µs/task; start-up (build + 1 task + join) {:.2} ms; parallelism check {:.2}",
                row.processes, row.tasks, row.chunksize, row.seconds, row.per_task_us, row.startup_ms, row.parallelism
            );
        }
    }
    for kind in ["serde", "plain", "struct64", "string", "range", "slice", "range-into", "slice-into"] {
        if kinds.contains(&kind) {
            kind_rows(&a, &pool, kind, par, slices.as_ref())?;
        }
    }
    if kinds.contains(&"blob") {
        blob_rows(&a, &pool, par)?;
    }
    Ok(())
}
