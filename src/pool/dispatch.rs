//! Dispatch: which chunk goes to which worker next. Chunks to send again (after a worker died,
//! or taken back from a busy worker's queue) go first, then fresh chunks of the feedable jobs in
//! turn (fair: a short job is not queued behind a long one; a job held back by its window waits),
//! round-robin over the workers whose short, bounded queue has room.

use std::collections::VecDeque;
use std::rc::Rc;

use crate::error::Error;
use crate::pool::job::{Jobs, Limits};
use crate::pool::slots::{InFlight, Slot};
use crate::pool::wire::{self, CALL_ARG, ChunkBytes, JOB_END, JOB_HDR, JobHeader, TASK_HDR, TaskHeader};

/// Where a chunk stops growing (a single larger item still goes, alone).
const CHUNK_TARGET_BYTES: usize = 1 << 20;

#[derive(Default)]
pub(crate) struct Dispatch {
    /// Chunks to send (again) before any fresh one.
    requeue: VecDeque<InFlight>,
    /// Chunk buffers to reuse (no allocation per chunk in steady state).
    spare: Vec<ChunkBytes>,
    /// The worker to try first next time.
    rr: usize,
    /// Items a source could not send (encoding failed, too large), to fail in their job.
    rejected: Vec<(u64, Error)>,
}

impl Dispatch {
    pub(crate) fn requeue_front(&mut self, e: InFlight) {
        self.requeue.push_front(e);
    }

    pub(crate) fn requeue_back(&mut self, e: InFlight) {
        self.requeue.push_back(e);
    }

    /// Whether chunks wait to be sent again.
    pub(crate) fn is_idle(&self) -> bool {
        self.requeue.is_empty()
    }

    /// Whether a chunk of `job` waits to be sent again.
    pub(crate) fn holds(&self, job: u64) -> bool {
        self.requeue.iter().any(|e| e.job == job)
    }

    pub(crate) fn clear(&mut self) {
        self.requeue.clear();
    }

    pub(crate) fn recycle(&mut self, b: Rc<ChunkBytes>) {
        if let Ok(mut v) = Rc::try_unwrap(b)
            && self.spare.len() < 1024
        {
            // The items' own memory goes now, the buffers stay.
            v.blobs.clear();
            v.kept.clear();
            self.spare.push(v);
        }
    }

    /// Takes back the chunks queued on busy workers while another worker has nothing to do
    /// and nothing is left to send: a stuck, stopped or slow worker then holds up only the task
    /// it runs. Returns whether any chunk moved.
    pub(crate) fn steal(&mut self, slots: &mut [Slot], jobs: &Jobs) -> bool {
        if !self.requeue.is_empty() || !slots.iter().any(|s| s.alive && s.inflight.is_empty() && !s.saturated()) {
            return false;
        }
        if jobs.any_feedable() {
            return false;
        }
        let mut moved = false;
        for s in slots.iter_mut().filter(|s| s.alive && !s.inflight.is_empty()) {
            let shared = s.chan.shared();
            let claimed = shared.claim.load(std::sync::atomic::Ordering::SeqCst);
            if claimed == 0 || s.inflight.iter().all(|f| f.seq <= claimed) {
                // Still starting (its initializer runs): its queue is its own, as every worker
                // serves a share. Or nothing is queued behind what it runs.
                continue;
            }
            for e in s.revoke() {
                self.requeue.push_back(e);
                moved = true;
            }
        }
        moved
    }

    /// Takes back every chunk of `job` that has not started, and drops it (a cancelled call).
    pub(crate) fn cancel(&mut self, slots: &mut [Slot], job: u64) {
        self.requeue.retain(|e| e.job != job);
        for s in slots.iter_mut().filter(|s| s.alive && s.inflight.iter().any(|f| f.job == job)) {
            for e in s.revoke() {
                if e.job != job {
                    self.requeue.push_back(e);
                }
            }
            s.stalled_on = None;
        }
    }

    /// The next chunk to send: one to send again first, else a fresh one from the next job in turn.
    fn next_entry(&mut self, jobs: &mut Jobs, limits: Limits) -> Option<InFlight> {
        if let Some(e) = self.requeue.pop_front() {
            return Some(e);
        }
        // A job whose source turns out to be exhausted is not found again.
        while let Some(id) = jobs.next_feedable() {
            let mut buf = self.spare.pop().unwrap_or_default();
            let job = jobs.get_mut(id).expect("found above");
            let max = match job.window {
                Some(w) => {
                    (w.saturating_sub(job.source.produced().saturating_sub(job.taken)) as usize).clamp(1, job.chunksize)
                }
                None => job.chunksize,
            };
            let chunk = job.source.next_chunk(&mut buf, max, limits, &mut self.rejected);
            let rejected = !self.rejected.is_empty();
            for (idx, e) in self.rejected.drain(..) {
                job.fail(idx, e);
            }
            if rejected || chunk.is_none() {
                jobs.settle(id);
            }
            if let Some(c) = chunk {
                return Some(InFlight {
                    job: id,
                    first: c.first,
                    start: 0,
                    end: c.count,
                    bytes: Rc::new(buf),
                    retries: 0,
                    seq: 0,
                    base: c.base,
                    flags: c.flags,
                });
            }
            self.spare.push(buf);
        }
        None
    }

    /// Sends chunks to every worker that has room, until there is nothing to send.
    /// `timing`: time limits apply (then the time a worker's queue stops being empty is noted).
    pub(crate) fn run(&mut self, slots: &mut [Slot], jobs: &mut Jobs, item_limit: usize, timing: bool) {
        let n = slots.len();
        let Some(record) = slots.first().map(|s| s.chan.max_record() - TASK_HDR) else { return };
        // Chunks of about a megabyte: big enough that per-chunk costs vanish, small enough that
        // the copies kept for re-sending (and the rings' touched pages) stay small.
        let limits = Limits { item: item_limit, chunk: record.min(CHUNK_TARGET_BYTES) };
        loop {
            let mut sent = false;
            for k in 0..n {
                let s = &mut slots[(self.rr + k) % n];
                if !s.alive || s.saturated() {
                    continue;
                }
                if !s.args_sent.is_empty() {
                    forget_ended_jobs(s, jobs);
                }
                let Some(mut e) = self.next_entry(jobs, limits) else { return };
                let Some(job) = jobs.get(e.job).filter(|j| !j.abandoned) else { continue };
                let mut tasks = s.chan.tasks();
                if let Some(arg) = &job.arg
                    && !s.args_sent.contains(&e.job)
                {
                    let h = JobHeader { job: e.job };
                    let pushed = tasks.try_push_with(CALL_ARG, JOB_HDR + arg.len(), |b| {
                        b[..JOB_HDR].copy_from_slice(bytemuck::bytes_of(&h));
                        b[JOB_HDR..].copy_from_slice(arg);
                    });
                    if pushed.is_err() {
                        self.requeue.push_front(e);
                        continue;
                    }
                    s.args_sent.push(e.job);
                }
                e.seq = s.seq + 1;
                let h = TaskHeader {
                    job: e.job,
                    first: e.first,
                    start: e.start,
                    end: e.end,
                    task: job.task,
                    seq: e.seq,
                    base: e.base,
                    flags: e.flags,
                };
                let pushed = tasks.try_push_with(wire::TASK, TASK_HDR + e.bytes.len(), |b| {
                    b[..TASK_HDR].copy_from_slice(bytemuck::bytes_of(&h));
                    e.bytes.copy_to(&mut b[TASK_HDR..]);
                });
                match pushed {
                    Ok(()) => {
                        s.seq = e.seq;
                        if timing && s.inflight.is_empty() {
                            s.watch.1 = std::time::Instant::now(); // its time limit counts from here
                        }
                        s.inflight_items += e.items();
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
}

/// Tells worker `s` to drop the per-call values of jobs that are over.
fn forget_ended_jobs(s: &mut Slot, jobs: &Jobs) {
    let mut tasks = s.chan.tasks();
    s.args_sent.retain(|&job| {
        jobs.contains(job) || {
            let h = JobHeader { job };
            tasks.try_push(JOB_END, bytemuck::bytes_of(&h)).is_err() // kept if the ring is full
        }
    });
}
