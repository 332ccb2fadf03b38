//! Named arenas: objects created by one program and opened by name in separately started ones
//! (this test binary run again with an environment variable naming the arena); exact counts
//! through a named queue; the wrong type, `T`, size, layout or segment is an error; corrupted
//! segments give errors, never panics or hangs (a property test over many seeds); mode 0600 and
//! another user cannot open one; a SIGKILLed creator's arena is removed by its guardian.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use mproc::{
    Array, Barrier, BoundedSemaphore, Condition, Error, Event, Flag, JoinableQueue, Lock, NamedArena, ObjectKind,
    Process, Progress, Queue, RLock, RawArray, RawValue, Segment, Semaphore, Value,
};

/// A name the leak check of `common::run` covers (it looks for `mproc-<pid>-…`).
fn arena_name(tag: &str) -> String {
    format!("mproc-{}-{tag}", std::process::id())
}

fn exists(name: &str) -> bool {
    Path::new(&format!("/dev/shm/{name}")).exists()
}

/// Runs this test binary again as an unrelated process running only `test`, with `env` set.
fn rerun(test: &str, env: &[(&str, String)]) -> Command {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args(["--exact", test, "--nocapture", "--quiet", "--test-threads", "1"]);
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

fn output_ok(out: std::process::Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---------------------------------------------------------------------------------------------
// Every kind, opened by an unrelated executable.

const ALL_ENV: &str = "MPROC_TEST_NAMED_ALL";

#[test]
fn every_kind_of_object_is_opened_by_name_in_a_separately_started_executable() {
    common::run("named_every_kind", common::SECS(60), || {
        let name = arena_name("all");
        let arena = NamedArena::create(&name, 1 << 20).unwrap();
        let lock = arena.add("lock", Lock::new_in).unwrap();
        let rlock = arena.add("rlock", RLock::new_in).unwrap();
        let value = arena.add("value", |a| Value::new_in(a, 40u64)).unwrap();
        let raw = arena.add("raw", |a| RawValue::new_in(a, 1.5f64)).unwrap();
        let array = arena.add("array", |a| Array::<u32>::zeroed_in(a, 10)).unwrap();
        let raw_array = arena.add("raw_array", |a| RawArray::<i64>::zeroed_in(a, 1000)).unwrap();
        let event = arena.add("event", Event::new_in).unwrap();
        let sem = arena.add("sem", |a| Semaphore::new_in(a, 0)).unwrap();
        let bsem = arena.add("bsem", |a| BoundedSemaphore::new_in(a, 2)).unwrap();
        let barrier = arena.add("barrier", |a| Barrier::new_in(a, 2)).unwrap();
        let cond = arena.add("cond", Condition::new_in).unwrap();
        let flag = arena.add("flag", Flag::new_in).unwrap();
        let queue = arena.add("queue", |a| Queue::<String>::new_in(a, 16, 64)).unwrap();
        let jq = arena.add("jq", |a| JoinableQueue::<(u32, u64)>::new_in(a, 16, 32)).unwrap();
        let progress = arena.add("progress", |a| Progress::new_in(a, 3)).unwrap();
        bsem.acquire().unwrap();
        queue.put("from the creator".to_owned()).unwrap();
        jq.put((7, 8)).unwrap();

        let kinds: Vec<(String, ObjectKind)> = arena.objects().unwrap().into_iter().map(|o| (o.name, o.kind)).collect();
        assert_eq!(kinds.len(), 15);
        assert_eq!(kinds[12], ("queue".to_owned(), ObjectKind::Queue));
        for o in arena.objects().unwrap() {
            assert!(o.offset % 128 == 0 && o.size > 0, "{o:?}");
        }

        let mut child = rerun("opener_of_every_kind", &[(ALL_ENV, name.clone())]).spawn().unwrap();
        // The barrier needs both sides: the opener waits at it too.
        barrier.wait_timeout(Duration::from_secs(30)).unwrap();
        event.wait_timeout(Duration::from_secs(30)).unwrap();
        // The opener took the queued string and put an answer; it holds the condition's lock
        // only while it notifies.
        let g = cond.lock().unwrap();
        let g = cond.wait_while(g, || !flag.is_set()).unwrap();
        drop(g);
        assert_eq!(queue.get_timeout(Duration::from_secs(30)).unwrap(), "from the opener");
        let status = child.wait().unwrap();
        assert!(status.success(), "opener failed: {status}");
        assert_eq!(value.get().unwrap(), 42);
        assert_eq!(raw.load(), 4.0);
        assert_eq!(array.to_vec().unwrap()[9], 9);
        assert_eq!(raw_array.load(999), -999);
        assert!(sem.try_acquire());
        assert_eq!(bsem.value(), 2, "the opener released the permit the creator took");
        assert_eq!(jq.unfinished(), 0, "the opener marked the item done");
        assert_eq!(progress.total(), 5);
        assert!(lock.stats().acquisitions >= 1, "{:?}", lock.stats());
        assert!(rlock.stats().acquisitions >= 2, "{:?}", rlock.stats());
        drop(arena);
        assert!(exists(&name), "the objects still hold the segment");
        drop((lock, rlock, value, raw, array, raw_array, event, sem, bsem, barrier, cond, flag, queue, jq, progress));
        assert!(!exists(&name), "the creator's last handle unlinks it");
    });
}

/// Not a test on its own: the unrelated opener of the test above.
#[test]
fn opener_of_every_kind() {
    let Ok(name) = std::env::var(ALL_ENV) else { return };
    common::run("opener_of_every_kind", common::SECS(40), || {
        let arena = NamedArena::open(&name).unwrap();
        {
            let lock: Lock = arena.get("lock").unwrap();
            drop(lock.lock().unwrap());
            let rlock: RLock = arena.get("rlock").unwrap();
            let g1 = rlock.lock().unwrap();
            let g2 = rlock.lock().unwrap();
            drop((g2, g1));
        }
        *arena.get::<Value<u64>>("value").unwrap().lock().unwrap() += 2;
        arena.get::<RawValue<f64>>("raw").unwrap().fetch_add(2.5);
        arena.get::<Array<u32>>("array").unwrap().lock().unwrap()[9] = 9;
        let ra = arena.get::<RawArray<i64>>("raw_array").unwrap();
        assert_eq!(ra.len(), 1000);
        ra.store(999, -999);
        arena.get::<Semaphore>("sem").unwrap().release().unwrap();
        arena.get::<BoundedSemaphore>("bsem").unwrap().release().unwrap();
        let jq = arena.get::<JoinableQueue<(u32, u64)>>("jq").unwrap();
        assert_eq!(jq.get_timeout(Duration::from_secs(10)).unwrap(), (7, 8));
        jq.task_done().unwrap();
        arena.get::<Progress>("progress").unwrap().add(5);
        let q = arena.get::<Queue<String>>("queue").unwrap();
        assert_eq!(q.get_timeout(Duration::from_secs(10)).unwrap(), "from the creator");
        q.put("from the opener".to_owned()).unwrap();
        arena.get::<Barrier>("barrier").unwrap().wait_timeout(Duration::from_secs(30)).unwrap();
        arena.get::<Event>("event").unwrap().set();
        let cond = arena.get::<Condition>("cond").unwrap();
        let flag = arena.get::<Flag>("flag").unwrap();
        let g = cond.lock().unwrap();
        flag.set();
        cond.notify_all();
        drop(g);
        // Contention tools' view: the lock inside any object that has one.
        assert!(arena.lock_of("value").unwrap().stats().acquisitions >= 1);
        // A queue's is its consumers' lock: this process's get took it at least once.
        assert!(arena.lock_of("queue").unwrap().stats().acquisitions >= 1);
        assert!(matches!(arena.lock_of("event"), Err(Error::ObjectTypeMismatch { .. })));
    });
}

// ---------------------------------------------------------------------------------------------
// Exactness: 4 producer executables × 250,000 items, 4 consumers, one named queue of 1,024.

const PRODUCER_ENV: &str = "MPROC_TEST_NAMED_PRODUCER";
const PRODUCERS: u64 = 4;
const CONSUMERS: usize = 4;
const ITEMS: u64 = 250_000;

#[test]
fn four_producer_executables_and_four_consumers_pass_a_million_items_exactly_once_through_a_named_queue() {
    common::run("named_exactness", common::SECS(600), || {
        let name = arena_name("exact");
        let arena = NamedArena::create(&name, 1 << 20).unwrap();
        let q = arena.add("items", |a| Queue::<u64>::new_in(a, 1024, 16)).unwrap();
        // Per producer: count and sum of what the consumers got.
        let tally = arena.add("tally", |a| RawArray::<u64>::zeroed_in(a, 2 * PRODUCERS as usize)).unwrap();
        let t0 = Instant::now();
        let consumers: Vec<Process> = (0..CONSUMERS)
            .map(|_| {
                Process::spawn(|| -> Result<(), String> {
                    let mut count = [0u64; PRODUCERS as usize];
                    let mut sum = [0u64; PRODUCERS as usize];
                    loop {
                        match q.get() {
                            Ok(x) => {
                                let (p, i) = ((x >> 32) as usize, x & 0xffff_ffff);
                                if p >= PRODUCERS as usize || i >= ITEMS {
                                    return Err(format!("an item no producer sent: {x:#x}"));
                                }
                                count[p] += 1;
                                sum[p] += i;
                            }
                            Err(Error::Disconnected) => break,
                            Err(e) => return Err(e.to_string()),
                        }
                    }
                    for p in 0..PRODUCERS as usize {
                        tally.fetch_add(2 * p, count[p]);
                        tally.fetch_add(2 * p + 1, sum[p]);
                    }
                    Ok(())
                })
            })
            .collect::<mproc::Result<_>>()
            .unwrap();
        let producers: Vec<std::process::Child> = (0..PRODUCERS)
            .map(|p| {
                rerun("producer_of_a_named_queue", &[(PRODUCER_ENV, format!("{name}:{p}"))])
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for p in producers {
            output_ok(p.wait_with_output().unwrap(), "a producer");
        }
        q.close();
        for mut c in consumers {
            let st = c.join().unwrap();
            assert!(st.success(), "consumer: {st:?}");
        }
        let took = t0.elapsed();
        let want_sum = ITEMS * (ITEMS - 1) / 2;
        for p in 0..PRODUCERS as usize {
            assert_eq!(tally.load(2 * p), ITEMS, "items of producer {p} received");
            assert_eq!(tally.load(2 * p + 1), want_sum, "sum of producer {p}'s items");
        }
        assert!(q.is_empty());
        eprintln!(
            "{} items from {PRODUCERS} producer executables to {CONSUMERS} consumers in {took:?} ({:.2} µs per item)",
            PRODUCERS * ITEMS,
            took.as_secs_f64() * 1e6 / (PRODUCERS * ITEMS) as f64
        );
    });
}

/// Not a test on its own: one producer of the test above (`MPROC_TEST_NAMED_PRODUCER=name:p`).
#[test]
fn producer_of_a_named_queue() {
    let Ok(spec) = std::env::var(PRODUCER_ENV) else { return };
    let (name, p) = spec.rsplit_once(':').unwrap();
    let p: u64 = p.parse().unwrap();
    common::run("producer_of_a_named_queue", common::SECS(500), || {
        let arena = NamedArena::open(name).unwrap();
        let q: Queue<u64> = arena.get("items").unwrap();
        for i in 0..ITEMS {
            q.put(p << 32 | i).unwrap();
        }
    });
}

// ---------------------------------------------------------------------------------------------
// Publication: an object being built is waited for (bounded), never seen half-made.

#[test]
fn an_opener_waits_for_an_object_still_being_built_and_gives_up_after_its_bound() {
    common::run("named_publication", common::SECS(30), || {
        let name = arena_name("slow");
        let arena = NamedArena::create(&name, 1 << 16).unwrap();
        let patient = NamedArena::open(&name).unwrap();
        let hasty = NamedArena::open_timeout(&name, Duration::from_millis(20)).unwrap();
        let building = std::sync::Barrier::new(2);
        std::thread::scope(|s| {
            let creator = s.spawn(|| {
                arena
                    .add("slow", |a| {
                        let v = Value::new_in(a, 7u64)?;
                        building.wait();
                        std::thread::sleep(Duration::from_millis(200));
                        Ok(v)
                    })
                    .unwrap()
            });
            building.wait();
            let t = Instant::now();
            match hasty.get::<Value<u64>>("slow") {
                Err(e @ Error::NotReady { .. }) => assert!(e.to_string().contains("slow"), "{e}"),
                other => panic!("expected NotReady, got {other:?}"),
            }
            assert!(t.elapsed() < Duration::from_millis(150), "bounded by the 20 ms wait: {:?}", t.elapsed());
            assert_eq!(patient.get::<Value<u64>>("slow").unwrap().get().unwrap(), 7, "complete once seen");
            assert!(t.elapsed() >= Duration::from_millis(150), "it waited for the creator");
            creator.join().unwrap();
        });
        // A name that is not there yet is waited for, bounded, by get_timeout.
        let t = Instant::now();
        assert!(matches!(
            patient.get_timeout::<Lock>("later", Duration::from_millis(50)),
            Err(Error::ObjectNotFound { .. })
        ));
        assert!(t.elapsed() >= Duration::from_millis(50));
        std::thread::scope(|s| {
            let waiter = s.spawn(|| patient.get_timeout::<Lock>("later", Duration::from_secs(10)));
            std::thread::sleep(Duration::from_millis(50));
            let _l = arena.add("later", Lock::new_in).unwrap();
            waiter.join().unwrap().unwrap();
        });
        // A build that fails publishes nothing.
        assert!(arena.add("bad", |a| Queue::<u64>::new_in(a, 0, 8)).is_err());
        assert!(matches!(patient.get::<Queue<u64>>("bad"), Err(Error::ObjectNotFound { .. })));
        assert_eq!(patient.objects().unwrap().len(), 2);
    });
}

// ---------------------------------------------------------------------------------------------
// Wrong type, wrong T, wrong size, wrong layout, not mproc's.

#[test]
fn the_wrong_kind_t_size_layout_or_segment_is_an_error() {
    common::run("named_wrong", common::SECS(60), || {
        let name = arena_name("wrong");
        let arena = NamedArena::create(&name, 1 << 16).unwrap();
        let _v = arena.add("count", |a| Value::new_in(a, 5u64)).unwrap();
        let _r = arena.add("raw", |a| RawValue::new_in(a, 5u64)).unwrap();
        let _a = arena.add("bytes", |a| RawArray::<[u8; 8]>::zeroed_in(a, 4)).unwrap();
        let _q = arena.add("q", |a| Queue::<String>::new_in(a, 4, 32)).unwrap();
        let other = NamedArena::open(&name).unwrap();
        let mismatch = |r: Result<(), Error>, what: &str| match r {
            Err(e @ Error::ObjectTypeMismatch { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains(&name), "{what}: {msg}");
                msg
            }
            other => panic!("{what}: expected ObjectTypeMismatch, got {other:?}"),
        };
        // Another kind.
        let m = mismatch(other.get::<Lock>("count").map(drop), "Lock for a Value");
        assert!(m.contains("Value<u64>") && m.contains("opened as a Lock"), "{m}");
        mismatch(other.get::<RawValue<u64>>("count").map(drop), "RawValue for a Value");
        mismatch(other.get::<JoinableQueue<String>>("q").map(drop), "JoinableQueue for a Queue");
        // Another T of another size.
        let m = mismatch(other.get::<Value<u32>>("count").map(drop), "Value<u32> for Value<u64>");
        assert!(m.contains("4 bytes") && m.contains("8 bytes"), "{m}");
        mismatch(other.get::<RawArray<[u8; 16]>>("bytes").map(drop), "16-byte elements for 8-byte ones");
        // Another T of the same size and alignment.
        mismatch(other.get::<RawValue<i64>>("raw").map(drop), "RawValue<i64> for RawValue<u64>");
        mismatch(other.get::<RawValue<f64>>("raw").map(drop), "RawValue<f64> for RawValue<u64>");
        mismatch(other.get::<Queue<Vec<u8>>>("q").map(drop), "Queue<Vec<u8>> for Queue<String>");
        // The right ones work.
        assert_eq!(other.get::<Value<u64>>("count").unwrap().get().unwrap(), 5);
        assert_eq!(other.get::<RawArray<[u8; 8]>>("bytes").unwrap().len(), 4);
        // Missing names list what is there.
        match other.get::<Lock>("nope") {
            Err(e @ Error::ObjectNotFound { .. }) => assert!(e.to_string().contains("count, raw, bytes, q"), "{e}"),
            other => panic!("expected ObjectNotFound, got {other:?}"),
        }
        // Only the creator adds, once per name; a name in use cannot be created again.
        assert!(matches!(arena.add("count", Lock::new_in), Err(Error::ObjectExists { .. })));
        assert!(matches!(other.add("new", Lock::new_in), Err(Error::Misuse(_))));
        assert!(matches!(NamedArena::create(&name, 4096), Err(Error::SegmentExists { .. })));
        let mut child = Process::spawn(|| match arena.add("child", Lock::new_in) {
            Err(Error::Misuse(_)) => Ok(()),
            other => Err(format!("expected Misuse, got {other:?}")),
        })
        .unwrap();
        assert!(child.join().unwrap().success(), "a forked child must not add");
        // An object built outside the arena is refused.
        assert!(matches!(arena.add("elsewhere", |_| Lock::new()), Err(Error::Misuse(_))));
        assert!(matches!(arena.get::<Lock>("elsewhere"), Err(Error::ObjectNotFound { .. })));

        // An older (or newer) layout.
        let seg = Segment::open(&name).unwrap();
        seg.write::<u32>(8, 0).unwrap();
        match NamedArena::open(&name) {
            Err(e @ Error::ArenaVersion { found: 0, supported, .. }) if supported == NamedArena::LAYOUT_VERSION => {
                assert!(e.to_string().contains("same mproc release"), "{e}")
            }
            other => panic!("expected ArenaVersion, got {other:?}"),
        }
        seg.write::<u32>(8, NamedArena::LAYOUT_VERSION).unwrap();
        NamedArena::open(&name).unwrap();

        // Segments that are not mproc arenas: random bytes, and a blank one.
        let junk = Segment::create_named(4096).unwrap();
        junk.write::<[u8; 16]>(0, *b"not an arena....").unwrap();
        let junk_name = junk.name().unwrap().to_owned();
        assert!(matches!(NamedArena::open(&junk_name), Err(Error::NotNamedArena { .. })));
        let blank = Segment::create_named(4096).unwrap();
        let t = Instant::now();
        match NamedArena::open_timeout(blank.name().unwrap(), Duration::from_millis(50)) {
            Err(e @ Error::NotNamedArena { .. }) => assert!(e.to_string().contains("blank"), "{e}"),
            other => panic!("expected NotNamedArena, got {other:?}"),
        }
        assert!(t.elapsed() < Duration::from_secs(2), "the wait is bounded");
        let tiny = Segment::create_named(1).unwrap();
        tiny.write::<u64>(0, NamedArena::MAGIC).unwrap();
        assert!(NamedArena::open_timeout(tiny.name().unwrap(), Duration::from_millis(20)).is_err());
        assert!(matches!(NamedArena::open(&arena_name("missing")), Err(Error::SegmentNotFound { .. })));
        assert!(matches!(NamedArena::create("a/b", 4096), Err(Error::BadSegmentName { .. })));
        assert!(matches!(arena.add("", Lock::new_in), Err(Error::InvalidArgument(_))));
        assert!(matches!(arena.add(&"x".repeat(65), Lock::new_in), Err(Error::InvalidArgument(_))));
    });
}

// ---------------------------------------------------------------------------------------------
// Corruption: random bytes over the header, the directory, a queue's indices or its records.

/// SplitMix64: a small seeded generator, so a failing seed can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

#[derive(Debug, Default)]
struct Outcomes {
    open_err: u32,
    get_err: u32,
    op_err: u32,
    clean: u32,
}

/// Bytes of a named `Lock`'s region, measured once in an arena of its own.
fn lock_bytes() -> u64 {
    static BYTES: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *BYTES.get_or_init(|| {
        let arena = NamedArena::create(&arena_name("lock-size"), 1 << 16).unwrap();
        let _l = arena.add("l", Lock::new_in).unwrap();
        arena.objects().unwrap()[0].size
    })
}

/// Where a seed writes: `(region, start, len)` in the segment.
fn target(rng: &mut Rng, queue_off: u64, queue_len: u64, dir_used: u64) -> (&'static str, u64, u64) {
    // The queue's region starts with its two locks (consumers', producers'; the arena places
    // each on a multiple of 128 bytes), left alone: a lock whose own bytes are overwritten cannot
    // be defended, see the NamedArena docs. Then its state block (head and tail first, on lines
    // of their own; then the consumer table of a JoinableQueue), then the records. `one_seed`
    // checks that head and tail are there.
    let state = queue_off + 2 * lock_bytes().next_multiple_of(128);
    // The records are the region's last 8 slots of 24 bytes (`Queue::<u64>::new_in(a, 8, 16)`).
    let records = queue_off + queue_len - 8 * 24;
    match rng.below(4) {
        0 => ("header", 0, 80),
        1 => ("directory", 128, dir_used * 256),
        2 => ("indices", state, 896),
        _ => ("records", records, queue_off + queue_len - records),
    }
}

fn one_seed(seed: u64, name: &str, out: &mut Outcomes) -> &'static str {
    let mut rng = Rng(seed);
    let arena = NamedArena::create(name, 1 << 16).unwrap();
    let q = arena.add("q", |a| Queue::<u64>::new_in(a, 8, 16)).unwrap();
    let _v = arena.add("v", |a| Value::new_in(a, 1u64)).unwrap();
    // Move the indices somewhere, leave some items queued.
    for i in 0..rng.below(40) {
        if q.try_put(i).is_err() {
            q.try_get().unwrap();
        }
    }
    let info = arena.objects().unwrap();
    let (region, start, len) = target(&mut rng, info[0].offset, info[0].size, info.len() as u64);
    let seg = Segment::open(name).unwrap();
    // The layout `target` assumes: head and tail where it says the state block starts.
    let state = (info[0].offset + 2 * lock_bytes().next_multiple_of(128)) as usize;
    let (head, tail) = (seg.read::<u64>(state).unwrap(), seg.read::<u64>(state + 128).unwrap());
    assert_eq!(tail - head, q.len() as u64, "seed {seed}: head and tail are not where `target` says");
    // A few random bytes, or a whole random word, or a small number (close to real indices).
    let writes = 1 + rng.below(4);
    for _ in 0..writes {
        let at = start + rng.below(len);
        match rng.below(3) {
            0 => seg.write::<u8>(at as usize, rng.next() as u8).unwrap(),
            1 => seg.write::<u64>((at & !7) as usize, rng.next()).unwrap(),
            _ => seg.write::<u64>((at & !7) as usize, rng.below(64)).unwrap(),
        }
    }
    drop(seg);
    let opened = match NamedArena::open_timeout(name, Duration::from_millis(20)) {
        Ok(a) => a,
        Err(_) => {
            out.open_err += 1;
            return region;
        }
    };
    let _ = opened.objects();
    let (q, v) = match (opened.get::<Queue<u64>>("q"), opened.get::<Value<u64>>("v")) {
        (Ok(q), Ok(v)) => (q, v),
        _ => {
            out.get_err += 1;
            return region;
        }
    };
    let mut failed = false;
    for _ in 0..16 {
        let r = match rng.below(6) {
            0 => q.try_put(rng.next()).map_err(Error::from),
            1 => q.try_get().map(drop),
            2 => q.get_timeout(Duration::from_millis(2)).map(drop),
            3 => q.put_timeout(rng.next(), Duration::from_millis(2)).map_err(Error::from),
            4 => v.lock_timeout_check(),
            _ => {
                let _ = (q.len(), q.is_empty(), q.is_closed());
                Ok(())
            }
        };
        failed |= r.is_err_and(|e| !matches!(e, Error::WouldBlock | Error::Timeout));
    }
    if failed {
        out.op_err += 1;
    } else {
        out.clean += 1;
    }
    region
}

/// `Value::lock` has no timeout; through its lock's timed variant a corrupted value can at most
/// time out.
trait LockTimeoutCheck {
    fn lock_timeout_check(&self) -> Result<(), Error>;
}

impl LockTimeoutCheck for Value<u64> {
    fn lock_timeout_check(&self) -> Result<(), Error> {
        let g = self.get_lock().lock_timeout(Duration::from_millis(2)).map_err(Error::from)?;
        drop(g);
        Ok(())
    }
}

#[test]
fn random_bytes_over_header_directory_queue_indices_or_records_give_errors_never_panics_or_hangs() {
    const SEEDS: u64 = 2000;
    common::run("named_corruption", common::SECS(300), || {
        let name = arena_name("fuzz");
        let mut out = Outcomes::default();
        let mut hits = std::collections::BTreeMap::new();
        for seed in 0..SEEDS {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| one_seed(seed, &name, &mut out)));
            match r {
                Ok(region) => *hits.entry(region).or_insert(0u32) += 1,
                Err(p) => {
                    eprintln!("seed {seed} panicked");
                    std::panic::resume_unwind(p);
                }
            }
            assert!(!exists(&name), "seed {seed} left its arena behind");
        }
        eprintln!("{SEEDS} seeds: regions {hits:?}; {out:?}");
        // Directory damage is caught when the arena is opened (every entry is checked then), so
        // `get` rarely has anything left to catch; "clean" runs are damage that left a valid
        // state (a record's bytes that decode as another u64, an unused header field).
        assert!(out.open_err > 0 && out.op_err > 0, "both stages caught some: {out:?}");
    });
}

// ---------------------------------------------------------------------------------------------
// Permissions and the guardian.

#[test]
fn a_named_arena_is_mode_0600_and_another_user_cannot_open_it() {
    common::run("named_permission", common::SECS(30), || {
        let name = arena_name("perm");
        let arena = NamedArena::create(&name, 4096).unwrap();
        let _l = arena.add("lock", Lock::new_in).unwrap();
        let mode = std::fs::metadata(format!("/dev/shm/{name}")).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{mode:o}");
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped the other-user half: needs root to switch users");
            return;
        }
        let mut child = Process::builder()
            .user(65534, 65534)
            .spawn(|| -> Result<(), String> {
                match NamedArena::open(&name) {
                    Err(Error::SegmentPermissionDenied { owner: Some(0), mode: Some(0o600), uid: 65534, .. }) => Ok(()),
                    other => Err(format!("expected SegmentPermissionDenied, got {other:?}")),
                }
            })
            .unwrap();
        let st = child.join().unwrap();
        assert!(st.success(), "{st:?}");
    });
}

#[test]
fn a_sigkilled_creators_named_arena_is_removed_by_its_guardian() {
    common::run("named_guardian", common::SECS(30), || {
        let name = arena_name("killed");
        let mut creator = Process::spawn(|| {
            let arena = NamedArena::create(&name, 1 << 16).unwrap();
            let _q = arena.add("q", |a| Queue::<u64>::new_in(a, 16, 16)).unwrap();
            std::thread::sleep(Duration::from_secs(30));
        })
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let opened = loop {
            if let Ok(a) = NamedArena::open(&name)
                && a.get::<Queue<u64>>("q").is_ok()
            {
                break a;
            }
            assert!(Instant::now() < deadline, "the creator never made its arena");
            std::thread::sleep(Duration::from_millis(2));
        };
        creator.kill().unwrap();
        let killed = Instant::now();
        creator.join().unwrap();
        while exists(&name) {
            assert!(killed.elapsed() < Duration::from_secs(2), "{name} outlived its creator by 2 s");
            std::thread::sleep(Duration::from_millis(2));
        }
        // Openers keep their mapping: the queue still works here.
        let q: Queue<u64> = opened.get("q").unwrap();
        q.put(1).unwrap();
        assert_eq!(q.get().unwrap(), 1);
        eprintln!("removed {:?} after the kill", killed.elapsed());
    });
}

// ---------------------------------------------------------------------------------------------
// The example program, server and client started separately.

/// The example program `name` as `cargo build --examples` leaves it beside the test binaries
/// (`make test` builds the examples first; `cargo test --all-targets` alone builds them only as
/// test harnesses, which cannot be run as the program). Not built: `None`, a failure under CI
/// (never a silent skip there), a skip otherwise (`cargo test --test named` alone).
fn built_example(name: &str) -> Option<std::path::PathBuf> {
    let exe = std::env::current_exe().unwrap();
    let path = exe.parent().and_then(|d| d.parent())?.join("examples").join(name);
    if path.is_file() {
        return Some(path);
    }
    assert!(std::env::var_os("CI").is_none(), "{} is not built (make test builds it)", path.display());
    eprintln!("skipped: {} is not built (run `cargo build --examples` first)", path.display());
    None
}

#[test]
fn the_ipc_unrelated_example_server_and_client_talk_by_name() {
    let Some(example) = built_example("ipc_unrelated") else { return };
    common::run("named_example", common::SECS(60), || {
        let name = arena_name("example");
        let server = Command::new(&example)
            .args(["--server", "--name", &name])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let client = Command::new(&example).args(["--client", "--name", &name, "--count", "5"]).output().unwrap();
        let said = String::from_utf8_lossy(&client.stdout).into_owned();
        output_ok(client, "the client");
        assert!(said.contains("request #5") && said.contains("served 5 requests"), "{said}");
        let server = server.wait_with_output().unwrap();
        let told = String::from_utf8_lossy(&server.stdout).into_owned();
        output_ok(server, "the server");
        assert!(told.contains("stopped after 5 requests"), "{told}");
        assert!(!exists(&name), "the server removed its arena");
    });
}

#[test]
fn stale_cleanup_finds_a_dead_creators_arena_of_any_name_by_its_header_and_spares_a_live_ones() {
    common::run("named_stale", common::SECS(30), || {
        // Names without a pid in them: only the header says who created them.
        let live = format!("mproc-test-live-{}", std::process::id());
        let dead = format!("mproc-test-dead-{}", std::process::id());
        let arena = NamedArena::create(&live, 4096).unwrap();
        let guardian = RawValue::new(0i32).unwrap();
        let mut creator = Process::spawn(|| {
            let a = NamedArena::create(&dead, 4096).unwrap();
            guardian.store(Segment::guardian_pid().unwrap_or(-1));
            std::thread::sleep(Duration::from_secs(30));
            drop(a);
        })
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while guardian.load() == 0 {
            assert!(Instant::now() < deadline, "the creator never reported");
            std::thread::sleep(Duration::from_millis(2));
        }
        // Its guardian first (so nobody removes the name), then the creator.
        let g = guardian.load();
        assert!(g > 0, "no guardian");
        // SAFETY: kill has no memory-safety preconditions; `g` is the creator's guardian.
        assert_eq!(unsafe { libc::kill(g, libc::SIGKILL) }, 0);
        creator.kill().unwrap();
        creator.join().unwrap();
        std::thread::sleep(Duration::from_millis(100));
        assert!(exists(&dead), "with its guardian killed, the dead creator's arena stays");
        Segment::cleanup_stale().unwrap();
        assert!(!exists(&dead), "a dead creator's arena is stale whatever its name");
        assert!(exists(&live), "a living creator's arena is not");
        drop(arena);
        assert!(!exists(&live));
    });
}
