//! The worker side: the serve loop, the writer that publishes results, and the panic hook.

use std::cell::RefCell;
use std::sync::Once;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::pool::task::{CallArg, ChunkRun};
use crate::pool::wire::{self, CALL_ARG, JOB_END, JOB_HDR, JobHeader, RESULT_HDR, ResultHeader, STOP, TASK, TASK_HDR};
use crate::queue::ring::{Consumer, Producer, Wake};
use crate::shm::ShmSafe;
use crate::sys::EventFd;

/// What a worker publishes about itself in shared memory, for the parent's supervisor.
#[repr(C)]
pub(crate) struct WorkerShared {
    /// Job of the chunk being run.
    pub current_job: AtomicU64,
    /// Task index + 1 of the task being run right now; 0 between tasks. Written before and after
    /// each task (Relaxed: the parent reads it only after reaping the worker, and waitpid orders).
    pub current_item: AtomicU64,
    /// Tasks completed by this incarnation.
    pub done: AtomicU64,
}

// SAFETY: atomics only; zero is the idle state; no Drop.
unsafe impl ShmSafe for WorkerShared {}

std::thread_local! {
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

static HOOK: Once = Once::new();

/// Installs, once per process and in the parent, the panic hook that workers use: inside a worker
/// ([`crate::worker::index`] is set) it records the message and where it happened, for the caller,
/// instead of printing it; anywhere else it calls the hook that was there before. Never called in
/// a worker: setting a hook takes a lock, and a child forked from a multi-threaded parent must
/// take none.
pub(crate) fn install_panic_hook() {
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if crate::worker::index().is_none() {
                return previous(info);
            }
            let msg = crate::process::panic_message(info.payload());
            let full = match info.location() {
                Some(l) => format!("{msg} (at {}:{})", l.file(), l.line()),
                None => msg,
            };
            LAST_PANIC.with(|p| *p.borrow_mut() = Some(full));
        }));
    });
}

pub(crate) fn take_panic_message(p: &(dyn std::any::Any + Send)) -> String {
    LAST_PANIC.with(|l| l.borrow_mut().take()).unwrap_or_else(|| crate::process::panic_message(p))
}

/// Collects a chunk's results and publishes them as records of at most `limit` bytes.
pub(crate) struct ResultWriter<'a> {
    ring: Producer<'a, &'a EventFd>,
    limit: usize,
    buf: Vec<u8>,
    scratch: Vec<u8>,
    job: u64,
    first: u64,
    count: u32,
}

impl<'a> ResultWriter<'a> {
    pub(crate) fn new(ring: Producer<'a, &'a EventFd>) -> Self {
        ResultWriter {
            limit: ring.max_record(),
            ring,
            buf: Vec::new(),
            scratch: Vec::new(),
            job: 0,
            first: 0,
            count: 0,
        }
    }

    pub(crate) fn begin(&mut self, job: u64, first: u64) {
        self.buf.clear();
        self.buf.resize(RESULT_HDR, 0);
        (self.job, self.first, self.count) = (job, first, 0);
    }

    pub(crate) fn item_ok(&mut self, encode: impl FnOnce(&mut Vec<u8>) -> Result<(), String>) {
        self.scratch.clear();
        self.scratch.push(wire::OK);
        if let Err(e) = encode(&mut self.scratch) {
            self.scratch.clear();
            self.scratch.push(wire::UNENCODABLE);
            wire::put_str(&mut self.scratch, &e);
        }
        self.append();
    }

    pub(crate) fn item_err(&mut self, tag: u8, msg: &str) {
        self.scratch.clear();
        self.scratch.push(tag);
        wire::put_str(&mut self.scratch, msg);
        self.append();
    }

    fn append(&mut self) {
        if RESULT_HDR + self.scratch.len() > self.limit {
            let size = self.scratch.len() - 1;
            self.scratch.clear();
            self.scratch.push(wire::TOO_LARGE);
            wire::put_u64(&mut self.scratch, size as u64);
            wire::put_u64(&mut self.scratch, (self.limit - RESULT_HDR - 1) as u64);
        }
        if self.buf.len() + self.scratch.len() > self.limit {
            self.publish();
            let next = self.first + u64::from(self.count);
            self.begin(self.job, next);
        }
        self.buf.extend_from_slice(&self.scratch);
        self.count += 1;
    }

    pub(crate) fn finish(&mut self) {
        if self.count > 0 {
            self.publish();
        }
    }

    fn publish(&mut self) {
        let h = ResultHeader { job: self.job, first: self.first, count: self.count, reserved: 0 };
        self.buf[..RESULT_HDR].copy_from_slice(bytemuck::bytes_of(&h));
        let buf = &self.buf;
        // Waits while the ring is full; records are kept under the ring's limit.
        self.ring
            .push_with(wire::RESULTS, buf.len(), |b| b.copy_from_slice(buf))
            .expect("result record under the limit");
    }
}

/// The job's per-call value, if this worker has one for it.
fn arg_of(args: &mut [(u64, CallArg)], job: u64) -> Option<&mut CallArg> {
    args.iter_mut().find(|(j, _)| *j == job).map(|(_, a)| a)
}

/// The worker's loop: run chunks until told to stop or `max_tasks` are done. Returns the exit code.
pub(crate) fn serve<W: Wake>(
    ctx: *const (),
    mut input: Consumer<'_, W>,
    output: Producer<'_, &EventFd>,
    shared: &WorkerShared,
    max_tasks: Option<u64>,
) -> i32 {
    let mut out = ResultWriter::new(output);
    let mut args: Vec<(u64, CallArg)> = Vec::new();
    let mut done = 0u64;
    loop {
        let rec = input.recv();
        let body = rec.body();
        match rec.kind() {
            STOP => return 0,
            CALL_ARG => {
                let Some(JobHeader { job }) = wire::read_header(body) else { return 4 };
                args.retain(|(j, _)| *j != job);
                args.push((job, CallArg::new(body[JOB_HDR..].to_vec())));
                rec.commit();
                continue;
            }
            JOB_END => {
                if let Some(JobHeader { job }) = wire::read_header(body) {
                    args.retain(|(j, _)| *j != job);
                }
                rec.commit();
                continue;
            }
            TASK => {}
            _ => return 4, // not written by this pool's parent
        }
        let Some(h) = wire::read_header::<wire::TaskHeader>(body) else { return 4 };
        shared.current_job.store(h.job, Ordering::Relaxed);
        let mut run = ChunkRun { items: &body[TASK_HDR..], h, shared, out: &mut out, arg: arg_of(&mut args, h.job) };
        // SAFETY: the parent wrote `h.task` with `TaskFn::new` for this pool's context type (the
        // worker is its fork, so the code is the same), and `ctx` points to this worker's copy of
        // the pool's context.
        unsafe { h.task.run(ctx, &mut run) };
        rec.commit();
        done += u64::from(h.end - h.start);
        shared.done.store(done, Ordering::Relaxed);
        if max_tasks.is_some_and(|m| done >= m) {
            return 0;
        }
    }
}
