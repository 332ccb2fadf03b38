//! Process: exit codes, panics, signals, timeouts, drop.

mod common;

use std::time::{Duration, Instant};

use mproc::{ExitStatus, Process, Signal};

#[test]
fn a_panicking_childs_message_reaches_join() {
    common::run("process_panic", common::SECS(30), || {
        let mut p = Process::spawn(|| -> () { panic!("checksum mismatch in block {}", 42) }).unwrap();
        assert_eq!(p.join().unwrap(), ExitStatus::Panicked("checksum mismatch in block 42".into()));
        assert_eq!(p.join().unwrap().code(), Some(101), "join is idempotent");
    });
}

#[test]
fn a_signal_killed_child_reports_the_signal() {
    common::run("process_signal", common::SECS(30), || {
        let mut p = Process::spawn(|| std::thread::sleep(Duration::from_secs(30))).unwrap();
        p.kill().unwrap();
        let st = p.join().unwrap();
        assert_eq!(st, ExitStatus::Signaled(Signal(libc::SIGKILL)));
        assert_eq!(st.to_string(), "killed by SIGKILL");

        let mut p = Process::spawn(|| std::thread::sleep(Duration::from_secs(20))).unwrap();
        p.terminate().unwrap();
        assert_eq!(p.join().unwrap().signal(), Some(Signal(libc::SIGTERM)));
    });
}

#[test]
fn exit_codes_and_error_messages() {
    common::run("process_codes", common::SECS(30), || {
        assert_eq!(Process::spawn(|| 3).unwrap().join().unwrap(), ExitStatus::Exited(3));
        assert!(Process::spawn(|| ()).unwrap().join().unwrap().success());
        let mut p = Process::spawn(|| -> Result<(), String> { Err("disk full".into()) }).unwrap();
        assert_eq!(p.join().unwrap(), ExitStatus::Failed("disk full".into()));
    });
}

#[test]
fn join_timeout_is_alive_and_drop_kills_and_reaps() {
    common::run("process_timeout_drop", common::SECS(30), || {
        let mut p = Process::spawn(|| std::thread::sleep(Duration::from_secs(30))).unwrap();
        assert!(p.is_alive().unwrap());
        let t0 = Instant::now();
        // Regression (join_timeout_returns_err_timeout): the one timeout shape, not `Ok(None)`.
        assert!(matches!(p.join_timeout(Duration::from_millis(50)), Err(mproc::Error::Timeout)));
        assert!(t0.elapsed() >= Duration::from_millis(50));
        let pid = p.pid();
        drop(p); // kills and reaps
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists(), "child {pid} survived drop");

        let mut q = Process::spawn(|| ()).unwrap();
        let st = q.join_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(st, ExitStatus::Exited(0));
        assert!(!q.is_alive().unwrap());
    });
}

#[test]
fn the_child_works_on_a_copy_and_never_runs_the_parents_destructors() {
    common::run("process_copy", common::SECS(30), || {
        struct Loud(mproc::RawValue<u32>);
        impl Drop for Loud {
            fn drop(&mut self) {
                self.0.fetch_add(1);
            }
        }
        let drops = mproc::RawValue::new(0u32).unwrap();
        let loud = Loud(drops.clone());
        let mut local = vec![1, 2, 3];
        let mut p = Process::spawn(|| {
            let _ = &loud; // the child sees the parent's object...
            local.push(4); // ...and changes only its own copy of ordinary memory
            local.len() as i32
        })
        .unwrap();
        assert_eq!(p.join().unwrap().code(), Some(4));
        assert_eq!(local, vec![1, 2, 3]);
        assert_eq!(drops.load(), 0, "the child ran a destructor of the parent's");
        drop(loud);
        assert_eq!(drops.load(), 1);
    });
}

#[test]
fn child_dies_with_its_parent() {
    common::run("process_pdeathsig", common::SECS(30), || {
        let grandchild = mproc::RawValue::new(0i32).unwrap();
        let mut middle = Process::spawn(|| {
            let g = Process::spawn(|| std::thread::sleep(Duration::from_secs(30))).unwrap();
            grandchild.store(g.pid());
            std::mem::forget(g); // leave it running; only PR_SET_PDEATHSIG can stop it now
            0
        })
        .unwrap();
        assert!(middle.join().unwrap().success());
        let pid = grandchild.load();
        assert!(pid > 0);
        let deadline = Instant::now() + Duration::from_secs(5);
        // The orphan is reaped by init (or the nearest subreaper) once SIGKILL lands.
        while std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z")) {
            assert!(Instant::now() < deadline, "grandchild {pid} outlived its parent");
            std::thread::sleep(Duration::from_millis(5));
        }
    });
}

#[test]
fn a_child_of_a_threaded_fork_spawns_although_another_thread_held_stdout() {
    // Regression: a child forked while another thread of the parent held stdout's lock (the test
    // harness holds it whenever it prints a result) has one thread, so its own spawn took it for
    // single-threaded and flushed stdout, waiting forever on a lock whose owner is not in it.
    common::run("process_stdout_held", common::SECS(30), || {
        let (held, ready) = std::sync::mpsc::channel();
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let holder = std::thread::spawn(move || {
            let lock = std::io::stdout().lock();
            held.send(()).unwrap();
            let _ = wait.recv();
            drop(lock);
        });
        ready.recv().unwrap();
        let mut middle = Process::spawn(|| {
            let mut g = Process::spawn(|| 7).unwrap();
            g.join_timeout(Duration::from_secs(10)).unwrap().code().unwrap_or(-1)
        })
        .unwrap();
        let st = middle.join_timeout(Duration::from_secs(10));
        release.send(()).unwrap();
        holder.join().unwrap();
        assert_eq!(st.unwrap(), ExitStatus::Exited(7), "the child deadlocked on the inherited stdout lock");
    });
}
