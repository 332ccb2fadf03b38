//! The parent's side of a Pool, composed: worker slots, dispatch, jobs and results, supervision,
//! and the loop that drives them and sleeps when there is nothing to do.
//!
//! Everything runs on the caller's thread, inside the Pool's calls: there is no background
//! thread (a thread in the parent would make every later fork — respawning a worker — unsafe).

use std::os::fd::AsRawFd;
use std::time::Instant;

use crate::error::{Error, Result};
use crate::pool::Settings;
use crate::pool::dispatch::Dispatch;
use crate::pool::job::{Job, Jobs};
use crate::pool::slots::Slot;
use crate::pool::supervise::{Spawner, Supervisor};
use crate::pool::wire;
use crate::queue::ring;
use crate::sys::{self, EventFd, SigintGuard};

/// Where the pool is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Life {
    Open,
    /// `close()`: no new work; submitted work goes on.
    Closed,
    /// Terminated, joined or interrupted: the workers are gone.
    Ended,
}

pub(crate) struct Core {
    slots: Vec<Slot>,
    pub(crate) jobs: Jobs,
    dispatch: Dispatch,
    sup: Supervisor,
    /// Workers (and the SIGINT handler) wake the parent's `poll` through it.
    wake: EventFd,
    life: Life,
    /// Every mapping with a serial up to this existed when the workers were forked, so they
    /// have it ([`crate::Pool::map_array`]).
    pub(crate) mapped_before: u64,
}

impl Core {
    pub(crate) fn start(settings: Settings, spawner: Spawner, base_seed: u64) -> Result<Core> {
        let slots = (0..settings.processes).map(|_| Slot::new(settings.max_message_bytes)).collect::<Result<_>>()?;
        let mut core = Core {
            slots,
            jobs: Jobs::default(),
            dispatch: Dispatch::default(),
            sup: Supervisor::new(spawner, settings, base_seed),
            wake: EventFd::new()?,
            life: Life::Open,
            mapped_before: crate::shm::mapping_serial(),
        };
        for i in 0..core.slots.len() {
            if let Err(e) = core.sup.spawn(&mut core.slots[i], i, &core.wake) {
                core.terminate();
                return Err(e);
            }
        }
        Ok(core)
    }

    pub(crate) fn processes(&self) -> usize {
        self.slots.len()
    }

    pub(crate) fn pids(&self) -> Vec<i32> {
        self.slots.iter().filter(|s| s.alive).map(|s| s.pid).collect()
    }

    /// Largest encoded argument, result or per-call value.
    pub(crate) fn max_message_bytes(&self) -> usize {
        self.sup.settings.max_message_bytes
    }

    pub(crate) fn check_open(&self) -> Result<()> {
        if self.life != Life::Open {
            return Err(Error::PoolClosed);
        }
        if let Some(b) = &self.sup.broken {
            return Err(Error::PoolBroken { reason: b.clone() });
        }
        Ok(())
    }

    pub(crate) fn submit(&mut self, job: Job) -> Result<u64> {
        self.check_open()?;
        if job.chunksize == 0 {
            return Err(Error::InvalidArgument("chunksize must be at least 1".into()));
        }
        Ok(self.jobs.insert(job))
    }

    /// Forget a job nobody will read: stop feeding it, take back its chunks that have not started
    /// (they are not run); drop it once nothing of it is in flight.
    pub(crate) fn abandon(&mut self, id: u64) {
        if let Some(j) = self.jobs.get_mut(id) {
            j.abandoned = true;
        }
        self.dispatch.cancel(&mut self.slots, id);
        let (slots, dispatch) = (&self.slots, &self.dispatch);
        self.jobs
            .drop_abandoned(|id| dispatch.holds(id) || slots.iter().any(|s| s.inflight.iter().any(|f| f.job == id)));
    }

    /// Removes and returns a job.
    pub(crate) fn take(&mut self, id: u64) -> Option<Job> {
        self.jobs.remove(id)
    }

    pub(crate) fn close(&mut self) {
        if self.life == Life::Open {
            self.life = Life::Closed;
        }
    }

    fn stopping(&self) -> bool {
        self.life == Life::Ended || (self.life == Life::Closed && self.jobs.is_empty())
    }

    fn collect(&mut self) -> Result<usize> {
        let mut n = 0;
        for s in self.slots.iter_mut().filter(|s| s.alive) {
            n += self.jobs.collect_from(s, &mut self.dispatch)?;
        }
        Ok(n)
    }

    /// Sleeps until a result arrives, a worker dies, SIGINT, or `deadline`.
    fn wait(&mut self, deadline: Option<Instant>) -> Result<()> {
        // While time limits apply and work is out, wake up to check them.
        let deadline = if self.sup.timing(&self.jobs) && self.slots.iter().any(|s| !s.inflight.is_empty()) {
            let tick = Instant::now() + self.sup.tick(&self.jobs);
            Some(deadline.map_or(tick, |d| d.min(tick)))
        } else {
            deadline
        };
        let mut fds = vec![self.wake.as_raw_fd()];
        let mut who = vec![usize::MAX];
        for (i, s) in self.slots.iter().enumerate() {
            if let (true, Some(p)) = (s.alive, &s.pidfd) {
                fds.push(p.as_raw_fd());
                who.push(i);
            }
        }
        let consumers = self.slots.iter().filter(|s| s.alive).map(|s| s.chan.results());
        let slept = ring::wait_any(consumers, || {
            sys::wait_readable(&fds, deadline.map(|d| d.saturating_duration_since(Instant::now())))
        });
        let Some(ready) = slept else { return Ok(()) };
        self.wake.drain();
        let stopping = self.stopping();
        for k in ready? {
            if who[k] != usize::MAX {
                self.sup.reap(who[k], &mut self.slots, &mut self.jobs, &mut self.dispatch, &self.wake, stopping)?;
            }
        }
        self.sup.noted_check();
        Ok(())
    }

    /// Runs the pool until `done(self)` holds (`Ok(true)`) or `deadline` passes (`Ok(false)`).
    pub(crate) fn drive(&mut self, done: impl Fn(&Core) -> bool, deadline: Option<Instant>) -> Result<bool> {
        let _sigint = SigintGuard::install(&self.wake)?;
        loop {
            if sys::take_sigint() {
                self.terminate();
                return Err(Error::Interrupted);
            }
            if done(self) {
                return Ok(true);
            }
            if let Some(b) = &self.sup.broken {
                return Err(Error::PoolBroken { reason: b.clone() });
            }
            if self.life == Life::Ended {
                return Err(Error::PoolClosed);
            }
            let item_limit = self.max_message_bytes();
            let timing = self.sup.timing(&self.jobs);
            self.dispatch.run(&mut self.slots, &mut self.jobs, item_limit, timing);
            let answered = self.collect()?;
            if timing {
                self.sup.check_timeouts(&mut self.slots, &self.jobs);
            }
            // Dispatch may have just found the job's source exhausted, with every answer already
            // in: that is completion, and no worker will wake us for it. Check before sleeping.
            if done(self) {
                return Ok(true);
            }
            if answered > 0 {
                if self.sup.check_due() {
                    let stopping = self.stopping();
                    self.sup.check_deaths(&mut self.slots, &mut self.jobs, &mut self.dispatch, &self.wake, stopping)?;
                }
                continue;
            }
            if self.dispatch.steal(&mut self.slots, &self.jobs) {
                continue;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(false);
            }
            self.wait(deadline)?;
        }
    }

    /// Kills every worker (SIGKILL) and reaps it. The pool takes no more work.
    pub(crate) fn terminate(&mut self) {
        self.life = Life::Ended;
        for s in self.slots.iter().filter(|s| s.alive) {
            let _ = sys::kill(s.pid, libc::SIGKILL);
        }
        for s in self.slots.iter_mut().filter(|s| s.alive) {
            let _ = sys::wait_exit(s.pid, true);
            s.gone();
        }
    }

    /// After `close`: finishes every job, tells the workers to stop, and waits for them. After
    /// `terminate` (or an interrupt): nothing left to wait for.
    pub(crate) fn join(&mut self) -> Result<()> {
        match self.life {
            Life::Ended => return Ok(()),
            Life::Open => return Err(Error::Misuse("call close() (or terminate()) before join()".into())),
            Life::Closed => {}
        }
        self.drive(|c| c.jobs.all_settled() && c.dispatch.is_idle(), None)?;
        for s in self.slots.iter().filter(|s| s.alive) {
            // At most one unanswered chunk is still in the ring (its results are in), and a STOP
            // always fits beside a record of at most half the ring; the loop is a safety net.
            while s.chan.tasks().try_push(wire::STOP, &[]).is_err() {
                std::thread::sleep(std::time::Duration::from_micros(50));
            }
        }
        for s in self.slots.iter_mut().filter(|s| s.alive) {
            let _ = sys::wait_exit(s.pid, true);
            s.gone();
        }
        self.life = Life::Ended;
        Ok(())
    }

    pub(crate) fn is_terminated(&self) -> bool {
        self.life == Life::Ended
    }

    /// Whether every job that was submitted is complete or abandoned.
    pub(crate) fn all_settled(&self) -> bool {
        self.jobs.all_settled() && self.dispatch.is_idle()
    }
}

impl Drop for Core {
    fn drop(&mut self) {
        self.terminate();
    }
}
