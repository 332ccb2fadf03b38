//! `mproc primes-queue`: the prime search through Queues with poison pills.

use mproc_book::find_primes;
use mproc_book::kernel::Kernel;
use mproc_book::primes_queue::{self, Config, Outcome};

#[derive(clap::Args)]
pub struct Args {
    /// A..B (half-open), or book / sawtooth (see `mproc primes`).
    #[arg(long, default_value = "sawtooth")]
    range: String,
    /// Worker processes.
    #[arg(long, default_value_t = 2)]
    processes: usize,
    /// Numbers per message, comma-separated for several runs (1: one number per message).
    #[arg(long, default_value = "1,100,10000")]
    batch: String,
    /// Queue only the odd numbers (the book's "less work" variant); runs both without the flag.
    #[arg(long)]
    odd_only: bool,
    /// Feed the job queue from a thread while the main thread collects (the book's layout).
    #[arg(long)]
    feeder: bool,
    /// Trial division kernel: fast or plain.
    #[arg(long, default_value = "plain")]
    kernel: String,
    /// Also try a Manager-served queue (the row says why there is none).
    #[arg(long)]
    manager: bool,
    /// One JSON object per run instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(serde::Serialize)]
struct Row<'a> {
    variant: String,
    batch: usize,
    odd_only: bool,
    feeder: bool,
    #[serde(flatten)]
    out: &'a Outcome,
    serial_s: f64,
    parallelism: f64,
}

pub fn run(a: Args) -> crate::Result<()> {
    let range = find_primes::parse_range(&a.range)?;
    let kernel: Kernel = a.kernel.parse()?;
    let batches = crate::args::positive_list(&a.batch, "--batch")?;
    let par = crate::bench::parallelism()?;
    let numbers = find_primes::numbers(range.0, range.1, false);
    let serial = find_primes::serial(&numbers, kernel, None);
    if !a.json {
        println!(
            "primes-queue: [{}, {}), {} processes, {kernel} kernel; serial {:.4} s, {} primes (parallelism check {par:.2})",
            range.0, range.1, a.processes, serial.seconds, serial.primes
        );
        println!(
            "{:<28} {:>8} {:>10} {:>10} {:>13} {:>9}",
            "variant", "batch", "messages", "seconds", "µs per number", "vs serial"
        );
    }
    let odd = if a.odd_only { vec![true] } else { vec![false, true] };
    for &b in &batches {
        for &odd_only in &odd {
            let cfg = Config { range, processes: a.processes, odd_only, batch: b, feeder: a.feeder, kernel };
            let out = primes_queue::run(&cfg)?;
            let variant = format!(
                "Queue{}{}",
                if odd_only { ", odd only" } else { "" },
                if a.feeder { ", feeder thread" } else { "" }
            );
            let row = Row {
                variant,
                batch: b,
                odd_only,
                feeder: a.feeder,
                out: &out,
                serial_s: serial.seconds,
                parallelism: par,
            };
            if a.json {
                println!("{}", serde_json::to_string(&row).expect("plain struct serialises"));
            } else {
                println!(
                    "{:<28} {:>8} {:>10} {:>10.4} {:>13.3} {:>8.2}x",
                    row.variant,
                    b,
                    out.messages,
                    out.seconds,
                    out.us_per_number,
                    serial.seconds / out.seconds
                );
            }
        }
    }
    if a.manager && !a.json {
        println!(
            "{:<28} mproc's Manager serves flags and values, not queues: a server-backed queue would cost a socket \
             round trip (~100 µs here) per message — the book's Manager-queue lesson, with nothing new to measure",
            "Manager queue"
        );
    }
    Ok(())
}
