//! The book's verify-primes: check big numbers across 2 processes that stop early through a shared flag, six ways. Run: `cargo run --release -p mproc-book --example verify_primes -- [VARIANT] [NUMBER...]`
//!
//! VARIANT is one of none, less-naive, manager, rawvalue, mmap, mmap-redux (default rawvalue);
//! redis needs the `redis` feature and a server (see `mproc verify-primes --flag redis`). The
//! variants are implemented in `src/primes.rs`; `mproc verify-primes` has every option.

use std::time::Instant;

use mproc_book::primes::{self, BOOK_NUMBERS, Config, Variant, Verifier};

fn main() -> mproc::Result<()> {
    let mut args = std::env::args().skip(1);
    let variant: Variant = args.next().as_deref().unwrap_or("rawvalue").parse()?;
    let mut numbers: Vec<u64> = args
        .map(|a| a.parse().map_err(|_| mproc::Error::InvalidArgument(format!("not a number: {a}"))))
        .collect::<mproc::Result<_>>()?;
    if numbers.is_empty() {
        numbers = BOOK_NUMBERS.to_vec();
    }
    let verifier = Verifier::new(Config { processes: 2, ..Config::default() }, &[variant])?;
    println!("{variant}, 2 processes, polling every {:?} divisors", verifier.check_every(variant));
    for n in numbers {
        let t = Instant::now();
        let serial = primes::is_prime_serial(n);
        let serial_s = t.elapsed().as_secs_f64();
        let c = verifier.check(variant, n)?;
        assert_eq!(c.is_prime, serial);
        println!(
            "{n:>20}  {:<9}  serial {serial_s:.4} s  parallel {:.4} s  speed-up {:.2}x{}",
            if c.is_prime { "prime" } else { "composite" },
            c.seconds,
            serial_s / c.seconds.max(1e-9),
            c.stop_latency
                .map_or(String::new(), |l| format!("  workers stopped {:.1} µs after the find", l.as_secs_f64() * 1e6)),
        );
    }
    Ok(())
}
