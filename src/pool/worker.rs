//! The worker side: the serve loop, the typed trampolines, and the writer that publishes results.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::pool::wire::{self, RESULT_HDR, ResultHeader, STOP, TASK_HDR, TaskHeader, Wire};
use crate::queue::ring::{PushError, Ring};
use crate::shm::ShmSafe;
use crate::sys::{self, EventFd};

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

/// How long a side spins looking for work or results before it sleeps. Spinning catches the
/// quick hand-offs (tens of ns); sleeping costs ~20 µs per wake-up on this class of VM but
/// leaves the core to processes that have work.
pub(crate) const SPIN: Duration = Duration::from_micros(30);

/// Spins up to [`SPIN`] until `ready()`; returns whether it became ready.
pub(crate) fn spin_until(ready: impl Fn() -> bool) -> bool {
    let t0 = Instant::now();
    loop {
        for _ in 0..64 {
            if ready() {
                return true;
            }
            std::hint::spin_loop();
        }
        if t0.elapsed() > SPIN {
            return ready();
        }
    }
}

/// A type-erased chunk runner: `tramp(ctx, func, run)`.
pub(crate) type Tramp = unsafe fn(ctx: *const (), func: usize, run: &mut ChunkRun<'_, '_>);

/// One chunk, as the trampoline sees it.
pub(crate) struct ChunkRun<'a, 'w> {
    pub items: &'a [u8],
    pub h: TaskHeader,
    pub shared: &'a WorkerShared,
    pub out: &'a mut ResultWriter<'w>,
}

/// Runs items `start..end` of a chunk with `call`, publishing tagged results.
pub(crate) fn run_items<Ctx, T, R, WI: Wire<T>, WO: Wire<R>>(
    ctx: &Ctx,
    run: &mut ChunkRun<'_, '_>,
    call: impl Fn(&Ctx, T) -> R,
) {
    let h = run.h;
    let mut input = run.items;
    run.out.begin(h.job, h.first + u64::from(h.start));
    for i in 0..h.end {
        let item = WI::decode(&mut input);
        if i < h.start {
            continue;
        }
        let idx = h.first + u64::from(i);
        match item {
            Err(e) => run.out.item_err(wire::UNDECODABLE, &e),
            Ok(x) => {
                run.shared.current_item.store(idx + 1, Ordering::Relaxed);
                let r = catch_unwind(AssertUnwindSafe(|| call(ctx, x)));
                run.shared.current_item.store(0, Ordering::Relaxed);
                match r {
                    Ok(v) => run.out.item_ok(|buf| WO::encode(&v, buf)),
                    Err(p) => run.out.item_err(wire::PANICKED, &take_panic_message(&*p)),
                }
            }
        }
    }
    run.out.finish();
}

std::thread_local! {
    static LAST_PANIC: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// Workers replace the panic hook: a task's panic is reported to the caller (with where it
/// happened) instead of being printed by the worker.
pub(crate) fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let msg = crate::process::panic_message(info.payload());
        let full = match info.location() {
            Some(l) => format!("{msg} (at {}:{})", l.file(), l.line()),
            None => msg,
        };
        LAST_PANIC.with(|p| *p.borrow_mut() = Some(full));
    }));
}

fn take_panic_message(p: &(dyn std::any::Any + Send)) -> String {
    LAST_PANIC.with(|l| l.borrow_mut().take()).unwrap_or_else(|| crate::process::panic_message(p))
}

/// Collects a chunk's results and publishes them as records of at most `limit` bytes.
pub(crate) struct ResultWriter<'a> {
    ring: Ring,
    wake: &'a EventFd,
    limit: usize,
    buf: Vec<u8>,
    scratch: Vec<u8>,
    job: u64,
    first: u64,
    count: u32,
}

impl<'a> ResultWriter<'a> {
    pub(crate) fn new(ring: Ring, wake: &'a EventFd) -> Self {
        ResultWriter {
            limit: ring.max_record(),
            ring,
            wake,
            buf: Vec::new(),
            scratch: Vec::new(),
            job: 0,
            first: 0,
            count: 0,
        }
    }

    fn begin(&mut self, job: u64, first: u64) {
        self.buf.clear();
        self.buf.resize(RESULT_HDR, 0);
        (self.job, self.first, self.count) = (job, first, 0);
    }

    fn item_ok(&mut self, encode: impl FnOnce(&mut Vec<u8>) -> Result<(), String>) {
        self.scratch.clear();
        self.scratch.push(wire::OK);
        if let Err(e) = encode(&mut self.scratch) {
            self.scratch.clear();
            self.scratch.push(wire::UNDECODABLE);
            wire::put_str(&mut self.scratch, &e);
        }
        self.append();
    }

    fn item_err(&mut self, tag: u8, msg: &str) {
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

    fn finish(&mut self) {
        if self.count > 0 {
            self.publish();
        }
    }

    fn publish(&mut self) {
        let h = ResultHeader { job: self.job, first: self.first, count: self.count, _pad: 0 };
        self.buf[..RESULT_HDR].copy_from_slice(wire::header_bytes(&h));
        loop {
            match self.ring.try_push(wire::RESULTS, &self.buf) {
                Ok(asleep) => {
                    if asleep && self.ring.ctl().consumer_asleep.swap(0, Ordering::SeqCst) != 0 {
                        self.wake.notify();
                    }
                    return;
                }
                Err(PushError::Full) => self.wait_for_room(),
                Err(PushError::TooLarge) => unreachable!("records are kept under the ring's limit"),
            }
        }
    }

    fn wait_for_room(&self) {
        let len = self.buf.len();
        if spin_until(|| self.ring.has_room(len)) {
            return;
        }
        let flag = &self.ring.ctl().producer_asleep;
        flag.store(1, Ordering::SeqCst);
        if !self.ring.has_room(len) {
            sys::futex_wait(flag, 1, Some(Duration::from_millis(100)));
        }
        flag.store(0, Ordering::SeqCst);
    }
}

/// Blocks until the input ring has a record; returns it.
fn next_record(input: &Ring) -> (u32, &[u8]) {
    loop {
        if let Some(r) = input.peek() {
            return r;
        }
        if spin_until(|| input.has_data()) {
            continue;
        }
        let flag = &input.ctl().consumer_asleep;
        flag.store(1, Ordering::SeqCst);
        if !input.has_data() {
            // The timeout is only a backstop; the parent wakes us through the flag.
            sys::futex_wait(flag, 1, Some(Duration::from_secs(1)));
        }
        flag.store(0, Ordering::SeqCst);
    }
}

/// The worker's loop: run chunks until told to stop or `max_tasks` are done. Returns the exit code.
pub(crate) fn serve(
    ctx: *const (),
    input: Ring,
    output: Ring,
    shared: &WorkerShared,
    wake: &EventFd,
    max_tasks: Option<u64>,
) -> i32 {
    let mut out = ResultWriter::new(output, wake);
    let mut done = 0u64;
    loop {
        let (kind, body) = next_record(&input);
        if kind == STOP {
            return 0;
        }
        let h: TaskHeader = wire::read_header(body);
        shared.current_job.store(h.job, Ordering::Relaxed);
        // SAFETY: the parent wrote `h.tramp` from a `Tramp` function pointer of this very binary
        // (the worker is its fork, so code addresses are identical), built for this pool's
        // context type and for `h.func`'s signature.
        let tramp: Tramp = unsafe { std::mem::transmute::<usize, Tramp>(h.tramp) };
        let mut run = ChunkRun { items: &body[TASK_HDR..], h, shared, out: &mut out };
        // SAFETY: as above; `ctx` points to this worker's copy of the pool's context, whose type
        // the trampoline was built for.
        unsafe { tramp(ctx, h.func, &mut run) };
        input.pop();
        done += u64::from(h.end - h.start);
        shared.done.store(done, Ordering::Relaxed);
        if max_tasks.is_some_and(|m| done >= m) {
            return 0;
        }
    }
}
