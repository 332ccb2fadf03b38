//! Pool: results in order and exactly once, dead workers, panics, limits, bad input, Ctrl-C.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use mproc::{Error, Flag, OnWorkerDeath, Pool, RawValue};

fn now_ns() -> u64 {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `t` is a valid timespec to write.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) };
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

#[test]
fn map_over_100k_items_returns_every_value_in_order_for_several_chunksizes() {
    common::run("pool_map_order", common::SECS(120), || {
        let pool = Pool::new(2).unwrap();
        let want: Vec<u64> = (0..100_000u64).map(|x| x * 3 + 1).collect();
        for chunk in [Some(1), Some(7), Some(1000), None, Some(1_000_000)] {
            let got = pool.map(|_, x: u64| x * 3 + 1, 0..100_000u64, chunk).unwrap();
            assert_eq!(got, want, "chunksize {chunk:?}");
        }
        let plain = pool.map_plain(|_, x: u32| [x, x * 2], 0..10_000u32, None).unwrap();
        assert!(plain.iter().enumerate().all(|(i, p)| *p == [i as u32, 2 * i as u32]));
        let strings =
            pool.map(|_, s: String| s.len(), vec!["a".to_string(), "bcd".into(), String::new()], Some(1)).unwrap();
        assert_eq!(strings, vec![1, 3, 0]);
        assert_eq!(pool.map(|_, x: u8| x, Vec::<u8>::new(), None).unwrap(), Vec::<u8>::new());
    });
}

#[test]
fn imap_unordered_yields_each_result_exactly_once_and_imap_in_order() {
    common::run("pool_imap", common::SECS(60), || {
        let pool = Pool::new(2).unwrap();
        let mut seen: Vec<u64> =
            pool.imap_unordered(|_, x: u64| x, 0..20_000u64, 3).unwrap().map(Result::unwrap).collect();
        assert_eq!(seen.len(), 20_000);
        seen.sort_unstable();
        assert_eq!(seen, (0..20_000).collect::<Vec<_>>());
        let ordered: Vec<u64> = pool.imap(|_, x: u64| x + 1, 0..5_000u64, 1).unwrap().map(Result::unwrap).collect();
        assert_eq!(ordered, (1..=5_000).collect::<Vec<_>>());
        // Dropping an iterator early leaves the pool usable.
        let mut it = pool.imap(|_, x: u64| x, 0..1_000_000u64, 1).unwrap();
        assert_eq!(it.next().unwrap().unwrap(), 0);
        drop(it);
        assert_eq!(pool.map(|_, x: u32| x, 0..10u32, None).unwrap(), (0..10).collect::<Vec<_>>());
    });
}

/// Context of the crash tests: the task at `KILL_AT` SIGKILLs its own worker, once.
struct Crash {
    armed: Flag,
    killed_pid: RawValue<i32>,
    killed_at_ns: RawValue<u64>,
}

const KILL_AT: u64 = 50_000;

fn crash_ctx() -> Crash {
    let c = Crash {
        armed: Flag::new().unwrap(),
        killed_pid: RawValue::new(0).unwrap(),
        killed_at_ns: RawValue::new(0).unwrap(),
    };
    c.armed.set();
    c
}

fn maybe_die(c: &Crash, x: u64) -> u64 {
    if x == KILL_AT && c.armed.is_set() {
        c.armed.clear();
        c.killed_pid.store(std::process::id() as i32);
        c.killed_at_ns.store(now_ns());
        // SAFETY: raise has no memory-safety preconditions.
        unsafe { libc::raise(libc::SIGKILL) };
    }
    x * 2
}

#[test]
fn sigkilled_worker_with_fail_policy_fails_exactly_its_task_within_a_second_and_the_pool_carries_on() {
    common::run("pool_worker_died_fail", common::SECS(60), || {
        let pool = Pool::builder().processes(2).context(crash_ctx()).build().unwrap();
        let before = pool.worker_pids();
        let err = pool.map(maybe_die, 0..100_000u64, Some(100)).unwrap_err();
        let returned = now_ns();
        let c = pool.context();
        let dead = c.killed_pid.load();
        assert!(before.contains(&dead), "the worker that died ({dead}) was one of {before:?}");
        match &err {
            Error::MapFailed { failed: 1, total: 100_000, first } => match **first {
                Error::WorkerDied { pid, signal, task, .. } => {
                    assert_eq!(pid, dead);
                    assert_eq!(signal, Some(mproc::Signal(libc::SIGKILL)));
                    assert_eq!(task, Some(KILL_AT));
                }
                ref other => panic!("expected WorkerDied, got {other}"),
            },
            other => panic!("expected MapFailed with one failure, got {other}"),
        }
        let latency = Duration::from_nanos(returned - c.killed_at_ns.load());
        assert!(latency < Duration::from_secs(1), "map returned {latency:?} after the kill");
        assert!(err.to_string().contains("SIGKILL"), "{err}");
        // A replacement was forked; the pool answers the next map correctly.
        let after = pool.worker_pids();
        assert_eq!(after.len(), 2);
        assert!(!after.contains(&dead));
        let again = pool.map(maybe_die, 0..100_000u64, None).unwrap();
        assert_eq!(again, (0..100_000u64).map(|x| x * 2).collect::<Vec<_>>());
    });
}

#[test]
fn sigkilled_worker_with_retry_policy_still_delivers_all_100k_results_exactly_once() {
    common::run("pool_worker_died_retry", common::SECS(60), || {
        let pool =
            Pool::builder().processes(2).context(crash_ctx()).on_worker_death(OnWorkerDeath::Retry(1)).build().unwrap();
        let got = pool.map(maybe_die, 0..100_000u64, Some(100)).unwrap();
        assert_eq!(got, (0..100_000u64).map(|x| x * 2).collect::<Vec<_>>());
        assert_ne!(pool.context().killed_pid.load(), 0, "the worker did die");
        let mut seen: Vec<u64> =
            pool.imap_unordered(|_, x: u64| x, 0..10_000u64, 5).unwrap().map(Result::unwrap).collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..10_000).collect::<Vec<_>>());
    });
}

#[test]
fn a_worker_killed_from_outside_mid_map_costs_at_most_its_one_task() {
    common::run("pool_external_kill", common::SECS(60), || {
        struct Ctx {
            done: RawValue<u64>,
        }
        let pool = Pool::builder().processes(2).context(Ctx { done: RawValue::new(0).unwrap() }).build().unwrap();
        let victim = pool.worker_pids()[0];
        let ctx = pool.context();
        let mut killer = mproc::Process::spawn(|| {
            let deadline = Instant::now() + Duration::from_secs(10);
            while ctx.done.load() < 2_000 && Instant::now() < deadline {
                std::hint::spin_loop();
            }
            // SAFETY: kill has no memory-safety preconditions.
            unsafe { libc::kill(victim, libc::SIGKILL) };
        })
        .unwrap();
        let r = pool.map(
            |c: &Ctx, x: u64| {
                c.done.fetch_add(1);
                let t = Instant::now();
                while t.elapsed() < Duration::from_micros(20) {}
                x
            },
            0..20_000u64,
            Some(10),
        );
        assert!(killer.join().unwrap().success());
        match r {
            Ok(v) => assert_eq!(v, (0..20_000).collect::<Vec<_>>()), // it died between tasks
            Err(Error::MapFailed { failed: 1, first, .. }) => {
                assert!(matches!(*first, Error::WorkerDied { pid, task: Some(_), .. } if pid == victim), "{first}");
            }
            Err(e) => panic!("unexpected: {e}"),
        }
        assert!(!pool.worker_pids().contains(&victim));
        assert_eq!(pool.map(|_, x: u64| x, 0..1000u64, None).unwrap().len(), 1000);
    });
}

#[test]
fn a_panicking_task_is_reported_with_its_message_and_the_worker_keeps_serving() {
    common::run("pool_panic", common::SECS(60), || {
        let pool = Pool::new(2).unwrap();
        let pids: HashSet<i32> = pool.worker_pids().into_iter().collect();
        let err =
            pool.map(|_, x: u32| if x == 77 { panic!("bad item {x}") } else { x }, 0..1000u32, Some(10)).unwrap_err();
        match err.root() {
            Error::TaskPanicked { task: 77, message } => assert!(message.starts_with("bad item 77"), "{message}"),
            other => panic!("expected TaskPanicked for task 77, got {other}"),
        }
        let results: Vec<_> =
            pool.imap(|_, x: u32| if x.is_multiple_of(2) { panic!("even") } else { x }, 0..10u32, 1).unwrap().collect();
        assert_eq!(results.iter().filter(|r| r.is_err()).count(), 5);
        assert_eq!(results[1].as_ref().unwrap(), &1);
        let now: HashSet<i32> = pool.worker_pids().into_iter().collect();
        assert_eq!(pids, now, "a panic must not cost the worker");
    });
}

/// A result that writes half of itself, then panics (for 5): the bytes it left must not
/// corrupt the record the rest of its chunk's results share.
#[derive(Debug, PartialEq)]
struct Half(u64);

impl serde::Serialize for Half {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeTuple;
        let mut t = s.serialize_tuple(2)?;
        t.serialize_element(&self.0)?;
        assert!(self.0 != 5, "half-way through {}", self.0);
        t.serialize_element(&(self.0 * 3))?;
        t.end()
    }
}

impl<'de> serde::Deserialize<'de> for Half {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (a, b) = <(u64, u64)>::deserialize(d)?;
        assert_eq!(b, a * 3, "a torn result");
        Ok(Half(a))
    }
}

/// An argument whose decoding panics in the worker (for 13).
#[derive(Debug, Clone, Copy)]
struct Touchy(u64);

impl serde::Serialize for Touchy {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Touchy {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = u64::deserialize(d)?;
        assert!(v != 13, "cannot take 13");
        Ok(Touchy(v))
    }
}

#[test]
fn regression_a_panic_half_way_through_encoding_a_result_or_decoding_an_argument_fails_that_item_only() {
    common::run("pool_panic_in_codec", common::SECS(60), || {
        let pool = Pool::new(2).unwrap();
        // One chunk of 20: one unwind guard covers many items, and a panic must roll back what
        // the failing item wrote.
        let out: Vec<_> = pool.imap(|_, x: u64| Half(x), 0..20u64, 20).unwrap().collect();
        for (i, r) in out.iter().enumerate() {
            match r {
                Ok(h) => assert_eq!(h, &Half(i as u64)),
                Err(Error::TaskPanicked { task: 5, message }) => assert!(message.contains("half-way"), "{message}"),
                Err(e) => panic!("item {i}: {e}"),
            }
        }
        assert_eq!(out.iter().filter(|r| r.is_err()).count(), 1);
        // The argument that cannot be decoded fails; the items after it in its chunk cannot be
        // found any more and fail as undecodable; the other chunks are untouched.
        let out: Vec<_> = pool.imap(|_, t: Touchy| t.0, (0..40u64).map(Touchy), 10).unwrap().collect();
        for (i, r) in out.iter().enumerate() {
            match (i, r) {
                (13, Err(Error::TaskPanicked { task: 13, message })) => assert!(message.contains("13"), "{message}"),
                (14..20, Err(Error::Decode { what: "argument", .. })) => {}
                (_, Ok(v)) => assert_eq!(*v, i as u64),
                (_, r) => panic!("item {i}: {r:?}"),
            }
        }
    });
}

#[test]
fn large_payloads_work_and_oversized_ones_are_clear_errors() {
    common::run("pool_large", common::SECS(60), || {
        let pool = Pool::builder().processes(2).build().unwrap();
        let big = pool.apply(|_, n: usize| vec![7u8; n], 1 << 20).unwrap();
        assert_eq!(big.len(), 1 << 20);
        assert!(big.iter().all(|&b| b == 7));
        let echoed = pool.map(|_, v: Vec<u8>| v.len(), vec![vec![1u8; 1 << 20], vec![2u8; 10]], Some(2)).unwrap();
        assert_eq!(echoed, vec![1 << 20, 10]);

        let small = Pool::builder().processes(1).max_message_bytes(1024).build().unwrap();
        let err = small.apply(|_, n: usize| vec![0u8; n], 4096).unwrap_err();
        assert!(matches!(err, Error::MessageTooLarge { what: "result", task: 0, .. }), "{err}");
        let err = small
            .map(|_, v: Vec<u8>| v.len(), vec![vec![0u8; 10], vec![0u8; 4096], vec![0u8; 10]], Some(1))
            .unwrap_err();
        assert!(matches!(err.root(), Error::MessageTooLarge { what: "argument", task: 1, .. }), "{err}");
        assert_eq!(small.apply(|_, n: usize| vec![0u8; n], 100).unwrap().len(), 100, "still serving");
    });
}

#[test]
fn bad_input_gives_clear_errors_not_panics() {
    common::run("pool_bad_input", common::SECS(30), || {
        assert!(matches!(Pool::new(0), Err(Error::InvalidArgument(_))));
        assert!(matches!(Pool::builder().processes(1).max_tasks_per_child(0).build(), Err(Error::InvalidArgument(_))));
        let pool = Pool::new(1).unwrap();
        assert!(matches!(pool.map(|_, x: u8| x, 0..3u8, Some(0)), Err(Error::InvalidArgument(_))));
        assert!(pool.imap(|_, x: u8| x, 0..3u8, 0).is_err());
        assert!(matches!(pool.join(), Err(Error::Misuse(_))), "join before close");
        pool.close();
        assert!(matches!(pool.map(|_, x: u8| x, 0..3u8, None), Err(Error::PoolClosed)));
        assert!(matches!(pool.apply(|_, x: u8| x, 1), Err(Error::PoolClosed)));
        pool.join().unwrap();
        assert!(pool.worker_pids().is_empty());
    });
}

#[test]
fn apply_async_starmap_initializer_and_per_worker_seeds() {
    common::run("pool_misc", common::SECS(60), || {
        struct Ctx {
            inits: RawValue<u32>,
        }
        let pool = Pool::builder()
            .processes(2)
            .seed(7)
            .context(Ctx { inits: RawValue::new(0).unwrap() })
            .initializer(|c: &Ctx| {
                c.inits.fetch_add(1);
            })
            .build()
            .unwrap();
        let a = pool.apply_async(|_, x: u64| x + 1, 41).unwrap();
        let mut b = pool.apply_async(|_, ms: u64| std::thread::sleep(Duration::from_millis(ms)), 300).unwrap();
        assert!(matches!(b.get_timeout(Duration::from_millis(10)), Err(Error::Timeout)));
        assert_eq!(a.get().unwrap(), 42);
        b.get_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(
            pool.starmap(|_, a: u32, b: String| format!("{a}{b}"), vec![(1, "x".into()), (2, "y".into())], None)
                .unwrap(),
            vec!["1x", "2y"]
        );
        assert_eq!(pool.context().inits.load(), 2, "the initializer ran once in each worker");
        let seeds: HashSet<u64> =
            pool.map(|_, _: u32| mproc::worker::seed().unwrap(), 0..200u32, Some(1)).unwrap().into_iter().collect();
        let want: HashSet<u64> = [mproc::worker::seed_for(7, 0), mproc::worker::seed_for(7, 1)].into();
        assert!(seeds.is_subset(&want) && !seeds.is_empty(), "{seeds:?}");
        let idx: HashSet<usize> =
            pool.map(|_, _: u32| mproc::worker::index().unwrap(), 0..200u32, Some(1)).unwrap().into_iter().collect();
        assert!(idx.is_subset(&[0, 1].into()));
        assert_eq!(mproc::worker::index(), None, "not a worker here");
    });
}

#[test]
fn max_tasks_per_child_replaces_workers_without_losing_results() {
    common::run("pool_max_tasks", common::SECS(60), || {
        let pool = Pool::builder().processes(2).max_tasks_per_child(100).build().unwrap();
        let first = pool.worker_pids();
        let got = pool.map(|_, x: u32| x, 0..1000u32, Some(10)).unwrap();
        assert_eq!(got, (0..1000).collect::<Vec<_>>());
        let pids: HashSet<i32> =
            pool.map(|_, _: u32| std::process::id() as i32, 0..1000u32, Some(10)).unwrap().into_iter().collect();
        assert!(pids.len() > 2, "workers were recycled: {pids:?}");
        assert!(first.iter().all(|p| !pool.worker_pids().contains(p)));
    });
}

#[test]
fn dropping_the_pool_leaves_no_worker_and_no_zombie() {
    common::run("pool_drop", common::SECS(30), || {
        let pool = Pool::new(3).unwrap();
        let pids = pool.worker_pids();
        assert_eq!(pool.map(|_, x: u8| x, 0..10u8, None).unwrap().len(), 10);
        drop(pool);
        for p in pids {
            assert!(!std::path::Path::new(&format!("/proc/{p}")).exists(), "worker {p} (or its zombie) is left");
        }
        // An initializer that always fails is reported, not retried forever.
        let broken = Pool::builder().processes(1).initializer(|_: &()| panic!("no config")).build().unwrap();
        let err = broken.map(|_, x: u8| x, 0..10u8, None).unwrap_err();
        assert!(err.to_string().contains("initializer"), "{err}");
    });
}

#[test]
fn ctrl_c_during_a_map_returns_interrupted_and_reaps_the_workers() {
    common::run("pool_sigint", common::SECS(60), || {
        struct Ctx {
            started: RawValue<u32>,
        }
        let pool = Pool::builder().processes(2).context(Ctx { started: RawValue::new(0).unwrap() }).build().unwrap();
        let pids = pool.worker_pids();
        let parent = std::process::id() as i32;
        let ctx = pool.context();
        let mut sender = mproc::Process::spawn(|| {
            let deadline = Instant::now() + Duration::from_secs(10);
            while ctx.started.load() < 2 && Instant::now() < deadline {
                std::hint::spin_loop();
            }
            std::thread::sleep(Duration::from_millis(20));
            // SAFETY: kill has no memory-safety preconditions.
            unsafe { libc::kill(parent, libc::SIGINT) };
        })
        .unwrap();
        let t0 = Instant::now();
        let r = pool.map(
            |c: &Ctx, _: u32| {
                c.started.fetch_add(1);
                std::thread::sleep(Duration::from_millis(50));
            },
            0..400u32,
            Some(1),
        );
        assert!(matches!(r, Err(Error::Interrupted)), "{r:?}");
        assert!(t0.elapsed() < Duration::from_secs(5));
        assert!(sender.join().unwrap().success());
        assert!(pool.is_terminated());
        for p in pids {
            assert!(!std::path::Path::new(&format!("/proc/{p}")).exists(), "worker {p} left after Ctrl-C");
        }
        assert!(matches!(pool.map(|_, x: u8| x, 0..3u8, None), Err(Error::PoolClosed)));
    });
}

#[test]
fn map_array_reads_a_shared_array_in_the_workers_and_refuses_one_they_do_not_have() {
    common::run("pool_map_array", common::SECS(60), || {
        let data = mproc::RawArray::from_slice(&(0..100_000u64).collect::<Vec<_>>()).unwrap();
        let floats = mproc::RawArray::from_slice(&[0.5f64, 1.5, -2.0]).unwrap();
        let empty = mproc::RawArray::<u32>::zeroed(0).unwrap();
        let pool = Pool::new(2).unwrap();
        for chunk in [Some(1), Some(7), None] {
            let out = pool.map_array(|_, x: u64| x * 3 + 1, &data, chunk).unwrap();
            assert_eq!(out.len(), 100_000);
            assert!(out.iter().enumerate().all(|(i, &v)| v == i as u64 * 3 + 1), "chunksize {chunk:?}");
        }
        assert_eq!(pool.map_array(|_, x: f64| x * 2.0, &floats, None).unwrap(), vec![1.0, 3.0, -4.0]);
        assert!(pool.map_array(|_, x: u32| x, &empty, None).unwrap().is_empty());
        // The parent's later updates are what the workers read (same memory, not a copy).
        data.store(5, 1000);
        assert_eq!(pool.map_array(|_, x: u64| x, &data, Some(3)).unwrap()[5], 1000);
        // A panic fails its item only.
        let err = pool.map_array(|_, x: u64| if x == 77 { panic!("no 77") } else { x }, &data, None).unwrap_err();
        assert!(matches!(err.root(), Error::TaskPanicked { task: 77, .. }), "{err}");
        let late = mproc::RawArray::<u64>::zeroed(4).unwrap();
        match pool.map_array(|_, x: u64| x, &late, None) {
            Err(Error::Misuse(m)) => assert!(m.contains("created after the pool"), "{m}"),
            other => panic!("expected Misuse, got {other:?}"),
        }
    });
}

#[test]
fn map_range_into_and_map_array_into_store_every_result_in_place_and_report_failures_per_item() {
    common::run("pool_map_into", common::SECS(60), || {
        let n = 100_000u64;
        let data = mproc::RawArray::from_slice(&(0..n).collect::<Vec<_>>()).unwrap();
        let out = mproc::RawArray::<u64>::zeroed(n as usize).unwrap();
        let halves = mproc::RawArray::<f32>::zeroed(3).unwrap();
        let short = mproc::RawArray::<u64>::zeroed(10).unwrap();
        let empty = mproc::RawArray::<u64>::zeroed(0).unwrap();
        let pool = Pool::new(2).unwrap();
        for chunk in [Some(1), Some(7), None] {
            pool.map_range_into(|_, x: u64| x * 5 + 2, 0..n, &out, chunk).unwrap();
            // SAFETY: the map is over and nothing else writes `out`.
            let got = unsafe { out.as_slice() };
            assert!(got.iter().enumerate().all(|(i, &v)| v == i as u64 * 5 + 2), "range, chunksize {chunk:?}");
            pool.map_array_into(|_, x: u64| x * 3 + 1, &data, &out, chunk).unwrap();
            // SAFETY: as above.
            let got = unsafe { out.as_slice() };
            assert!(got.iter().enumerate().all(|(i, &v)| v == i as u64 * 3 + 1), "array, chunksize {chunk:?}");
        }
        // Another element type on each side; a range that does not start at 0.
        pool.map_range_into(|_, x: i32| x as f32 / 2.0, -1..2i32, &halves, None).unwrap();
        // SAFETY: as above.
        assert_eq!(unsafe { halves.as_slice() }, &[-0.5, 0.0, 0.5]);
        // A panic fails its item only: the others are stored, its element keeps its old value.
        out.store(77, 12345);
        let err = pool
            .map_array_into(|_, x: u64| if x == 77 { panic!("no 77") } else { x }, &data, &out, Some(10))
            .unwrap_err();
        assert!(matches!(err.root(), Error::TaskPanicked { task: 77, .. }), "{err}");
        assert!(matches!(err, Error::MapFailed { failed: 1, .. }), "{err}");
        assert_eq!((out.load(76), out.load(77), out.load(78)), (76, 12345, 78));
        // Two panics in every chunk of 100: each fails alone, the rest of its chunk is stored.
        let err = pool
            .map_range_into(|_, x: u64| if x % 50 == 7 { panic!("no {x}") } else { x + 1 }, 0..n, &out, Some(100))
            .unwrap_err();
        assert!(matches!(err, Error::MapFailed { failed, .. } if failed as u64 == n / 50), "{err}");
        assert!(matches!(err.root(), Error::TaskPanicked { task: 7, .. }), "{err}");
        // SAFETY: the map is over and nothing else writes `out`.
        let got = unsafe { out.as_slice() };
        assert!(got.iter().enumerate().all(|(i, &v)| i % 50 == 7 || v == i as u64 + 1));
        // Wrong length, and arrays the workers do not have.
        assert!(matches!(pool.map_range_into(|_, x: u64| x, 0..11, &short, None), Err(Error::InvalidArgument(_))));
        assert!(matches!(pool.map_array_into(|_, x: u64| x, &data, &short, None), Err(Error::InvalidArgument(_))));
        // In place is refused (after a worker's death, items sent again would read results).
        assert!(matches!(pool.map_array_into(|_, x: u64| x, &data, &data, None), Err(Error::InvalidArgument(_))));
        let late = mproc::RawArray::<u64>::zeroed(10).unwrap();
        assert!(matches!(pool.map_range_into(|_, x: u64| x, 0..10, &late, None), Err(Error::Misuse(_))));
        assert!(matches!(pool.map_array_into(|_, x: u64| x, &late, &short, None), Err(Error::Misuse(_))));
        pool.map_range_into(|_, x: u64| x, 5..5, &empty, None).unwrap();
    });
}

#[test]
fn a_worker_killed_during_map_range_into_fails_exactly_its_task_and_every_other_element_is_stored() {
    common::run("pool_map_into_death", common::SECS(60), || {
        let out = mproc::RawArray::<u64>::zeroed(100_000).unwrap();
        let pool = Pool::builder().processes(2).context(crash_ctx()).build().unwrap();
        let err = pool.map_range_into(maybe_die, 0..100_000u64, &out, Some(100)).unwrap_err();
        match &err {
            Error::MapFailed { failed: 1, total: 100_000, first } => {
                assert!(matches!(**first, Error::WorkerDied { task: Some(KILL_AT), .. }), "{first}")
            }
            other => panic!("expected MapFailed with one failure, got {other}"),
        }
        // SAFETY: the map is over and nothing else writes `out`.
        let got = unsafe { out.as_slice() };
        assert!(got.iter().enumerate().all(|(i, &v)| i as u64 == KILL_AT || v == i as u64 * 2));
        assert_eq!(got[KILL_AT as usize], 0, "the killed task stored nothing");
    });
}

/// An argument whose `Deserialize` refuses some values (odd numbers) after reading them.
#[derive(Debug, Clone, Copy)]
struct Even(u64);

impl serde::Serialize for Even {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Even {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = u64::deserialize(d)?;
        if v % 2 == 1 {
            return Err(serde::de::Error::custom(format!("{v} is odd")));
        }
        Ok(Even(v))
    }
}

#[test]
fn regression_an_argument_that_fails_to_decode_never_shifts_the_ones_after_it() {
    common::run("pool_decode_shift", common::SECS(60), || {
        let pool = Pool::new(2).unwrap();
        // Laid out as 3 10 2 20 4 40: decoding on from where Even(3) failed would read
        // (Even(10), 2) and (Even(20), 4) and return wrong answers as successes.
        let items = vec![(Even(3), 10u64), (Even(2), 20), (Even(4), 40), (Even(6), 60)];
        let out: Vec<_> = pool.imap(|_, (e, x): (Even, u64)| e.0 + x, items, 3).unwrap().collect();
        for (i, r) in out.iter().enumerate() {
            match (i, r) {
                (0, Err(Error::Decode { what: "argument", task: 0, message })) => {
                    assert!(message.contains("3 is odd"), "{message}")
                }
                (1 | 2, Err(Error::Decode { what: "argument", .. })) => {}
                (3, Ok(66)) => {} // another chunk, untouched
                (_, r) => panic!("item {i}: {r:?}"),
            }
        }
    });
}

/// A `String` argument whose task SIGKILLs its own worker, once (at `item 50000`).
fn die_on_string(c: &Crash, s: String) -> String {
    if s == "item 50000" && c.armed.is_set() {
        c.armed.clear();
        c.killed_pid.store(std::process::id() as i32);
        // SAFETY: raise has no memory-safety preconditions.
        unsafe { libc::raise(libc::SIGKILL) };
    }
    s
}

#[test]
fn string_and_byte_results_are_built_in_their_arguments_buffers_exactly_through_panics_and_kills() {
    common::run("pool_kept_buffers", common::SECS(120), || {
        let pool = Pool::new(2).unwrap();
        let items = |n: u64| (0..n).map(|i| format!("item {i}")).collect::<Vec<String>>();
        for chunk in [Some(1), Some(1000), None] {
            let v = items(100_000);
            let at: Vec<usize> = v.iter().map(|s| s.as_ptr() as usize).collect();
            let got = pool.map(|_, s: String| s, v, chunk).unwrap();
            assert!(got.iter().enumerate().all(|(i, s)| *s == format!("item {i}")), "chunksize {chunk:?}");
            // Each result is its own argument's buffer, handed back: no allocation per item.
            let same = got.iter().zip(&at).filter(|(s, a)| s.as_ptr() as usize == **a).count();
            assert_eq!(same, got.len(), "results built in their arguments' buffers, chunksize {chunk:?}");
        }
        // Longer, shorter and non-ASCII results; another result type (the buffers are dropped).
        let got = pool.map(|_, s: String| format!("{s}·{s}"), items(20_000), None).unwrap();
        assert!(got.iter().enumerate().all(|(i, s)| *s == format!("item {i}·item {i}")));
        let got = pool.map(|_, s: String| s[..4].to_owned(), items(20_000), None).unwrap();
        assert!(got.iter().all(|s| s == "item"));
        assert_eq!(pool.map(|_, s: String| s.len(), items(1000), None).unwrap()[999], 8);
        // A result much smaller than its argument does not keep the argument's memory.
        let big = (0..200).map(|i| format!("{i:08}").repeat(1000)).collect::<Vec<String>>();
        let got = pool.map(|_, s: String| s[..8].to_owned(), big, None).unwrap();
        assert!(got.iter().enumerate().all(|(i, s)| *s == format!("{i:08}") && s.capacity() < 100));
        // Byte vectors, short ones (kept) beside ones long enough to be moved whole into a chunk.
        let blobs: Vec<Vec<u8>> =
            (0..3000usize).map(|i| vec![i as u8; if i.is_multiple_of(100) { 20 << 10 } else { i % 50 }]).collect();
        let want: Vec<Vec<u8>> = blobs.iter().map(|b| b.iter().rev().map(|x| x ^ 1).collect()).collect();
        let got = pool.map(|_, b: Vec<u8>| b.iter().rev().map(|x| x ^ 1).collect::<Vec<u8>>(), blobs, None).unwrap();
        assert_eq!(got, want);
        // Identity over sizes that jump up and down (each worker decodes an argument into the
        // buffer of its previous result): non-ASCII, empty, long beside short, exact.
        let mixed: Vec<String> = (0..6000usize)
            .map(|i| match i % 4 {
                0 => "é".repeat(i % 3000),
                1 => String::new(),
                2 => format!("{i}"),
                _ => "x".repeat(i * 7 % (40 << 10)),
            })
            .collect();
        for chunk in [Some(7), None] {
            assert_eq!(pool.map(|_, s: String| s, mixed.clone(), chunk).unwrap(), mixed, "chunksize {chunk:?}");
        }
        let bytes: Vec<Vec<u8>> = (0..300usize).map(|i| vec![i as u8; [0, 1 << 20, 5, 20 << 10, 3][i % 5]]).collect();
        assert_eq!(pool.map(|_, b: Vec<u8>| b, bytes.clone(), Some(3)).unwrap(), bytes);
        // Panics: every other result still lands in its place, the failures are counted exactly.
        let r: Vec<_> = pool
            .imap(|_, s: String| if s.ends_with('7') { panic!("seven") } else { s }, items(10_000), 500)
            .unwrap()
            .collect();
        assert!(r.iter().enumerate().all(|(i, x)| (i % 10 == 7) == x.is_err()));
        assert!(r.iter().enumerate().all(|(i, x)| x.as_ref().map_or(true, |s| *s == format!("item {i}"))));
        let err = pool.map(|_, s: String| if s.ends_with('7') { panic!("seven") } else { s }, items(10_000), None);
        assert!(matches!(err, Err(Error::MapFailed { failed: 1000, total: 10_000, .. })), "{err:?}");
        // A worker killed mid-map, retried: its chunk goes again whole, every result exact.
        let pool =
            Pool::builder().processes(2).context(crash_ctx()).on_worker_death(OnWorkerDeath::Retry(1)).build().unwrap();
        let got = pool.map(die_on_string, items(100_000), Some(1000)).unwrap();
        assert_ne!(pool.context().killed_pid.load(), 0, "the worker did die");
        assert!(got.iter().enumerate().all(|(i, s)| *s == format!("item {i}")));
        // Not retried: the chunk is split around the fatal task, both parts sharing its kept
        // buffers (then none is reused); exactly that task fails, and the pool carries on.
        let pool = Pool::builder().processes(2).context(crash_ctx()).build().unwrap();
        let err = pool.map(die_on_string, items(100_000), Some(1000)).unwrap_err();
        match &err {
            Error::MapFailed { failed: 1, first, .. } => {
                assert!(matches!(**first, Error::WorkerDied { task: Some(50_000), .. }), "{first}")
            }
            other => panic!("expected one failure, got {other}"),
        }
        let got = pool.map(|_, s: String| s, items(10_000), None).unwrap();
        assert!(got.iter().enumerate().all(|(i, s)| *s == format!("item {i}")));
    });
}

#[test]
fn plain_results_written_in_the_ring_stay_exact_across_small_records_panics_and_wraparounds() {
    common::run("pool_plain_in_ring", common::SECS(120), || {
        // Rings of about 10 KiB: each chunk's results take many records, each reserved in place
        // and wrapping around the ring's end again and again.
        let pool = Pool::builder().processes(2).max_message_bytes(4096).build().unwrap();
        for chunk in [Some(1), Some(777), Some(50_000), None] {
            let got = pool.map(|_, x: u64| x * 3, 0..200_000u64, chunk).unwrap();
            assert!(got.iter().enumerate().all(|(i, &v)| v == i as u64 * 3), "chunksize {chunk:?}");
            let got = pool.map_range(|_, x: u32| x ^ 0x5a5a, 0..100_000u32, chunk).unwrap();
            assert!(got.iter().enumerate().all(|(i, &v)| v == i as u32 ^ 0x5a5a), "range, chunksize {chunk:?}");
        }
        // Panics mixed in: their exceptions share the records with the results around them.
        let bad = |_: &(), x: u64| if x % 997 == 5 { panic!("bad {x}") } else { x };
        let r: Vec<_> = pool.imap(bad, 0..100_000u64, 20_000).unwrap().collect();
        assert_eq!(r.len(), 100_000);
        for (i, x) in r.iter().enumerate() {
            match x {
                Ok(v) => assert!(*v == i as u64 && i % 997 != 5, "task {i}: {v}"),
                Err(Error::TaskPanicked { task, .. }) => assert!(*task == i as u64 && i % 997 == 5, "task {i}"),
                Err(e) => panic!("task {i}: {e}"),
            }
        }
        let err = pool.map(bad, 0..100_000u64, None).unwrap_err();
        assert!(matches!(err, Error::MapFailed { failed: 101, total: 100_000, .. }), "{err}");
        assert_eq!(pool.map(|_, x: u8| x, 0..3u8, None).unwrap(), vec![0, 1, 2], "still serving");
    });
}

/// The flags of the mapping of this process that holds `addr` (the `VmFlags` line of its
/// `/proc/self/smaps` entry).
fn vm_flags_at(addr: usize) -> String {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let mut inside = false;
    for line in smaps.lines() {
        let range = line.split_whitespace().next().unwrap_or("");
        if let Some((lo, hi)) = range.split_once('-')
            && let (Ok(lo), Ok(hi)) = (usize::from_str_radix(lo, 16), usize::from_str_radix(hi, 16))
        {
            inside = (lo..hi).contains(&addr);
        } else if inside && let Some(flags) = line.strip_prefix("VmFlags:") {
            return flags.trim().to_owned();
        }
    }
    panic!("no mapping holds {addr:#x}");
}

#[test]
fn a_large_output_is_advised_onto_huge_pages_and_a_small_one_is_not() {
    common::run("pool_output_huge_pages", common::SECS(120), || {
        // Without transparent huge pages in the kernel there is nothing to advise.
        if !std::path::Path::new("/sys/kernel/mm/transparent_hugepage/enabled").exists() {
            eprintln!("this kernel has no transparent huge pages: nothing to check");
            return;
        }
        let huge = 2 << 20;
        let pool = Pool::new(2).unwrap();
        // 8 MB of `u64`s, 12 MB of 64-byte structs through serde and the plain path: each output
        // holds whole 2 MiB pages, and its interior is advised (`hg`), with every value exact.
        let big = pool.map_range(|_, x: u64| x * 5, 0..1_000_000u64, None).unwrap();
        assert!(big.iter().enumerate().all(|(i, &v)| v == i as u64 * 5));
        let serde = pool.map(|_, x: u32| [x; 3], 0..1_000_000u32, None).unwrap();
        assert!(serde.iter().enumerate().all(|(i, &v)| v == [i as u32; 3]));
        for (what, at) in [("map_range", big.as_ptr() as usize), ("map", serde.as_ptr() as usize)] {
            let flags = vm_flags_at(at.next_multiple_of(huge));
            assert!(flags.split(' ').any(|f| f == "hg"), "{what}'s output is not advised: {flags}");
        }
        // A small output is left to the allocator: its heap mapping carries no advice.
        let small = pool.map_range(|_, x: u64| x, 0..1000u64, None).unwrap();
        let flags = vm_flags_at(small.as_ptr() as usize);
        assert!(!flags.split(' ').any(|f| f == "hg"), "a 8 KB output was advised: {flags}");
    });
}

#[test]
fn results_streamed_past_the_cache_stay_exact_across_small_records_and_panics() {
    common::run("pool_streamed_results", common::SECS(120), || {
        let values: Vec<u64> = (0..300_000u64).map(|x| x.wrapping_mul(0x9e37_79b9_7f4a_7c15)).collect();
        let array = mproc::RawArray::from_slice(&values).unwrap();
        let (out64, out32) =
            (mproc::RawArray::<u64>::zeroed(400_000).unwrap(), mproc::RawArray::<u32>::zeroed(400_000).unwrap());
        let out_a = mproc::RawArray::<u64>::zeroed(300_000).unwrap();
        // Chunks of 100,000 results of ranges and arrays (800 KB of `u64`s, 400 KB of `u32`s:
        // streamed): into the results rings, default ones and ones of about 10 KiB (where each
        // chunk's results take hundreds of records, each fenced and published in turn, wrapping
        // around the ring's end), and into the shared output arrays of the `_into` forms; beside
        // them, results that cross through serde (an array of numbers: not streamed).
        for small in [false, true] {
            let b = Pool::builder().processes(2);
            let pool = if small { b.max_message_bytes(4096) } else { b }.build().unwrap();
            let got = pool.map_range(|_, x: u64| x * 7 + 1, 0..400_000u64, Some(100_000)).unwrap();
            assert!(got.iter().enumerate().all(|(i, &v)| v == i as u64 * 7 + 1), "range, small rings: {small}");
            let wide = pool.map_range(
                |_, x: u32| [u64::from(x), u64::from(x) << 32, !u64::from(x)],
                0..300_000u32,
                Some(100_000),
            );
            assert!(
                wide.unwrap().iter().enumerate().all(|(i, v)| *v == [i as u64, (i as u64) << 32, !(i as u64)]),
                "serde results, small rings: {small}"
            );
            let got = pool.map_array(|_, x: u64| x ^ 0xffff, &array, Some(100_000)).unwrap();
            assert!(got.iter().zip(&values).all(|(&v, &x)| v == x ^ 0xffff), "array, small rings: {small}");
            // Stored by the workers into shared arrays (8- and 4-byte elements: streamed).
            pool.map_range_into(|_, x: u64| x * 3 + 2, 0..400_000u64, &out64, Some(100_000)).unwrap();
            assert!((0..400_000).all(|i| out64.load(i) == i as u64 * 3 + 2), "range into u64s, small rings: {small}");
            pool.map_range_into(|_, x: u32| x ^ 0x5a5a_5a5a, 0..400_000u32, &out32, Some(100_000)).unwrap();
            assert!(
                (0..400_000).all(|i| out32.load(i) == i as u32 ^ 0x5a5a_5a5a),
                "range into u32s, small rings: {small}"
            );
            pool.map_array_into(|_, x: u64| x.rotate_left(7), &array, &out_a, Some(100_000)).unwrap();
            assert!(
                (0..300_000).all(|i| out_a.load(i) == values[i].rotate_left(7)),
                "array into, small rings: {small}"
            );
            // Panics inside streamed runs: exactly those items fail, and what was streamed before
            // each is counted once (a miscount would be a missing or corrupt result instead).
            let bad = |_: &(), x: u64| if x % 40_009 == 3 { panic!("bad {x}") } else { x };
            let err = pool.map_range(bad, 0..400_000u64, Some(100_000)).unwrap_err();
            let panics = (0..400_000u64).filter(|x| x % 40_009 == 3).count();
            match err {
                Error::MapFailed { failed, total: 400_000, first } => {
                    assert_eq!(failed, panics, "small rings: {small}");
                    assert!(matches!(*first, Error::TaskPanicked { task: 3, .. }), "{first}");
                }
                e => panic!("small rings: {small}: {e}"),
            }
            let got = pool.map_range(|_, x: u64| x, 0..200_000u64, None).unwrap();
            assert!(got.iter().enumerate().all(|(i, &v)| v == i as u64), "still exact after the panics");
        }
    });
}
