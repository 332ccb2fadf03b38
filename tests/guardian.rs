//! The guardian: a SIGKILLed creator's named segments are removed within a second; a living
//! creator's never are; persisted ones survive; the guardian ends with its creator and holds
//! nothing open. And children spawned from a helper thread live until joined.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use mproc::{ExitStatus, Process, Segment, Signal};

/// What a creator child reports to the test through an anonymous segment.
struct Report {
    seg: Segment,
}

const READY: usize = 0;
const GUARDIAN: usize = 8;
const NAME: usize = 64;

impl Report {
    fn new() -> Report {
        Report { seg: Segment::anonymous(4096).unwrap() }
    }

    /// Child side: the segment's name and the guardian's pid, then "ready".
    fn tell(&self, seg: &Segment) {
        let name = seg.name().unwrap().as_bytes();
        let mut buf = [0u8; 64];
        buf[..name.len()].copy_from_slice(name);
        self.seg.write(NAME, buf).unwrap();
        self.seg.write(GUARDIAN, Segment::guardian_pid().unwrap_or(0)).unwrap();
        self.seg.get::<AtomicU32>(READY).unwrap().store(1, Ordering::Release);
    }

    /// Test side: waits for the report; the name and the guardian's pid.
    fn wait(&self) -> (String, i32) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.seg.get::<AtomicU32>(READY).unwrap().load(Ordering::Acquire) == 0 {
            assert!(Instant::now() < deadline, "the creator never reported");
            std::thread::sleep(Duration::from_millis(1));
        }
        let raw = self.seg.read::<[u8; 64]>(NAME).unwrap();
        let name = String::from_utf8_lossy(&raw).trim_end_matches('\0').to_owned();
        (name, self.seg.read::<i32>(GUARDIAN).unwrap())
    }
}

fn exists(name: &str) -> bool {
    Path::new(&format!("/dev/shm/{name}")).exists()
}

/// Running (not gone, not a zombie waiting for init to reap it).
fn running(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.rfind(')').and_then(|i| stat[i + 1..].split_whitespace().next()) != Some("Z"),
        Err(_) => false,
    }
}

/// Polls `cond` until it holds or `limit` passes; the time it took.
fn within(limit: Duration, mut cond: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if cond() {
            return Some(start.elapsed());
        }
        if start.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn a_sigkilled_creators_named_segment_is_gone_within_a_second() {
    common::run("guardian_sigkill", common::SECS(30), || {
        let report = Report::new();
        let mut creator = Process::spawn(|| {
            let seg = Segment::create_named(1 << 16).unwrap();
            report.tell(&seg);
            std::thread::sleep(Duration::from_secs(30));
        })
        .unwrap();
        let (name, guardian) = report.wait();
        assert!(exists(&name), "{name}");
        assert!(guardian > 0 && running(guardian), "no guardian: {guardian}");
        creator.kill().unwrap();
        let killed = Instant::now();
        assert_eq!(creator.join().unwrap().signal(), Some(Signal(libc::SIGKILL)));
        let took = within(Duration::from_secs(1), || !exists(&name));
        assert!(took.is_some(), "{name} still in /dev/shm 1 s after its creator was killed");
        assert!(within(Duration::from_secs(1), || !running(guardian)).is_some(), "guardian {guardian} lingers");
        eprintln!("removed {:?} after the kill", killed.elapsed());
    });
}

#[test]
fn a_living_creators_segment_is_never_removed() {
    common::run("guardian_living", common::SECS(30), || {
        let seg = Segment::create_named(4096).unwrap();
        let name = seg.name().unwrap().to_owned();
        seg.write(0, 0xfeed_f00du64).unwrap();
        let guardian = Segment::guardian_pid().expect("a guardian runs while a named segment lives");
        assert!(running(guardian));
        // A second segment created on a helper thread that then ends: the guardian follows the
        // process, not the thread (a parent-death signal would have fired here).
        let other = std::thread::spawn(|| Segment::create_named(4096).unwrap()).join().unwrap();
        assert_eq!(Segment::guardian_pid(), Some(guardian), "one guardian per process");
        std::thread::sleep(Duration::from_secs(2));
        assert!(running(guardian));
        assert!(exists(&name) && exists(other.name().unwrap()));
        let again = Segment::open(&name).unwrap();
        assert_eq!(again.read::<u64>(0).unwrap(), 0xfeed_f00d);
        // A forked child sees the parent's segments but has no guardian of its own for them.
        let mut child = Process::spawn(|| {
            assert_eq!(Segment::guardian_pid(), None);
            drop(Segment::open(&name).unwrap());
        })
        .unwrap();
        assert!(child.join().unwrap().success());
        assert!(exists(&name));
        drop((seg, again, other));
        assert!(!exists(&name));
        // The last named segment gone: the guardian is stopped and reaped.
        assert_eq!(Segment::guardian_pid(), None);
        assert!(!running(guardian));
    });
}

#[test]
fn a_persisted_segment_survives_its_creators_sigkill() {
    common::run("guardian_persist", common::SECS(30), || {
        let report = Report::new();
        let mut creator = Process::spawn(|| {
            let seg = Segment::create_named(4096).unwrap();
            seg.write(0, 77u64).unwrap();
            seg.persist().unwrap();
            seg.persist().unwrap(); // twice is harmless
            report.tell(&seg);
            std::thread::sleep(Duration::from_secs(30));
        })
        .unwrap();
        let (name, guardian) = report.wait();
        assert_eq!(guardian, 0, "a persisted segment needs no guardian");
        creator.kill().unwrap();
        // Dead but not reaped until the checks are done: `Segment::cleanup_stale` (`mproc shm
        // clean`, or a test of another program running at the same time) removes the segments of
        // creators that no longer exist, persisted or not, and a zombie's pid still exists. A
        // guardian, had the creator one, would learn of the death all the same: its pidfd becomes
        // readable and it is reparented when the creator exits, not when it is reaped.
        let pid = creator.pid();
        assert!(within(Duration::from_secs(5), || !running(pid)).is_some(), "creator {pid} survived SIGKILL");
        std::thread::sleep(Duration::from_millis(1500));
        assert!(exists(&name), "persisted {name} was removed");
        let seg = Segment::open(&name).unwrap();
        assert_eq!(seg.read::<u64>(0).unwrap(), 77);
        assert_eq!(creator.join().unwrap().signal(), Some(Signal(libc::SIGKILL)));
        assert!(matches!(seg.persist(), Err(mproc::Error::Misuse(_))), "only the creator persists");
        drop(seg);
        Segment::unlink(&name).unwrap();
        assert!(!exists(&name));
        assert!(matches!(Segment::unlink(&name), Err(mproc::Error::SegmentNotFound { .. })));
    });
}

#[test]
fn the_guardian_ends_with_its_creator_and_holds_no_descriptor_of_its() {
    common::run("guardian_exit", common::SECS(30), || {
        let report = Report::new();
        let go = Segment::anonymous(4096).unwrap();
        let mut creator = Process::spawn(|| {
            // A pipe of the creator's (like the stdout a shell reads): the guardian must not hold it.
            let mut fds = [0; 2];
            // SAFETY: `fds` has room for the two descriptors.
            assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
            let seg = Segment::create_named(4096).unwrap();
            report.tell(&seg);
            while go.get::<AtomicU32>(0).unwrap().load(Ordering::Acquire) == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
            // Ends normally without dropping it: the name is still registered.
            std::mem::forget(seg);
        })
        .unwrap();
        let (name, guardian) = report.wait();
        let fds = || -> Vec<String> {
            std::fs::read_dir(format!("/proc/{guardian}/fd"))
                .unwrap()
                .flatten()
                .map(|e| std::fs::read_link(e.path()).map(|p| p.display().to_string()).unwrap_or_default())
                .collect()
        };
        // It closes what it inherited right after the fork, which may be a moment after the report.
        let only_its_pidfd = || {
            let f = fds();
            f.len() <= 1 && f.iter().all(|l| l.contains("pidfd"))
        };
        assert!(within(Duration::from_secs(1), only_its_pidfd).is_some(), "guardian holds {:?}", fds());
        go.get::<AtomicU32>(0).unwrap().store(1, Ordering::Release);
        assert_eq!(creator.join().unwrap(), ExitStatus::Exited(0));
        assert!(within(Duration::from_secs(1), || !exists(&name)).is_some(), "{name} outlived its creator's exit");
        assert!(within(Duration::from_secs(1), || !running(guardian)).is_some(), "guardian {guardian} lingers");
    });
}

#[test]
fn a_process_spawned_from_a_helper_thread_lives_until_joined() {
    common::run("pdeathsig_thread", common::SECS(30), || {
        let done = Segment::anonymous(4096).unwrap();
        let done = &done;
        let mut child = std::thread::scope(|s| {
            s.spawn(|| {
                Process::spawn(|| {
                    // Outlive the thread that spawned us by a wide margin.
                    std::thread::sleep(Duration::from_millis(500));
                    done.get::<AtomicU32>(0).unwrap().store(1, Ordering::Release);
                })
                .unwrap()
            })
            .join()
            .unwrap()
        });
        // The spawning thread has ended; the child must still be running.
        std::thread::sleep(Duration::from_millis(100));
        assert!(child.is_alive().unwrap(), "the child died with the thread that spawned it");
        assert_eq!(child.join().unwrap(), ExitStatus::Exited(0));
        assert_eq!(done.get::<AtomicU32>(0).unwrap().load(Ordering::Acquire), 1);
    });
}

#[test]
fn a_child_spawned_from_a_helper_thread_still_dies_with_the_process() {
    common::run("pdeathsig_thread_process", common::SECS(30), || {
        let report = Report::new();
        // The middle process spawns a grandchild from a helper thread, reports its pid, and is
        // SIGKILLed: the grandchild must die with it.
        let mut middle = Process::spawn(|| {
            let pid = std::thread::spawn(|| {
                let p = Process::spawn(|| std::thread::sleep(Duration::from_secs(30))).unwrap();
                let pid = p.pid();
                std::mem::forget(p);
                pid
            })
            .join()
            .unwrap();
            report.seg.write(GUARDIAN, pid).unwrap();
            report.seg.get::<AtomicU32>(READY).unwrap().store(1, Ordering::Release);
            std::thread::sleep(Duration::from_secs(30));
        })
        .unwrap();
        let (_, grandchild) = report.wait();
        std::thread::sleep(Duration::from_millis(100));
        assert!(running(grandchild), "the grandchild died with its spawning thread");
        middle.kill().unwrap();
        middle.join().unwrap();
        assert!(
            within(Duration::from_secs(1), || !running(grandchild)).is_some(),
            "grandchild {grandchild} outlived its parent process"
        );
    });
}

#[test]
fn a_sigkilled_creators_guarded_file_is_removed_and_a_dropped_one_at_once() {
    common::run("guardian_file", common::SECS(30), || {
        let tmp = common::TempDir::new("guarded");
        let path = tmp.0.join("count.lock");
        let ready = mproc::Flag::new().unwrap();
        let mut creator = Process::spawn(|| -> mproc::Result<()> {
            let f = mproc::GuardedFile::new(&path)?;
            std::fs::write(f.path(), b"held")?;
            ready.set();
            std::thread::sleep(Duration::from_secs(60));
            drop(f);
            Ok(())
        })
        .unwrap();
        let t = Instant::now();
        while !ready.is_set() {
            assert!(t.elapsed() < Duration::from_secs(10), "the creator never started");
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(path.exists());
        creator.kill().unwrap();
        assert_eq!(creator.join().unwrap(), ExitStatus::Signaled(Signal(libc::SIGKILL)));
        let took = within(Duration::from_secs(1), || !path.exists());
        assert!(took.is_some(), "the guarded file outlived its creator by a second");
        // In this process: removed on drop.
        let mine = tmp.0.join("mine.txt");
        let f = mproc::GuardedFile::new(&mine).unwrap();
        std::fs::write(&mine, b"x").unwrap();
        drop(f);
        assert!(!mine.exists());
    });
}
