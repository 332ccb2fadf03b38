//! The one typed record of a task function, [`TaskFn`]: the single place where a task function
//! is erased ([`TaskFn::new`]) and the single place where it is recovered ([`TaskFn::run`] and
//! the trampoline it calls).
//!
//! A task is a plain `fn` pointer (a closure that captures nothing). The workers are forks of the
//! parent, so a code address means the same code in them: the parent writes a `TaskFn` into the
//! task record and the worker calls it.

use std::any::Any;
use std::cell::Cell;
use std::marker::PhantomData;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::Ordering;

use crate::pool::wire::{self, TaskHeader, Wire};
use crate::pool::worker::{ResultWriter, WorkerShared, take_panic_message};

/// One chunk, as a task function sees it.
pub(crate) struct ChunkRun<'a, 'w> {
    pub items: &'a [u8],
    pub h: TaskHeader,
    pub shared: &'a WorkerShared,
    pub out: &'a mut ResultWriter<'w>,
    /// The job's per-call value ([`crate::Pool::map_with`]), as this worker received it.
    pub arg: Option<&'a mut CallArg>,
}

/// A job's per-call value in a worker: its bytes, decoded on first use by the typed task.
#[derive(Debug)]
pub(crate) struct CallArg {
    pub bytes: Vec<u8>,
    decoded: Option<Result<Box<dyn Any>, String>>,
}

impl CallArg {
    pub(crate) fn new(bytes: Vec<u8>) -> CallArg {
        CallArg { bytes, decoded: None }
    }
}

/// How a task function runs a chunk; implemented by the signature wrappers below, each one
/// `fn` pointer wide.
pub(crate) trait Task<Ctx>: Copy {
    fn run_chunk(self, ctx: &Ctx, run: &mut ChunkRun<'_, '_>);
}

type Tramp = unsafe fn(ctx: *const (), func: usize, run: &mut ChunkRun<'_, '_>);

/// A task function with its types erased, as it crosses the ring: the trampoline that knows the
/// types, and the function's address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub(crate) struct TaskFn {
    tramp: u64,
    func: u64,
}

// SAFETY: two u64s, no padding; any bit pattern is a valid `TaskFn` value (calling one is what
// needs care, and that is `TaskFn::run`'s contract).
unsafe impl bytemuck::Zeroable for TaskFn {}
// SAFETY: as above.
unsafe impl bytemuck::Pod for TaskFn {}

impl TaskFn {
    /// Erases `task`, a task function for context type `Ctx`.
    pub(crate) fn new<Ctx, S: Task<Ctx>>(task: S) -> TaskFn {
        const { assert!(std::mem::size_of::<S>() == std::mem::size_of::<usize>()) };
        // SAFETY: `S` is one `fn` pointer plus zero-sized markers (asserted usize-sized): its bits
        // are the function's address.
        let func: usize = unsafe { std::mem::transmute_copy(&task) };
        TaskFn { tramp: trampoline::<Ctx, S> as Tramp as usize as u64, func: func as u64 }
    }

    /// Runs a chunk with the erased function.
    ///
    /// # Safety
    /// - `self` was made by [`TaskFn::new`] in this program or the process it was forked from,
    ///   for the context type `Ctx` of the value `ctx` points to;
    /// - `ctx` points to a live `Ctx`.
    pub(crate) unsafe fn run(self, ctx: *const (), run: &mut ChunkRun<'_, '_>) {
        // SAFETY: per the contract, `tramp` holds `trampoline::<Ctx, S>` of this very code.
        let tramp = unsafe { std::mem::transmute::<usize, Tramp>(self.tramp as usize) };
        // SAFETY: per the contract, `func` holds the bits of the `S` that trampoline expects.
        unsafe { tramp(ctx, self.func as usize, run) }
    }
}

/// # Safety
/// `func` holds the bits of an `S` (made by [`TaskFn::new`]); `ctx` points to a live `Ctx`.
unsafe fn trampoline<Ctx, S: Task<Ctx>>(ctx: *const (), func: usize, run: &mut ChunkRun<'_, '_>) {
    // SAFETY: per the contract, these are the bits of a valid `S` (a function pointer).
    let task: S = unsafe { std::mem::transmute_copy(&func) };
    // SAFETY: per the contract.
    task.run_chunk(unsafe { &*ctx.cast::<Ctx>() }, run);
}

/// An initializer `fn(&Ctx)` with its context type erased, run in each new worker.
#[derive(Clone, Copy, Debug)]
pub(crate) struct InitFn {
    tramp: unsafe fn(*const (), usize),
    func: usize,
}

impl InitFn {
    pub(crate) fn new<Ctx>(f: fn(&Ctx)) -> InitFn {
        InitFn { tramp: init_trampoline::<Ctx>, func: f as usize }
    }

    /// # Safety
    /// `self` was made from an `fn(&Ctx)` and `ctx` points to a live `Ctx`.
    pub(crate) unsafe fn run(self, ctx: *const ()) {
        // SAFETY: per the contract.
        unsafe { (self.tramp)(ctx, self.func) }
    }
}

/// # Safety
/// `func` was made from an `fn(&Ctx)` and `ctx` points to a live `Ctx`.
unsafe fn init_trampoline<Ctx>(ctx: *const (), func: usize) {
    // SAFETY: per the contract, `func` is the address of an `fn(&Ctx)` of this program.
    let f = unsafe { std::mem::transmute::<usize, fn(&Ctx)>(func) };
    // SAFETY: per the contract.
    f(unsafe { &*ctx.cast::<Ctx>() });
}

/// `fn(&Ctx, T) -> R`, with codecs `WI` (items) and `WO` (results).
pub(crate) struct MapFn<Ctx, T, R, WI, WO>(pub fn(&Ctx, T) -> R, PhantomData<fn() -> (WI, WO)>);
/// `fn(&Ctx, A, B) -> R`, items are pairs.
pub(crate) struct StarFn<Ctx, A, B, R, WI, WO>(pub fn(&Ctx, A, B) -> R, PhantomData<fn() -> (WI, WO)>);
/// `fn(&Ctx, &A, T) -> R`, with `A` the job's per-call value (serde).
pub(crate) struct WithFn<Ctx, A, T, R, WI, WO>(pub fn(&Ctx, &A, T) -> R, PhantomData<fn() -> (WI, WO)>);

macro_rules! fn_wrapper {
    ($name:ident <$($p:ident),*> ($f:ty)) => {
        impl<$($p),*> Clone for $name<$($p),*> {
            fn clone(&self) -> Self {
                *self
            }
        }
        impl<$($p),*> Copy for $name<$($p),*> {}
        impl<$($p),*> $name<$($p),*> {
            pub(crate) fn new(f: $f) -> Self {
                $name(f, PhantomData)
            }
        }
    };
}
fn_wrapper!(MapFn<Ctx, T, R, WI, WO>(fn(&Ctx, T) -> R));
fn_wrapper!(StarFn<Ctx, A, B, R, WI, WO>(fn(&Ctx, A, B) -> R));
fn_wrapper!(WithFn<Ctx, A, T, R, WI, WO>(fn(&Ctx, &A, T) -> R));

impl<Ctx, T, R: 'static, WI: Wire<T>, WO: Wire<R>> Task<Ctx> for MapFn<Ctx, T, R, WI, WO> {
    fn run_chunk(self, ctx: &Ctx, run: &mut ChunkRun<'_, '_>) {
        run_items::<Ctx, T, R, WI, WO>(ctx, run, self.0);
    }
}

impl<Ctx, A, B, R: 'static, WI: Wire<(A, B)>, WO: Wire<R>> Task<Ctx> for StarFn<Ctx, A, B, R, WI, WO> {
    fn run_chunk(self, ctx: &Ctx, run: &mut ChunkRun<'_, '_>) {
        let f = self.0;
        run_items::<Ctx, (A, B), R, WI, WO>(ctx, run, |c, (a, b)| f(c, a, b));
    }
}

impl<Ctx, A, T, R: 'static, WI, WO> Task<Ctx> for WithFn<Ctx, A, T, R, WI, WO>
where
    A: serde::Serialize + serde::de::DeserializeOwned + 'static,
    WI: Wire<T>,
    WO: Wire<R>,
{
    fn run_chunk(self, ctx: &Ctx, run: &mut ChunkRun<'_, '_>) {
        let f = self.0;
        let arg = match run.arg.take() {
            None => Err("the per-call value never reached this worker".to_owned()),
            Some(a) => {
                let d = a.decoded.get_or_insert_with(|| {
                    <wire::Serde as Wire<A>>::decode(&mut &a.bytes[..]).map(|v| Box::new(v) as Box<dyn Any>)
                });
                match d {
                    Ok(b) => Ok(b.downcast_ref::<A>().expect("decoded as this job's type")),
                    Err(e) => Err(e.clone()),
                }
            }
        };
        match arg {
            Ok(a) => run_items::<Ctx, T, R, WI, WO>(ctx, run, |c, x| f(c, a, x)),
            Err(e) => fail_items(run, &format!("the per-call value: {e}")),
        }
    }
}

/// Runs items `start..end` of a chunk with `call`, decoding each from the chunk's bytes.
fn run_items<Ctx, T, R: 'static, WI: Wire<T>, WO: Wire<R>>(
    ctx: &Ctx,
    run: &mut ChunkRun<'_, '_>,
    call: impl Fn(&Ctx, T) -> R,
) {
    let h = run.h;
    let mut input = run.items;
    if let Some(n) = WI::plain_size().filter(|&n| n == std::mem::size_of::<T>()) {
        // Fixed-size items: item `i` is at `i * n`, read by index (no cursor to carry from one
        // item to the next, nor a bounds check per item).
        if input.len() < n * h.end as usize {
            return fail_items(run, "a chunk shorter than its items");
        }
        let at = input.as_ptr();
        // SAFETY: `i < h.end` (run_each's items), and the chunk holds `h.end` items of `n` bytes
        // (checked above); by `Wire`'s contract (`plain_size` is `Some(n)`, `n` the size of `T`)
        // those bytes are a `T`'s own, any bit pattern valid. Unaligned: chunks are byte-aligned.
        let item = |i: u32| Ok(unsafe { at.add(i as usize * n).cast::<T>().read_unaligned() });
        run_each::<Ctx, T, R, WO>(ctx, run, h.start, Items::Copied, item, call, None);
        return;
    }
    let mut skip = h.start;
    // A `String`/`Vec<u8>` argument is decoded into the buffer of the previous item's
    // `String`/`Vec<u8>` result (once that is encoded): a map from strings to strings allocates
    // and frees nothing per item in the worker either.
    let spare = Cell::new(Vec::new());
    let recycle = (WI::reuses_buffers() && wire::is_buffer::<R>()).then_some(&spare);
    run_each::<Ctx, T, R, WO>(
        ctx,
        run,
        h.start,
        Items::Decoded,
        |_| {
            while skip > 0 {
                skip -= 1;
                WI::decode(&mut input)?;
            }
            match recycle {
                Some(spare) => WI::decode_reusing(&mut input, spare.take()),
                None => WI::decode(&mut input),
            }
        },
        call,
        recycle,
    );
}

/// The least bytes of plain results a chunk computed from indices has for its worker to stream
/// them past its cache ([`Items::Computed`]): an eighth of a core's L2 on the machines measured.
/// Chosen, not tuned: a chunk of 1,000 `u64`s (8 KB, still in cache when the parent reads it)
/// stays below, the automatic chunks of a map of 1 M (1 MB) are above.
const STREAM_MIN: usize = 256 << 10;

/// Where [`run_each`]'s items come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Items {
    /// Decoded from the chunk's bytes (serde arguments): decoding may fail or panic, and then
    /// the items after it cannot be found.
    Decoded,
    /// Copied from the chunk's bytes (plain arguments): cannot fail.
    Copied,
    /// Computed from their index (a range, a shared array): the parent sends no bytes and only
    /// collects the results, so the workers are what bounds the map, and a large chunk's plain
    /// results are streamed past the worker's cache (see [`STREAM_MIN`]). Where the parent feeds
    /// the items it is the bound, and streamed results, which it then reads from memory rather
    /// than from a cache, cost it more than they save a worker (measured: no gain on `map_plain`).
    Computed,
}

/// Runs items `start..end` of a chunk, getting item `i` (its index in the chunk) from `item`,
/// publishing results: one record per chunk (or more, if it outgrows a record).
///
/// One unwind guard covers a run of items, not each item: when an item panics (in its decoding,
/// the task, or the encoding of its result), whatever it left in the record is rolled back, it
/// is reported as panicked, and a new guard resumes after it. The loop keeps its counters in
/// registers: after a panic the failing item is found from the record itself (the next index it
/// would hold). The progress marks are stored per item: they are what blames a task for a death
/// and what the timeout check watches move. `current_item` is set while an item is decoded and
/// run, and `started` counts it; with results of any other kind `current_item` is 0 again once
/// the task returned (a death while its result is encoded is not its fault). Plain results are a
/// store that cannot fail, so for them only `current_item` is stored per item, as `run_into`
/// does: it is cleared only before waiting for room in the results ring, and `started` is
/// counted once at the end — a worker killed from outside between two tasks blames the one that
/// just returned, whose result went down with the worker anyway. (The two other stores were a
/// tenth of a worker's time on a map of `u64`s.) `items`: where the items come from ([`Items`]).
/// `recycle`: where an encoded `String`/`Vec<u8>` result leaves its buffer, for `item` to decode
/// the next argument into.
#[inline]
fn run_each<Ctx, T, R: 'static, WO: Wire<R>>(
    ctx: &Ctx,
    run: &mut ChunkRun<'_, '_>,
    start: u32,
    items: Items,
    mut item: impl FnMut(u32) -> Result<T, String>,
    call: impl Fn(&Ctx, T) -> R,
    recycle: Option<&Cell<Vec<u8>>>,
) {
    let h = run.h;
    let shared = run.shared;
    run.out.begin(h.job, h.first + u64::from(start), h.seq, h.end - start);
    // Plain results (numbers, `map_plain`) have one size: the record's room is counted once per
    // run of items, and each result is a store at a cursor (see `ResultWriter::make_room`),
    // counted when the run ends, before the record is published, or before a failure is recorded.
    let plain = WO::plain_size().filter(|&n| n <= run.out.item_limit() && n == std::mem::size_of::<R>());
    // A large chunk of results computed from indices is streamed to memory (`sys::stream_store`):
    // stored into ring lines the parent last read, each would first be fetched from the parent's
    // core. Small chunks' results stay in cache for the parent.
    let stream = items == Items::Computed
        && plain.is_some_and(|n| crate::sys::streams(n) && (h.end - start) as usize * n >= STREAM_MIN);
    let fallible = items == Items::Decoded;
    let decoding = std::cell::Cell::new(false);
    let started_before = shared.started.load(Ordering::Relaxed);
    let mut from = start;
    while from < h.end {
        let out = &mut *run.out;
        let r = catch_unwind(AssertUnwindSafe(|| {
            let mut started = shared.started.load(Ordering::Relaxed);
            let (mut room, mut dst) = plain.map_or((0, std::ptr::null_mut()), |n| out.make_room(n));
            let mut k = 0usize;
            macro_rules! commit {
                () => {
                    if let Some(n) = plain {
                        // Streamed results must be in memory before the record that counts them
                        // is published (every publishing follows a commit).
                        if stream {
                            crate::sys::store_fence();
                        }
                        // SAFETY: the `k` results were stored whole from `dst`, the cursor the
                        // last `make_room` returned, within the room it counted (`room` went down
                        // by one per result).
                        unsafe { out.commit_plain(k, n) };
                        #[allow(unused_assignments, reason = "not read after the last commit")]
                        {
                            k = 0;
                        }
                    }
                };
            }
            for i in from..h.end {
                if plain.is_none() {
                    started += 1;
                    shared.started.store(started, Ordering::Relaxed);
                }
                shared.current_item.store(h.first + u64::from(i) + 1, Ordering::Relaxed);
                if fallible {
                    decoding.set(true);
                }
                let x = item(i);
                if fallible {
                    decoding.set(false);
                }
                match x {
                    Err(e) => {
                        commit!();
                        out.item_err(wire::UNDECODABLE, &e);
                        if fallible {
                            // Where this argument ends is unknown: the ones after it cannot be
                            // found (decoding them from here would read the wrong bytes).
                            for _ in i + 1..h.end {
                                out.item_err(wire::UNDECODABLE, &format!("after an undecodable argument: {e}"));
                            }
                            return;
                        }
                        (room, dst) = plain.map_or((0, std::ptr::null_mut()), |n| out.make_room(n));
                    }
                    Ok(x) => {
                        let v = call(ctx, x);
                        match plain {
                            Some(n) => {
                                if room == 0 {
                                    commit!();
                                    // Waiting for room in a full results ring: not the task's fault.
                                    shared.current_item.store(0, Ordering::Relaxed);
                                    out.next_record();
                                    (room, dst) = out.make_room(n);
                                }
                                room -= 1;
                                // SAFETY: `WO::plain_size()` is `Some(n)` with `n` the size of `R`
                                // (checked above): by `Wire`'s contract `R` is plain data encoded
                                // as its own bytes. `make_room(n)` made room for `room + 1` more
                                // results from `dst` on, of which `k` are written; the record is
                                // this writer's alone until published. Unaligned: records are
                                // byte-aligned — but 8-aligned where results are streamed (a
                                // record's payload starts 8-aligned, and each result is a whole
                                // number of words); `commit_plain` fences them before publishing.
                                unsafe {
                                    if stream {
                                        crate::sys::stream_store(dst.add(k * n), v);
                                    } else {
                                        dst.add(k * n).cast::<R>().write_unaligned(v);
                                    }
                                }
                                k += 1;
                            }
                            None => {
                                // The task is done: a death from here on (encoding, or waiting
                                // for room in a full results ring) is not this task's fault.
                                shared.current_item.store(0, Ordering::Relaxed);
                                out.item_ok(|buf| WO::encode(&v, buf));
                                if let Some(spare) = recycle
                                    && let Ok(b) = wire::into_buffer(v)
                                {
                                    spare.set(b);
                                }
                            }
                        }
                    }
                }
            }
            commit!();
        }));
        if let Some(n) = plain
            && r.is_err()
        {
            // The results a panic left uncommitted: those of the items since the last commit,
            // before the one that panicked (marked current, as every item is while it runs; 0
            // only while waiting for room, after a commit).
            let current = shared.current_item.load(Ordering::Relaxed);
            let pending = current.saturating_sub(1 + run.out.next_index()) as usize;
            // SAFETY: they were stored whole, as `commit!` says: the panic came from the task or
            // its argument, not from a store.
            unsafe { run.out.commit_plain(pending, n) };
            if stream {
                crate::sys::store_fence();
            }
        }
        let Err(p) = r else { break };
        // The item that panicked is the next one the record would have held.
        let failed = (run.out.next_index() - h.first) as u32;
        run.out.rollback();
        run.out.item_err(wire::PANICKED, &take_panic_message(&*p));
        from = failed + 1;
        if decoding.get() {
            for _ in from..h.end {
                run.out.item_err(wire::UNDECODABLE, "after an argument whose decoding panicked");
            }
            break;
        }
    }
    if plain.is_some() {
        shared.started.store(started_before + u64::from(h.end - start), Ordering::Relaxed);
    }
    shared.current_item.store(0, Ordering::Relaxed);
    run.out.finish();
}

/// The output array of a `*_into` map, as its per-call value carries it: the address a RawArray
/// has in the parent and in its forks (mapped before the pool), and its length.
fn into_target<R>(run: &mut ChunkRun<'_, '_>) -> Result<(*mut R, u64), String> {
    let a = run.arg.take().ok_or("the output array's address never reached this worker")?;
    let b: [u8; 16] = a.bytes.as_slice().try_into().map_err(|_| "the output array's address is not 16 bytes")?;
    let (addr, len) =
        (u64::from_le_bytes(b[..8].try_into().expect("8")), u64::from_le_bytes(b[8..].try_into().expect("8")));
    Ok((std::ptr::with_exposed_provenance_mut::<R>(addr as usize), len))
}

/// The shared body of the `*_into` tasks: item `i` of the chunk is `input(index)`, and `f`'s
/// result is stored at `index` of the output array, not sent back. A loop of its own, tighter
/// than `run_each`'s: per item it marks the task started and current (what the timeout check and
/// a death's verdict read), calls `f` and stores the result; the record counts the successes in
/// one step (they carry no bytes), so only failures cross the ring. A death after an item's
/// store and before the next item is marked blames that item, whose result is already in place.
fn run_into<Ctx, T, R: crate::AtomicValue>(
    ctx: &Ctx,
    run: &mut ChunkRun<'_, '_>,
    f: impl Fn(&Ctx, T) -> R,
    input: impl Fn(u64) -> T,
) {
    let (out, len) = match into_target::<R>(run) {
        Ok(t) => t,
        Err(e) => return fail_items(run, &e),
    };
    let h = run.h;
    if h.first + u64::from(h.end) > len {
        return fail_items(run, "the chunk reaches past the output array");
    }
    let shared = run.shared;
    run.out.begin(h.job, h.first + u64::from(h.start), h.seq, h.end - h.start);
    // A large chunk's results are streamed past the worker's cache, as `run_each` streams them
    // into the results ring (see `STREAM_MIN`).
    let size = std::mem::size_of::<R>();
    let stream = crate::sys::streams_shared(size) && (h.end - h.start) as usize * size >= STREAM_MIN;
    let mut from = h.start;
    while from < h.end {
        let r = catch_unwind(AssertUnwindSafe(|| {
            let mut started = shared.started.load(Ordering::Relaxed);
            for i in from..h.end {
                let at = h.first + u64::from(i);
                started += 1;
                shared.started.store(started, Ordering::Relaxed);
                shared.current_item.store(at + 1, Ordering::Relaxed);
                let v = f(ctx, input(at));
                // SAFETY: `out` is the address of a RawArray<R> of `len` elements mapped before
                // this worker was forked (checked by the parent), so mapped here at that address
                // for the worker's life; `at < first + end ≤ len` (checked above). Stored
                // atomically (streamed: by one aligned store, fenced below before the record
                // that counts it), so other processes' atomic reads of it are no data race.
                unsafe {
                    if stream {
                        crate::sys::stream_store_shared(out.add(at as usize), v);
                    } else {
                        R::store(R::as_atomic(out.add(at as usize)), v, Ordering::Relaxed);
                    }
                }
            }
        }));
        // Streamed results must be in memory before the record that counts them is published.
        crate::sys::store_fence();
        match r {
            Ok(()) => {
                run.out.push_empty(h.end - from);
                break;
            }
            Err(p) => {
                // The item that panicked is the one marked current.
                let failed = (shared.current_item.load(Ordering::Relaxed) - 1 - h.first) as u32;
                run.out.push_empty(failed - from);
                run.out.item_err(wire::PANICKED, &take_panic_message(&*p));
                from = failed + 1;
            }
        }
    }
    shared.current_item.store(0, Ordering::Relaxed);
    run.out.finish();
}

/// The one value of `F`, a zero-sized function type — a closure that captures nothing, or a
/// function's name — in a worker. Such a type has no bytes, so the worker needs only the type to
/// call it, and the call is inlined into the loop over a chunk (a `fn` pointer is an indirect
/// call per item). [`ZstFn::new`] checks the size at compile time.
fn conjure<F: Copy + Send>() -> F {
    const { assert!(std::mem::size_of::<F>() == 0) };
    // SAFETY: `F` is zero-sized (asserted), so reading one reads no bytes: a dangling, aligned
    // pointer is valid for it. What this stands for is a copy of the value the parent handed the
    // pool (`ZstFn::new` takes one), sent to the worker as its bytes — none: `F: Copy` allows the
    // copy, `F: Send` allows it to go to another thread of control. A zero-sized `F` may also be
    // a closure capturing a zero-sized `Copy + Send` token; duplicating that is what its `Copy`
    // already permits.
    unsafe { std::ptr::NonNull::<F>::dangling().as_ptr().read() }
}

/// A task wrapper around a zero-sized function type `F` (see [`conjure`]); one `usize` wide, as
/// [`TaskFn::new`] wants, though the word carries nothing.
/// `K` says where the items come from ([`OverRange`], [`OverArray`]).
pub(crate) struct ZstFn<Ctx, K, T, R, F>(
    #[allow(dead_code, reason = "only there to make the wrapper one word, as TaskFn::new wants")] usize,
    PhantomData<Types<Ctx, K, T, R, F>>,
);

/// The types a [`ZstFn`] stands for (`fn() -> …`: no ownership, no auto-trait effects).
type Types<Ctx, K, T, R, F> = fn() -> (Ctx, K, T, R, F);

impl<Ctx, K, T, R, F> Clone for ZstFn<Ctx, K, T, R, F> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<Ctx, K, T, R, F> Copy for ZstFn<Ctx, K, T, R, F> {}

impl<Ctx, K, T, R, F: Fn(&Ctx, T) -> R + Copy + Send> ZstFn<Ctx, K, T, R, F> {
    /// Fails to compile unless `F` is zero-sized: a closure that captures nothing, or a
    /// function's name, not a `fn` pointer or a capturing closure.
    pub(crate) fn new(f: F) -> Self {
        const {
            assert!(
                std::mem::size_of::<F>() == 0,
                "map_range, map_array and their _into forms take a closure that captures nothing, or \
                 a function's name: not a fn pointer or a closure with captures (give per-call values \
                 through the context)"
            )
        };
        let _ = f;
        ZstFn(0, PhantomData)
    }
}

/// Marks a [`ZstFn`] over a range of integers.
pub(crate) struct OverRange;
/// Marks a [`ZstFn`] over a shared array's elements.
pub(crate) struct OverArray;

/// `F` over a range of integers, results stored into a shared array.
pub(crate) type RangeIntoFn<Ctx, T, R, F> = ZstFn<Ctx, OverRange, T, R, F>;
/// `F` over the elements of a shared array, results stored into another.
pub(crate) type ArrayIntoFn<Ctx, T, R, F> = ZstFn<Ctx, OverArray, T, R, F>;

impl<Ctx, T: RangeItem, R: crate::AtomicValue, F: Fn(&Ctx, T) -> R + Copy + Send> Task<Ctx>
    for ZstFn<Ctx, OverRange, T, R, F>
{
    fn run_chunk(self, ctx: &Ctx, run: &mut ChunkRun<'_, '_>) {
        let base = run.h.base;
        run_into(ctx, run, conjure::<F>(), |at| T::at(base, at));
    }
}

impl<Ctx, T: crate::AtomicValue, R: crate::AtomicValue, F: Fn(&Ctx, T) -> R + Copy + Send> Task<Ctx>
    for ZstFn<Ctx, OverArray, T, R, F>
{
    fn run_chunk(self, ctx: &Ctx, run: &mut ChunkRun<'_, '_>) {
        let base = run.h.base;
        // SAFETY: `Pool::map_array_into` sent this chunk: the index range is the array's (the
        // parent checked that the output, whose bounds `run_into` checks `at` against, has the
        // input's length).
        run_into(ctx, run, conjure::<F>(), |at| unsafe { array_element::<T>(base, at) });
    }
}

/// Fails every item of the chunk as undecodable, with `msg`.
fn fail_items(run: &mut ChunkRun<'_, '_>, msg: &str) {
    let h = run.h;
    run.out.begin(h.job, h.first + u64::from(h.start), h.seq, h.end - h.start);
    for _ in h.start..h.end {
        run.out.item_err(wire::UNDECODABLE, msg);
    }
    run.out.finish();
}

/// An integer type [`crate::Pool::map_range`] can hand out by index: the workers compute each
/// item as `range.start + index` themselves, so no item crosses the ring.
pub trait RangeItem: Copy + 'static + sealed::Sealed {
    /// The raw bits of `self`, as carried in a chunk header.
    #[doc(hidden)]
    fn to_bits(self) -> u64;
    /// `start + k` (wrapping), `start` given by its bits.
    #[doc(hidden)]
    fn at(start_bits: u64, k: u64) -> Self;
    /// Items in `start..end` (0 if empty).
    #[doc(hidden)]
    fn count(start: Self, end: Self) -> u64;
}

mod sealed {
    pub trait Sealed {}
}

macro_rules! range_items {
    ($($t:ty),*) => { $(
        impl sealed::Sealed for $t {}
        impl RangeItem for $t {
            fn to_bits(self) -> u64 {
                self as u64
            }
            fn at(start_bits: u64, k: u64) -> Self {
                (start_bits as $t).wrapping_add(k as $t)
            }
            fn count(start: Self, end: Self) -> u64 {
                if end > start { (end as i128 - start as i128) as u64 } else { 0 }
            }
        }
    )* };
}
range_items!(u8, u16, u32, u64, usize, i8, i16, i32, i64, isize);

/// Marks a [`ZstFn`] whose results cross the results ring, encoded with `WO`, to be collected
/// into a `Vec` by the parent; `K` says where the items come from ([`OverRange`], [`OverArray`]).
pub(crate) struct Collect<K, WO>(PhantomData<fn() -> (K, WO)>);

/// `F` over a range of integers: items are computed from their index.
pub(crate) type RangeFn<Ctx, T, R, WO, F> = ZstFn<Ctx, Collect<OverRange, WO>, T, R, F>;
/// `F` over the elements of a shared array (see [`array_element`]).
pub(crate) type ArrayFn<Ctx, T, R, WO, F> = ZstFn<Ctx, Collect<OverArray, WO>, T, R, F>;

impl<Ctx, T: RangeItem, R: 'static, WO: Wire<R>, F: Fn(&Ctx, T) -> R + Copy + Send> Task<Ctx>
    for ZstFn<Ctx, Collect<OverRange, WO>, T, R, F>
{
    fn run_chunk(self, ctx: &Ctx, run: &mut ChunkRun<'_, '_>) {
        let h = run.h;
        let item = |i: u32| Ok(T::at(h.base, h.first + u64::from(i)));
        run_each::<Ctx, T, R, WO>(ctx, run, h.start, Items::Computed, item, conjure::<F>(), None);
    }
}

/// Element `at` of the RawArray whose address a chunk header's `base` carries. The parent exposed
/// the address (`as_ptr() as usize`) and the worker, its fork, has the same mapping at the same
/// address: the pointer is taken back with that provenance. Read atomically, so concurrent atomic
/// stores to the array are not a data race.
///
/// # Safety
/// `base` is the address of a RawArray<T> mapped before this worker was forked (so mapped here,
/// at that address, for the worker's life), and `at` is below its length.
#[inline]
unsafe fn array_element<T: crate::AtomicValue>(base: u64, at: u64) -> T {
    let p = std::ptr::with_exposed_provenance_mut::<T>(base as usize);
    // SAFETY: per the contract, `p + at` is an element of a live, aligned RawArray<T>.
    T::load(unsafe { T::as_atomic(p.add(at as usize)) }, Ordering::Relaxed)
}

/// Items are read from shared memory by index (the chunk header's `base` is the array's address).
impl<Ctx, T: crate::AtomicValue, R: 'static, WO: Wire<R>, F: Fn(&Ctx, T) -> R + Copy + Send> Task<Ctx>
    for ZstFn<Ctx, Collect<OverArray, WO>, T, R, F>
{
    fn run_chunk(self, ctx: &Ctx, run: &mut ChunkRun<'_, '_>) {
        let h = run.h;
        // SAFETY: `Pool::map_array` sent this chunk: the index range is the array's.
        let item = |i: u32| Ok(unsafe { array_element::<T>(h.base, h.first + u64::from(i)) });
        run_each::<Ctx, T, R, WO>(ctx, run, h.start, Items::Computed, item, conjure::<F>(), None);
    }
}
