use std::io::Write;
use std::time::Instant;

use mproc_book::kernel::Kernel;
use mproc_book::primes::{self, BOOK_NUMBERS, CheckEvery, Config, Split, Variant, Verifier};

#[derive(clap::Args)]
pub struct Args {
    /// Comma-separated numbers to check (default: the book's five).
    #[arg(long)]
    numbers: Option<String>,
    /// none, less-naive, manager, redis, rawvalue, mmap, mmap-redux, a comma-separated list, or all.
    #[arg(long, default_value = "rawvalue")]
    flag: String,
    /// Worker processes (default: the CPUs available).
    #[arg(long)]
    processes: Option<usize>,
    /// Poll the flag every K divisors, or `auto` (polling costs at most 1 % of the work).
    #[arg(long, default_value = "auto")]
    check_every: String,
    /// Divisors below this are checked serially first (not by `none`).
    #[arg(long, default_value_t = 21)]
    serial_cutoff: u64,
    /// interleaved or contiguous.
    #[arg(long, default_value = "interleaved")]
    split: String,
    /// Runs per (variant, number); best and median are reported.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Redis server for the redis variant [default: $MPROC_REDIS_URL, else redis://127.0.0.1:6379/].
    #[arg(long)]
    redis_url: Option<String>,
    /// Run a range again when its worker dies, instead of failing.
    #[arg(long)]
    retry: bool,
    /// Trial-division loop: fast (float quotients, exact), plain (`n % d`, the reference), or
    /// plain,fast to time both.
    #[arg(long, default_value = "fast")]
    kernel: String,
    /// One JSON object per (variant, number) instead of a table.
    #[arg(long)]
    json: bool,
    /// Run on the cluster instead [default: $MPROC_BACKEND when it is a redis:// URL]:
    /// redis://HOST:PORT/ with `mproc worker` hosts connected
    /// (each number split into one range per worker process, or --processes ranges).
    #[arg(long)]
    backend: Option<String>,
}

#[derive(serde::Serialize)]
struct Row {
    variant: String,
    kernel: &'static str,
    number: u64,
    is_prime: bool,
    processes: usize,
    best_s: f64,
    median_s: f64,
    repeat: usize,
    check_every: Option<u64>,
    stop_us: Option<f64>,
    /// Serial rows: wall time per odd divisor tried.
    ns_per_divisor: Option<f64>,
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn parse_numbers(s: &str) -> mproc::Result<Vec<u64>> {
    s.split(',')
        .map(|x| {
            x.trim()
                .replace('_', "")
                .parse::<u64>()
                .map_err(|_| mproc::Error::InvalidArgument(format!("not a number (0 to 2^64 − 1): {x:?}")))
        })
        .collect()
}

fn emit(row: &Row, json: bool) {
    if json {
        println!("{}", serde_json::to_string(row).expect("plain struct serialises"));
    } else {
        let every = row.check_every.map_or("-".to_owned(), |k| k.to_string());
        let stop = row.stop_us.map_or("-".to_owned(), |s| format!("{s:.1}"));
        let per = row.ns_per_divisor.map_or("-".to_owned(), |s| format!("{s:.2}"));
        println!(
            "{:<11} {:<6} {:>20} {:<6} {:>10.6} {:>10.6} {:>11} {:>8} {:>8}",
            row.variant,
            row.kernel,
            row.number,
            if row.is_prime { "prime" } else { "no" },
            row.best_s,
            row.median_s,
            every,
            stop,
            per
        );
    }
    let _ = std::io::stdout().flush();
}

pub fn run(a: Args) -> crate::Result<()> {
    let numbers = a.numbers.as_deref().map_or(Ok(BOOK_NUMBERS.to_vec()), parse_numbers)?;
    let variants: Vec<Variant> = if a.flag == "all" {
        Variant::ALL.to_vec()
    } else {
        a.flag.split(',').map(|s| s.trim().parse()).collect::<mproc::Result<_>>()?
    };
    if a.repeat == 0 {
        return Err(mproc::Error::InvalidArgument("--repeat must be at least 1".into()).into());
    }
    let kernels: Vec<Kernel> = a.kernel.split(',').map(|s| s.trim().parse()).collect::<mproc::Result<_>>()?;
    if let Some(url) = &crate::cluster::backend(a.backend.as_deref()) {
        for &k in &kernels {
            crate::cluster::verify_primes(url, &numbers, a.processes, k, a.repeat, a.json)?;
        }
        return Ok(());
    }
    let base = Config {
        processes: a.processes.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
        check_every: a.check_every.parse::<CheckEvery>()?,
        serial_cutoff: a.serial_cutoff,
        split: a.split.parse::<Split>()?,
        redis_url: a.redis_url.clone().or_else(|| std::env::var("MPROC_REDIS_URL").ok()),
        retry: a.retry,
        kernel: Kernel::default(),
    };
    let processes = base.processes;
    if !a.json {
        println!(
            "verify-primes: {} processes, check every {}, serial cut-off {}, {} split, best and median of {}",
            processes, a.check_every, a.serial_cutoff, a.split, a.repeat
        );
        let costs: Vec<String> = kernels
            .iter()
            .map(|&k| {
                let path = if k == Kernel::Fast { format!(" ({})", Kernel::fast_path()) } else { String::new() };
                format!("{k}{path} {:.2} ns", primes::iteration_ns(k))
            })
            .collect();
        println!("trial division per divisor, one core: {}", costs.join(", "));
        println!(
            "{:<11} {:<6} {:>20} {:<6} {:>10} {:>10} {:>11} {:>8} {:>8}",
            "variant", "kernel", "number", "prime?", "best s", "median s", "check-every", "stop µs", "ns/div"
        );
    }
    for &kernel in &kernels {
        run_kernel(&a, &variants, &numbers, Config { kernel, ..base.clone() })?;
    }
    Ok(())
}

fn run_kernel(a: &Args, variants: &[Variant], numbers: &[u64], cfg: Config) -> crate::Result<()> {
    let (processes, kernel) = (cfg.processes, cfg.kernel);
    for &n in numbers {
        let mut times = Vec::with_capacity(a.repeat);
        let mut is_prime = false;
        for _ in 0..a.repeat {
            let t = Instant::now();
            is_prime = primes::smallest_factor_with(n, kernel).is_none();
            times.push(t.elapsed().as_secs_f64());
        }
        let best = times.iter().copied().fold(f64::INFINITY, f64::min);
        // Odd divisors up to the factor (or √n): what the serial scan tried.
        let tried = primes::smallest_factor(n).unwrap_or(n.isqrt()).saturating_sub(1) / 2;
        let row = Row {
            variant: "serial".into(),
            kernel: kernel.name(),
            number: n,
            is_prime,
            processes: 1,
            best_s: best,
            median_s: median(&mut times),
            repeat: a.repeat,
            check_every: None,
            stop_us: None,
            ns_per_divisor: (tried > 1000).then(|| best * 1e9 / tried as f64),
        };
        emit(&row, a.json);
    }
    let verifier = Verifier::new(cfg, variants)?;
    for &v in variants {
        for &n in numbers {
            let mut times = Vec::with_capacity(a.repeat);
            let mut stops = Vec::new();
            let mut is_prime = None;
            for _ in 0..a.repeat {
                let c = verifier.check(v, n).map_err(|e| explain(&verifier, v, n, e))?;
                if is_prime.is_some_and(|p| p != c.is_prime) {
                    return Err(format!("{v} gave different answers for {n} in two runs").into());
                }
                is_prime = Some(c.is_prime);
                times.push(c.seconds);
                if let Some(l) = c.stop_latency {
                    stops.push(l.as_secs_f64() * 1e6);
                }
            }
            let best = times.iter().copied().fold(f64::INFINITY, f64::min);
            let row = Row {
                variant: v.name().into(),
                kernel: kernel.name(),
                number: n,
                is_prime: is_prime.unwrap_or(false),
                processes,
                best_s: best,
                median_s: median(&mut times),
                repeat: a.repeat,
                check_every: verifier.check_every(v),
                stop_us: (!stops.is_empty()).then(|| median(&mut stops)),
                ns_per_divisor: None,
            };
            emit(&row, a.json);
        }
    }
    Ok(())
}

/// Says which worker died and on which range, when that is what happened.
fn explain(verifier: &Verifier, v: Variant, n: u64, e: mproc::Error) -> Box<dyn std::error::Error> {
    let root = e.root();
    if let mproc::Error::WorkerDied { task, .. } = root {
        let ranges = verifier.ranges(v, n);
        let what = task
            .and_then(|t| ranges.get(t as usize).map(|r| format!("{r} (range {} of {})", t + 1, ranges.len())))
            .unwrap_or_else(|| format!("a range of {n}"));
        return format!("{root}: it was checking {what} with the {v} flag; rerun with --retry to run its range again")
            .into();
    }
    e.into()
}
