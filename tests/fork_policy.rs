//! Forking a multi-threaded process is refused unless allowed. Its own binary: the policy is
//! process-wide and the other test binaries allow threads.

use std::sync::mpsc;

use mproc::{Error, ForkPolicy, Process};

#[test]
fn forking_with_other_threads_running_is_refused_unless_the_caller_opts_in() {
    let (tx, rx) = mpsc::channel::<()>();
    let busy = std::thread::spawn(move || {
        let _ = rx.recv();
    });
    match Process::spawn(|| ()) {
        Err(Error::MultiThreaded { threads }) => assert!(threads >= 2),
        other => panic!("expected MultiThreaded, got {other:?}"),
    }
    // SAFETY: the other thread is blocked in `recv` and holds no lock; the child only returns.
    let allow = unsafe { ForkPolicy::allow_threads() };
    let mut p = Process::builder().fork_policy(allow).spawn(|| 5).unwrap();
    assert_eq!(p.join().unwrap().code(), Some(5));
    drop(tx);
    busy.join().unwrap();
}

/// Regression (threaded_fork_child_flushes_stdout): a child forked under the threads opt-in used
/// to flush stdout in `exit_now`, blocking forever on the lock another thread of the parent held
/// at the fork. Now mproc takes no lock in such a child.
#[test]
fn a_child_forked_beside_a_thread_holding_stdout_exits_without_taking_its_lock() {
    let (locked_tx, locked_rx) = mpsc::channel::<()>();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let holder = std::thread::spawn(move || {
        let _out = std::io::stdout().lock();
        locked_tx.send(()).unwrap();
        let _ = done_rx.recv();
    });
    locked_rx.recv().unwrap();
    // SAFETY: the other threads are idle (blocked in `recv`); the one holding stdout's lock holds
    // a lock that neither the child's code (it only returns) nor mproc takes in such a child.
    let allow = unsafe { ForkPolicy::allow_threads() };
    let mut p = Process::builder().fork_policy(allow).spawn(|| 7).unwrap();
    let status = p.join_timeout(std::time::Duration::from_secs(10));
    drop(done_tx);
    holder.join().unwrap();
    assert_eq!(status.expect("the child hung at exit").code(), Some(7));
}
