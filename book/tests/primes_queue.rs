//! Primes through Queues with poison pills: the count matches the sieve for every variant, and
//! the workers stop at their pills.

#[path = "../../tests/common/mod.rs"]
mod common;

use mproc_book::kernel::Kernel;
use mproc_book::primes_queue::{Config, run};

#[test]
fn every_variant_counts_exactly_what_the_sieve_counts() {
    common::run("primes_queue_counts", common::SECS(120), || {
        for (range, batch, odd_only, feeder) in [
            ((100_000_000, 100_010_000), 1, false, false),
            ((100_000_000, 100_010_000), 1, true, true),
            ((0, 5_000), 7, true, false),
            ((1_000_000_000, 1_000_030_000), 1000, false, true),
        ] {
            for processes in [1, 3] {
                let cfg = Config { range, processes, odd_only, batch, feeder, kernel: Kernel::Fast };
                let o = run(&cfg).unwrap();
                assert_eq!(o.primes, o.expected, "{cfg:?}");
                assert_eq!(o.messages, o.numbers.div_ceil(batch as u64));
            }
        }
    });
}

#[test]
fn bad_settings_are_errors() {
    let cfg = Config { range: (5, 5), processes: 1, odd_only: false, batch: 1, feeder: false, kernel: Kernel::Plain };
    assert!(run(&cfg).is_err());
    assert!(run(&Config { range: (0, 10), batch: 0, ..cfg.clone() }).is_err());
    assert!(run(&Config { range: (0, 10), processes: 0, ..cfg }).is_err());
}
