//! The worker side: the serve loop, the writer that publishes results, and the panic hook.

use std::cell::RefCell;
use std::sync::Once;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use crossbeam_utils::CachePadded;

use crate::pool::task::{CallArg, ChunkRun};
use crate::pool::wire::{self, CALL_ARG, JOB_END, JOB_HDR, JobHeader, RESULT_HDR, ResultHeader, STOP, TASK, TASK_HDR};
use crate::queue::ring::{Consumer, Producer, Wake};
use crate::shm::ShmSafe;
use crate::sys::EventFd;

/// What a worker publishes about itself in shared memory, for the parent's supervisor, and the
/// parent's one instruction to it (`fence`).
///
/// # Revoking queued chunks (the claim/fence handshake)
/// Chunks carry a per-slot sequence number. Before running chunk `s` the worker stores
/// `claim = s` and then loads `fence`: if `fence >= s` it skips the chunk (answers `SKIPPED`). To
/// take back the chunks queued behind the running one, the parent stores `fence = F`, then loads
/// `claim`: every chunk with `claim < s <= F` will certainly be skipped, so the parent sends it
/// elsewhere at once. All four accesses are SeqCst, hence in one total order: if the worker runs
/// `s` (its fence load came before the parent's store), its claim store came earlier still, and the
/// parent's claim load sees `>= s` — the parent does not move `s`. A chunk in neither case (the
/// worker claimed it, then saw the fence) is answered `SKIPPED`, and the parent moves it then.
#[repr(C)]
pub(crate) struct WorkerShared {
    /// Job of the chunk being run.
    pub current_job: AtomicU64,
    /// Task index + 1 of the task being run right now; 0 between tasks. Written before and after
    /// each task (Relaxed: the parent reads it after reaping the worker, and waitpid orders; the
    /// timeout check reads it racily, which only shifts its verdict by one task).
    pub current_item: AtomicU64,
    /// Tasks completed by this incarnation.
    pub done: AtomicU64,
    /// Tasks started by this incarnation (Relaxed): the timeout check watches it move (with
    /// `current_item`: a chunk of plain results counts its tasks once, at its end).
    pub started: AtomicU64,
    /// Sequence number of the last chunk the worker claimed (see above).
    pub claim: AtomicU64,
    /// Written by the parent: chunks numbered up to this are not to be run.
    pub fence: CachePadded<AtomicU64>,
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

/// Collects a chunk's results and publishes them as records of at most the ring's record size:
/// successful results encoded straight into the record buffer (no per-item copy, no tag), failed
/// items in an exception list beside it.
pub(crate) struct ResultWriter<'a> {
    ring: Producer<'a, &'a EventFd>,
    /// Largest encoded result of one task.
    item_limit: usize,
    /// Largest record.
    limit: usize,
    buf: Vec<u8>,
    /// The length of `buf` up to the last whole result.
    committed: usize,
    exc: Vec<u8>,
    job: u64,
    first: u64,
    seq: u64,
    count: u32,
    exceptions: u32,
    /// When this record was begun, if it is timed.
    t0: Option<Instant>,
    /// Plain results are written straight into a record reserved in the ring (no copy of the
    /// record at publishing, a fifth of a worker's time on `u64`s): its payload's address, room,
    /// and the bytes written so far (header included). `buf` then holds only the header's room.
    direct: Option<Direct>,
}

#[derive(Debug, Clone, Copy)]
struct Direct {
    body: std::ptr::NonNull<u8>,
    room: usize,
    len: usize,
}

/// The least room a record written in place is reserved with (less only if the ring's whole
/// record limit is less): a worker waits for this much free space rather than publish tiny
/// records.
const DIRECT_MIN: usize = 64 << 10;

impl<'a> ResultWriter<'a> {
    pub(crate) fn new(ring: Producer<'a, &'a EventFd>, item_limit: usize) -> Self {
        ResultWriter {
            limit: ring.max_record(),
            item_limit,
            ring,
            buf: Vec::new(),
            committed: RESULT_HDR,
            exc: Vec::new(),
            job: 0,
            first: 0,
            seq: 0,
            count: 0,
            exceptions: 0,
            t0: None,
            direct: None,
        }
    }

    /// Starts the results of chunk `seq` of `job`, whose first task to run is `first`, of
    /// `items` tasks. Timed (two clock reads) if the chunk is large, or one chunk in 16: never
    /// per item, and not per tiny chunk either.
    pub(crate) fn begin(&mut self, job: u64, first: u64, seq: u64, items: u32) {
        self.buf.clear();
        self.buf.resize(RESULT_HDR, 0);
        self.committed = RESULT_HDR;
        self.exc.clear();
        // A reservation left with nothing in it (a chunk of no results) is simply let go.
        self.direct = None;
        (self.job, self.first, self.seq, self.count, self.exceptions) = (job, first, seq, 0, 0);
        self.t0 = (items >= 16 || seq.is_multiple_of(16)).then(Instant::now);
    }

    /// Largest encoded result of one task.
    pub(crate) fn item_limit(&self) -> usize {
        self.item_limit
    }

    /// How many more plain results of `size` bytes fit in this record, and where the next one
    /// goes: checked once per run of items, not one by one. The room is in the ring: the record
    /// is reserved there (waiting for room if the ring is full) and the results are written in
    /// place, from the cursor on, then counted with [`ResultWriter::commit_plain`] (a cursor in a
    /// register, not a length and a count in this struct updated per item: that chain through
    /// memory was a fifth of a worker's time on a map of `u64`s).
    #[inline]
    pub(crate) fn make_room(&mut self, size: usize) -> (usize, *mut u8) {
        debug_assert_eq!(self.buf.len(), RESULT_HDR, "plain results only, in place");
        let d = match self.direct {
            Some(d) => d,
            None => {
                let min = (RESULT_HDR + self.exc.len() + size).max(DIRECT_MIN).min(self.limit);
                let (body, room) = self.ring.reserve(min, self.limit).expect("a record under the ring's limit");
                let d = Direct { body, room, len: RESULT_HDR };
                self.direct = Some(d);
                d
            }
        };
        (d.room.saturating_sub(d.len + self.exc.len()) / size.max(1), d.body.as_ptr().wrapping_add(d.len))
    }

    /// Where this record's results end (header included): in the ring, or in `buf`.
    fn ok_end(&self) -> usize {
        self.direct.map_or(self.buf.len(), |d| d.len)
    }

    /// The most bytes this record may take.
    fn record_limit(&self) -> usize {
        self.direct.map_or(self.limit, |d| d.room)
    }

    /// Publishes this record (full) and starts the next, for the rest of the chunk.
    pub(crate) fn next_record(&mut self) {
        if self.count > 0 {
            self.publish();
            self.begin(self.job, self.first + u64::from(self.count), self.seq, u32::MAX);
        }
    }

    /// Counts `k` plain results of `size` bytes each, written from the cursor
    /// [`ResultWriter::make_room`] returned on.
    ///
    /// # Safety
    /// The results were written there, whole: `k * size` initialised bytes, within the room
    /// that `make_room(size)` counted.
    #[inline]
    pub(crate) unsafe fn commit_plain(&mut self, k: usize, size: usize) {
        let d = self.direct.as_mut().expect("make_room reserved the record");
        debug_assert!(d.len + k * size + self.exc.len() <= d.room);
        d.len += k * size;
        self.count += k as u32;
    }

    /// Appends `n` successful results of no bytes (a `*_into` map's: the results went into the
    /// output array).
    pub(crate) fn push_empty(&mut self, n: u32) {
        self.count += n;
    }

    /// The task index the next result (or failure) recorded will belong to.
    pub(crate) fn next_index(&self) -> u64 {
        self.first + u64::from(self.count)
    }

    /// Drops whatever a result that panicked half-way through its encoding left in the record.
    pub(crate) fn rollback(&mut self) {
        self.buf.truncate(self.committed);
    }

    /// Appends a successful result, encoded by `encode` straight into the record.
    #[inline]
    pub(crate) fn item_ok(&mut self, encode: impl FnOnce(&mut Vec<u8>) -> Result<(), String>) {
        let at = self.buf.len();
        debug_assert_eq!(at, self.committed);
        match encode(&mut self.buf) {
            Err(e) => {
                self.buf.truncate(at);
                self.item_err(wire::UNENCODABLE, &e);
            }
            Ok(()) => {
                let n = self.buf.len() - at;
                if n > self.item_limit {
                    self.buf.truncate(at);
                    let mut d = Vec::with_capacity(16);
                    wire::put_u64(&mut d, n as u64);
                    wire::put_u64(&mut d, self.item_limit as u64);
                    self.exception(wire::TOO_LARGE, &d);
                    return;
                }
                if self.buf.len() + self.exc.len() > self.limit {
                    // The record is full: publish what came before this result, which starts the next.
                    let tail = self.buf.split_off(at);
                    self.next_record();
                    self.buf.extend_from_slice(&tail);
                }
                self.count += 1;
                self.committed = self.buf.len();
            }
        }
    }

    /// Records a failed item with its message.
    pub(crate) fn item_err(&mut self, why: u8, msg: &str) {
        let mut d = Vec::with_capacity(msg.len().min(wire::MAX_MESSAGE) + 8);
        wire::put_str(&mut d, msg);
        self.exception(why, &d);
    }

    fn exception(&mut self, why: u8, detail: &[u8]) {
        if self.ok_end() + self.exc.len() + 5 + detail.len() > self.record_limit() {
            self.next_record();
        }
        self.exc.extend_from_slice(&self.count.to_le_bytes());
        self.exc.push(why);
        self.exc.extend_from_slice(detail);
        self.count += 1;
        self.exceptions += 1;
    }

    pub(crate) fn finish(&mut self) {
        if self.count > 0 {
            self.publish();
        }
    }

    fn publish(&mut self) {
        let h = ResultHeader {
            job: self.job,
            first: self.first,
            count: self.count,
            exceptions: self.exceptions,
            ok_len: (self.ok_end() - RESULT_HDR) as u64,
            seq: self.seq,
            // 0: not timed.
            busy_ns: self.t0.map_or(0, |t| t.elapsed().as_nanos().max(1) as u64),
        };
        if let Some(d) = self.direct.take() {
            let exc = &self.exc;
            debug_assert!(d.len + exc.len() <= d.room);
            // SAFETY: the reserved record has room for its header, the `d.len - RESULT_HDR`
            // bytes of results written in place, and the exceptions (every append checked
            // against `d.room`); nothing else writes it until it is published.
            unsafe {
                let p = d.body.as_ptr();
                p.copy_from_nonoverlapping(bytemuck::bytes_of(&h).as_ptr(), RESULT_HDR);
                p.add(d.len).copy_from_nonoverlapping(exc.as_ptr(), exc.len());
            }
            self.ring.commit_reserved(wire::RESULTS, d.len + exc.len());
            return;
        }
        self.buf[..RESULT_HDR].copy_from_slice(bytemuck::bytes_of(&h));
        let (buf, exc) = (&self.buf, &self.exc);
        // Waits while the ring is full; records are kept under the ring's limit.
        self.ring
            .push_with(wire::RESULTS, buf.len() + exc.len(), |b| {
                b[..buf.len()].copy_from_slice(buf);
                b[buf.len()..].copy_from_slice(exc);
            })
            .expect("result record under the limit");
    }

    /// Tells the parent chunk `seq` (tasks `first..first+count`) was skipped, not run.
    fn skipped(&mut self, job: u64, first: u64, count: u32, seq: u64) {
        let h = ResultHeader { job, first, count, exceptions: 0, ok_len: 0, seq, busy_ns: 0 };
        self.ring.push_with(wire::SKIPPED, RESULT_HDR, |b| b.copy_from_slice(bytemuck::bytes_of(&h))).expect("small");
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
    item_limit: usize,
) -> i32 {
    let mut out = ResultWriter::new(output, item_limit);
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
        // The claim/fence handshake (see `WorkerShared`).
        shared.claim.store(h.seq, Ordering::SeqCst);
        if shared.fence.load(Ordering::SeqCst) >= h.seq {
            out.skipped(h.job, h.first + u64::from(h.start), h.end - h.start, h.seq);
            rec.commit();
            continue;
        }
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
