//! Lock, RLock: exclusion, crash recovery, timeouts, contention figures.

mod common;

use std::time::{Duration, Instant};

use mproc::{Lock, LockError, Process, RLock, RawValue, Value};

#[test]
fn no_lost_update_between_processes_and_stats_count_every_acquisition() {
    common::run("lock_exact", common::SECS(60), || {
        let lock = Lock::new().unwrap();
        let n = RawValue::new(0u64).unwrap();
        let procs: Vec<_> = (0..2)
            .map(|_| {
                Process::spawn(|| {
                    for _ in 0..50_000 {
                        let _g = lock.lock().unwrap();
                        // a non-atomic read-modify-write: only the lock keeps it exact
                        n.store(n.load() + 1);
                    }
                })
                .unwrap()
            })
            .collect();
        for mut p in procs {
            assert!(p.join().unwrap().success());
        }
        assert_eq!(n.load(), 100_000);
        let s = lock.stats();
        assert_eq!(s.acquisitions, 100_000);
        assert!(s.contended <= s.acquisitions);
        assert_eq!(s.waits.count(), s.contended, "every contended acquisition is in the histogram");
    });
}

#[test]
fn the_wait_histogram_holds_a_long_wait_in_its_bucket() {
    common::run("lock_wait_histogram", common::SECS(30), || {
        let lock = Lock::new().unwrap();
        let started = mproc::Event::new().unwrap();
        let g = lock.lock().unwrap();
        let mut waiter = Process::spawn(|| {
            started.set();
            drop(lock.lock().unwrap()); // waits for the parent's 40 ms
        })
        .unwrap();
        started.wait_timeout(Duration::from_secs(10)).expect("the waiter never started");
        std::thread::sleep(Duration::from_millis(40));
        drop(g);
        assert!(waiter.join().unwrap().success());
        let s = lock.stats();
        assert_eq!((s.acquisitions, s.contended, s.waits.count()), (2, 1, 1));
        let max = s.waits.max().unwrap();
        // A bucket's upper bound is at most twice the wait; the wait was 40 ms at least.
        assert!(max >= Duration::from_millis(40) && max <= Duration::from_secs(2), "{max:?}");
        assert_eq!(s.waits.percentile(0.5), Some(max));
        assert!(s.wait >= Duration::from_millis(35) && s.wait <= max, "{:?} against {max:?}", s.wait);
        let b: Vec<_> = s.waits.buckets().collect();
        assert_eq!(b.len(), 1);
        assert!(b[0].0 < b[0].1 && b[0].1 == max && b[0].2 == 1);
        lock.reset_stats();
        assert_eq!(lock.stats().waits.count(), 0);
    });
}

#[test]
fn holder_killed_while_holding_next_lock_reports_owner_died_within_100ms_and_lock_works_after() {
    common::run("lock_owner_died", common::SECS(30), || {
        let lock = Lock::new().unwrap();
        let value = Value::new(0u64).unwrap();
        let held = mproc::Event::new().unwrap();
        let mut child = Process::spawn(|| {
            let mut g = value.lock().unwrap();
            *g = 7;
            held.set();
            let _g2 = lock.lock().unwrap();
            // SAFETY: raising a signal has no memory-safety preconditions.
            unsafe { libc::raise(libc::SIGKILL) };
        })
        .unwrap();
        held.wait_timeout(Duration::from_secs(10)).expect("child never took the lock");
        let st = child.join().unwrap();
        assert_eq!(st.signal(), Some(mproc::Signal(libc::SIGKILL)));

        let t0 = Instant::now();
        match lock.lock_timeout(Duration::from_millis(100)) {
            Err(LockError::OwnerDied { pid, guard }) => {
                assert_eq!(pid, Some(child.pid()));
                drop(guard);
            }
            Err(e) => panic!("expected OwnerDied, got {e:?}"),
            Ok(_) => panic!("expected OwnerDied, got the lock silently"),
        }
        let took = t0.elapsed();
        assert!(took < Duration::from_millis(100), "took {took:?}");

        // The Value's own lock reports it too, and hands over the data the dead holder wrote.
        match value.lock() {
            Err(LockError::OwnerDied { guard, .. }) => assert_eq!(*guard, 7),
            other => panic!("expected OwnerDied, got {:?}", other.map(|g| *g)),
        }
        // Both locks work normally afterwards, here and in a new child.
        drop(lock.lock().expect("lock works again"));
        assert_eq!(value.get().unwrap(), 7);
        let mut p = Process::spawn(|| {
            let _g = lock.lock().unwrap();
            *value.lock().unwrap() += 1;
        })
        .unwrap();
        assert!(p.join().unwrap().success());
        assert_eq!(value.get().unwrap(), 8);
    });
}

#[test]
fn owner_died_converts_into_the_error_type_with_the_pid() {
    common::run("lock_owner_died_error", common::SECS(30), || {
        let lock = Lock::new().unwrap();
        let mut child = Process::spawn(|| {
            std::mem::forget(lock.lock().unwrap());
            // exits normally while still holding: robust mutexes catch this too
        })
        .unwrap();
        child.join().unwrap();
        let err: mproc::Error = lock.lock().map(|_| ()).unwrap_err().into();
        assert!(matches!(err, mproc::Error::OwnerDied { pid: Some(p) } if p == child.pid()), "{err}");
        drop(lock.lock().expect("recovered"));
    });
}

#[test]
fn try_lock_and_sub_second_timeout_while_another_process_holds_it() {
    common::run("lock_timeout", common::SECS(30), || {
        let lock = Lock::new().unwrap();
        let held = mproc::Event::new().unwrap();
        let release = mproc::Event::new().unwrap();
        let mut child = Process::spawn(|| {
            let _g = lock.lock().unwrap();
            held.set();
            let _ = release.wait_timeout(Duration::from_secs(20));
        })
        .unwrap();
        held.wait_timeout(Duration::from_secs(10)).expect("child never took the lock");
        assert!(matches!(lock.try_lock(), Err(LockError::WouldBlock)));
        let t0 = Instant::now();
        assert!(matches!(lock.lock_timeout(Duration::from_millis(30)), Err(LockError::Timeout)));
        let waited = t0.elapsed();
        assert!(waited >= Duration::from_millis(30), "returned after {waited:?}");
        release.set();
        assert!(child.join().unwrap().success());
        drop(lock.lock_timeout(Duration::from_secs(5)).expect("free after release"));
        let s = lock.stats();
        assert!(s.contended >= 1 && s.timeouts == 1 && s.wait >= Duration::from_millis(30), "{s:?}");
    });
}

#[test]
fn rlock_is_reentrant_and_excludes_other_processes() {
    common::run("rlock", common::SECS(30), || {
        let r = RLock::new().unwrap();
        let outer = r.lock().unwrap();
        let inner = r.lock().unwrap();
        let mut p = Process::spawn(|| matches!(r.try_lock(), Err(LockError::WouldBlock)) as i32).unwrap();
        assert_eq!(p.join().unwrap().code(), Some(1), "another process must not get a held RLock");
        drop(inner);
        let mut p = Process::spawn(|| matches!(r.try_lock(), Err(LockError::WouldBlock)) as i32).unwrap();
        assert_eq!(p.join().unwrap().code(), Some(1), "still held after one of two levels released");
        drop(outer);
        let mut p = Process::spawn(|| r.try_lock().is_ok() as i32).unwrap();
        assert_eq!(p.join().unwrap().code(), Some(1), "free once every level is released");
    });
}
