//! Monte Carlo π on a Pool: reseeded workers throw different darts; workers that inherit the
//! parent's stream without reseeding throw the same ones (the book's trap, shown).

#[path = "../../tests/common/mod.rs"]
mod common;

use mproc::Progress;
use mproc_book::pi::{Config, Kernel, Pi};

fn cfg(reseed: bool) -> Config {
    Config { samples: 2_000_000, workers: 2, seed: 42, reseed, kernel: Kernel::Batched }
}

#[test]
fn without_reseeding_forked_workers_throw_identical_blocks() {
    common::run("pi_no_reseed", common::SECS(60), || {
        // Which worker takes which block is the pool's choice: try fresh pools until the two
        // blocks ran on different workers (nearly always the first).
        for _ in 0..10 {
            let e = Pi::new(cfg(false), Progress::new(3).unwrap()).unwrap().run().unwrap();
            assert_eq!(e.inside.len(), 2);
            if e.workers_used < 2 {
                continue;
            }
            assert_eq!(e.inside[0], e.inside[1], "the two workers drew the same stream");
            assert!(e.duplicate_blocks);
            return;
        }
        panic!("10 pools in a row ran both blocks on one worker");
    });
}

#[test]
fn by_default_each_worker_reseeds_and_the_estimate_is_close() {
    common::run("pi_reseed", common::SECS(60), || {
        let progress = Progress::new(3).unwrap();
        let pi = Pi::new(cfg(true), progress.clone()).unwrap();
        for _ in 0..3 {
            let e = pi.run().unwrap();
            assert!(!e.duplicate_blocks, "{:?}", e.inside);
            assert_ne!(e.inside[0], e.inside[1]);
            assert!(e.error.abs() < 0.01, "{e:?}");
            assert_eq!(e.samples, 2_000_000);
        }
        assert_eq!(progress.total(), 6_000_000, "every dart counted in shared memory");
    });
}
