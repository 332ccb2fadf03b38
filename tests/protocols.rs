//! The sleeping protocols of Event, Semaphore, Barrier and the lock's statistics, hammered by
//! threads of one process (no fork: the shared futex works between threads too). Every wait is
//! bounded — a timed wait with a generous deadline, or the watchdog of `common::run` — so a lost
//! wake-up fails the test instead of hanging it. The sleeping paths have no backstop timeout of
//! their own, so a lost wake-up cannot be hidden by one.

mod common;

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use mproc::{Barrier, Error, Event, Semaphore, Value};

const DEADLINE: Duration = Duration::from_secs(20);

fn spin_until(cond: impl Fn() -> bool) {
    while !cond() {
        std::thread::yield_now();
    }
}

/// 4 threads, 1000 rounds: each round the main thread clears the event, lets the waiters go to
/// it, sets it; every waiter must return. Two waiters use `wait` (no deadline at all: only the
/// watchdog bounds it), two `wait_timeout`.
#[test]
fn event_set_wakes_every_waiting_thread_each_round() {
    common::run("protocol_event", common::SECS(120), || {
        const ROUNDS: u32 = 1000;
        const WAITERS: u32 = 4;
        let ev = Event::new().unwrap();
        let go = AtomicU32::new(0);
        let done = AtomicU32::new(0);
        std::thread::scope(|s| {
            for w in 0..WAITERS {
                let (ev, go, done) = (&ev, &go, &done);
                s.spawn(move || {
                    for r in 1..=ROUNDS {
                        spin_until(|| go.load(Ordering::Acquire) >= r);
                        if w % 2 == 0 {
                            ev.wait();
                        } else {
                            ev.wait_timeout(DEADLINE).unwrap_or_else(|e| panic!("waiter {w}, round {r}: {e}"));
                        }
                        done.fetch_add(1, Ordering::AcqRel);
                    }
                });
            }
            for r in 1..=ROUNDS {
                ev.clear();
                go.store(r, Ordering::Release);
                // Vary the moment of `set`: sometimes before the waiters arrive, sometimes after
                // they went to sleep.
                for _ in 0..(r % 7) * 50 {
                    std::thread::yield_now();
                }
                ev.set();
                spin_until(|| done.load(Ordering::Acquire) >= WAITERS * r);
            }
        });
        assert_eq!(done.load(Ordering::Relaxed), WAITERS * ROUNDS);
    });
}

/// A semaphore of 1 used as a mutex by 4 threads × 20 000 turns: the unprotected increment
/// (a separate load and store) loses nothing, and every sleeper is woken.
#[test]
fn semaphore_of_one_excludes_and_wakes_four_threads() {
    common::run("protocol_semaphore_mutex", common::SECS(120), || {
        const THREADS: u64 = 4;
        const TURNS: u64 = 20_000;
        let sem = Semaphore::new(1).unwrap();
        let count = AtomicU64::new(0);
        let start = std::sync::Barrier::new(THREADS as usize);
        std::thread::scope(|s| {
            for _ in 0..THREADS {
                s.spawn(|| {
                    start.wait();
                    for _ in 0..TURNS {
                        sem.acquire_timeout(DEADLINE).expect("lost wake-up: a permit was never handed over");
                        // Not an atomic increment: only the semaphore keeps it exact.
                        count.store(count.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
                        sem.release().unwrap();
                    }
                });
            }
        });
        assert_eq!(count.load(Ordering::Relaxed), THREADS * TURNS);
        assert_eq!(sem.value(), 1);
    });
}

/// One producer releases 40 000 permits one by one into a semaphore starting at 0; four
/// consumers take 10 000 each, sleeping whenever none is free. Nothing is lost or left.
#[test]
fn semaphore_permits_released_one_by_one_reach_sleeping_consumers() {
    common::run("protocol_semaphore_handoff", common::SECS(120), || {
        const CONSUMERS: u32 = 4;
        const EACH: u32 = 10_000;
        let sem = Semaphore::new(0).unwrap();
        std::thread::scope(|s| {
            for c in 0..CONSUMERS {
                let sem = &sem;
                s.spawn(move || {
                    for i in 0..EACH {
                        if c == 0 {
                            sem.acquire().unwrap(); // no deadline: only the watchdog bounds it
                        } else {
                            sem.acquire_timeout(DEADLINE).unwrap_or_else(|e| panic!("consumer {c}, permit {i}: {e}"));
                        }
                    }
                });
            }
            for i in 0..CONSUMERS * EACH {
                sem.release().unwrap();
                if i % 64 == 0 {
                    std::thread::yield_now(); // let consumers run dry and go to sleep
                }
            }
        });
        assert_eq!(sem.value(), 0);
        assert!(!sem.try_acquire());
    });
}

/// Regression (barrier_breaks_with_more_waiters_than_parties): with separate `arrived` and
/// `generation` words, a third arrival during a round of two pushed `arrived` past `parties` and
/// the barrier hung. Python's semantics: the extra arrivals wait for the next round.
///
/// 5 threads share 20 000 waits on a 2-party barrier (each takes its next wait from a shared
/// count). Not "1000 each": a thread that falls behind could be left alone with waits no one
/// else will partner — a hang under any correct barrier. Shared, every claimed wait arrives, so
/// the 20 000 arrivals make exactly 10 000 full rounds, each with one leader.
#[test]
fn barrier_with_more_waiters_than_parties_has_one_leader_per_round() {
    common::run("protocol_barrier_extra", common::SECS(120), || {
        const PARTIES: u32 = 2;
        const THREADS: u32 = 5;
        const WAITS: u32 = 20_000;
        let b = Barrier::new(PARTIES).unwrap();
        let claimed = AtomicU32::new(0);
        let leaders = AtomicU32::new(0);
        // Counted before each wait starts and after it returns: a wait may only return once its
        // round is full, so at any time `left` ≤ `entered` rounded down to whole rounds.
        let (entered, left) = (AtomicU32::new(0), AtomicU32::new(0));
        let per_thread: Vec<u32> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..THREADS)
                .map(|t| {
                    let (b, claimed, leaders, entered, left) = (&b, &claimed, &leaders, &entered, &left);
                    s.spawn(move || {
                        let mut mine = 0;
                        while claimed.fetch_add(1, Ordering::Relaxed) < WAITS {
                            entered.fetch_add(1, Ordering::SeqCst);
                            let leader = if t == 0 {
                                b.wait().unwrap() // no deadline: only the watchdog bounds it
                            } else {
                                b.wait_timeout(DEADLINE).unwrap_or_else(|e| panic!("thread {t}, wait {mine}: {e}"))
                            };
                            let out = left.fetch_add(1, Ordering::SeqCst) + 1;
                            let into = entered.load(Ordering::SeqCst); // read after: only grows
                            assert!(out <= into - into % PARTIES, "{out} waits returned after only {into} arrived");
                            if leader {
                                leaders.fetch_add(1, Ordering::Relaxed);
                            }
                            mine += 1;
                        }
                        mine
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(per_thread.iter().sum::<u32>(), WAITS);
        assert_eq!(leaders.load(Ordering::Relaxed), WAITS / PARTIES, "waits per thread: {per_thread:?}");
    });
}

/// 4 threads, 2000 rounds of a 4-party barrier: nobody leaves a round before everyone arrived,
/// nobody gets a round ahead, and each round has exactly one leader.
#[test]
fn barrier_keeps_four_threads_in_step() {
    common::run("protocol_barrier_step", common::SECS(120), || {
        const N: usize = 4;
        const ROUNDS: u32 = 2000;
        let b = Barrier::new(N as u32).unwrap();
        let round_of: [AtomicU32; N] = Default::default();
        let leaders = AtomicU32::new(0);
        std::thread::scope(|s| {
            for me in 0..N {
                let (b, round_of, leaders) = (&b, &round_of, &leaders);
                s.spawn(move || {
                    for r in 1..=ROUNDS {
                        round_of[me].store(r, Ordering::Relaxed);
                        if b.wait_timeout(DEADLINE).unwrap_or_else(|e| panic!("thread {me}, round {r}: {e}")) {
                            leaders.fetch_add(1, Ordering::Relaxed);
                        }
                        for (other, seen) in round_of.iter().enumerate() {
                            let seen = seen.load(Ordering::Relaxed);
                            assert!(seen == r || seen == r + 1, "round {r}: thread {other} is at {seen}");
                        }
                    }
                });
            }
        });
        assert_eq!(leaders.load(Ordering::Relaxed), ROUNDS);
    });
}

/// A waiter that gives up breaks the barrier, and whoever waits on it is told at once.
#[test]
fn a_timed_out_barrier_wait_breaks_it_for_the_others() {
    common::run("protocol_barrier_broken", common::SECS(60), || {
        let b = Barrier::new(3).unwrap();
        std::thread::scope(|s| {
            let other = s.spawn(|| b.wait());
            assert!(matches!(b.wait_timeout(Duration::from_millis(50)), Err(Error::Timeout)));
            assert!(matches!(other.join().unwrap(), Err(Error::BrokenBarrier)));
        });
        assert!(matches!(b.wait(), Err(Error::BrokenBarrier)));
        b.reset();
        let b1 = Barrier::new(1).unwrap();
        assert!(b1.wait().unwrap());
    });
}

/// 4 threads × 100 000 lock/increment/unlock through a `Value`'s lock: the count is exact, every
/// acquisition is counted, and the threads really contended.
#[test]
fn lock_stats_count_every_acquisition_of_four_contending_threads() {
    common::run("protocol_lock_stats", common::SECS(240), || {
        const THREADS: u64 = 4;
        const TURNS: u64 = 100_000;
        let v = Value::new(0u64).unwrap();
        let start = std::sync::Barrier::new(THREADS as usize);
        std::thread::scope(|s| {
            for _ in 0..THREADS {
                s.spawn(|| {
                    start.wait();
                    for _ in 0..TURNS {
                        *v.lock().unwrap() += 1;
                    }
                });
            }
        });
        let stats = v.get_lock().stats();
        assert_eq!(stats.acquisitions, THREADS * TURNS);
        assert!(stats.contended > 0, "{stats:?}");
        assert!(stats.contended <= stats.acquisitions, "{stats:?}");
        assert_eq!(stats.timeouts, 0);
        assert_eq!(v.get().unwrap(), THREADS * TURNS);
    });
}
