//! `mproc primes`: count the primes in a range with a Pool, at each chunk size (the book's study)
//! or cut into 1..N chunks (its sawtooth).

use mproc_book::find_primes::{self, Call, Run};
use mproc_book::kernel::Kernel;

#[derive(clap::Args)]
pub struct Args {
    /// A..B (half-open; 1e8 notation works), or `book` ([1e8, 1.01e8)) or `sawtooth` ([1e8, 1.001e8)).
    #[arg(long, default_value = "book")]
    range: String,
    /// Comma-separated chunk sizes; `auto` is Python's rule (a quarter of each worker's share).
    #[arg(long, default_value = "1,10,100,1000,10000,auto")]
    chunksizes: String,
    /// The sawtooth: instead of --chunksizes, cut the range into 1, 2, …, N chunks.
    #[arg(long)]
    nchunks: Option<usize>,
    /// Shuffle the numbers first (big and small ones mixed in every chunk).
    #[arg(long)]
    shuffle: bool,
    /// Pool call: map (the default), imap or imap-unordered.
    #[arg(long, default_value = "map", value_parser = ["map", "imap", "imap-unordered"])]
    call: String,
    /// Shorthand for --call imap.
    #[arg(long, conflicts_with_all = ["call", "imap_unordered"])]
    imap: bool,
    /// Shorthand for --call imap-unordered.
    #[arg(long, conflicts_with = "call")]
    imap_unordered: bool,
    /// Also time the serial loop (always done when speed-ups are printed; this prints its row).
    #[arg(long)]
    serial: bool,
    /// Worker processes.
    #[arg(long, default_value_t = 2)]
    processes: usize,
    /// Trial division kernel: fast or plain.
    #[arg(long, default_value = "fast")]
    kernel: String,
    /// Runs per setting; best and median are reported.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// One JSON object per line instead of a table.
    #[arg(long)]
    json: bool,
    /// Run on the cluster instead [default: $MPROC_BACKEND when it is a redis:// URL]:
    /// redis://HOST:PORT/ with `mproc worker` hosts connected
    /// (Pool.map at each chunk size; no plot, no serial row).
    #[arg(long)]
    backend: Option<String>,
    /// Write the plot (time against chunk size, or the sawtooth) as SVG into this directory.
    #[arg(long)]
    svg: Option<std::path::PathBuf>,
}

#[derive(serde::Serialize)]
struct Row {
    #[serde(flatten)]
    run: Run,
    range: [u64; 2],
    processes: usize,
    kernel: &'static str,
    best_s: f64,
    median_s: f64,
    speedup: f64,
    parallelism: f64,
}

/// The settings to run: chunk sizes, each with its chunk count.
fn settings(a: &Args, len: usize) -> crate::Result<Vec<usize>> {
    if let Some(n) = a.nchunks {
        if n == 0 {
            return Err(mproc::Error::InvalidArgument("--nchunks must be at least 1".into()).into());
        }
        return Ok((1..=n.min(len)).map(|k| len.div_ceil(k)).collect());
    }
    a.chunksizes
        .split(',')
        .map(|c| match c.trim() {
            "auto" => Ok(find_primes::auto_chunksize(len, a.processes)),
            x => match x.parse::<usize>() {
                Ok(n) if n > 0 => Ok(n),
                _ => {
                    Err(mproc::Error::InvalidArgument(format!("--chunksizes: not a positive number or auto: {x:?}"))
                        .into())
                }
            },
        })
        .collect()
}

fn stats(mut times: Vec<f64>) -> (f64, f64) {
    times.sort_by(f64::total_cmp);
    (times[0], times[times.len() / 2])
}

pub fn run(a: Args) -> crate::Result<()> {
    let (lo, hi) = find_primes::parse_range(&a.range)?;
    if hi - lo > 100_000_000 {
        return Err(mproc::Error::InvalidArgument("--range: at most 10^8 numbers".into()).into());
    }
    if a.repeat == 0 || a.processes == 0 {
        return Err(mproc::Error::InvalidArgument("--repeat and --processes must be at least 1".into()).into());
    }
    let kernel: Kernel = a.kernel.parse()?;
    let call: Call = if a.imap {
        Call::Imap
    } else if a.imap_unordered {
        Call::ImapUnordered
    } else {
        a.call.parse()?
    };
    let numbers = find_primes::numbers(lo, hi, a.shuffle);
    let chunksizes = settings(&a, numbers.len())?;
    if let Some(url) = &crate::cluster::backend(a.backend.as_deref()) {
        return crate::cluster::primes(url, lo, hi, &chunksizes, kernel, a.repeat, a.json);
    }
    let want = find_primes::sieve_count(lo, hi);
    let par = crate::bench::parallelism()?;
    let pool = find_primes::pool(a.processes)?;
    if !a.json {
        println!(
            "primes in [{lo}, {hi}): {} numbers, {want} primes (sieve); {} processes, Pool.{call}, {kernel} kernel{}, \
             best and median of {} (parallelism check {par:.2})",
            numbers.len(),
            a.processes,
            if a.shuffle { ", shuffled" } else { "" },
            a.repeat
        );
        println!(
            "{:<15} {:>9} {:>7} {:>8} {:>10} {:>10} {:>9}",
            "call", "chunksize", "chunks", "primes", "best s", "median s", "speed-up"
        );
    }
    let check = |r: &Run| -> crate::Result<()> {
        if r.primes != want {
            return Err(format!(
                "{} at chunk size {:?} counted {} primes; the sieve says {want}",
                r.call, r.chunksize, r.primes
            )
            .into());
        }
        Ok(())
    };
    let progress = pool.context();
    let mut stages = vec![format!("serial ({} runs)", a.repeat)];
    stages.extend(chunksizes.iter().map(|c| format!("chunk size {c}")));
    let bar = crate::progress::Bar::start(
        progress,
        stages.len() as u64 * a.repeat as u64 * numbers.len() as u64,
        stages,
        !a.json,
    )?;
    let serial_runs: Vec<Run> = (0..a.repeat).map(|_| find_primes::serial(&numbers, kernel, Some(progress))).collect();
    for r in &serial_runs {
        check(r)?;
    }
    let (serial_best, serial_median) = stats(serial_runs.iter().map(|r| r.seconds).collect());
    let row = |run: Run, best: f64, median: f64| Row {
        run,
        range: [lo, hi],
        processes: a.processes,
        kernel: kernel.name(),
        best_s: best,
        median_s: median,
        speedup: serial_median / median,
        parallelism: par,
    };
    let serial_row = a.serial.then(|| row(serial_runs[0].clone(), serial_best, serial_median));
    let mut points = Vec::new();
    let mut rows = Vec::new();
    for (i, &c) in chunksizes.iter().enumerate() {
        bar.stage(i + 1);
        let mut runs = Vec::with_capacity(a.repeat);
        for _ in 0..a.repeat {
            let r = find_primes::on_pool(&pool, &numbers, kernel, call, c)?;
            check(&r)?;
            runs.push(r);
        }
        let (best, median) = stats(runs.iter().map(|r| r.seconds).collect());
        let r = row(runs.swap_remove(0), best, median);
        points.push((c, r.run.chunks.unwrap_or(1), median));
        rows.push(r);
    }
    bar.finish();
    for r in serial_row.iter().chain(&rows) {
        emit(r, a.json);
    }
    if let Some(dir) = &a.svg {
        let title = format!("primes in [{lo}, {hi}): {} processes, Pool.{call}, {kernel} kernel", a.processes);
        let path = if a.nchunks.is_some() {
            crate::plot::sawtooth(dir, &title, &points, a.processes)?
        } else {
            crate::plot::chunksizes(dir, &title, &points, serial_median)?
        };
        if !a.json {
            println!("plot: {}", path.display());
        }
    }
    Ok(())
}

fn emit(r: &Row, json: bool) {
    if json {
        println!("{}", serde_json::to_string(r).expect("plain struct serialises"));
        return;
    }
    let opt = |v: Option<usize>| v.map_or("-".to_owned(), |x| x.to_string());
    println!(
        "{:<15} {:>9} {:>7} {:>8} {:>10.4} {:>10.4} {:>8.2}x",
        r.run.call,
        opt(r.run.chunksize),
        opt(r.run.chunks),
        r.run.primes,
        r.best_s,
        r.median_s,
        r.speedup
    );
}
