//! The shared array: every row written exactly once, no private copy in any worker, and the
//! unreseeded-fork trap shown by the random fill.

#[path = "../../tests/common/mod.rs"]
mod common;

use mproc::Progress;
use mproc_book::shared_array::{self, Config, Fill};

fn cfg(processes: usize, fill: Fill, reseed: bool) -> Config {
    Config { rows: 4000, cols: 2000, processes, fill, reseed, seed: 7 }
}

#[test]
fn every_row_is_written_exactly_once_by_its_worker_and_no_worker_copies_the_array() {
    common::run("shared_array_pid", common::SECS(120), || {
        for p in [1, 2, 4] {
            let progress = Progress::new(p + 1).unwrap();
            let o = shared_array::run(&cfg(p, Fill::Pid, true), &progress).unwrap();
            assert_eq!((o.rows_once, o.rows_duplicate, o.rows_never), (4000, 0, 0), "{p} processes");
            assert_eq!(progress.total(), 4000);
            assert_eq!(o.workers.iter().map(|w| w.rows).sum::<u64>(), 4000);
            for w in &o.workers {
                let anon_growth = w.after.anon_kib.saturating_sub(w.before.anon_kib) * 1024;
                assert!(anon_growth * 100 <= o.bytes, "worker {} grew {anon_growth} private bytes", w.worker);
                let shmem_growth = w.after.shmem_kib.saturating_sub(w.before.shmem_kib) * 1024;
                assert!(
                    shmem_growth >= w.rows * 2000 * 8 / 2,
                    "worker {}: its rows are not in shared memory",
                    w.worker
                );
            }
        }
    });
}

#[test]
fn without_reseeding_the_random_fill_draws_the_same_rows_in_every_worker() {
    common::run("shared_array_random", common::SECS(60), || {
        let p = Progress::new(3).unwrap();
        let trap = shared_array::run(&cfg(2, Fill::Random, false), &p).unwrap();
        assert!(trap.identical_picks, "{trap:?}");
        assert_eq!(trap.rows_once, 0, "every row drawn by one worker is drawn by the other too");
        let fixed = shared_array::run(&cfg(2, Fill::Random, true), &p).unwrap();
        assert!(!fixed.identical_picks);
        assert!(fixed.rows_once > 0);
    });
}
