//! The book's counters: guarded variants never lose an update.

#[path = "../../tests/common/mod.rs"]
mod common;

use mproc_book::counters::{self, Config, Variant};

fn cfg(processes: u32, count: u64, dir: &std::path::Path) -> Config {
    Config { processes, count, barrier: true, dir: dir.to_owned() }
}

#[test]
fn four_processes_times_100k_end_at_exactly_400k_for_every_memory_guarded_variant() {
    common::run("counters_400k", common::SECS(120), || {
        let tmp = common::TempDir::new("c400k");
        for v in [Variant::ValueLock, Variant::RawvalueAtomic, Variant::RawvalueLock] {
            let o = counters::run(v, &cfg(4, 100_000, &tmp.0)).expect("run");
            assert_eq!((o.expected, o.got, o.lost), (400_000, 400_000, 0), "{v}");
        }
    });
}

#[test]
fn file_lock_four_processes_times_1000_end_at_exactly_4000() {
    common::run("counters_file_lock", common::SECS(120), || {
        let tmp = common::TempDir::new("cfile");
        let o = counters::run(Variant::FileLock, &cfg(4, 1000, &tmp.0)).expect("run");
        assert_eq!((o.got, o.lost), (4000, 0));
        assert!(std::fs::read_dir(&tmp.0).unwrap().next().is_none(), "counter files left behind");
    });
}

/// The book's lesson, shown: without a lock, concurrent read-modify-writes lose updates. Loss is
/// a race, so each variant gets a few tries; with 4 processes started together on 2 or more CPUs
/// one try nearly always suffices. An unguarded counter can only lose, never invent, updates.
#[test]
fn unguarded_variants_lose_updates_and_never_invent_any() {
    common::run("counters_unguarded", common::SECS(120), || {
        let tmp = common::TempDir::new("cnolock");
        for (v, count) in [(Variant::FileNolock, 2_000), (Variant::ValueNolock, 200_000)] {
            let mut lost_some = false;
            for _try in 0..5 {
                let o = counters::run(v, &cfg(4, count, &tmp.0)).expect("run");
                assert!(o.got <= o.expected, "{v} counted more than was added: {o:?}");
                assert_eq!(o.lost, o.expected - o.got);
                if o.lost > 0 {
                    lost_some = true;
                    break;
                }
            }
            assert!(lost_some, "{v}: 5 runs of 4 x {count} unguarded increments lost nothing");
        }
    });
}

#[test]
fn zero_processes_is_a_clear_error() {
    let e = counters::run(Variant::ValueLock, &Config { processes: 0, ..Config::default() }).unwrap_err();
    assert!(e.to_string().contains("processes"), "{e}");
    let e = "bogus".parse::<Variant>().unwrap_err();
    assert!(e.to_string().contains("rawvalue-atomic"), "{e}");
}
