//! Flag, Event, Semaphore, Barrier, Value, Array across processes.

mod common;

use std::time::{Duration, Instant};

use mproc::{Array, Barrier, EarlyExit, Event, Flag, Process, RawArray, Semaphore, Value};

fn wait_for(cond: impl Fn() -> bool, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while !cond() {
        if Instant::now() > deadline {
            return false;
        }
        std::hint::spin_loop();
    }
    true
}

#[test]
fn a_flag_set_in_one_process_is_seen_in_another() {
    common::run("flag_cross", common::SECS(30), || {
        let go = Flag::new().unwrap();
        let back = Flag::new().unwrap();
        let mut p = Process::spawn(|| {
            if !wait_for(|| go.is_set(), Duration::from_secs(10)) {
                return 1;
            }
            back.set();
            0
        })
        .unwrap();
        go.set();
        assert!(wait_for(|| back.is_set(), Duration::from_secs(10)), "child's set never seen");
        assert!(p.join().unwrap().success());
        // Through the trait, as the Pool's tasks use it.
        let f: &dyn EarlyExit = &go;
        assert!(f.is_set().unwrap());
        f.clear().unwrap();
        assert!(!go.is_set());
    });
}

#[test]
fn event_wakes_a_waiter_in_another_process() {
    common::run("event_cross", common::SECS(30), || {
        let ev = Event::new().unwrap();
        let mut p = Process::spawn(|| ev.wait_timeout(Duration::from_secs(10))).unwrap();
        std::thread::sleep(Duration::from_millis(20)); // let it go to sleep in the kernel
        ev.set();
        assert!(p.join().unwrap().success());
        ev.clear();
        // Regression (event_wait_timeout_returns_err_timeout): the one timeout shape, not `false`.
        assert!(matches!(ev.wait_timeout(Duration::from_millis(10)), Err(mproc::Error::Timeout)));
    });
}

#[test]
fn semaphore_bounds_concurrency_across_processes() {
    common::run("semaphore_cross", common::SECS(60), || {
        let sem = Semaphore::new(2).unwrap();
        let inside = mproc::RawValue::new(0u32).unwrap();
        let worst = mproc::RawValue::new(0u32).unwrap();
        let procs: Vec<_> = (0..4)
            .map(|_| {
                Process::spawn(|| -> mproc::Result<()> {
                    for _ in 0..200 {
                        sem.acquire_timeout(Duration::from_secs(10))?;
                        let now = inside.fetch_add(1) + 1;
                        let mut w = worst.load();
                        while now > w {
                            match worst.compare_exchange(w, now) {
                                Ok(_) => break,
                                Err(x) => w = x,
                            }
                        }
                        std::hint::spin_loop();
                        inside.fetch_sub(1);
                        sem.release()?;
                    }
                    Ok(())
                })
                .unwrap()
            })
            .collect();
        for mut p in procs {
            assert!(p.join().unwrap().success());
        }
        assert!(worst.load() <= 2 && worst.load() >= 1, "{} inside at once", worst.load());
        assert_eq!(sem.value(), 2);
        assert!(matches!(
            Semaphore::new(0).unwrap().acquire_timeout(Duration::from_millis(5)),
            Err(mproc::Error::Timeout)
        ));
    });
}

#[test]
fn barrier_releases_all_parties_together_and_is_reusable() {
    common::run("barrier_cross", common::SECS(60), || {
        let b = Barrier::new(3).unwrap();
        let leaders = mproc::RawValue::new(0u32).unwrap();
        let passed = mproc::RawValue::new(0u32).unwrap();
        let procs: Vec<_> = (0..3)
            .map(|_| {
                Process::spawn(|| -> mproc::Result<()> {
                    for round in 1..=50u32 {
                        if b.wait_timeout(Duration::from_secs(10))? {
                            leaders.fetch_add(1);
                        }
                        passed.fetch_add(1);
                        // nobody may pass round r+1 before all passed round r
                        if b.wait_timeout(Duration::from_secs(10))? {
                            leaders.fetch_add(1);
                        }
                        assert!(passed.load() >= 3 * round);
                    }
                    Ok(())
                })
                .unwrap()
            })
            .collect();
        for mut p in procs {
            let st = p.join().unwrap();
            assert!(st.success(), "{st}");
        }
        assert_eq!(leaders.load(), 100, "exactly one leader per round");
        assert_eq!(passed.load(), 150);
    });
}

#[test]
fn a_barrier_waiter_that_times_out_breaks_it_for_the_others() {
    common::run("barrier_broken", common::SECS(30), || {
        let b = Barrier::new(3).unwrap();
        let mut p = Process::spawn(|| match b.wait_timeout(Duration::from_secs(10)) {
            Err(mproc::Error::BrokenBarrier) => 0,
            _ => 1,
        })
        .unwrap();
        std::thread::sleep(Duration::from_millis(20));
        assert!(matches!(b.wait_timeout(Duration::from_millis(20)), Err(mproc::Error::Timeout)));
        assert_eq!(p.join().unwrap().code(), Some(0));
        assert!(matches!(b.wait(), Err(mproc::Error::BrokenBarrier)));
        b.reset();
        assert!(matches!(Barrier::new(0), Err(mproc::Error::InvalidArgument(_))));
    });
}

#[test]
fn arrays_are_shared_not_copied() {
    common::run("arrays_cross", common::SECS(30), || {
        let a = Array::<u32>::zeroed(64).unwrap();
        let raw = RawArray::<u64>::zeroed(1 << 20).unwrap();
        let v = Value::new(0.5f64).unwrap();
        let procs: Vec<_> = (0..2u64)
            .map(|w| {
                let (a, raw, v) = (&a, &raw, &v);
                Process::spawn(move || -> mproc::Result<()> {
                    for i in 0..64 {
                        a.lock()?[i] += 1;
                    }
                    // disjoint halves, written through the unsafe slice
                    // SAFETY: worker w is the only process touching its half.
                    let s = unsafe { raw.as_mut_slice() };
                    let half = s.len() / 2;
                    for (i, x) in s[w as usize * half..(w as usize + 1) * half].iter_mut().enumerate() {
                        *x = i as u64;
                    }
                    raw.fetch_add(0, 1);
                    *v.lock()? += 1.0;
                    Ok(())
                })
                .unwrap()
            })
            .collect();
        for mut p in procs {
            assert!(p.join().unwrap().success());
        }
        assert_eq!(a.to_vec().unwrap(), vec![2; 64]);
        // SAFETY: the workers have ended.
        let s = unsafe { raw.as_slice() };
        let half = (s.len() / 2) as u64;
        assert_eq!(s.iter().sum::<u64>(), 2 * (half * (half - 1) / 2) + 2);
        assert_eq!(v.get().unwrap(), 2.5);
    });
}
