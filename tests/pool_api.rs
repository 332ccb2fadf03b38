//! Pool API: per-call values (map_with), Python parity (terminate then join, map_async with
//! timeouts, callbacks in completion order), errors a caller can act on (Encode with the
//! serializer's message, Decode, Misuse), initializers kept across context().

mod common;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use mproc::{Error, Pool, RawValue};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Counts, across processes, how often a [`Threshold`] is decoded.
static DECODES: OnceLock<RawValue<u64>> = OnceLock::new();

/// A per-call value that counts its decodings.
#[derive(Serialize)]
struct Threshold(u64);

impl<'de> Deserialize<'de> for Threshold {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if let Some(c) = DECODES.get() {
            c.fetch_add(1);
        }
        u64::deserialize(d).map(Threshold)
    }
}

#[test]
fn map_with_sends_the_per_call_value_once_per_worker_and_every_item_sees_it() {
    common::run("pool_map_with", common::SECS(60), || {
        let decodes = DECODES.get_or_init(|| RawValue::new(0).unwrap());
        let pool = Pool::new(2).unwrap();
        let argv = ["prog", "--over", "61234"];
        let limit = Threshold(argv[2].parse().unwrap());
        for chunk in [Some(1), None] {
            decodes.store(0);
            let got =
                pool.map_with(|_, t: &Threshold, x: u64| x > t.0, Threshold(limit.0), 0..100_000u64, chunk).unwrap();
            assert_eq!(got, (0..100_000u64).map(|x| x > 61_234).collect::<Vec<_>>(), "chunksize {chunk:?}");
            let n = decodes.load();
            assert!((1..=2).contains(&n), "decoded {n} times for 100k items at chunksize {chunk:?}: once per worker");
        }
        // Calls do not leak into each other: a new value for the next call.
        let low = pool.map_with(|_, t: &u32, x: u32| x.min(*t), 3u32, 0..10u32, Some(1)).unwrap();
        assert_eq!(low, vec![0, 1, 2, 3, 3, 3, 3, 3, 3, 3]);
        let err = pool.map_with(|_, _: &NoNan, x: u8| x, NoNan(f64::NAN), 0..3u8, None).unwrap_err();
        assert!(
            matches!(&err, Error::Encode { what: "per-call value", message, .. } if message.contains("no NaN allowed")),
            "{err}"
        );
    });
}

#[test]
fn terminate_then_join_succeeds_and_join_before_close_is_misuse() {
    common::run("pool_terminate_join", common::SECS(30), || {
        let pool = Pool::new(2).unwrap();
        assert!(matches!(pool.join(), Err(Error::Misuse(_))));
        let pids = pool.worker_pids();
        pool.terminate();
        pool.join().unwrap();
        assert!(pool.is_terminated());
        assert!(pool.worker_pids().is_empty());
        for p in pids {
            assert!(!std::path::Path::new(&format!("/proc/{p}")).exists(), "worker {p} left");
        }
        assert!(matches!(pool.map(|_, x: u8| x, 0..3u8, None), Err(Error::PoolClosed)));
        // close, terminate, join: also fine.
        let pool = Pool::new(1).unwrap();
        pool.close();
        pool.terminate();
        pool.join().unwrap();
    });
}

#[test]
fn map_async_get_timeout_times_out_on_a_slow_task_then_succeeds_and_a_second_take_is_misuse() {
    common::run("pool_map_async", common::SECS(60), || {
        let pool = Pool::new(2).unwrap();
        let mut h = pool
            .map_async(
                |_, ms: u64| {
                    std::thread::sleep(Duration::from_millis(ms));
                    ms
                },
                vec![1, 400, 2],
                Some(1),
            )
            .unwrap();
        assert!(matches!(h.get_timeout(Duration::from_millis(20)), Err(Error::Timeout)));
        assert!(!h.ready());
        assert_eq!(h.get_timeout(Duration::from_secs(20)).unwrap(), vec![1, 400, 2]);
        assert!(matches!(h.get_timeout(Duration::from_secs(1)), Err(Error::Misuse(_))), "result taken twice");
        let s = pool.starmap_async(|_, a: u32, b: u32| a * b, vec![(2, 3), (4, 5)], None).unwrap();
        s.wait().unwrap();
        assert!(s.ready());
        assert_eq!(s.get().unwrap(), vec![6, 20]);
        // A failing task in an async map is a MapFailed, as with map.
        let bad = pool.map_async(|_, x: u8| if x == 2 { panic!("two") } else { x }, 0..5u8, Some(1)).unwrap();
        assert!(matches!(bad.get().unwrap_err().root(), Error::TaskPanicked { task: 2, .. }));
    });
}

#[test]
fn callbacks_run_in_the_parent_in_the_order_tasks_finish() {
    common::run("pool_callbacks", common::SECS(60), || {
        let pool = Pool::new(3).unwrap();
        let order: Rc<RefCell<Vec<(usize, u64)>>> = Rc::default();
        for (i, ms) in [600u64, 100, 350].into_iter().enumerate() {
            let order = order.clone();
            pool.apply_async(
                |_, ms: u64| {
                    std::thread::sleep(Duration::from_millis(ms));
                    mproc::monotonic_ns()
                },
                ms,
            )
            .unwrap()
            .on_result(move |r| order.borrow_mut().push((i, r.unwrap())));
        }
        let whole: Rc<RefCell<Option<Vec<u32>>>> = Rc::default();
        let w = whole.clone();
        pool.map_async(|_, x: u32| x + 1, 0..5u32, None)
            .unwrap()
            .on_result(move |r| *w.borrow_mut() = Some(r.unwrap()));
        pool.wait_all().unwrap();
        let got = order.borrow().clone();
        let by_finish = {
            let mut v = got.clone();
            v.sort_by_key(|&(_, ns)| ns);
            v
        };
        assert_eq!(got, by_finish, "callbacks in completion order");
        assert_eq!(got.iter().map(|&(i, _)| i).collect::<Vec<_>>(), vec![1, 2, 0]);
        assert_eq!(whole.borrow().as_deref(), Some(&[1, 2, 3, 4, 5][..]));
        // A callback may use the pool (it runs with the pool free); errors reach it too.
        let seen: Rc<RefCell<Vec<String>>> = Rc::default();
        let s = seen.clone();
        pool.apply_async(|_, x: u8| if x == 0 { panic!("zero") } else { x }, 0)
            .unwrap()
            .on_result(move |r| s.borrow_mut().push(r.unwrap_err().to_string()));
        pool.wait_all().unwrap();
        assert!(seen.borrow()[0].contains("zero"), "{:?}", seen.borrow());
    });
}

/// Refuses NaN when serialized; decodes as a plain f64.
#[derive(Debug, Deserialize)]
struct NoNan(f64);

impl Serialize for NoNan {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0.is_nan() {
            return Err(serde::ser::Error::custom("no NaN allowed"));
        }
        s.serialize_f64(self.0)
    }
}

/// Encodes as a u8, but decodes only from a string: every decode fails.
#[derive(Debug)]
struct Lopsided;

impl Serialize for Lopsided {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(200)
    }
}

impl<'de> Deserialize<'de> for Lopsided {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Err(serde::de::Error::custom(format!("not a Lopsided: {s}")))
    }
}

#[test]
fn encode_failures_name_the_task_and_keep_the_serializers_message_and_decode_failures_are_decode() {
    common::run("pool_encode_errors", common::SECS(60), || {
        let pool = Pool::new(2).unwrap();
        // As an argument: the bad item fails, the others run.
        let err =
            pool.map(|_, x: NoNan| x.0 * 2.0, vec![NoNan(1.0), NoNan(f64::NAN), NoNan(2.0)], Some(1)).unwrap_err();
        match &err {
            Error::MapFailed { failed: 1, total: 3, first } => match &**first {
                Error::Encode { what: "argument", task: 1, message } => {
                    assert!(message.contains("no NaN allowed"), "{message}")
                }
                other => panic!("expected Encode of argument 1, got {other}"),
            },
            other => panic!("expected MapFailed, got {other}"),
        }
        assert!(err.to_string().contains("no NaN allowed"), "{err}");
        // As a result (encoded in the worker).
        let err = pool.map(|_, x: f64| NoNan(x), vec![1.0, 2.0, f64::NAN, 3.0], Some(2)).unwrap_err();
        match err.root() {
            Error::Encode { what: "result", task: 2, message } => {
                assert!(message.contains("no NaN allowed"), "{message}")
            }
            other => panic!("expected Encode of result 2, got {other}"),
        }
        let err = pool.apply(|_, x: f64| NoNan(x), f64::NAN).unwrap_err();
        assert!(
            matches!(&err, Error::Encode { what: "result", task: 0, message } if message.contains("no NaN")),
            "{err}"
        );
        // A result that cannot be decoded in the parent.
        let err = pool.apply(|_, _: u8| Lopsided, 0).unwrap_err();
        assert!(matches!(err, Error::Decode { what: "result", task: 0, .. }), "{err}");
        assert_eq!(pool.map(|_, x: u8| x, 0..4u8, None).unwrap(), vec![0, 1, 2, 3], "still serving");
    });
}

static INIT_RAN: AtomicBool = AtomicBool::new(false);

#[test]
fn an_initializer_given_before_context_still_runs_and_so_does_the_contexts() {
    common::run("pool_init_before_context", common::SECS(30), || {
        struct Ctx {
            typed: RawValue<u32>,
        }
        let pool = Pool::builder()
            .processes(2)
            .initializer(|_: &()| INIT_RAN.store(true, Ordering::SeqCst))
            .context(Ctx { typed: RawValue::new(0).unwrap() })
            .initializer(|c: &Ctx| {
                assert!(INIT_RAN.load(Ordering::SeqCst), "the unit initializer runs first");
                c.typed.fetch_add(1);
            })
            .build()
            .unwrap();
        assert!(!INIT_RAN.load(Ordering::SeqCst), "initializers run in the workers, not here");
        let ran = pool.map(|_, _: u32| INIT_RAN.load(Ordering::SeqCst), 0..100u32, Some(1)).unwrap();
        assert!(ran.iter().all(|&r| r), "the initializer given before context() ran in every worker");
        assert_eq!(pool.context().typed.load(), 2);
        let only_unit =
            Pool::builder().processes(1).initializer(|_: &()| INIT_RAN.store(true, Ordering::SeqCst)).context(7u8);
        let pool = only_unit.build().unwrap();
        assert_eq!(
            pool.map(|c: &u8, _: u8| (*c, INIT_RAN.load(Ordering::SeqCst)), 0..3u8, None).unwrap()[0],
            (7, true)
        );
    });
}

#[test]
fn every_public_pool_type_has_debug() {
    common::run("pool_debug", common::SECS(30), || {
        let b = Pool::builder().processes(1).seed(3);
        assert!(format!("{b:?}").contains("processes: Some(1)"));
        let pool = b.build().unwrap();
        assert!(format!("{pool:?}").starts_with("Pool"));
        let a = pool.apply_async(|_, x: u8| x, 1).unwrap();
        assert!(format!("{a:?}").starts_with("AsyncResult"));
        let it = pool.imap(|_, x: u8| x, 0..3u8, 1).unwrap();
        assert!(format!("{it:?}").starts_with("ResultIter"));
        assert_eq!(it.map(Result::unwrap).collect::<Vec<_>>(), vec![0, 1, 2]);
        assert_eq!(a.get().unwrap(), 1);
        assert!(format!("{:?}", mproc::OnWorkerDeath::Retry(2)).contains("Retry"));
    });
}

/// Two numbers through serde; its `Serialize` writes the first, then fails (`b == 1`) or panics
/// (`b == 2`) when asked to, leaving half an encoding behind.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
struct Pair(u64, u64);

impl Serialize for Pair {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeTuple;
        let mut t = s.serialize_tuple(2)?;
        t.serialize_element(&self.0)?;
        match self.1 {
            1 => return Err(serde::ser::Error::custom("refused half way")),
            2 => panic!("panicked half way through {}", self.0),
            _ => {}
        }
        t.serialize_element(&self.1)?;
        t.end()
    }
}

#[test]
fn serde_arguments_failing_panicking_oversized_or_overflowing_mid_chunk_cost_only_themselves() {
    common::run("pool_serde_feeding", common::SECS(60), || {
        let pool = Pool::builder().processes(2).max_message_bytes(4096).build().unwrap();
        let ok = |i: u64| Pair(i, 1000 + i);
        // Refusals half way through items 21 and 22 of chunks of 16: those items fail (none of
        // their bytes are sent), every other item is exact; 21 ends its chunk, 22 then starts the
        // next one, which goes on after it.
        let bad = |i: u64| i == 21 || i == 22;
        let items: Vec<Pair> = (0..100).map(|i| if bad(i) { Pair(i, 1) } else { ok(i) }).collect();
        let got: Vec<_> = pool.imap(|_, p: Pair| p.0 + p.1, items, 16).unwrap().collect();
        assert_eq!(got.len(), 100);
        for (i, r) in got.iter().enumerate() {
            match r {
                Err(Error::Encode { what: "argument", task, message }) if *task == i as u64 && bad(*task) => {
                    assert!(message.contains("refused half way"), "{message}")
                }
                Ok(v) => assert!(!bad(i as u64) && *v == 1000 + 2 * i as u64, "task {i}: {v}"),
                other => panic!("task {i}: {other:?}"),
            }
        }
        // A panic half way through item 37: the items before it (32..37 in its chunk) still go,
        // then the error, then the end.
        let source = move || (0..100).map(move |i| if i == 37 { Pair(i, 2) } else { ok(i) });
        let got: Vec<_> = pool.imap(|_, p: Pair| p.0 + p.1, source(), 16).unwrap().collect();
        assert_eq!(got.len(), 38, "37 results, then the error");
        assert!(got[..37].iter().enumerate().all(|(i, r)| *r.as_ref().unwrap() == 1000 + 2 * i as u64));
        assert!(matches!(&got[37], Err(Error::SourcePanicked { task: 37, message }) if message.contains("half way")));
        // An iterator that panics between items, the same.
        let source = move || (0..100u64).map(move |i| if i == 50 { panic!("source broke at {i}") } else { ok(i) });
        let got: Vec<_> = pool.imap(|_, p: Pair| p.0 + p.1, source(), 16).unwrap().collect();
        assert_eq!(got.len(), 51);
        assert!(matches!(&got[50], Err(Error::SourcePanicked { task: 50, .. })), "{:?}", got[50]);
        // Items of about 1 KB in chunks of 16 (records of 4 KiB: each chunk fills after a few and
        // the next item starts the next chunk), two of them over the limit (9 ends a chunk, 10
        // starts the next).
        let blob =
            |i: u64| -> Vec<u64> { (0..if i == 9 || i == 10 { 600 } else { 120 }).map(|k| i * 1000 + k).collect() };
        let got: Vec<_> = pool.imap(|_, v: Vec<u64>| v.iter().sum::<u64>(), (0..60).map(blob), 16).unwrap().collect();
        assert_eq!(got.len(), 60);
        for (i, r) in got.iter().enumerate() {
            match r {
                Err(Error::MessageTooLarge { what: "argument", task, .. })
                    if *task == i as u64 && (9..11).contains(&i) => {}
                Ok(v) => assert!(!(9..11).contains(&i) && *v == blob(i as u64).iter().sum::<u64>(), "task {i}: {v}"),
                other => panic!("task {i}: {other:?}"),
            }
        }
        assert_eq!(pool.map(|_, p: Pair| p.1, (0..1000).map(ok), None).unwrap(), (1000..2000).collect::<Vec<_>>());
    });
}
