use std::path::PathBuf;

use mproc_book::counters::{self, Config, Variant};

#[derive(clap::Args)]
pub struct Args {
    /// Worker processes.
    #[arg(long, default_value_t = 4)]
    processes: u32,
    /// Increments per process.
    #[arg(long, default_value_t = 1000)]
    count: u64,
    /// Comma-separated variants, or `all`: file-nolock, file-lock, value-nolock, value-lock,
    /// rawvalue-atomic, rawvalue-lock.
    #[arg(long, default_value = "all")]
    variant: String,
    /// Start all workers together (a barrier), so lost updates really show.
    #[arg(long)]
    barrier: bool,
    /// Directory for the file variants' count and lock files.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// One JSON object per line instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn parse_variants(list: &str) -> mproc::Result<Vec<Variant>> {
    if list == "all" {
        return Ok(Variant::ALL.to_vec());
    }
    list.split(',').map(|s| s.trim().parse()).collect()
}

pub fn run(a: Args) -> crate::Result<()> {
    let variants = parse_variants(&a.variant)?;
    let cfg = Config {
        processes: a.processes,
        count: a.count,
        barrier: a.barrier,
        dir: a.dir.unwrap_or_else(std::env::temp_dir),
    };
    if !a.json {
        println!(
            "{} processes x {} increments{}",
            cfg.processes,
            cfg.count,
            if cfg.barrier { ", started together" } else { "" }
        );
        println!("{:<16} {:>10} {:>10} {:>8} {:>9}", "variant", "expected", "got", "lost", "seconds");
    }
    for v in variants {
        let o = counters::run(v, &cfg)?;
        if a.json {
            println!("{}", serde_json::to_string(&o).expect("plain struct serialises"));
        } else {
            println!("{:<16} {:>10} {:>10} {:>8} {:>9.4}", o.variant, o.expected, o.got, o.lost, o.seconds);
        }
    }
    Ok(())
}
