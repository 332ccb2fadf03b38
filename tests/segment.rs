//! Named segments across unrelated processes; size limits; arenas; cleanup.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};

use mproc::{Arena, Error, Segment};

#[test]
fn a_named_segment_written_here_is_read_by_an_unrelated_executable() {
    common::run("segment_named_unrelated", common::SECS(30), || {
        let seg = Segment::create_named(1 << 16).unwrap();
        let name = seg.name().unwrap().to_owned();
        assert!(name.len() < 31 && name.starts_with("mproc-"), "{name}");
        let msg = format!("hello from pid {}", std::process::id());
        // SAFETY: no other process has the segment yet.
        unsafe { seg.as_bytes_mut()[64..64 + msg.len()].copy_from_slice(msg.as_bytes()) };
        // The reader is this test binary started again (exec'd, so it shares no mapping with us):
        // it only knows the segment's name.
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "reader_of_a_named_segment", "--nocapture", "--quiet"])
            .env("MPROC_TEST_SEGMENT", &name)
            .output()
            .expect("run the test binary as the reader");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(said.lines().any(|l| l == format!("read: {msg}")), "{said}");
        assert!(std::path::Path::new(&format!("/dev/shm/{name}")).exists());
        drop(seg);
        assert!(!std::path::Path::new(&format!("/dev/shm/{name}")).exists(), "creator did not unlink");
    });
}

#[test]
fn only_the_creator_unlinks_a_forked_child_dropping_its_copy_does_not() {
    common::run("segment_child_drop", common::SECS(30), || {
        let seg = Segment::create_named(4096).unwrap();
        let name = seg.name().unwrap().to_owned();
        let mut p = mproc::Process::spawn(|| {
            let copy = seg.clone();
            drop(copy); // the child's handle; must leave the name alone
            let other = Segment::open(&name).unwrap();
            other.get::<AtomicU64>(8).unwrap().store(99, Ordering::Release);
            drop(other);
        })
        .unwrap();
        assert!(p.join().unwrap().success());
        let again = Segment::open(&name).expect("still there after the child dropped its handles");
        assert_eq!(again.get::<AtomicU64>(8).unwrap().load(Ordering::Acquire), 99);
    });
}

#[test]
fn a_segment_larger_than_dev_shm_can_hold_is_an_error_not_sigbus() {
    common::run("segment_too_large", common::SECS(30), || {
        let free = free_dev_shm();
        let want = free + (1 << 30);
        match Segment::create_named(want as usize) {
            Err(Error::SegmentTooLarge { requested, available }) => {
                assert!(requested >= want && available < requested, "{requested} {available}");
            }
            other => panic!("expected SegmentTooLarge, got {other:?}"),
        }
        // Anonymous: far past what memory can back.
        assert!(matches!(Segment::anonymous(1 << 46), Err(Error::SegmentTooLarge { .. })));
        assert!(matches!(Segment::anonymous(0), Err(Error::InvalidArgument(_))));
    });
}

fn free_dev_shm() -> u64 {
    let out = std::process::Command::new("df").args(["-B1", "--output=avail", "/dev/shm"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).lines().nth(1).unwrap().trim().parse().unwrap()
}

#[test]
fn opening_a_missing_segment_and_bad_offsets_are_clear_errors() {
    assert!(matches!(Segment::open("mproc-0-doesnotexist"), Err(Error::SegmentNotFound { .. })));
    let seg = Segment::anonymous(4096).unwrap();
    assert!(seg.get::<u64>(4096).is_err());
    assert!(seg.get::<u64>(3).is_err());
    assert!(seg.get::<u64>(4088).is_ok());
}

#[test]
fn an_arena_packs_objects_on_separate_cache_lines_and_reports_when_full() {
    let arena = Arena::new(4096).unwrap();
    let a = mproc::RawValue::new_in(&arena, 1u64).unwrap();
    let b = mproc::RawValue::new_in(&arena, 2u64).unwrap();
    let f1 = mproc::Flag::new_in(&arena).unwrap();
    let f2 = mproc::Flag::new_in(&arena).unwrap();
    assert_eq!((a.load(), b.load(), f1.is_set(), f2.is_set()), (1, 2, false, false));
    let big = arena.alloc_zeroed_slice::<u8>(1 << 20);
    assert!(matches!(big, Err(Error::ArenaFull { .. })), "{big:?}");
}

#[test]
fn stale_segments_of_dead_processes_are_cleaned() {
    common::run("segment_cleanup", common::SECS(30), || {
        // A child creates a named segment and is killed before it can unlink it.
        let name = mproc::Value::new([0u8; 32]).unwrap();
        let mut p = mproc::Process::spawn(|| {
            let seg = Segment::create_named(4096).unwrap();
            let n = seg.name().unwrap().as_bytes();
            name.lock().unwrap()[..n.len()].copy_from_slice(n);
            // SAFETY: raising a signal has no memory-safety preconditions.
            unsafe { libc::raise(libc::SIGKILL) };
        })
        .unwrap();
        assert_eq!(p.join().unwrap().signal(), Some(mproc::Signal(libc::SIGKILL)));
        let raw = name.get().unwrap();
        let leaked = String::from_utf8_lossy(&raw).trim_end_matches('\0').to_owned();
        assert!(std::path::Path::new(&format!("/dev/shm/{leaked}")).exists(), "{leaked}");
        let removed = Segment::cleanup_stale().unwrap();
        assert!(removed.contains(&leaked), "{removed:?}");
        assert!(!std::path::Path::new(&format!("/dev/shm/{leaked}")).exists());
    });
}

/// Not a test on its own: the unrelated reader of the test above (does nothing unless it was
/// started by it with the segment's name).
#[test]
fn reader_of_a_named_segment() {
    let Ok(name) = std::env::var("MPROC_TEST_SEGMENT") else { return };
    let seg = Segment::open(&name).unwrap();
    // SAFETY: the writer finished before starting this process and writes nothing more.
    let bytes = unsafe { seg.as_bytes() };
    let text: Vec<u8> = bytes[64..].iter().copied().take_while(|&b| b != 0).collect();
    println!("read: {}", String::from_utf8_lossy(&text));
}
