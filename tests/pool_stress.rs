//! Pool under stress: a stuck task, a stopped worker, a straggler in a long `imap`, a short job
//! inside a long stream, a big `map`'s memory, the exact message limit, a panicking source, and
//! cancellation. Each regression test is named after what broke.

mod common;

use std::time::{Duration, Instant};

use mproc::{Error, Pool, RawValue};

/// (VmRSS, VmHWM) of this process, in bytes.
fn rss() -> (u64, u64) {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let field = |name: &str| {
        s.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap()
            * 1024
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Resets VmHWM to the current RSS (Linux ≥ 4.0), so a peak can be measured for one call.
fn reset_peak() {
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
}

const MIB: u64 = 1 << 20;

#[test]
fn regression_a_stuck_task_no_longer_wedges_the_next_map() {
    common::run("pool_stuck_task", common::SECS(60), || {
        let pool = Pool::new(2).unwrap();
        let mut stuck = pool
            .apply_async(
                |_, _: u8| -> u8 {
                    loop {
                        std::hint::spin_loop();
                    }
                },
                0,
            )
            .unwrap();
        assert!(matches!(stuck.get_timeout(Duration::from_millis(200)), Err(Error::Timeout)));
        let t = Instant::now();
        let got = pool.map(|_, x: u32| x, 0..50u32, Some(1)).unwrap();
        let took = t.elapsed();
        assert_eq!(got, (0..50).collect::<Vec<_>>());
        assert!(took < Duration::from_secs(1), "the next map took {took:?} beside a stuck worker");
        eprintln!("map of 50 beside a stuck worker: {took:?}");
        stuck.cancel();
    });
}

#[test]
fn a_chunk_of_quick_plain_tasks_longer_than_the_time_limit_is_progress_not_a_timeout() {
    common::run("pool_long_plain_chunk", common::SECS(60), || {
        let limit = Duration::from_millis(50);
        let pool = Pool::builder().processes(2).task_timeout(limit).build().unwrap();
        let pids = pool.worker_pids();
        // Two chunks of 50,000 tasks of 2 µs: each runs about 100 ms, twice the limit, and
        // every task in it returns well inside it (plain results: their progress is the task
        // index, `started` is counted once per chunk).
        let quick = |_: &(), x: u64| {
            let end = Instant::now() + Duration::from_micros(2);
            while Instant::now() < end {
                std::hint::spin_loop();
            }
            x
        };
        let t = Instant::now();
        let out = pool.map(quick, 0..100_000u64, Some(50_000)).unwrap();
        assert_eq!(out, (0..100_000).collect::<Vec<_>>());
        assert!(t.elapsed() > limit, "the chunks ran longer than the limit");
        assert_eq!(pool.worker_pids(), pids, "no worker was timed out");
    });
}

#[test]
fn a_sigstopped_worker_is_timed_out_replaced_and_the_map_completes() {
    common::run("pool_sigstop", common::SECS(60), || {
        struct Ctx {
            done: RawValue<u64>,
        }
        let limit = Duration::from_millis(300);
        let pool = Pool::builder()
            .processes(2)
            .task_timeout(limit)
            .context(Ctx { done: RawValue::new(0).unwrap() })
            .build()
            .unwrap();
        let victim = pool.worker_pids()[0];
        let ctx = pool.context();
        let mut stopper = mproc::Process::spawn(|| {
            let deadline = Instant::now() + Duration::from_secs(10);
            while ctx.done.load() < 20 && Instant::now() < deadline {
                std::hint::spin_loop();
            }
            // SAFETY: kill has no memory-safety preconditions.
            unsafe { libc::kill(victim, libc::SIGSTOP) };
        })
        .unwrap();
        let t = Instant::now();
        let r = pool.map(
            |c: &Ctx, x: u64| {
                c.done.fetch_add(1);
                std::thread::sleep(Duration::from_millis(2));
                x
            },
            0..400u64,
            Some(1),
        );
        let took = t.elapsed();
        assert!(stopper.join().unwrap().success());
        match r {
            Ok(v) => assert_eq!(v, (0..400).collect::<Vec<_>>()), // stopped between tasks
            Err(Error::MapFailed { failed: 1, first, .. }) => match *first {
                Error::TaskTimedOut { pid, after, .. } => assert_eq!((pid, after), (victim, limit)),
                other => panic!("expected TaskTimedOut, got {other}"),
            },
            Err(e) => panic!("unexpected: {e}"),
        }
        assert!(took < Duration::from_secs(10), "map took {took:?}");
        eprintln!("map of 400 with a SIGSTOPped worker: {took:?}");
        // The stopped worker was killed (even stopped) and reaped, and replaced.
        assert!(!pool.worker_pids().contains(&victim));
        assert_eq!(pool.worker_pids().len(), 2);
        assert_eq!(pool.map(|_, x: u64| x, 0..100u64, None).unwrap().len(), 100);
    });
}

#[test]
fn a_task_past_its_time_limit_fails_with_task_timed_out_and_the_worker_is_replaced() {
    common::run("pool_task_timeout", common::SECS(60), || {
        let pool = Pool::new(2).unwrap();
        let pids = pool.worker_pids();
        let t = Instant::now();
        let err = pool
            .apply_async(|_, ms: u64| std::thread::sleep(Duration::from_millis(ms)), 60_000)
            .unwrap()
            .task_timeout(Duration::from_millis(200))
            .get()
            .unwrap_err();
        match err {
            Error::TaskTimedOut { task: 0, pid, after } => {
                assert!(pids.contains(&pid));
                assert_eq!(after, Duration::from_millis(200));
                assert!(!pool.worker_pids().contains(&pid));
            }
            other => panic!("expected TaskTimedOut, got {other}"),
        }
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
        assert_eq!(pool.worker_pids().len(), 2);
        // A task within its limit is untouched.
        let ok = pool.apply_async(|_, x: u64| x, 5).unwrap().task_timeout(Duration::from_secs(5)).get().unwrap();
        assert_eq!(ok, 5);
    });
}

#[test]
fn regression_imap_with_a_straggler_keeps_memory_bounded_for_10m_items() {
    common::run("pool_imap_straggler", common::SECS(300), || {
        let pool = Pool::new(2).unwrap();
        let (before, _) = rss();
        reset_peak();
        let mut n = 0u64;
        let mut sum = 0u64;
        for r in pool
            .imap(
                |_, x: u64| {
                    if x == 0 {
                        std::thread::sleep(Duration::from_secs(2));
                    }
                    x
                },
                0..10_000_000u64,
                16,
            )
            .unwrap()
        {
            let x = r.unwrap();
            assert_eq!(x, n, "in order");
            sum = sum.wrapping_add(x);
            n += 1;
        }
        assert_eq!(n, 10_000_000);
        assert_eq!(sum, 10_000_000 * 9_999_999 / 2);
        let (_, peak) = rss();
        let growth = peak.saturating_sub(before);
        eprintln!("imap of 10M with a 2 s straggler: peak RSS growth {:.1} MiB", growth as f64 / MIB as f64);
        assert!(growth < 64 * MIB, "parent RSS grew by {} MiB", growth / MIB);
    });
}

#[test]
fn regression_a_short_map_inside_a_long_imap_loop_is_not_starved() {
    common::run("pool_fair_jobs", common::SECS(120), || {
        let pool = Pool::new(2).unwrap();
        let mut worst = Duration::ZERO;
        for (i, r) in pool.imap(|_, x: u64| x, 0..5_000_000u64, 16).unwrap().enumerate() {
            assert_eq!(r.unwrap(), i as u64);
            if i % 1000 == 0 {
                let t = Instant::now();
                let small = pool.map(|_, x: u32| x * 2, 0..10u32, None).unwrap();
                worst = worst.max(t.elapsed());
                assert_eq!(small, (0..10).map(|x| x * 2).collect::<Vec<_>>());
            }
            if i == 20_000 {
                break; // dropping the iterator cancels the rest
            }
        }
        eprintln!("10-task map inside an imap loop: worst {worst:?}");
        assert!(worst < Duration::from_millis(100), "the short map waited {worst:?}");
        assert_eq!(pool.map(|_, x: u8| x, 0..3u8, None).unwrap(), vec![0, 1, 2], "still serving");
    });
}

#[test]
fn regression_map_of_10m_u64_to_u8_costs_its_output_not_64_bytes_a_task() {
    common::run("pool_map_memory", common::SECS(300), || {
        let pool = Pool::new(2).unwrap();
        let (before, _) = rss();
        reset_peak();
        let out = pool.map(|_, x: u64| (x % 251) as u8, 0..10_000_000u64, None).unwrap();
        let (_, peak) = rss();
        assert_eq!(out.len(), 10_000_000);
        assert!(out.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8));
        let growth = peak.saturating_sub(before);
        eprintln!("map of 10M u64 -> u8: peak RSS growth {:.1} MiB (output 9.5 MiB)", growth as f64 / MIB as f64);
        assert!(growth < 200 * MIB, "parent RSS grew by {} MiB", growth / MIB);
        drop(out);
        let range = pool.map_range(|_, x: u64| (x % 251) as u8, 0..10_000_000u64, None).unwrap();
        assert!(range.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8));
    });
}

#[test]
fn max_message_bytes_is_exact_at_n_and_n_plus_1_and_errors_report_n() {
    common::run("pool_message_limit", common::SECS(60), || {
        const N: usize = 4096;
        let pool = Pool::builder().processes(2).max_message_bytes(N).build().unwrap();
        // The Pool's serde format: a Vec<u8> of len L is an 8-byte length and L bytes.
        let ok = pool.apply(|_, n: usize| vec![1u8; n], N - 8).unwrap();
        assert_eq!(ok.len(), N - 8, "a result of exactly N bytes passes");
        match pool.apply(|_, n: usize| vec![1u8; n], N - 7).unwrap_err() {
            Error::MessageTooLarge { what: "result", task: 0, size, limit } => assert_eq!((size, limit), (N + 1, N)),
            other => panic!("expected MessageTooLarge, got {other}"),
        }
        let err = pool.map(|_, v: Vec<u8>| v.len(), vec![vec![0u8; N - 8], vec![0u8; N - 7], vec![0u8; 3]], Some(3));
        match err.unwrap_err() {
            Error::MapFailed { failed: 1, total: 3, first } => match *first {
                Error::MessageTooLarge { what: "argument", task: 1, size, limit } => {
                    assert_eq!((size, limit), (N + 1, N))
                }
                other => panic!("expected MessageTooLarge, got {other}"),
            },
            other => panic!("expected MapFailed, got {other}"),
        }
        let at_n = pool.map_with(|_, a: &Vec<u8>, x: u8| a.len() + x as usize, vec![0u8; N - 8], 0..2u8, None);
        assert_eq!(at_n.unwrap(), vec![N - 8, N - 7]);
        let over = pool.map_with(|_, a: &Vec<u8>, x: u8| a.len() + x as usize, vec![0u8; N - 7], 0..2u8, None);
        assert!(matches!(over, Err(Error::MessageTooLarge { size, limit: N, .. }) if size == N + 1), "{over:?}");
        // Plain data: size_of counts.
        let plain = pool.map_plain(|_, x: [u64; 512]| x[0], [[7u64; 512]], None).unwrap();
        assert_eq!(plain, vec![7]);
    });
}

#[test]
fn regression_a_panicking_source_delivers_the_items_before_it_then_an_error_never_a_hang() {
    common::run("pool_source_panic", common::SECS(60), || {
        let pool = Pool::new(2).unwrap();
        let source = || (0..100u64).map(|x| if x == 37 { panic!("source broke at {x}") } else { x });
        for chunk in [1, 2, 16] {
            let got: Vec<_> = pool.imap(|_, x: u64| x * 10, source(), chunk).unwrap().collect();
            assert_eq!(got.len(), 38, "chunksize {chunk}: 37 results, then the error, then the end");
            for (i, r) in got[..37].iter().enumerate() {
                assert_eq!(*r.as_ref().unwrap(), i as u64 * 10);
            }
            match &got[37] {
                Err(Error::SourcePanicked { task: 37, message }) => assert!(message.contains("source broke at 37")),
                other => panic!("expected SourcePanicked, got {other:?}"),
            }
        }
        let mut unordered: Vec<_> = pool.imap_unordered(|_, x: u64| x, source(), 4).unwrap().collect();
        assert_eq!(unordered.len(), 38);
        assert_eq!(unordered.iter().filter(|r| r.is_err()).count(), 1);
        unordered.retain(Result::is_ok);
        let err = pool.map(|_, x: u64| x, source(), Some(4)).unwrap_err();
        assert!(matches!(err.root(), Error::SourcePanicked { task: 37, .. }), "{err}");
        assert_eq!(pool.map(|_, x: u8| x, 0..4u8, None).unwrap(), vec![0, 1, 2, 3], "still serving");
    });
}

#[test]
fn cancel_and_dropping_an_iterator_stop_tasks_that_have_not_started() {
    common::run("pool_cancel", common::SECS(60), || {
        struct Ctx {
            ran: RawValue<u64>,
        }
        let pool = Pool::builder().processes(2).context(Ctx { ran: RawValue::new(0).unwrap() }).build().unwrap();
        let slow = |c: &Ctx, x: u64| {
            c.ran.fetch_add(1);
            std::thread::sleep(Duration::from_millis(20));
            x
        };
        let h = pool.map_async(slow, 0..200u64, Some(1)).unwrap();
        assert!(!h.ready());
        std::thread::sleep(Duration::from_millis(100));
        h.cancel();
        pool.wait_all().unwrap();
        let ran = pool.context().ran.load();
        assert!(ran < 100, "{ran} of 200 tasks ran after cancel");
        let mut it = pool.imap(slow, 0..200u64, 1).unwrap();
        assert_eq!(it.next().unwrap().unwrap(), 0);
        drop(it);
        pool.wait_all().unwrap();
        let after = pool.context().ran.load() - ran;
        assert!(after < 100, "{after} of 200 tasks ran after the iterator was dropped");
        assert_eq!(pool.map(|_, x: u8| x, 0..3u8, None).unwrap(), vec![0, 1, 2], "still serving");
    });
}

#[test]
fn map_range_and_the_plain_path_agree_with_a_serial_loop() {
    common::run("pool_range", common::SECS(60), || {
        let pool = Pool::new(2).unwrap();
        for chunk in [Some(1), Some(7), None] {
            assert_eq!(
                pool.map_range(|_, x: u64| x * 3, 0..5000u64, chunk).unwrap(),
                (0..5000).map(|x| x * 3).collect::<Vec<_>>()
            );
        }
        assert_eq!(pool.map_range(|_, x: i64| x, -300..300i64, Some(7)).unwrap(), (-300..300).collect::<Vec<_>>());
        assert_eq!(pool.map_range(|_, x: usize| x.to_string(), 0..3usize, None).unwrap(), vec!["0", "1", "2"]);
        assert!(pool.map_range(|_, x: u32| x, 5..5u32, None).unwrap().is_empty());
        let err = pool.map_range(|_, x: u32| if x == 9 { panic!("nine") } else { x }, 0..20u32, Some(4)).unwrap_err();
        assert!(matches!(err.root(), Error::TaskPanicked { task: 9, .. }), "{err}");
        // Mixed chunks: failures listed apart, the other results in place.
        let mixed = pool.imap(|_, x: u64| if x.is_multiple_of(3) { panic!("three") } else { x }, 0..30u64, 8).unwrap();
        let v: Vec<_> = mixed.collect();
        assert!(v.iter().enumerate().all(|(i, r)| (i % 3 == 0) == r.is_err()));
        assert!(v.iter().enumerate().all(|(i, r)| r.as_ref().map_or(true, |&x| x == i as u64)));
        // Strings through serde, in place.
        let s = pool.map(|_, s: String| s.to_uppercase(), (0..1000).map(|i| format!("item {i}")), Some(64)).unwrap();
        assert!(s.iter().enumerate().all(|(i, x)| *x == format!("ITEM {i}")));
    });
}

#[test]
fn regression_maps_with_uneven_tasks_and_constant_stealing_never_hang_and_count_exactly() {
    // A chunk a worker skipped (taken back by the parent) was requeued without counting as
    // progress, and the parent slept on it forever.
    common::run("pool_steal_churn", common::SECS(120), || {
        let pool = Pool::new(2).unwrap();
        for round in 0..300u64 {
            let n = 500 + round * 7;
            let got = pool
                .map(
                    |_, x: u64| {
                        if x.is_multiple_of(97) {
                            std::thread::sleep(Duration::from_micros(300));
                        }
                        x
                    },
                    0..n,
                    Some(1 + (round as usize % 13)),
                )
                .unwrap();
            assert_eq!(got, (0..n).collect::<Vec<_>>(), "round {round}");
        }
        let mut seen: Vec<u64> =
            pool.imap_unordered(|_, x: u64| x, 0..50_000u64, 3).unwrap().map(Result::unwrap).collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..50_000).collect::<Vec<_>>());
    });
}
