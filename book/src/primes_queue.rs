//! Finding primes through a [`Queue`]: the book's worker processes that take numbers from one
//! queue, put the primes on another, and stop at a poison pill.
//!
//! The book's lessons: one number per message makes the queue the bottleneck (in Python a
//! message costs 13–20 µs, a Manager queue's 70–80 µs, so the parallel version is slower than
//! serial); sending only odd numbers halves the traffic; and sending **batches** of numbers fixes
//! it. Here a message costs well under a microsecond, so the program shows how much of each
//! lesson survives.
//!
//! The parent feeds the job queue either itself (`feeder: false`: whenever the job queue is full
//! it drains the results, so neither bounded queue can deadlock) or from a feeder thread started
//! after the workers were forked (`feeder: true`, the book's layout), while its main thread
//! collects.

use std::time::Instant;

use mproc::{Error, Process, Queue, Result};

use crate::find_primes::{is_prime, sieve_count};
use crate::kernel::Kernel;

/// Settings of one run.
#[derive(Debug, Clone)]
pub struct Config {
    /// The half-open range searched.
    pub range: (u64, u64),
    /// Worker processes.
    pub processes: usize,
    /// Queue only odd numbers (and count 2 separately): the "less work" variant.
    pub odd_only: bool,
    /// Numbers per message (1: the book's first version).
    pub batch: usize,
    /// Feed the job queue from a thread while the main thread collects.
    pub feeder: bool,
    /// Trial-division kernel.
    pub kernel: Kernel,
}

/// What one run measured.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Outcome {
    /// Primes found.
    pub primes: u64,
    /// What the sieve says.
    pub expected: u64,
    /// Numbers sent to the workers.
    pub numbers: u64,
    /// Job messages sent.
    pub messages: u64,
    /// Wall time, workers' start-up included.
    pub seconds: f64,
    /// Wall time per number sent.
    pub us_per_number: f64,
}

/// Runs the Queue version once.
pub fn run(cfg: &Config) -> Result<Outcome> {
    let (lo, hi) = cfg.range;
    if lo >= hi || cfg.processes == 0 || cfg.batch == 0 {
        return Err(Error::InvalidArgument(
            "primes-queue needs a range A..B with A < B, --processes ≥ 1 and --batch ≥ 1".into(),
        ));
    }
    let expected = sieve_count(lo, hi);
    // 16 KiB-ish messages at most: room for 1000 numbers per batch; larger batches get larger slots.
    let item_bytes = 64 + 10 * cfg.batch;
    let jobs = Queue::<Option<Vec<u64>>>::with_max_item_bytes(1024, item_bytes)?;
    let results = Queue::<Option<Vec<u64>>>::with_max_item_bytes(1024, item_bytes)?;
    let t = Instant::now();
    let kernel = cfg.kernel;
    let workers: Vec<Process> = (0..cfg.processes)
        .map(|_| {
            Process::spawn(|| -> Result<()> {
                while let Some(batch) = jobs.get()? {
                    let primes: Vec<u64> = batch.into_iter().filter(|&n| is_prime(n, kernel)).collect();
                    results.put(Some(primes))?;
                }
                results.put(None)?; // this worker's "done"
                Ok(())
            })
        })
        .collect::<Result<_>>()?;
    let start = if cfg.odd_only { lo | 1 } else { lo };
    let step = if cfg.odd_only { 2 } else { 1 };
    let numbers = (start..hi).step_by(step as usize).count() as u64;
    let messages = numbers.div_ceil(cfg.batch as u64);
    // Two is the one even prime the odd-only variant never sends.
    let mut primes = u64::from(cfg.odd_only && (lo..hi).contains(&2));
    let mut done = 0;
    let mut collect = |r: Option<Vec<u64>>, done: &mut usize| match r {
        Some(p) => primes += p.len() as u64,
        None => *done += 1,
    };
    let batches = || {
        let mut it = (start..hi).step_by(step as usize).peekable();
        std::iter::from_fn(move || {
            it.peek()?;
            Some(it.by_ref().take(cfg.batch).collect::<Vec<u64>>())
        })
    };
    if cfg.feeder {
        std::thread::scope(|s| -> Result<()> {
            let feeder = s.spawn(|| -> Result<()> {
                for b in batches() {
                    jobs.put(Some(b))?;
                }
                for _ in 0..cfg.processes {
                    jobs.put(None)?;
                }
                Ok(())
            });
            while done < cfg.processes {
                collect(results.get()?, &mut done);
            }
            feeder.join().map_err(|_| Error::Misuse("the feeder thread panicked".into()))?
        })?;
    } else {
        let pills = std::iter::repeat_with(|| None).take(cfg.processes);
        for item in batches().map(Some).chain(pills) {
            let mut item = item;
            loop {
                match jobs.try_put(item) {
                    Ok(()) => break,
                    Err(mproc::PutError::Full(back)) => {
                        item = back;
                        // The job queue is full: make room downstream so the workers can go on.
                        match results.get_timeout(std::time::Duration::from_millis(1)) {
                            Ok(r) => collect(r, &mut done),
                            Err(Error::Timeout) => {}
                            Err(e) => return Err(e),
                        }
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        while done < cfg.processes {
            collect(results.get()?, &mut done);
        }
    }
    for mut w in workers {
        let st = w.join()?;
        if !st.success() {
            return Err(Error::ChildFailed { pid: w.pid(), status: st });
        }
    }
    let seconds = t.elapsed().as_secs_f64();
    if primes != expected {
        return Err(Error::Corrupt(format!(
            "the queue version counted {primes} primes in [{lo}, {hi}); the sieve says {expected}"
        )));
    }
    Ok(Outcome { primes, expected, numbers, messages, seconds, us_per_number: seconds * 1e6 / numbers as f64 })
}
