//! The book's counters: N processes add 1 to a shared count M times, six ways; the unguarded ones lose updates. Run: `cargo run --release -p mproc-book --example counters -- [PROCESSES] [COUNT]`
//!
//! Each variant is a few lines in `src/counters.rs`; the `mproc counters` command runs the
//! same code with more options (`--barrier`, `--json`, `--variant`).

use mproc_book::counters::{self, Config, Variant};

fn main() -> mproc::Result<()> {
    let mut args = std::env::args().skip(1);
    let parse = |a: Option<String>, default: u64| -> mproc::Result<u64> {
        a.map_or(Ok(default), |s| s.parse().map_err(|_| mproc::Error::InvalidArgument(format!("not a number: {s}"))))
    };
    let processes = parse(args.next(), 4)? as u32;
    let count = parse(args.next(), 1000)?;
    let cfg = Config { processes, count, barrier: true, ..Config::default() };
    println!("{processes} processes x {count} increments, started together");
    println!("{:<16} {:>10} {:>10} {:>8} {:>9}", "variant", "expected", "got", "lost", "seconds");
    for v in Variant::ALL {
        let o = counters::run(v, &cfg)?;
        println!("{:<16} {:>10} {:>10} {:>8} {:>9.4}", o.variant, o.expected, o.got, o.lost, o.seconds);
    }
    Ok(())
}
