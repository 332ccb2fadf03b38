use std::time::{Duration, Instant};

use mproc::Pool;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Pool overhead: a trivial task (return the input) over many tasks, and pool start-up
    /// (build + one task + close + join).
    Pool(PoolArgs),
    /// Queue, Pipe and a Unix socket pair between two processes: round-trip latency and
    /// one-way throughput per message size.
    Queue(crate::bench_queue::QueueArgs),
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
    /// One JSON object per line.
    #[arg(long)]
    json: bool,
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

fn median(mut v: Vec<f64>) -> f64 {
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

pub fn run(c: Command) -> crate::Result<()> {
    let a = match c {
        Command::Pool(a) => a,
        Command::Queue(a) => return crate::bench_queue::run(a),
    };
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
    let pool = Pool::builder().processes(a.processes).build()?;
    for c in a.chunksize.split(',') {
        let chunk = match c.trim() {
            "auto" => None,
            n => Some(
                n.parse::<usize>()
                    .map_err(|_| mproc::Error::InvalidArgument(format!("--chunksize: not a number or auto: {n}")))?,
            ),
        };
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
    Ok(())
}
