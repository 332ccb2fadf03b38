//! `mproc shared-array`: a big array shared by forked workers without a copy, with the kernel's
//! memory figures as evidence.

use mproc::Progress;
use mproc_book::shared_array::{self, Config, Fill, Outcome};

#[derive(clap::Args)]
pub struct Args {
    /// Rows of the array.
    #[arg(long, default_value_t = 10_000)]
    rows: usize,
    /// Columns (f64 each): the default 10000 x 20000 is the book's 1.6 GB.
    #[arg(long, default_value_t = 20_000)]
    cols: usize,
    /// Comma-separated worker counts.
    #[arg(long, default_value = "1,2,4")]
    processes: String,
    /// pid (worker w writes rows w, w+P, …) or random (each worker picks its rows at random).
    #[arg(long, default_value = "pid")]
    fill: String,
    /// Workers keep the random state they inherited (the trap: they pick the same rows).
    #[arg(long)]
    no_reseed: bool,
    /// The parent's seed.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// One JSON object per run instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> crate::Result<()> {
    let fill: Fill = a.fill.parse()?;
    let counts = crate::args::positive_list(&a.processes, "--processes")?;
    let bytes = (a.rows as u64).saturating_mul(a.cols as u64).saturating_mul(8);
    let par = crate::bench::parallelism()?;
    if !a.json {
        println!(
            "shared-array: {} x {} f64 = {:.2} GB in one shared mapping, {} fill{} (parallelism check {par:.2})",
            a.rows,
            a.cols,
            bytes as f64 / 1e9,
            fill,
            if a.no_reseed { ", workers NOT reseeded" } else { "" }
        );
    }
    let progress = Progress::new(counts.iter().copied().max().unwrap_or(1) + 1)?;
    let runs: Vec<u64> = counts.iter().map(|_| a.rows as u64).collect();
    let stages = counts.iter().map(|p| format!("{p} processes")).collect();
    let bar = crate::progress::Bar::start(&progress, runs.iter().sum(), stages, !a.json && bytes > 1 << 28)?;
    let mut outs = Vec::new();
    for (i, &p) in counts.iter().enumerate() {
        bar.stage(i);
        let cfg = Config { rows: a.rows, cols: a.cols, processes: p, fill, reseed: !a.no_reseed, seed: a.seed };
        outs.push(shared_array::run(&cfg, &progress)?);
    }
    bar.finish();
    for o in &outs {
        emit(o, a.json);
    }
    Ok(())
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn emit(o: &Outcome, json: bool) {
    if json {
        println!("{}", serde_json::to_string(o).expect("plain struct serialises"));
        return;
    }
    println!(
        "\n{} processes: alloc {:.6} s; fill, first touch {:.2} GB/s, warm {:.2} GB/s \
         (one process, fresh private buffer: {:.2} / {:.2} GB/s)",
        o.processes, o.alloc_s, o.fill_gb_s, o.warm_fill_gb_s, o.memset_gb_s, o.warm_memset_gb_s
    );
    println!(
        "  rows written once {}, more than once {}, never {}{}",
        o.rows_once,
        o.rows_duplicate,
        o.rows_never,
        if o.identical_picks { "  IDENTICAL PICKS: the workers did not reseed and drew the same rows" } else { "" }
    );
    println!(
        "  system Shmem grew {:.0} MiB (the array is {:.0} MiB); parent RssAnon {:.1} -> {:.1} MiB",
        mib(o.system_shmem_growth_kib),
        o.bytes as f64 / 1048576.0,
        mib(o.parent_before.anon_kib),
        mib(o.parent_after.anon_kib)
    );
    for w in &o.workers {
        println!(
            "  worker {}: {} rows; RssShmem {:.0} -> {:.0} MiB, RssAnon {:.1} -> {:.1} MiB (+{:.2} % of the array)",
            w.worker,
            w.rows,
            mib(w.before.shmem_kib),
            mib(w.after.shmem_kib),
            mib(w.before.anon_kib),
            mib(w.after.anon_kib),
            100.0 * (w.after.anon_kib.saturating_sub(w.before.anon_kib) as f64 * 1024.0) / o.bytes as f64
        );
    }
}
