//! Named segments across unrelated processes; size limits; arenas; cleanup.

mod common;

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

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
    assert!(seg.get::<AtomicU64>(4096).is_err());
    assert!(seg.get::<AtomicU64>(3).is_err());
    assert!(seg.get::<AtomicU64>(4088).is_ok());
    assert!(seg.read::<u64>(4089).is_err());
    assert!(seg.write::<u64>(4089, 1).is_err());
    assert!(seg.write::<u64>(4088, 1).is_ok());
}

/// The holes behind `Segment::get::<u64>` / `::<bool>` (compile_fail doctests on `get`): plain data
/// is copied in and out instead of borrowed, at any offset, and the copy sees what another
/// process wrote.
#[test]
fn segment_read_and_write_copy_plain_data_between_processes() {
    common::run("segment_read_write", common::SECS(30), || {
        let seg = Segment::anonymous(4096).unwrap();
        seg.write(8, 0x0102_0304_0506_0708u64).unwrap();
        let mut p = mproc::Process::spawn(|| {
            assert_eq!(seg.read::<u64>(8).unwrap(), 0x0102_0304_0506_0708);
            seg.write(3, [1.5f32, -2.0, 7.25]).unwrap(); // unaligned: copied byte by byte
            seg.write(64, u64::MAX).unwrap();
            // The byte a `bool` would live in can hold anything; reading it as `u8` is fine.
            seg.write(100, 2u8).unwrap();
        })
        .unwrap();
        assert!(p.join().unwrap().success());
        assert_eq!(seg.read::<[f32; 3]>(3).unwrap(), [1.5, -2.0, 7.25]);
        assert_eq!(seg.read::<u64>(64).unwrap(), u64::MAX);
        assert_eq!(seg.get::<AtomicU64>(64).unwrap().load(Ordering::Relaxed), u64::MAX);
        assert_eq!(seg.read::<u8>(100).unwrap(), 2);
    });
}

/// A reader copying while another thread writes: no data race (the copy is made of relaxed atomic
/// accesses), and every word read is one some writer stored (`Plain` tolerates a torn mix of
/// words, never of bytes within an aligned word).
#[test]
fn segment_read_during_a_concurrent_write_sees_whole_words() {
    common::run("segment_read_concurrent", common::SECS(60), || {
        let seg = Segment::anonymous(4096).unwrap();
        let stop = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                let mut i = 0u8;
                while !stop.load(Ordering::Relaxed) {
                    i = i.wrapping_add(1);
                    seg.write(0, [u64::from(i) * 0x0101_0101_0101_0101; 4]).unwrap();
                }
            });
            // Stops the writer even if an assertion below fails (the scope joins it).
            struct Stop<'a>(&'a std::sync::atomic::AtomicBool);
            impl Drop for Stop<'_> {
                fn drop(&mut self) {
                    self.0.store(true, Ordering::Relaxed);
                }
            }
            let _stop = Stop(&stop);
            for _ in 0..20_000 {
                let v = seg.read::<[u64; 4]>(0).unwrap();
                for w in v {
                    // Each word is a byte repeated 8 times: a torn word would mix two bytes.
                    assert_eq!(w, (w & 0xff) * 0x0101_0101_0101_0101, "torn word {w:#x}");
                }
            }
        });
    });
}

#[test]
fn an_arena_packs_objects_on_separate_cache_lines_and_reports_when_full() {
    let arena = Arena::new(4096).unwrap();
    let a = mproc::RawValue::new_in(&arena, 1u64).unwrap();
    let b = mproc::RawValue::new_in(&arena, 2u64).unwrap();
    let f1 = mproc::Flag::new_in(&arena).unwrap();
    let f2 = mproc::Flag::new_in(&arena).unwrap();
    assert_eq!((a.load(), b.load(), f1.is_set(), f2.is_set()), (1, 2, false, false));
    let big = arena.alloc_zeroed_slice::<AtomicU8>(1 << 20);
    assert!(matches!(big, Err(Error::ArenaFull { .. })), "{big:?}");
}

#[test]
fn stale_segments_of_dead_processes_are_cleaned() {
    common::run("segment_cleanup", common::SECS(30), || {
        // A child creates a named segment, hands it on (so its guardian leaves it alone) and is
        // killed: only `cleanup_stale` removes it then.
        let name = mproc::Value::new([0u8; 32]).unwrap();
        let mut p = mproc::Process::spawn(|| {
            let seg = Segment::create_named(4096).unwrap();
            seg.persist().unwrap();
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

#[test]
fn bad_segment_names_are_refused_with_the_reason() {
    let reason = |name: &str| match Segment::open(name) {
        Err(e @ Error::BadSegmentName { .. }) => e.to_string(),
        other => panic!("{name:?}: expected BadSegmentName, got {other:?}"),
    };
    let long = "a".repeat(256);
    let msg = reason(&long);
    assert!(msg.contains("256 bytes long") && msg.contains("at most 255"), "{msg}");
    assert!(reason("mproc/x").contains("contains `/`"));
    assert!(reason("/a/b").contains("contains `/`"));
    assert!(reason("a\0b").contains("NUL"));
    assert!(reason("").contains("empty"));
    assert!(reason("/").contains("empty"));
    assert!(reason("..").contains("not names"));
    // 255 bytes is a valid name, just not there.
    assert!(matches!(Segment::open(&"a".repeat(255)), Err(Error::SegmentNotFound { .. })));
    assert!(matches!(Segment::unlink("a/b"), Err(Error::BadSegmentName { .. })));
}

#[test]
fn a_missing_segment_is_named_in_the_error() {
    match Segment::open("/mproc-0-nosuchsegment") {
        Err(e @ Error::SegmentNotFound { .. }) => {
            let Error::SegmentNotFound { name } = &e else { unreachable!() };
            assert_eq!(name, "mproc-0-nosuchsegment");
            assert!(e.to_string().contains("no shared segment named mproc-0-nosuchsegment"), "{e}");
        }
        other => panic!("expected SegmentNotFound, got {other:?}"),
    }
}

#[test]
fn another_users_segment_is_permission_denied_naming_owner_and_mode() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root to create a segment another user may not open");
        return;
    }
    common::run("segment_permission", common::SECS(30), || {
        let seg = Segment::create_named(4096).unwrap();
        let name = seg.name().unwrap().to_owned();
        let mut child = mproc::Process::builder()
            .user(65534, 65534)
            .spawn(|| -> Result<(), String> {
                match Segment::open(&name) {
                    Err(e @ Error::SegmentPermissionDenied { owner: Some(0), mode: Some(0o600), uid: 65534, .. }) => {
                        let msg = e.to_string();
                        if msg.contains(&name) && msg.contains("uid 65534") && msg.contains("mode 0600") {
                            Ok(())
                        } else {
                            Err(format!("unclear message: {msg}"))
                        }
                    }
                    other => Err(format!("expected SegmentPermissionDenied, got {other:?}")),
                }
            })
            .unwrap();
        assert!(child.join().unwrap().success(), "{:?}", child.exit_status());
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
