//! `mproc pi`: Monte Carlo π serially, on threads and on processes.

use mproc::Progress;

use crate::args::{parse_count, parse_list, positive_list};
use mproc_book::pi::{self, Config, Estimate, Kernel, Mode, Pi};

#[derive(clap::Args)]
pub struct Args {
    /// Comma-separated: serial, threads, processes.
    #[arg(long, default_value = "serial,threads,processes")]
    mode: String,
    /// Comma-separated worker counts (threads or processes; serial splits its darts as many ways).
    #[arg(long, default_value = "1,2,4")]
    workers: String,
    /// Darts in all (scientific notation works: 1e8).
    #[arg(long, default_value = "1e8")]
    samples: String,
    /// The parent's seed.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Workers keep the stream they inherited from the parent (the book's trap: identical darts).
    #[arg(long)]
    no_reseed: bool,
    /// Comma-separated dart kernels: plain (one dart per iteration, floats) and batched.
    #[arg(long, default_value = "plain,batched")]
    kernel: String,
    /// One JSON object per line instead of a table.
    #[arg(long)]
    json: bool,
    /// Write the speed-up plot (speedup-vs-workers) as SVG into this directory.
    #[arg(long)]
    svg: Option<std::path::PathBuf>,
}

#[derive(serde::Serialize)]
struct Row<'a> {
    #[serde(flatten)]
    est: &'a Estimate,
    speedup: f64,
    parallelism: f64,
}

pub fn run(a: Args) -> crate::Result<()> {
    let modes: Vec<Mode> = parse_list(&a.mode)?;
    let kernels: Vec<Kernel> = parse_list(&a.kernel)?;
    let workers = positive_list(&a.workers, "--workers")?;
    let samples = parse_count(&a.samples, "--samples")?;
    let par = crate::bench::parallelism()?;
    if !a.json {
        println!(
            "pi: {samples} darts, seed {}, workers {}{} (parallelism check {par:.2})",
            a.seed,
            if a.no_reseed { "NOT reseeded" } else { "reseeded" },
            if a.no_reseed { " — the book's trap" } else { "" },
        );
        println!(
            "{:<10} {:<8} {:>7} {:>12} {:>10} {:>9} {:>8}  blocks",
            "mode", "kernel", "workers", "pi", "error", "seconds", "speed-up"
        );
    }
    let max_workers = workers.iter().copied().max().unwrap_or(1);
    let progress = Progress::new(max_workers + 1)?;
    let runs = kernels.len() * (1 + modes.len() * workers.len());
    let mut stages = Vec::new();
    for k in &kernels {
        stages.push(format!("{k}: serial baseline"));
        for m in &modes {
            stages.extend(workers.iter().map(|w| format!("{k}: {m}, {w} workers")));
        }
    }
    let bar = crate::progress::Bar::start(&progress, runs as u64 * samples, stages, !a.json)?;
    let mut rows = Vec::new();
    let mut stage = 0;
    for &kernel in &kernels {
        // The one-worker serial run is every speed-up's baseline.
        let base_cfg = Config { samples, workers: 1, seed: a.seed, reseed: !a.no_reseed, kernel };
        bar.stage(stage);
        let serial = pi::run_local(Mode::Serial, &base_cfg, Some(&progress))?;
        for &mode in &modes {
            for &w in &workers {
                stage += 1;
                bar.stage(stage);
                let cfg = Config { workers: w, ..base_cfg.clone() };
                let est = match mode {
                    Mode::Serial if w == 1 => {
                        progress.add(samples); // the baseline, not run twice
                        serial.clone()
                    }
                    Mode::Serial | Mode::Threads => pi::run_local(mode, &cfg, Some(&progress))?,
                    Mode::Processes => Pi::new(cfg, progress.clone())?.run()?,
                };
                let speedup = serial.seconds / est.seconds;
                rows.push((est, speedup));
            }
        }
        stage += 1;
    }
    bar.finish();
    for (est, speedup) in &rows {
        emit(&Row { est, speedup: *speedup, parallelism: par }, a.json);
    }
    if let Some(dir) = &a.svg {
        let path = crate::plot::pi_speedup(dir, &rows, par)?;
        if !a.json {
            println!("plot: {}", path.display());
        }
    }
    Ok(())
}

fn emit(r: &Row<'_>, json: bool) {
    if json {
        println!("{}", serde_json::to_string(r).expect("plain struct serialises"));
        return;
    }
    let e = r.est;
    let blocks: Vec<String> = e.inside.iter().map(u64::to_string).collect();
    let trap = if e.duplicate_blocks { "  IDENTICAL BLOCKS: the workers did not reseed" } else { "" };
    println!(
        "{:<10} {:<8} {:>7} {:>12.8} {:>+10.6} {:>9.4} {:>7.2}x  {}{trap}",
        e.mode,
        e.kernel,
        e.workers,
        e.pi,
        e.error,
        e.seconds,
        r.speedup,
        blocks.join(" ")
    );
}
