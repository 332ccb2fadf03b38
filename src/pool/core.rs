//! The parent's side of a Pool: dispatch, collection, waiting, and the supervisor that turns a
//! dead worker into an error for its one task and a fresh worker.
//!
//! Everything runs on the caller's thread, inside the Pool's calls: there is no background
//! thread (a thread in the parent would make every later fork — respawning a worker — unsafe).

use std::collections::{BTreeMap, VecDeque};
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::error::{Error, Result, Signal};
use crate::pool::job::{Sink, Source, deliver};
use crate::pool::wire::{self, RESULT_HDR, ResultHeader, TASK_HDR, TaskHeader};
use crate::pool::worker::{self, WorkerShared, spin_until};
use crate::pool::{OnWorkerDeath, Settings};
use crate::process::fork_with;
use crate::queue::ring::{Ring, RingControl};
use crate::shm::Segment;
use crate::sys::{self, EventFd, PidFd, SigintGuard, WaitOutcome};

/// A worker that dies this many times in a row without finishing a task or being blamed for
/// one is not replaced again: something fails before tasks run (the initializer, say).
const MAX_STRIKES: u32 = 3;

/// Tasks handed to a worker and not yet answered: items `start..end` of a chunk.
struct InFlight {
    job: u64,
    first: u64,
    start: u32,
    end: u32,
    bytes: Rc<Vec<u8>>,
    retries: u32,
}

struct Slot {
    _seg: Segment,
    shared: *const WorkerShared,
    input: Ring,
    output: Ring,
    pid: i32,
    pidfd: Option<PidFd>,
    alive: bool,
    inflight: VecDeque<InFlight>,
    inflight_items: usize,
    strikes: u32,
}

impl Slot {
    fn shared(&self) -> &WorkerShared {
        // SAFETY: points into `_seg`, which this slot keeps mapped.
        unsafe { &*self.shared }
    }
}

pub(crate) struct Job {
    tramp: usize,
    func: usize,
    chunksize: usize,
    source: Box<dyn Source>,
    pub(crate) sink: Box<dyn Sink>,
    pub(crate) resolved: u64,
    pub(crate) failed: usize,
    /// Nobody will read the results any more (an iterator or AsyncResult was dropped).
    abandoned: bool,
}

impl Job {
    pub(crate) fn complete(&self) -> bool {
        self.source.exhausted() && self.resolved == self.source.produced()
    }
}

/// Runs an initializer `fn(&Ctx)` (the `usize`) on the context (the pointer), type-erased.
pub(crate) type InitTramp = unsafe fn(*const (), usize);

/// How a worker's code is started: the context and initializer, type-erased by the Pool.
pub(crate) struct Spawner {
    pub ctx: *const (),
    pub init: Option<(InitTramp, usize)>,
}

pub(crate) struct Core {
    slots: Vec<Slot>,
    pub(crate) jobs: BTreeMap<u64, Job>,
    next_job: u64,
    requeue: VecDeque<InFlight>,
    wake: EventFd,
    spawner: Spawner,
    settings: Settings,
    base_seed: u64,
    rr: usize,
    pub(crate) closed: bool,
    terminated: bool,
    broken: Option<String>,
    rejected: Vec<(u64, Error)>,
    spare: Vec<Vec<u8>>,
    last_death_check: Instant,
}

fn ring_bytes(max_message: usize) -> usize {
    (2 * (max_message + TASK_HDR.max(RESULT_HDR) + 64)).next_multiple_of(4096)
}

impl Core {
    pub(crate) fn start(settings: Settings, spawner: Spawner, base_seed: u64) -> Result<Core> {
        let cap = ring_bytes(settings.max_message_bytes);
        let ctl = std::mem::size_of::<RingControl>().next_multiple_of(128);
        let head = std::mem::size_of::<WorkerShared>().next_multiple_of(128);
        let mut slots = Vec::with_capacity(settings.processes);
        for _ in 0..settings.processes {
            let seg = Segment::anonymous(head + 2 * ctl + 2 * cap)?;
            let base = seg.as_ptr();
            // SAFETY: the segment is zeroed and laid out as [WorkerShared | in ctl | out ctl |
            // in data | out data], each part inside it and 128-byte aligned; it lives in the slot.
            let (shared, input, output) = unsafe {
                (
                    base.cast::<WorkerShared>().cast_const(),
                    Ring::from_raw(base.add(head).cast(), base.add(head + 2 * ctl), cap),
                    Ring::from_raw(base.add(head + ctl).cast(), base.add(head + 2 * ctl + cap), cap),
                )
            };
            slots.push(Slot {
                _seg: seg,
                shared,
                input,
                output,
                pid: 0,
                pidfd: None,
                alive: false,
                inflight: VecDeque::new(),
                inflight_items: 0,
                strikes: 0,
            });
        }
        let mut core = Core {
            slots,
            jobs: BTreeMap::new(),
            next_job: 1,
            requeue: VecDeque::new(),
            wake: EventFd::new()?,
            spawner,
            settings,
            base_seed,
            rr: 0,
            closed: false,
            terminated: false,
            broken: None,
            rejected: Vec::new(),
            spare: Vec::new(),
            last_death_check: Instant::now(),
        };
        for i in 0..core.slots.len() {
            if let Err(e) = core.spawn(i) {
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

    /// Forks the worker for slot `i`.
    fn spawn(&mut self, i: usize) -> Result<()> {
        let slot = &self.slots[i];
        let (input, output, shared) = (slot.input, slot.output, slot.shared());
        let (ctx, init) = (self.spawner.ctx, self.spawner.init);
        let wake = &self.wake;
        let seed = crate::worker::seed_for(self.base_seed, i);
        let max_tasks = self.settings.max_tasks_per_child;
        shared.current_item.store(0, Ordering::Relaxed);
        shared.done.store(0, Ordering::Relaxed);
        let pid = fork_with(self.settings.fork_policy, &[wake.as_raw_fd()], || {
            sys::ignore_signal(libc::SIGINT);
            crate::worker::set(i, seed);
            worker::install_panic_hook();
            if let Some((tramp, f)) = init {
                // SAFETY: built by the Pool from an `fn(&Ctx)` and this pool's context type.
                let ok = std::panic::catch_unwind(|| unsafe { tramp(ctx, f) }).is_ok();
                if !ok {
                    return 3;
                }
            }
            worker::serve(ctx, input, output, shared, wake, max_tasks)
        })?;
        let slot = &mut self.slots[i];
        slot.pid = pid;
        slot.pidfd = PidFd::open(pid).ok();
        slot.alive = true;
        Ok(())
    }

    pub(crate) fn check_open(&self) -> Result<()> {
        if self.closed || self.terminated {
            return Err(Error::PoolClosed);
        }
        if let Some(b) = &self.broken {
            return Err(Error::PoolBroken { reason: b.clone() });
        }
        Ok(())
    }

    pub(crate) fn submit(
        &mut self,
        tramp: usize,
        func: usize,
        chunksize: usize,
        source: Box<dyn Source>,
        sink: Box<dyn Sink>,
    ) -> Result<u64> {
        self.check_open()?;
        if chunksize == 0 {
            return Err(Error::InvalidArgument("chunksize must be at least 1".into()));
        }
        let id = self.next_job;
        self.next_job += 1;
        self.jobs.insert(id, Job { tramp, func, chunksize, source, sink, resolved: 0, failed: 0, abandoned: false });
        Ok(id)
    }

    /// Forget a job nobody will read: stop feeding it; drop it once nothing of it is in flight.
    pub(crate) fn abandon(&mut self, id: u64) {
        if let Some(j) = self.jobs.get_mut(&id) {
            j.abandoned = true;
        }
        self.reap_abandoned();
    }

    fn reap_abandoned(&mut self) {
        let busy: Vec<u64> = self
            .slots
            .iter()
            .flat_map(|s| s.inflight.iter().map(|f| f.job))
            .chain(self.requeue.iter().map(|f| f.job))
            .collect();
        self.jobs.retain(|id, j| !j.abandoned || busy.contains(id));
    }

    /// Removes and returns a finished job.
    pub(crate) fn take(&mut self, id: u64) -> Option<Job> {
        self.jobs.remove(&id)
    }

    // ---- dispatch -------------------------------------------------------------------------

    fn buf(&mut self) -> Vec<u8> {
        self.spare.pop().unwrap_or_default()
    }

    fn recycle(&mut self, b: Rc<Vec<u8>>) {
        if let Ok(v) = Rc::try_unwrap(b)
            && self.spare.len() < 1024
        {
            self.spare.push(v);
        }
    }

    /// The next chunk to send: one to send again first, else a fresh one from the oldest job.
    fn next_entry(&mut self) -> Option<InFlight> {
        if let Some(e) = self.requeue.pop_front() {
            return Some(e);
        }
        let max_bytes = self.slots[0].input.max_record() - TASK_HDR;
        // Oldest job first. A job whose source turns out to be exhausted is not found again.
        while let Some(id) = self.jobs.iter().find(|(_, j)| !j.abandoned && !j.source.exhausted()).map(|(&id, _)| id) {
            let mut buf = self.buf();
            let job = self.jobs.get_mut(&id).expect("found above");
            let chunk = job.source.next_chunk(&mut buf, job.chunksize, max_bytes, &mut self.rejected);
            for (idx, e) in self.rejected.drain(..) {
                job.sink.fail(idx, e);
                job.resolved += 1;
                job.failed += 1;
            }
            if let Some((first, count)) = chunk {
                return Some(InFlight { job: id, first, start: 0, end: count, bytes: Rc::new(buf), retries: 0 });
            }
            self.spare.push(buf);
        }
        None
    }

    fn dispatch(&mut self) {
        let n = self.slots.len();
        loop {
            let mut sent = false;
            for k in 0..n {
                let i = (self.rr + k) % n;
                let s = &self.slots[i];
                if !s.alive || (s.inflight.len() >= 2 && s.inflight_items >= 256) {
                    continue;
                }
                let Some(e) = self.next_entry() else { return };
                let Some(job) = self.jobs.get(&e.job) else { continue };
                let h = TaskHeader {
                    job: e.job,
                    first: e.first,
                    start: e.start,
                    end: e.end,
                    tramp: job.tramp,
                    func: job.func,
                };
                let s = &mut self.slots[i];
                let pushed = s.input.try_push_with(wire::TASK, TASK_HDR + e.bytes.len(), |b| {
                    b[..TASK_HDR].copy_from_slice(wire::header_bytes(&h));
                    b[TASK_HDR..].copy_from_slice(&e.bytes);
                });
                match pushed {
                    Ok(asleep) => {
                        if asleep && s.input.ctl().consumer_asleep.swap(0, Ordering::SeqCst) != 0 {
                            sys::futex_wake_one(&s.input.ctl().consumer_asleep);
                        }
                        s.inflight_items += (e.end - e.start) as usize;
                        s.inflight.push_back(e);
                        sent = true;
                    }
                    Err(_) => self.requeue.push_front(e),
                }
            }
            self.rr = (self.rr + 1) % n;
            if !sent {
                return;
            }
        }
    }

    // ---- collection -----------------------------------------------------------------------

    /// Reads every finished result of worker `i`; returns how many tasks they answered.
    fn collect_from(&mut self, i: usize) -> usize {
        let mut answered = 0;
        loop {
            let out = self.slots[i].output;
            let Some((_, body)) = out.peek() else { break };
            let h: ResultHeader = wire::read_header(body);
            let items = &body[RESULT_HDR..];
            if let Some(job) = self.jobs.get_mut(&h.job) {
                let failed = if job.abandoned { 0 } else { deliver(&mut *job.sink, h.first, h.count, items) };
                job.resolved += u64::from(h.count);
                job.failed += failed;
            }
            answered += h.count as usize;
            let slot = &mut self.slots[i];
            slot.strikes = 0;
            slot.inflight_items = slot.inflight_items.saturating_sub(h.count as usize);
            if let Some(f) = slot.inflight.front_mut()
                && f.job == h.job
                && f.first + u64::from(f.start) == h.first
            {
                f.start += h.count;
                if f.start >= f.end {
                    let done = slot.inflight.pop_front().expect("front exists");
                    self.recycle(done.bytes);
                }
            }
            if out.pop() && out.ctl().producer_asleep.swap(0, Ordering::SeqCst) != 0 {
                sys::futex_wake_one(&out.ctl().producer_asleep);
            }
        }
        answered
    }

    fn collect(&mut self) -> usize {
        let mut n = 0;
        for i in 0..self.slots.len() {
            if self.slots[i].alive {
                n += self.collect_from(i);
            }
        }
        n
    }

    // ---- supervision ----------------------------------------------------------------------

    /// Checks every worker's pidfd without blocking and handles the dead.
    fn check_deaths(&mut self) -> Result<()> {
        self.last_death_check = Instant::now();
        let fds: Vec<(usize, i32)> = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.pidfd.as_ref().filter(|_| s.alive).map(|p| (i, p.as_raw_fd())))
            .collect();
        let raw: Vec<i32> = fds.iter().map(|&(_, fd)| fd).collect();
        for k in sys::wait_readable(&raw, Some(Duration::ZERO))? {
            self.reap(fds[k].0)?;
        }
        Ok(())
    }

    /// Handles the end of worker `i`, if it has ended.
    fn reap(&mut self, i: usize) -> Result<()> {
        let pid = self.slots[i].pid;
        let outcome = sys::wait_exit(pid, false)?;
        let (signal, code) = match outcome {
            WaitOutcome::Running => return Ok(()),
            WaitOutcome::Signaled(s) => (Some(Signal(s)), None),
            WaitOutcome::Exited(c) => (None, Some(c)),
        };
        self.collect_from(i);
        let slot = &mut self.slots[i];
        slot.alive = false;
        slot.pidfd = None;
        let current = slot.shared().current_item.load(Ordering::Relaxed);
        let current_job = slot.shared().current_job.load(Ordering::Relaxed);
        let finished_any = slot.shared().done.load(Ordering::Relaxed) > 0;
        let mut blamed = false;
        let inflight: Vec<InFlight> = slot.inflight.drain(..).collect();
        slot.inflight_items = 0;
        for mut e in inflight {
            let at = current.checked_sub(1).filter(|&t| {
                current_job == e.job && t >= e.first + u64::from(e.start) && t < e.first + u64::from(e.end)
            });
            let Some(task) = at else {
                self.requeue.push_back(e);
                continue;
            };
            blamed = true;
            let rel = (task - e.first) as u32;
            if matches!(self.settings.on_worker_death, OnWorkerDeath::Retry(n) if e.retries < n) {
                e.retries += 1;
                self.requeue.push_front(e);
                continue;
            }
            if let Some(job) = self.jobs.get_mut(&e.job) {
                if !job.abandoned {
                    job.sink.fail(task, Error::WorkerDied { pid, signal, code, task: Some(task) });
                }
                job.resolved += 1;
                job.failed += 1;
            }
            // The rest of the chunk runs again: the tasks before the fatal one (their results
            // died with the worker) and those after it.
            let InFlight { job, first, start, end, bytes, retries } = e;
            if rel + 1 < end {
                self.requeue.push_front(InFlight { job, first, start: rel + 1, end, bytes: bytes.clone(), retries });
            }
            if start < rel {
                self.requeue.push_front(InFlight { job, first, start, end: rel, bytes, retries });
            }
        }
        let slot = &mut self.slots[i];
        slot.input.reset();
        slot.output.reset();
        let clean_exit = code == Some(0) && !blamed;
        slot.strikes = if blamed || finished_any || clean_exit { 0 } else { slot.strikes + 1 };
        if self.terminated || (self.closed && self.jobs.is_empty()) {
            return Ok(());
        }
        if self.slots[i].strikes >= MAX_STRIKES {
            let why = format!(
                "worker {i} died {MAX_STRIKES} times in a row before running any task (last: pid {pid}, {}); \
                 is the initializer failing?",
                signal.map_or_else(|| format!("exit code {}", code.unwrap_or(-1)), |s| format!("killed by {s}"))
            );
            if self.slots.iter().all(|s| !s.alive) {
                self.fail_everything(&why);
            }
            return Ok(());
        }
        if let Err(e) = self.spawn(i)
            && self.slots.iter().all(|s| !s.alive)
        {
            self.fail_everything(&format!("no worker left: replacing worker {i} failed: {e}"));
        }
        Ok(())
    }

    fn fail_everything(&mut self, why: &str) {
        self.broken = Some(why.to_owned());
        self.requeue.clear();
        for job in self.jobs.values_mut() {
            job.abandoned = true;
        }
    }

    // ---- waiting --------------------------------------------------------------------------

    fn any_output(&self) -> bool {
        self.slots.iter().any(|s| s.alive && s.output.has_data())
    }

    /// Sleeps until a result arrives, a worker dies, SIGINT, or `deadline`.
    fn wait(&mut self, deadline: Option<Instant>) -> Result<()> {
        if spin_until(|| self.any_output()) {
            return Ok(());
        }
        for s in self.slots.iter().filter(|s| s.alive) {
            s.output.ctl().consumer_asleep.store(1, Ordering::SeqCst);
        }
        if !self.any_output() {
            let mut fds = vec![self.wake.as_raw_fd()];
            let mut who = vec![usize::MAX];
            for (i, s) in self.slots.iter().enumerate() {
                if let (true, Some(p)) = (s.alive, &s.pidfd) {
                    fds.push(p.as_raw_fd());
                    who.push(i);
                }
            }
            let timeout = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            let ready = sys::wait_readable(&fds, timeout)?;
            for s in &self.slots {
                s.output.ctl().consumer_asleep.store(0, Ordering::SeqCst);
            }
            self.wake.drain();
            for k in ready {
                if who[k] != usize::MAX {
                    self.reap(who[k])?;
                }
            }
            self.last_death_check = Instant::now();
        } else {
            for s in &self.slots {
                s.output.ctl().consumer_asleep.store(0, Ordering::SeqCst);
            }
        }
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
            if let Some(b) = &self.broken {
                return Err(Error::PoolBroken { reason: b.clone() });
            }
            if self.terminated {
                return Err(Error::PoolClosed);
            }
            self.dispatch();
            let answered = self.collect();
            // Dispatch may have just found the job's source exhausted, with every answer already
            // in: that is completion, and no worker will wake us for it. Check before sleeping.
            if done(self) {
                return Ok(true);
            }
            if answered > 0 {
                if self.last_death_check.elapsed() > Duration::from_millis(1) {
                    self.check_deaths()?;
                }
                continue;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(false);
            }
            self.wait(deadline)?;
        }
    }

    // ---- ending ---------------------------------------------------------------------------

    /// Kills every worker (SIGKILL) and reaps it. The pool takes no more work.
    pub(crate) fn terminate(&mut self) {
        self.terminated = true;
        for s in self.slots.iter_mut().filter(|s| s.alive) {
            let _ = sys::kill(s.pid, libc::SIGKILL);
        }
        for s in self.slots.iter_mut().filter(|s| s.alive) {
            let _ = sys::wait_exit(s.pid, true);
            s.alive = false;
            s.pidfd = None;
        }
    }

    /// After `close`: finishes every job, tells the workers to stop, and waits for them.
    pub(crate) fn join(&mut self) -> Result<()> {
        if !self.closed {
            return Err(Error::Misuse("call close() before join()".into()));
        }
        self.drive(|c| c.jobs.values().all(|j| j.complete() || j.abandoned) && c.requeue.is_empty(), None)?;
        for s in self.slots.iter().filter(|s| s.alive) {
            while s.input.try_push(wire::STOP, &[]).is_err() {
                std::thread::sleep(Duration::from_micros(50));
            }
            if s.input.ctl().consumer_asleep.swap(0, Ordering::SeqCst) != 0 {
                sys::futex_wake_one(&s.input.ctl().consumer_asleep);
            }
        }
        for s in self.slots.iter_mut().filter(|s| s.alive) {
            let _ = sys::wait_exit(s.pid, true);
            s.alive = false;
            s.pidfd = None;
        }
        self.terminated = true;
        Ok(())
    }

    pub(crate) fn is_terminated(&self) -> bool {
        self.terminated
    }
}

impl Drop for Core {
    fn drop(&mut self) {
        self.terminate();
    }
}
