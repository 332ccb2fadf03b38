//! Supervision of the workers: forking them, noticing deaths, blaming the task a dead worker was
//! running (fail it, or retry it), sending its other chunks elsewhere, and forking a replacement —
//! unless the slot keeps dying before doing anything (strikes).

use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::error::{Error, Result, Signal};
use crate::pool::dispatch::Dispatch;
use crate::pool::job::Jobs;
use crate::pool::slots::{InFlight, Slot};
use crate::pool::task::InitFn;
use crate::pool::{OnWorkerDeath, Settings, worker};
use crate::process::fork_with;
use crate::sys::{self, EventFd, PidFd, WaitOutcome};

/// A worker that dies this many times in a row without finishing a task or being blamed for
/// one is not replaced again: something fails before tasks run (the initializer, say).
const MAX_STRIKES: u32 = 3;

/// How a worker's code is started: the context, and the initializers (type-erased by the Pool).
pub(crate) struct Spawner {
    /// The pool's context (boxed by the Pool, alive as long as the workers).
    pub ctx: *const (),
    /// An initializer given before `context()`: it runs with `&()`.
    pub unit_init: Option<fn(&())>,
    /// The initializer for the context.
    pub init: Option<InitFn>,
}

impl Spawner {
    /// Runs the initializers; in the worker, after fork.
    fn run_init(&self) {
        if let Some(f) = self.unit_init {
            f(&());
        }
        if let Some(f) = self.init {
            // SAFETY: the Pool made `init` from an `fn(&Ctx)` for the type of the context `ctx`
            // points to, which it keeps alive (boxed) as long as the workers.
            unsafe { f.run(self.ctx) };
        }
    }
}

pub(crate) struct Supervisor {
    spawner: Spawner,
    pub(crate) settings: Settings,
    base_seed: u64,
    /// Why the pool can run nothing any more.
    pub broken: Option<String>,
    last_check: Instant,
    /// When time limits were last checked.
    last_timeouts: Instant,
}

impl Supervisor {
    pub(crate) fn new(spawner: Spawner, settings: Settings, base_seed: u64) -> Supervisor {
        Supervisor {
            spawner,
            settings,
            base_seed,
            broken: None,
            last_check: Instant::now(),
            last_timeouts: Instant::now(),
        }
    }

    /// Forks the worker for slot `i`.
    pub(crate) fn spawn(&self, slot: &mut Slot, i: usize, wake: &EventFd) -> Result<()> {
        let chan = &slot.chan;
        let ctx = self.spawner.ctx;
        let spawner = &self.spawner;
        let seed = crate::worker::seed_for(self.base_seed, i);
        let max_tasks = self.settings.max_tasks_per_child;
        let item_limit = self.settings.max_message_bytes;
        let pid = fork_with(self.settings.fork_policy, &[wake.as_raw_fd()], || {
            sys::ignore_signal(libc::SIGINT);
            crate::worker::set(i, seed);
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| spawner.run_init())).is_err() {
                return 3;
            }
            worker::serve(ctx, chan.worker_tasks(), chan.worker_results(wake), chan.shared(), max_tasks, item_limit)
        })?;
        slot.pid = pid;
        slot.pidfd = PidFd::open(pid).ok();
        slot.alive = true;
        slot.args_sent.clear();
        slot.timed_out = None;
        slot.watch = ((0, 0, 0), Instant::now());
        Ok(())
    }

    /// The time limit of the task worker `slot` runs (or would run next): its job's, else the
    /// pool's.
    fn limit_for(&self, slot: &Slot, jobs: &Jobs) -> Option<Duration> {
        let shared = slot.chan.shared();
        let job = if shared.current_item.load(Ordering::Relaxed) != 0 {
            shared.current_job.load(Ordering::Relaxed)
        } else {
            slot.inflight.front()?.job
        };
        jobs.get(job).and_then(|j| j.timeout).or(self.settings.task_timeout)
    }

    /// Whether any time limit may apply (then the parent does not sleep past [`Self::tick`]).
    pub(crate) fn timing(&self, jobs: &Jobs) -> bool {
        self.settings.task_timeout.is_some() || jobs.any_timeout()
    }

    /// How often time limits are checked while work is out.
    pub(crate) fn tick(&self, jobs: &Jobs) -> Duration {
        let shortest = jobs.min_timeout().into_iter().chain(self.settings.task_timeout).min();
        shortest
            .map_or(Duration::from_millis(100), |d| (d / 8).clamp(Duration::from_millis(1), Duration::from_millis(100)))
    }

    /// Kills every worker that has shown no progress (no task started or finished) for longer
    /// than the time limit of the task it runs (or, if stopped before starting it, of the
    /// next). The death is then handled as any other, with the task failing as timed out.
    pub(crate) fn check_timeouts(&mut self, slots: &mut [Slot], jobs: &Jobs) {
        let now = Instant::now();
        if now.saturating_duration_since(self.last_timeouts) < Duration::from_millis(1) {
            return;
        }
        self.last_timeouts = now;
        for s in slots.iter_mut().filter(|s| s.alive && s.timed_out.is_none()) {
            let shared = s.chan.shared();
            // `current_item` too: with plain results `started` is counted per chunk, not per task.
            let mark = (
                shared.started.load(Ordering::Relaxed),
                shared.done.load(Ordering::Relaxed),
                shared.current_item.load(Ordering::Relaxed),
            );
            if s.inflight.is_empty() || mark != s.watch.0 {
                s.watch = (mark, now);
                continue;
            }
            let Some(limit) = self.limit_for(s, jobs) else { continue };
            let ran = now.saturating_duration_since(s.watch.1);
            if ran > limit {
                s.timed_out = Some(limit);
                let _ = sys::kill(s.pid, libc::SIGKILL);
            }
        }
    }

    /// Whether a periodic death check is due (while results flow, the parent does not sleep in
    /// `poll`, so it looks at the pidfds at most every millisecond).
    pub(crate) fn check_due(&self) -> bool {
        self.last_check.elapsed() > Duration::from_millis(1)
    }

    /// Checks every worker's pidfd without blocking and handles the dead.
    pub(crate) fn check_deaths(
        &mut self,
        slots: &mut [Slot],
        jobs: &mut Jobs,
        dispatch: &mut Dispatch,
        wake: &EventFd,
        stopping: bool,
    ) -> Result<()> {
        let fds: Vec<(usize, i32)> = slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.pidfd.as_ref().filter(|_| s.alive).map(|p| (i, p.as_raw_fd())))
            .collect();
        let raw: Vec<i32> = fds.iter().map(|&(_, fd)| fd).collect();
        for k in sys::wait_readable(&raw, Some(Duration::ZERO))? {
            self.reap(fds[k].0, slots, jobs, dispatch, wake, stopping)?;
        }
        self.noted_check();
        Ok(())
    }

    pub(crate) fn noted_check(&mut self) {
        self.last_check = Instant::now();
    }

    /// Handles the end of worker `i`, if it has ended: collects what it published, blames its
    /// task, requeues the rest of its chunks, and replaces it (unless `stopping`).
    pub(crate) fn reap(
        &mut self,
        i: usize,
        slots: &mut [Slot],
        jobs: &mut Jobs,
        dispatch: &mut Dispatch,
        wake: &EventFd,
        stopping: bool,
    ) -> Result<()> {
        let pid = slots[i].pid;
        let (signal, code) = match sys::wait_exit(pid, false)? {
            WaitOutcome::Running => return Ok(()),
            WaitOutcome::Signaled(s) => (Some(Signal(s)), None),
            WaitOutcome::Exited(c) => (None, Some(c)),
        };
        jobs.collect_from(&mut slots[i], dispatch)?;
        let slot = &mut slots[i];
        slot.gone();
        let shared = slot.chan.shared();
        let current = shared.current_item.load(Ordering::Relaxed);
        let current_job = shared.current_job.load(Ordering::Relaxed);
        let finished_any = shared.done.load(Ordering::Relaxed) > 0;
        let timed_out = slot.timed_out.take();
        let blamed =
            self.blame(slot, current_job, current.checked_sub(1), jobs, dispatch, pid, signal, code, timed_out);
        slot.chan.reset();
        let clean_exit = (code == Some(0) || timed_out.is_some()) && !blamed;
        slot.strikes = if blamed || finished_any || clean_exit { 0 } else { slot.strikes + 1 };
        if stopping {
            return Ok(());
        }
        if slot.strikes >= MAX_STRIKES {
            let why = format!(
                "worker {i} died {MAX_STRIKES} times in a row before running any task (last: pid {pid}, {}); \
                 is the initializer failing?",
                signal.map_or_else(|| format!("exit code {}", code.unwrap_or(-1)), |s| format!("killed by {s}"))
            );
            if slots.iter().all(|s| !s.alive) {
                self.fail_everything(&why, jobs, dispatch);
            }
            return Ok(());
        }
        if let Err(e) = self.spawn(&mut slots[i], i, wake)
            && slots.iter().all(|s| !s.alive)
        {
            self.fail_everything(&format!("no worker left: replacing worker {i} failed: {e}"), jobs, dispatch);
        }
        Ok(())
    }

    /// Sorts a dead worker's unanswered chunks: the task it was running (`running`, of
    /// `running_job`) fails or is retried; every other task is sent again. Returns whether a
    /// task was blamed.
    #[allow(clippy::too_many_arguments)]
    fn blame(
        &self,
        slot: &mut Slot,
        running_job: u64,
        running: Option<u64>,
        jobs: &mut Jobs,
        dispatch: &mut Dispatch,
        pid: i32,
        signal: Option<Signal>,
        code: Option<i32>,
        timed_out: Option<Duration>,
    ) -> bool {
        let mut blamed = false;
        slot.inflight_items = 0;
        for mut e in slot.inflight.drain(..) {
            let Some(task) = running.filter(|&t| e.holds(running_job, t)) else {
                dispatch.requeue_back(e);
                continue;
            };
            blamed = true;
            if matches!(self.settings.on_worker_death, OnWorkerDeath::Retry(n) if e.retries < n) {
                e.retries += 1;
                dispatch.requeue_front(e);
                continue;
            }
            if let Some(job) = jobs.get_mut(e.job) {
                let e = match timed_out {
                    Some(after) => Error::TaskTimedOut { task, pid, after },
                    None => Error::WorkerDied { pid, signal, code, task: Some(task) },
                };
                job.fail(task, e);
            }
            jobs.settle(e.job);
            // The rest of the chunk runs again: the tasks before the fatal one (their results
            // died with the worker) and those after it.
            let rel = (task - e.first) as u32;
            let InFlight { job, first, start, end, bytes, retries, seq, base, flags } = e;
            if rel + 1 < end {
                let bytes = bytes.clone();
                dispatch.requeue_front(InFlight { job, first, start: rel + 1, end, bytes, retries, seq, base, flags });
            }
            if start < rel {
                dispatch.requeue_front(InFlight { job, first, start, end: rel, bytes, retries, seq, base, flags });
            }
        }
        blamed
    }

    fn fail_everything(&mut self, why: &str, jobs: &mut Jobs, dispatch: &mut Dispatch) {
        self.broken = Some(why.to_owned());
        dispatch.clear();
        jobs.abandon_all();
    }
}
