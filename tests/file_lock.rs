//! FileLock: exclusion between a parent and its forked child through the same value, and a
//! holder that dies.

mod common;

use std::time::{Duration, Instant};

use mproc::{FileLock, LockError, Process};

#[test]
fn parent_and_forked_child_using_the_same_filelock_value_exclude_each_other() {
    common::run("filelock_parent_child", common::SECS(60), || {
        let tmp = common::TempDir::new("flpc");
        let lock = FileLock::new(tmp.0.join("l.lock"));
        // The parent opens the file and holds the lock; the child inherits that descriptor.
        let g = lock.lock().unwrap();
        let mut p = Process::spawn(|| match lock.try_lock() {
            Err(LockError::WouldBlock) => 0,
            Ok(_) => 10, // no exclusion: the bug an inherited flock descriptor causes
            Err(_) => 20,
        })
        .unwrap();
        assert_eq!(p.join().unwrap().code(), Some(0), "child got a lock its parent holds");
        drop(g);
        let mut p = Process::spawn(|| lock.try_lock().is_ok() as i32).unwrap();
        assert_eq!(p.join().unwrap().code(), Some(1), "child could not take the released lock");
    });
}

#[test]
fn parent_and_child_incrementing_a_file_under_the_same_filelock_lose_nothing() {
    common::run("filelock_counter", common::SECS(60), || {
        let tmp = common::TempDir::new("flcount");
        let data = tmp.0.join("count.txt");
        std::fs::write(&data, "0").unwrap();
        let lock = FileLock::new(tmp.0.join("count.lock"));
        let bump = || -> mproc::Result<()> {
            for _ in 0..500 {
                let _g = lock.lock()?;
                let n: u64 = std::fs::read_to_string(&data)?.trim().parse().unwrap_or(0);
                std::fs::write(&data, (n + 1).to_string())?;
            }
            Ok(())
        };
        bump().unwrap(); // the parent opens its descriptor before forking
        let mut child = Process::spawn(bump).unwrap();
        bump().unwrap();
        assert!(child.join().unwrap().success());
        assert_eq!(std::fs::read_to_string(&data).unwrap().trim(), "1500");
    });
}

fn killed_holder(lock: &FileLock) -> (i32, Instant) {
    let held = mproc::Event::new().unwrap();
    let mut child = Process::spawn(|| {
        let _g = lock.lock().unwrap();
        held.set();
        // SAFETY: raising a signal has no memory-safety preconditions.
        unsafe { libc::raise(libc::SIGKILL) };
    })
    .unwrap();
    held.wait_timeout(Duration::from_secs(10)).expect("child never took the lock");
    assert_eq!(child.join().unwrap().signal(), Some(mproc::Signal(libc::SIGKILL)));
    (child.pid(), Instant::now())
}

#[test]
fn holder_killed_plain_filelock_is_free_again_within_100ms() {
    common::run("filelock_killed_plain", common::SECS(30), || {
        let tmp = common::TempDir::new("flkill");
        let lock = FileLock::new(tmp.0.join("k.lock"));
        let (_pid, t0) = killed_holder(&lock);
        let g = lock.lock_timeout(Duration::from_millis(100)).expect("kernel released the dead holder's flock");
        assert!(t0.elapsed() < Duration::from_millis(100));
        drop(g);
        drop(lock.lock().expect("works afterwards"));
    });
}

#[test]
fn holder_killed_tracked_filelock_reports_owner_died_within_100ms_then_works() {
    common::run("filelock_killed_tracked", common::SECS(30), || {
        let tmp = common::TempDir::new("flkillt");
        let lock = FileLock::tracked(tmp.0.join("t.lock"));
        let (pid, t0) = killed_holder(&lock);
        match lock.lock_timeout(Duration::from_millis(100)) {
            Err(LockError::OwnerDied { pid: p, guard }) => {
                assert_eq!(p, Some(pid));
                drop(guard);
            }
            Err(e) => panic!("expected OwnerDied, got {e:?}"),
            Ok(_) => panic!("expected OwnerDied, got the lock silently"),
        }
        assert!(t0.elapsed() < Duration::from_millis(100));
        // A clean unlock leaves no owner behind: the next lock is plain.
        drop(lock.lock().expect("works afterwards"));
        drop(lock.lock().expect("and again"));
    });
}

#[test]
fn shared_locks_coexist_and_exclude_an_exclusive_one() {
    common::run("filelock_shared", common::SECS(30), || {
        let tmp = common::TempDir::new("flshared");
        let lock = FileLock::new(tmp.0.join("s.lock"));
        let _g = lock.lock_shared().unwrap();
        let mut p = Process::spawn(|| {
            let shared_ok = lock.try_lock_shared().is_ok();
            drop(lock.try_lock_shared());
            let excl_blocked = matches!(lock.try_lock(), Err(LockError::WouldBlock));
            (shared_ok && excl_blocked) as i32
        })
        .unwrap();
        assert_eq!(p.join().unwrap().code(), Some(1));
    });
}

#[test]
fn unopenable_path_is_an_error_naming_the_path() {
    let lock = FileLock::new("/nonexistent-dir-mproc/x.lock");
    let e: mproc::Error = lock.lock().map(|_| ()).unwrap_err().into();
    assert!(e.to_string().contains("/nonexistent-dir-mproc/x.lock"), "{e}");
}
