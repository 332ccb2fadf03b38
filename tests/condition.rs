//! Condition and BoundedSemaphore: between processes, and between threads with real contention
//! (no lost wake-up: the waits have no backstop timeout; the watchdog catches a hang).

mod common;

use std::time::Duration;

use mproc::{BoundedSemaphore, Condition, Error, Lock, LockError, Process, RawValue};

#[test]
fn a_consumer_process_waits_on_a_condition_for_every_value_a_producer_sets() {
    common::run("condition_processes", common::SECS(60), || {
        let cond = Condition::new().unwrap();
        // slot: 0 = empty, else the value; taken: how many the consumer took.
        let (slot, taken) = (RawValue::new(0u64).unwrap(), RawValue::new(0u64).unwrap());
        let mut consumer = Process::spawn(|| -> mproc::Result<()> {
            for want in 1..=2000u64 {
                let g = cond.lock()?;
                let g = cond.wait_while(g, || slot.load() == 0)?;
                assert_eq!(slot.load(), want);
                slot.store(0);
                taken.fetch_add(1);
                cond.notify_all();
                drop(g);
            }
            Ok(())
        })
        .unwrap();
        for v in 1..=2000u64 {
            let g = cond.lock().unwrap();
            let g = cond.wait_while(g, || slot.load() != 0).unwrap();
            slot.store(v);
            cond.notify_all();
            drop(g);
        }
        assert!(consumer.join().unwrap().success());
        assert_eq!(taken.load(), 2000);
    });
}

#[test]
fn threads_hand_a_token_round_a_ring_through_one_condition_without_losing_a_wake_up() {
    common::run("condition_threads", common::SECS(60), || {
        let cond = Condition::new().unwrap();
        let turn = RawValue::new(0u64).unwrap();
        const T: u64 = 4;
        const ROUNDS: u64 = 5000;
        std::thread::scope(|s| {
            for me in 0..T {
                let (cond, turn) = (&cond, &turn);
                s.spawn(move || {
                    for _ in 0..ROUNDS {
                        let g = cond.lock().unwrap();
                        let g = cond.wait_while(g, || turn.load() % T != me).unwrap();
                        turn.fetch_add(1);
                        cond.notify_all();
                        drop(g);
                    }
                });
            }
        });
        assert_eq!(turn.load(), T * ROUNDS);
    });
}

#[test]
fn wait_timeout_says_whether_it_was_notified_and_a_foreign_guard_is_misuse() {
    common::run("condition_timeout", common::SECS(30), || {
        let cond = Condition::new().unwrap();
        let g = cond.lock().unwrap();
        let (g, notified) = cond.wait_timeout(g, Duration::from_millis(20)).unwrap();
        assert!(!notified);
        drop(g);
        let other = Lock::new().unwrap();
        let foreign = other.lock().unwrap();
        match cond.wait(foreign) {
            Err(LockError::Failed(Error::Misuse(m))) => assert!(m.contains("guard"), "{m}"),
            other => panic!("expected misuse, got {:?}", other.map(|_| ())),
        }
        let shared = Condition::with_lock(other.clone()).unwrap();
        assert!(std::ptr::eq(shared.get_lock(), shared.get_lock()));
    });
}

#[test]
fn a_bounded_semaphore_refuses_an_extra_release_across_processes() {
    common::run("bounded_semaphore", common::SECS(30), || {
        let s = BoundedSemaphore::new(2).unwrap();
        let mut p = Process::spawn(|| -> mproc::Result<()> {
            s.acquire()?;
            s.acquire()?;
            assert!(!s.try_acquire());
            s.release()?;
            s.release()?;
            match s.release() {
                Err(Error::Misuse(_)) => Ok(()),
                other => panic!("expected misuse, got {other:?}"),
            }
        })
        .unwrap();
        assert!(p.join().unwrap().success());
        assert_eq!(s.value(), 2);
        assert!(matches!(s.acquire_timeout(Duration::from_millis(5)), Ok(())));
    });
}
