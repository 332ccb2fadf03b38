//! The `mproc` command: the book's experiments, the contention tool and shared-memory utilities.

use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod args;
mod bench;
mod bench_queue;
mod book;
mod cluster;
mod contention;
mod counters;
mod pi;
mod plot;
mod primes;
mod primes_queue;
mod progress;
mod shared_array;
mod shm;
mod verify;

/// What the subcommands return: the library's errors, or the CLI's own messages.
pub type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Python's multiprocessing, done right: the experiments of High Performance Python's
/// multiprocessing chapter, re-created with forked workers and shared memory.
#[derive(Parser)]
#[command(name = "mproc", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The whole chapter: every experiment on built-in defaults, then its claims beside the
    /// figures measured now (writes target/book/report.md).
    Book(book::Args),
    /// N processes each add 1 to a shared count M times, guarded six ways (or not).
    Counters(counters::Args),
    /// Check numbers for primality across worker processes, stopping early through a shared flag
    /// (six ways, as in the book).
    VerifyPrimes(verify::Args),
    /// Estimate π by Monte Carlo: serially, on threads and on processes (the book's first lesson,
    /// and its reseeding trap with --no-reseed).
    Pi(pi::Args),
    /// Find the primes in a range with a Pool: time per chunk size (the book's study), or per
    /// number of chunks (its sawtooth), checked against a sieve.
    Primes(primes::Args),
    /// Share a big array between worker processes without copying it; the kernel's memory
    /// figures show that nothing was copied.
    SharedArray(shared_array::Args),
    /// Find primes through Queues with poison pills: one number per message, odd numbers only,
    /// batches, a feeder thread.
    PrimesQueue(primes_queue::Args),
    /// Measure lock contention between processes: every primitive side by side (throughput,
    /// wait and hold percentiles, fairness), and what the others see when a holder dies.
    Contention(contention::Args),
    /// Measure mproc's own overheads.
    #[command(subcommand)]
    Bench(bench::Command),
    /// Serve tasks from a Redis stream on this host: forks N worker processes; Ctrl-C drains
    /// and exits (the chunks still pending go back to the queue).
    Worker(cluster::WorkerArgs),
    /// Run one job of trivial tasks on the cluster and check that every result arrived exactly
    /// once (the test scripts' caller).
    Job(cluster::JobArgs),
    /// Named shared-memory segments: read one, list or clean up stale ones.
    #[command(subcommand)]
    Shm(shm::Command),
}

/// `mproc … | head`: once the reader is gone, printing fails with a broken pipe, which `println!`
/// turns into a panic. End quietly then, with the exit status a shell gives a process killed by
/// SIGPIPE. (SIGPIPE itself stays ignored, as Rust sets it: a Manager or Redis socket whose peer
/// died must be an error to handle, not the end of the process.)
fn quiet_on_broken_pipe() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.starts_with("failed printing to stdout") && msg.contains("Broken pipe") {
            std::process::exit(141);
        }
        previous(info)
    }));
}

fn main() -> ExitCode {
    quiet_on_broken_pipe();
    let cli = Cli::parse();
    let r = match cli.command {
        Command::Counters(a) => counters::run(a),
        Command::Book(a) => book::run(a),
        Command::Shm(c) => shm::run(c),
        Command::Bench(c) => bench::run(c),
        Command::Contention(a) => contention::run(a),
        Command::VerifyPrimes(a) => verify::run(a),
        Command::Pi(a) => pi::run(a),
        Command::Primes(a) => primes::run(a),
        Command::PrimesQueue(a) => primes_queue::run(a),
        Command::SharedArray(a) => shared_array::run(a),
        Command::Worker(a) => cluster::worker(a),
        Command::Job(a) => cluster::job(a),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = std::io::stdout().flush();
            eprintln!("mproc: {e}");
            ExitCode::FAILURE
        }
    }
}
