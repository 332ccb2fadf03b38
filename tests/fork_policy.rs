//! Forking a multi-threaded process is refused unless allowed. Its own binary: the policy is
//! process-wide and the other test binaries set it to AllowThreads.

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
    let mut p = Process::builder().fork_policy(ForkPolicy::AllowThreads).spawn(|| 5).unwrap();
    assert_eq!(p.join().unwrap().code(), Some(5));
    drop(tx);
    busy.join().unwrap();
}
