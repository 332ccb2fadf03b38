//! Helpers shared by the integration tests (anything that forks lives in `tests/`).
//!
//! Every test body runs through [`run`], which:
//! - serialises the tests of one binary (each checks that *it* left no child behind, which only
//!   means something if no other test of the same process forks at the same time);
//! - arms a watchdog that aborts the whole test binary if the body overruns its limit, so a
//!   regression that would hang fails instead (children die with it: PR_SET_PDEATHSIG);
//! - afterwards asserts that no child process of this one and no `/dev/shm` segment created by
//!   this process is left.
#![allow(dead_code)]

use std::sync::Mutex;
use std::sync::mpsc;
use std::time::Duration;

static SERIAL: Mutex<()> = Mutex::new(());

/// Runs `body` under the serial lock and a watchdog of `limit`, then checks for leaks.
pub fn run<R>(name: &str, limit: Duration, body: impl FnOnce() -> R) -> R {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    // SAFETY: the harness's other threads are idle while a test body forks: the other tests'
    // threads are blocked on SERIAL (holding nothing), the harness's main thread waits on its
    // result channel or prints a finished test's result (holding stdout's lock, which a child of a
    // multi-threaded fork, and every child of that child, never takes), and the watchdog below
    // sleeps in `recv_timeout`. None holds a lock a child takes (each test thread has its own
    // output-capture buffer) or is midway through data a child reads.
    mproc::set_fork_policy(unsafe { mproc::ForkPolicy::allow_threads() });
    let (done, wait) = mpsc::channel::<()>();
    let label = name.to_owned();
    let dog = std::thread::spawn(move || {
        if let Err(mpsc::RecvTimeoutError::Timeout) = wait.recv_timeout(limit) {
            // Straight to stderr, not `eprintln!`: the harness captures that per test, and the
            // capture is lost when the process aborts.
            use std::io::Write;
            let _ =
                writeln!(std::io::stderr(), "watchdog: test {label} ran past {limit:?}; aborting instead of hanging");
            std::process::abort();
        }
    });
    let r = body();
    drop(done);
    let _ = dog.join();
    assert_clean(name);
    r
}

/// Pids of this process's children (live or zombie), from /proc.
pub fn children() -> Vec<i32> {
    let me = std::process::id() as i32;
    let mut kids = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else { return kids };
    for e in dir.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        // Fields after the command name (which may hold spaces) start after the last ')'.
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else { continue };
        let mut f = rest.split_whitespace();
        let (_state, ppid) = (f.next(), f.next().and_then(|p| p.parse::<i32>().ok()));
        if ppid == Some(me) {
            kids.push(pid);
        }
    }
    kids
}

/// Named segments in /dev/shm created by this process.
pub fn my_segments() -> Vec<String> {
    let prefix = format!("mproc-{}-", std::process::id());
    std::fs::read_dir("/dev/shm")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(&prefix))
                .collect()
        })
        .unwrap_or_default()
}

/// Asserts no child process and no segment of ours is left.
pub fn assert_clean(name: &str) {
    let kids = children();
    assert!(kids.is_empty(), "{name}: child processes left behind: {kids:?}");
    let segs = my_segments();
    assert!(segs.is_empty(), "{name}: /dev/shm segments left behind: {segs:?}");
}

/// A temporary directory for one test, removed on drop.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("mproc-test-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub const SECS: fn(u64) -> Duration = Duration::from_secs;
