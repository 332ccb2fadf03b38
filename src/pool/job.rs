//! Jobs and their results: where a job's items come from (a source that encodes them lazily,
//! straight into a chunk buffer, or hands out index ranges), where its results go (a sink that
//! decodes each record straight into its final place: the output `Vec` of a `map`, or a window
//! of chunks for `imap`), the table of jobs, and the collection of results from the rings.

use std::any::Any;
use std::collections::{BTreeMap, VecDeque};
use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::rc::Rc;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::pool::dispatch::Dispatch;
use crate::pool::slots::Slot;
use crate::pool::task::{RangeItem, TaskFn};
use crate::pool::wire::{self, ChunkBytes, RANGE, RESULT_HDR, ResultHeader, Wire};

/// Size limits a source works within.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Largest encoded item ([`crate::PoolBuilder::max_message_bytes`]).
    pub item: usize,
    /// Chunk payload to stop at: more items are not added past it (a single item may exceed it,
    /// up to `item`; a task record holds that and its header).
    pub chunk: usize,
}

/// A chunk a source handed out: tasks `first..first+count`, encoded in the buffer it was given
/// (or, with `flags & RANGE`, computed by the worker from `base`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Chunk {
    pub first: u64,
    pub count: u32,
    pub base: u64,
    pub flags: u64,
}

/// Hands out a job's items, encoded, a chunk at a time.
pub(crate) trait Source {
    /// Encodes up to `max_items` contiguous items into `buf` (cleared first); returns the chunk,
    /// or `None` when no item is left. Items that cannot be sent (encoding failed, too large,
    /// the iterator panicked) go to `rejected` instead, and end the chunk.
    fn next_chunk(
        &mut self,
        buf: &mut ChunkBytes,
        max_items: usize,
        limits: Limits,
        rejected: &mut Vec<(u64, Error)>,
    ) -> Option<Chunk>;
    /// Items taken so far (sent or rejected).
    fn produced(&self) -> u64;
    /// Whether every item has been taken.
    fn exhausted(&self) -> bool;
}

/// The plain loop's items, written into room reserved after `at` and counted in `items`: the
/// vector's length and the source's counts are set once, when the loop ends — or, if the
/// iterator panics, on the way out, so that the items before it still go. (Set per item, they
/// were a store and a reload through memory per item, a third of the parent's time on `u64`s.)
struct PlainRun<'a> {
    inline: &'a mut Vec<u8>,
    at: usize,
    size: usize,
    items: usize,
    count: &'a mut u32,
    next: &'a mut u64,
}

impl Drop for PlainRun<'_> {
    fn drop(&mut self) {
        // SAFETY: the `items` items after `at` were each written (into reserved room) before
        // `items` counted them.
        unsafe { self.inline.set_len(self.at + self.items * self.size) };
        *self.count += self.items as u32;
        *self.next += self.items as u64;
    }
}

/// Items from an iterator, encoded by `W` straight into the chunk buffer.
pub(crate) struct IterSource<I: Iterator, W> {
    iter: I,
    next: u64,
    /// An item that did not fit in the previous chunk (it starts the next one), and its kept
    /// buffer ([`ChunkBytes::kept`]).
    pending: Option<(u64, ChunkBytes, Option<Vec<u8>>)>,
    done: bool,
    /// Whether the iterator is being asked for an item (to name the item if it panics).
    pulling: bool,
    /// Whether arguments' buffers are kept for their results ([`ChunkBytes::kept`]): only when
    /// the results can be built in them ([`Wire::reuses_buffers`]).
    keep: bool,
    _w: PhantomData<W>,
}

impl<I: Iterator, W> IterSource<I, W> {
    /// `keep`: see [`IterSource::keep`].
    pub(crate) fn new(iter: I, keep: bool) -> Self {
        IterSource { iter, next: 0, pending: None, done: false, pulling: false, keep, _w: PhantomData }
    }
}

impl<I: Iterator<Item: 'static>, W: Wire<I::Item>> IterSource<I, W> {
    /// The next item and its index, or `None` (and the source done) when none is left. While the
    /// iterator is asked, `pulling` says so: a panic there is the next item's.
    #[inline]
    fn pull(&mut self) -> Option<(u64, I::Item)> {
        self.pulling = true;
        let x = self.iter.next();
        self.pulling = false;
        let Some(x) = x else {
            self.done = true;
            return None;
        };
        self.next += 1;
        Some((self.next - 1, x))
    }

    /// The body of `next_chunk`; `first`/`count` live outside so they survive a panic.
    #[allow(clippy::too_many_arguments)]
    fn fill(
        &mut self,
        buf: &mut ChunkBytes,
        max_items: usize,
        limits: Limits,
        rejected: &mut Vec<(u64, Error)>,
        first: &mut Option<u64>,
        count: &mut u32,
        item_at: &mut wire::Mark,
    ) {
        if let Some((idx, bytes, kept)) = self.pending.take() {
            buf.append(bytes);
            buf.kept.extend(kept);
            *first = Some(idx);
            *count = 1;
        }
        // Plain items (numbers, `map_plain`): one size, their own bytes, so no encoding that can
        // fail, no size to check per item: the chunk is laid out by one store per item into
        // room reserved once. Only the iterator can panic here (`pulling` stays set).
        if let Some(n) = W::plain_size().filter(|&n| n > 0 && n <= limits.item && n == std::mem::size_of::<I::Item>()) {
            let mut room = limits.chunk.saturating_sub(buf.len()) / n;
            if *count == 0 {
                room = room.max(1);
            }
            let want = (max_items.saturating_sub(*count as usize)).min(room).min((u32::MAX - *count) as usize);
            buf.inline.reserve(want * n);
            first.get_or_insert(self.next);
            self.pulling = true;
            let at = buf.inline.len();
            let mut run = PlainRun { inline: &mut buf.inline, at, size: n, items: 0, count, next: &mut self.next };
            // SAFETY: `at` is the vector's length, within (one past) its allocation.
            let dst = unsafe { run.inline.as_mut_ptr().add(at) };
            for _ in 0..want {
                let Some(x) = self.iter.next() else {
                    self.done = true;
                    break;
                };
                // SAFETY: `reserve` made room for `want` items of `n` bytes after `at`, and this
                // is item `run.items < want`; by `Wire`'s contract (`plain_size` is `Some(n)`, `n`
                // the size of the item type) an item's encoding is its own `n` bytes, with no
                // padding. Unaligned: the chunk's bytes have no alignment.
                unsafe { dst.add(run.items * n).cast::<I::Item>().write_unaligned(x) };
                run.items += 1;
            }
            drop(run);
            self.pulling = false;
            return;
        }
        // Any other item that is not a `String` or `Vec<u8>`: encoded by `W` at a cursor whose
        // length stays in a register ([`crate::pool::fixint::Cursor`]); nothing to keep, no
        // blob to move.
        if !wire::is_buffer::<I::Item>() {
            *item_at = buf.mark_keeping_inline();
            let (blob_bytes, limit) = (buf.blob_bytes(), max_items.min(u32::MAX as usize));
            let mut c = crate::pool::fixint::Cursor::new(&mut buf.inline);
            while (*count as usize) < limit {
                let Some((idx, x)) = self.pull() else { break };
                let at = c.len();
                let any = *count > 0;
                if let Err(e) = W::encode_at(&x, &mut c) {
                    c.truncate(at);
                    rejected.push((idx, Error::Encode { what: "argument", task: idx, message: e }));
                    if any {
                        break;
                    }
                    continue;
                }
                drop(x);
                let n = c.len() - at;
                if n > limits.item {
                    c.truncate(at);
                    rejected.push((
                        idx,
                        Error::MessageTooLarge { what: "argument", task: idx, size: n, limit: limits.item },
                    ));
                    if any {
                        break;
                    }
                    continue;
                }
                if c.len() + blob_bytes > limits.chunk && any {
                    let mut alone = ChunkBytes::default();
                    alone.inline.extend_from_slice(c.written_from(at));
                    c.truncate(at);
                    self.pending = Some((idx, alone, None));
                    break;
                }
                c.keep();
                first.get_or_insert(idx);
                // Counted here, not once at the end: if the iterator or a `Serialize` panics,
                // `next_chunk` sends the items before it, as many as this says.
                *count += 1;
            }
            return;
        }
        // A `String` or `Vec<u8>`: kept for its result, moved in whole (a blob), or encoded.
        while (*count as usize) < max_items && *count < u32::MAX {
            let Some((idx, x)) = self.pull() else { break };
            // A short `String`/`Vec<u8>` argument whose buffer is kept: its bytes, laid out as
            // `W` lays them out (see `Wire::reuses_buffers`), with no encoder and none of the
            // general path's marks — a map over strings is bound by this loop.
            let x = match wire::into_buffer(x) {
                Ok(b) if self.keep && W::reuses_buffers() && b.len() < wire::BLOB_MIN && 8 + b.len() <= limits.item => {
                    if buf.len() + 8 + b.len() > limits.chunk && *count > 0 {
                        let mut alone = ChunkBytes::default();
                        wire::put_bytes(&mut alone.inline, &b);
                        self.pending = Some((idx, alone, Some(b)));
                        break;
                    }
                    wire::put_bytes(&mut buf.inline, &b);
                    buf.kept.push(b);
                    first.get_or_insert(idx);
                    *count += 1;
                    continue;
                }
                // SAFETY: a buffer taken out of a `String` is UTF-8.
                Ok(b) => unsafe { wire::from_buffer::<I::Item>(b) }.expect("taken out of an I::Item"),
                Err(x) => x,
            };
            let at = buf.mark();
            let at_len = buf.len();
            *item_at = at;
            // A `String` or short `Vec<u8>` argument's buffer is kept for its result, one entry
            // per task (empty for an argument without one); any other argument is dropped here,
            // once encoded.
            let kept = match W::encode_owned(x, buf) {
                Ok(x) => self.keep.then(|| {
                    x.and_then(|x| wire::into_buffer(x).ok()).filter(|b| b.len() < wire::BLOB_MIN).unwrap_or_default()
                }),
                Err(e) => {
                    buf.truncate(at);
                    rejected.push((idx, Error::Encode { what: "argument", task: idx, message: e }));
                    if *count > 0 {
                        break;
                    }
                    continue;
                }
            };
            let n = buf.len() - at_len;
            if n > limits.item {
                buf.truncate(at);
                rejected
                    .push((idx, Error::MessageTooLarge { what: "argument", task: idx, size: n, limit: limits.item }));
                if *count > 0 {
                    break;
                }
                continue;
            }
            if buf.len() > limits.chunk && *count > 0 {
                self.pending = Some((idx, buf.split_off(at), kept));
                break;
            }
            buf.kept.extend(kept);
            first.get_or_insert(idx);
            *count += 1;
        }
    }
}

impl<I: Iterator<Item: 'static>, W: Wire<I::Item>> Source for IterSource<I, W> {
    fn next_chunk(
        &mut self,
        buf: &mut ChunkBytes,
        max_items: usize,
        limits: Limits,
        rejected: &mut Vec<(u64, Error)>,
    ) -> Option<Chunk> {
        buf.clear();
        if self.done {
            return self.pending.take().map(|(idx, bytes, kept)| {
                buf.append(bytes);
                buf.kept.extend(kept);
                Chunk { first: idx, count: 1, base: 0, flags: 0 }
            });
        }
        let (mut first, mut count, mut item_at) = (None, 0u32, buf.mark());
        // One unwind guard per chunk, not per item. If the iterator (or an item's `Serialize`)
        // panics, the items before it still go out, the failing one is reported, and the source
        // ends there: a caller that catches the panic never finds the job half-fed.
        let r = catch_unwind(AssertUnwindSafe(|| {
            self.fill(buf, max_items, limits, rejected, &mut first, &mut count, &mut item_at)
        }));
        if let Err(p) = r {
            let idx = if self.pulling { self.next } else { self.next - 1 };
            if self.pulling {
                self.next += 1;
            } else {
                buf.truncate(item_at);
            }
            self.pulling = false;
            self.done = true;
            let message = crate::process::panic_message(&*p);
            rejected.push((idx, Error::SourcePanicked { task: idx, message }));
        }
        // Never a chunk of no items (a first pull that panicked): no worker would answer it.
        first.filter(|_| count > 0).map(|f| Chunk { first: f, count, base: 0, flags: 0 })
    }

    fn produced(&self) -> u64 {
        self.next - u64::from(self.pending.is_some())
    }

    fn exhausted(&self) -> bool {
        self.done && self.pending.is_none()
    }
}

/// The items of a range of integers: chunks carry only their index range.
pub(crate) struct RangeSource {
    base: u64,
    len: u64,
    next: u64,
}

impl RangeSource {
    pub(crate) fn new<T: RangeItem>(range: std::ops::Range<T>) -> Self {
        RangeSource { base: range.start.to_bits(), len: T::count(range.start, range.end), next: 0 }
    }

    /// Indices `0..len`, with `base` handed to every chunk (an array's address).
    pub(crate) fn indices(base: u64, len: u64) -> Self {
        RangeSource { base, len, next: 0 }
    }
}

impl Source for RangeSource {
    fn next_chunk(
        &mut self,
        buf: &mut ChunkBytes,
        max_items: usize,
        _: Limits,
        _: &mut Vec<(u64, Error)>,
    ) -> Option<Chunk> {
        buf.clear();
        let count = (self.len - self.next).min(max_items as u64).min(u64::from(u32::MAX)) as u32;
        if count == 0 {
            return None;
        }
        let first = self.next;
        self.next += u64::from(count);
        Some(Chunk { first, count, base: self.base, flags: RANGE })
    }

    fn produced(&self) -> u64 {
        self.next
    }

    fn exhausted(&self) -> bool {
        self.next == self.len
    }
}

/// One results record, as a sink sees it: tasks `first..first+count`, the successful ones
/// encoded back to back in `ok`, the failed ones (task index, error) in `failed`, in order.
pub(crate) struct Answer<'a> {
    pub first: u64,
    pub count: u32,
    pub ok: &'a [u8],
    pub failed: Vec<(u64, Error)>,
    /// The kept buffers of these tasks' arguments ([`ChunkBytes::kept`]), one per task of the
    /// record, if the job keeps them and the chunk's bytes are not shared with a part of it
    /// sent again.
    pub kept: Option<&'a mut [Vec<u8>]>,
}

/// Receives a job's results.
pub(crate) trait Sink: Any {
    /// Stores the results of one record; returns how many of its tasks failed.
    fn put(&mut self, a: Answer<'_>) -> usize;
    /// Records a failed task.
    fn fail(&mut self, idx: u64, e: Error);
    /// Whether a result can be handed out now.
    fn has_ready(&self) -> bool;
    fn as_any(&mut self) -> &mut dyn Any;
}

/// Walks a record's tasks in order: `ok(idx, input)` decodes a successful one from the front of
/// `input`, `bad(idx, error)` takes a failed one. Returns the number that failed (including any
/// whose result could not be decoded; after one, the rest of the record cannot be parsed).
fn walk(
    a: Answer<'_>,
    mut ok: impl FnMut(u64, &mut &[u8]) -> Result<(), String>,
    mut bad: impl FnMut(u64, Error),
) -> usize {
    let mut failed = a.failed.into_iter().peekable();
    let mut input = a.ok;
    let mut n = 0;
    let mut broken: Option<String> = None;
    for idx in a.first..a.first + u64::from(a.count) {
        if failed.peek().is_some_and(|(i, _)| *i == idx) {
            let (_, e) = failed.next().expect("peeked");
            bad(idx, e);
            n += 1;
            continue;
        }
        if let Some(m) = &broken {
            bad(idx, Error::Decode { what: "result", task: idx, message: format!("after an undecodable result: {m}") });
            n += 1;
            continue;
        }
        if let Err(m) = ok(idx, &mut input) {
            bad(idx, Error::Decode { what: "result", task: idx, message: m.clone() });
            broken = Some(m);
            n += 1;
        }
    }
    n
}

/// The results of a whole list (`map`, `map_async`, `starmap`): the output vector, sized once,
/// each result decoded straight into its position (plain results: one copy per record). Failures
/// are kept apart, by index.
pub(crate) struct Fill<R, W> {
    out: Vec<MaybeUninit<R>>,
    /// Bit `i`: `out[i]` holds a value.
    filled: Vec<u64>,
    n_filled: usize,
    errors: Vec<(u64, Error)>,
    _w: PhantomData<W>,
}

impl<R, W> Fill<R, W> {
    pub(crate) fn new(len: usize) -> Self {
        let mut f = Fill { out: Vec::new(), filled: Vec::new(), n_filled: 0, errors: Vec::new(), _w: PhantomData };
        f.grow(len);
        // Written once through, from cores that just read the results: a large output's page
        // faults were most of the parent's time (10 M `u64`s: 4.9 of 5.1 ns per item).
        crate::sys::advise_huge_pages(&mut f.out);
        f
    }

    fn grow(&mut self, len: usize) {
        if len > self.out.len() {
            self.out.reserve_exact(len - self.out.len());
            // SAFETY: within capacity; `MaybeUninit` needs no initialisation.
            unsafe { self.out.set_len(len) };
            self.filled.resize(len.div_ceil(64), 0);
        }
    }

    fn is_filled(&self, i: usize) -> bool {
        self.filled[i / 64] & (1 << (i % 64)) != 0
    }

    fn set_filled(&mut self, i: usize) {
        self.filled[i / 64] |= 1 << (i % 64);
        self.n_filled += 1;
    }

    /// The bits of `out[first..first+count]`, a word at a time: `f(word index, mask)`.
    fn for_words(first: usize, count: usize, mut f: impl FnMut(usize, u64) -> bool) -> bool {
        let (mut i, end) = (first, first + count);
        while i < end {
            let (w, b) = (i / 64, i % 64);
            let n = (64 - b).min(end - i);
            let mask = if n == 64 { u64::MAX } else { ((1u64 << n) - 1) << b };
            if !f(w, mask) {
                return false;
            }
            i += n;
        }
        true
    }

    /// Whether any of `out[first..first+count]` holds a value (a task that ran twice).
    fn any_filled(&self, first: usize, count: usize) -> bool {
        !Self::for_words(first, count, |w, mask| self.filled[w] & mask == 0)
    }

    /// Marks `out[first..first+count]` as holding values (none did).
    fn set_filled_range(&mut self, first: usize, count: usize) {
        let filled = &mut self.filled;
        Self::for_words(first, count, |w, mask| {
            filled[w] |= mask;
            true
        });
        self.n_filled += count;
    }

    fn write(&mut self, idx: u64, v: R) {
        let i = idx as usize;
        self.grow(i + 1);
        if !self.is_filled(i) {
            self.out[i].write(v);
            self.set_filled(i);
        }
    }

    /// Every result in order, or [`Error::MapFailed`] with the failure of the lowest index.
    pub(crate) fn take(&mut self, total: usize) -> Result<Vec<R>> {
        if self.errors.is_empty() && self.n_filled == self.out.len() {
            let out = std::mem::take(&mut self.out);
            self.filled.clear();
            self.n_filled = 0;
            let mut out = std::mem::ManuallyDrop::new(out);
            // SAFETY: every element is initialised (all bits set, as many as elements), and
            // `MaybeUninit<R>` has the layout of `R`; the allocation is handed over whole.
            return Ok(unsafe { Vec::from_raw_parts(out.as_mut_ptr().cast::<R>(), out.len(), out.capacity()) });
        }
        let failed = self.errors.len();
        let at = (0..failed).min_by_key(|&k| self.errors[k].0);
        let first = match at {
            Some(k) => self.errors.swap_remove(k).1,
            None => Error::Corrupt(format!("{} of {} results missing", self.out.len() - self.n_filled, self.out.len())),
        };
        Err(Error::MapFailed { failed: failed.max(1), total, first: Box::new(first) })
    }
}

impl<R, W> Drop for Fill<R, W> {
    fn drop(&mut self) {
        if std::mem::needs_drop::<R>() {
            for i in 0..self.out.len() {
                if self.is_filled(i) {
                    // SAFETY: the bit says the element was written, and it is dropped once.
                    unsafe { self.out[i].assume_init_drop() };
                }
            }
        }
    }
}

impl<R: 'static, W: Wire<R> + 'static> Sink for Fill<R, W> {
    fn put(&mut self, a: Answer<'_>) -> usize {
        let (first, count) = (a.first as usize, a.count as usize);
        if a.failed.is_empty() {
            self.grow(first + count);
            if !self.any_filled(first, count) {
                if let Some(size) = W::plain_size()
                    && a.ok.len() == count * size
                {
                    // SAFETY: `W::plain_size` promises `R` is plain data of `size` bytes (any bit
                    // pattern valid); the destination `out[first..first+count]` is in bounds and
                    // holds no value yet, the source is `count * size` bytes.
                    unsafe {
                        std::ptr::copy_nonoverlapping(
                            a.ok.as_ptr(),
                            self.out.as_mut_ptr().add(first).cast::<u8>(),
                            count * size,
                        );
                    }
                    self.set_filled_range(first, count);
                    return 0;
                }
                // Every result of the record, decoded straight into its place: no per-item
                // bounds, bit or failure-list check. (If a `Deserialize` panicked here, the
                // values written so far would leak, never drop twice: their bits are set below.)
                let mut input = a.ok;
                let dst = self.out[first..first + count].as_mut_ptr();
                let mut k = 0;
                let mut broken = None;
                let mut kept = a.kept;
                while k < count {
                    let v = match kept.as_mut() {
                        Some(kept) => W::decode_reusing(&mut input, std::mem::take(&mut kept[k])),
                        None => W::decode(&mut input),
                    };
                    match v {
                        // SAFETY: `k < count`, inside `out[first..first+count]`, which holds no
                        // value (checked above) and is written once.
                        Ok(v) => unsafe { (*dst.add(k)).write(v) },
                        Err(m) => {
                            broken = Some(m);
                            break;
                        }
                    };
                    k += 1;
                }
                self.set_filled_range(first, k);
                debug_assert!(broken.is_some() || input.is_empty(), "bytes left after a record's results");
                let Some(m) = broken else { return 0 };
                let at = (first + k) as u64;
                self.errors.push((at, Error::Decode { what: "result", task: at, message: m.clone() }));
                for idx in at + 1..(first + count) as u64 {
                    let message = format!("after an undecodable result: {m}");
                    self.errors.push((idx, Error::Decode { what: "result", task: idx, message }));
                }
                return count - k;
            }
        }
        let mut errors = Vec::new();
        let n = walk(
            a,
            |idx, input| {
                let v = W::decode(input)?;
                self.write(idx, v);
                Ok(())
            },
            |idx, e| errors.push((idx, e)),
        );
        self.errors.append(&mut errors);
        n
    }

    fn fail(&mut self, idx: u64, e: Error) {
        self.errors.push((idx, e));
    }

    fn has_ready(&self) -> bool {
        false
    }

    fn as_any(&mut self) -> &mut dyn Any {
        self
    }
}

/// Results handed out one at a time: in order (`imap`, `apply`) from a window of decoded
/// records keyed by their first task, or as they come (`imap_unordered`).
pub(crate) struct Window<R, W> {
    ordered: bool,
    /// Ordered: the next task to hand out, and the record it is in.
    next: u64,
    cur: VecDeque<Result<R, Error>>,
    /// Ordered: records (or single failures) that arrived ahead of `next`.
    ahead: BTreeMap<u64, VecDeque<Result<R, Error>>>,
    _w: PhantomData<W>,
}

impl<R, W> Window<R, W> {
    pub(crate) fn new(ordered: bool) -> Self {
        Window { ordered, next: 0, cur: VecDeque::new(), ahead: BTreeMap::new(), _w: PhantomData }
    }

    fn add(&mut self, first: u64, rs: VecDeque<Result<R, Error>>) {
        if !self.ordered {
            self.cur.extend(rs);
        } else if first >= self.next + self.cur.len() as u64 {
            self.ahead.insert(first, rs);
        }
    }

    /// The next result in order (ordered) or in arrival (unordered), if it is there.
    pub(crate) fn pop(&mut self) -> Option<Result<R, Error>> {
        if self.ordered
            && self.cur.is_empty()
            && let Some(rs) = self.ahead.remove(&self.next)
        {
            self.cur = rs;
        }
        let r = self.cur.pop_front()?;
        self.next += 1;
        Some(r)
    }
}

impl<R: 'static, W: Wire<R> + 'static> Sink for Window<R, W> {
    fn put(&mut self, a: Answer<'_>) -> usize {
        let first = a.first;
        // Both closures append to the record's results, in task order.
        let rs = std::cell::RefCell::new(VecDeque::with_capacity(a.count as usize));
        let n = walk(
            a,
            |_, input| {
                rs.borrow_mut().push_back(Ok(W::decode(input)?));
                Ok(())
            },
            |_, e| rs.borrow_mut().push_back(Err(e)),
        );
        self.add(first, rs.into_inner());
        n
    }

    fn fail(&mut self, idx: u64, e: Error) {
        self.add(idx, VecDeque::from([Err(e)]));
    }

    fn has_ready(&self) -> bool {
        !self.cur.is_empty() || (self.ordered && self.ahead.contains_key(&self.next))
    }

    fn as_any(&mut self) -> &mut dyn Any {
        self
    }
}

/// A detached job's callback: called once with the job when it is complete.
pub(crate) type Then = Box<dyn FnOnce(&mut Job)>;

/// A call's work: its items, its task function, where its results go.
pub(crate) struct Job {
    pub task: TaskFn,
    pub chunksize: usize,
    /// The encoded per-call value ([`crate::Pool::map_with`]), sent once to each worker.
    pub arg: Option<Vec<u8>>,
    pub source: Box<dyn Source>,
    pub sink: Box<dyn Sink>,
    /// Tasks answered (succeeded or failed).
    pub resolved: u64,
    pub failed: usize,
    /// Results handed to the caller (the iterators).
    pub taken: u64,
    /// Back-pressure: at most this many tasks out (sent, running, or waiting to be taken).
    pub window: Option<u64>,
    /// This call's time limit per task (else the pool's).
    pub timeout: Option<Duration>,
    /// Nobody will read the results any more (an iterator or AsyncResult was dropped).
    pub abandoned: bool,
    /// Detached: run this (the caller's callback) once the job is complete.
    pub then: Option<Then>,
}

impl Job {
    pub(crate) fn new(task: TaskFn, chunksize: usize, source: Box<dyn Source>, sink: Box<dyn Sink>) -> Job {
        Job {
            task,
            chunksize,
            arg: None,
            source,
            sink,
            resolved: 0,
            failed: 0,
            taken: 0,
            window: None,
            timeout: None,
            abandoned: false,
            then: None,
        }
    }

    pub(crate) fn complete(&self) -> bool {
        self.source.exhausted() && self.resolved == self.source.produced()
    }

    /// Whether the job has items to send now (not exhausted, not held back by its window).
    pub(crate) fn feedable(&self) -> bool {
        !self.abandoned
            && !self.source.exhausted()
            && self.window.is_none_or(|w| self.source.produced().saturating_sub(self.taken) < w)
    }

    /// Records the failure of task `idx`.
    pub(crate) fn fail(&mut self, idx: u64, e: Error) {
        if !self.abandoned {
            self.sink.fail(idx, e);
        }
        self.resolved += 1;
        self.failed += 1;
    }

    /// The sink, as the type the job was submitted with.
    pub(crate) fn sink_as<S: Sink>(&mut self) -> &mut S {
        self.sink.as_any().downcast_mut::<S>().expect("sink type matches its job")
    }
}

/// The jobs of a pool, oldest first, and the detached ones that completed (callbacks to run).
#[derive(Default)]
pub(crate) struct Jobs {
    map: BTreeMap<u64, Job>,
    next: u64,
    done: VecDeque<Job>,
    /// The job fed last (fresh chunks go round the feedable jobs).
    last_fed: u64,
}

impl Jobs {
    pub(crate) fn insert(&mut self, job: Job) -> u64 {
        self.next += 1;
        self.map.insert(self.next, job);
        self.next
    }

    pub(crate) fn get(&self, id: u64) -> Option<&Job> {
        self.map.get(&id)
    }

    pub(crate) fn get_mut(&mut self, id: u64) -> Option<&mut Job> {
        self.map.get_mut(&id)
    }

    pub(crate) fn contains(&self, id: u64) -> bool {
        self.map.contains_key(&id)
    }

    /// Removes and returns a job.
    pub(crate) fn remove(&mut self, id: u64) -> Option<Job> {
        self.map.remove(&id)
    }

    /// Whether job `id` is over (complete, or gone).
    pub(crate) fn finished(&self, id: u64) -> bool {
        self.map.get(&id).is_none_or(Job::complete)
    }

    /// Whether every job is complete or abandoned.
    pub(crate) fn all_settled(&self) -> bool {
        self.map.values().all(|j| j.complete() || j.abandoned)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The next job, after the one fed last and round the table, that has items to send now:
    /// jobs take turns chunk by chunk, so a short job issued during a long one is not queued
    /// behind all of it.
    pub(crate) fn next_feedable(&mut self) -> Option<u64> {
        let after = self.last_fed;
        let id = self
            .map
            .range(after + 1..)
            .chain(self.map.range(..=after))
            .find(|(_, j)| j.feedable())
            .map(|(&id, _)| id)?;
        self.last_fed = id;
        Some(id)
    }

    /// Whether any job has a time limit of its own.
    pub(crate) fn any_timeout(&self) -> bool {
        self.map.values().any(|j| j.timeout.is_some())
    }

    /// The shortest time limit of a job.
    pub(crate) fn min_timeout(&self) -> Option<Duration> {
        self.map.values().filter_map(|j| j.timeout).min()
    }

    /// Whether any job has items to send now.
    pub(crate) fn any_feedable(&self) -> bool {
        self.map.values().any(Job::feedable)
    }

    /// Moves job `id` to the completed list if it is detached and complete.
    pub(crate) fn settle(&mut self, id: u64) {
        if self.map.get(&id).is_some_and(|j| j.then.is_some() && j.complete())
            && let Some(j) = self.map.remove(&id)
        {
            self.done.push_back(j);
        }
    }

    /// A completed detached job whose callback is due, in order of completion.
    pub(crate) fn pop_done(&mut self) -> Option<Job> {
        self.done.pop_front()
    }

    /// Drops abandoned jobs none of whose chunks `busy` still holds.
    pub(crate) fn drop_abandoned(&mut self, busy: impl Fn(u64) -> bool) {
        self.map.retain(|&id, j| !j.abandoned || busy(id));
    }

    /// Abandons every job (the pool is broken).
    pub(crate) fn abandon_all(&mut self) {
        for j in self.map.values_mut() {
            j.abandoned = true;
        }
    }

    /// Reads every record of the worker in `slot` into its job; returns how many tasks they
    /// answered or handed back. Answered chunks' buffers go back to `dispatch`, and so do chunks
    /// the worker skipped (to be sent again).
    pub(crate) fn collect_from(&mut self, slot: &mut Slot, dispatch: &mut Dispatch) -> Result<usize> {
        let mut answered = 0;
        let mut results = slot.chan.results();
        while let Some(rec) = results.try_recv() {
            let body = rec.body();
            let h: ResultHeader = wire::read_header(body)
                .ok_or_else(|| Error::Corrupt(format!("a results record of {} bytes", body.len())))?;
            if rec.kind() == wire::SKIPPED {
                rec.commit();
                if let Some(pos) = slot.inflight.iter().position(|f| f.seq == h.seq) {
                    let e = slot.inflight.remove(pos).expect("found");
                    slot.inflight_items = slot.inflight_items.saturating_sub(e.items());
                    // Progress too: the caller must dispatch again before it sleeps, or nobody
                    // would wake it for this chunk (regression: a map hung after a steal).
                    answered += e.items();
                    dispatch.requeue_front(e);
                }
                continue;
            }
            let mut due = false;
            let pos = slot.inflight.iter().position(|f| f.seq == h.seq);
            if let Some(job) = self.map.get_mut(&h.job) {
                // The arguments' kept buffers (entry `i` is task `first + i`'s), if the job keeps
                // them and no part of the chunk sent again after a death shares them.
                let kept = pos.and_then(|p| {
                    let f = &mut slot.inflight[p];
                    let rel = h.first.checked_sub(f.first)? as usize;
                    Rc::get_mut(&mut f.bytes)?.kept.get_mut(rel..rel + h.count as usize)
                });
                let failed = if job.abandoned { 0 } else { job.sink.put(parse(&h, body, kept)?) };
                job.resolved += u64::from(h.count);
                job.failed += failed;
                due = job.then.is_some() && job.complete();
            }
            rec.commit();
            if due {
                self.settle(h.job);
            }
            answered += h.count as usize;
            slot.strikes = 0;
            Slot::learn(&mut slot.ns_per_item, h.count, h.busy_ns);
            slot.inflight_items = slot.inflight_items.saturating_sub(h.count as usize);
            if let Some(pos) = pos
                && let f = &mut slot.inflight[pos]
                && f.first + u64::from(f.start) == h.first
            {
                f.start += h.count;
                if f.start >= f.end {
                    let e = slot.inflight.remove(pos).expect("found");
                    dispatch.recycle(e.bytes);
                }
            }
        }
        Ok(answered)
    }
}

/// Splits a results record into its successful bytes and its list of failures.
fn parse<'a>(h: &ResultHeader, body: &'a [u8], kept: Option<&'a mut [Vec<u8>]>) -> Result<Answer<'a>> {
    let bad = || Error::Corrupt(format!("a results record of {} bytes for {} tasks", body.len(), h.count));
    let ok_end = RESULT_HDR.checked_add(h.ok_len as usize).filter(|&e| e <= body.len()).ok_or_else(bad)?;
    let ok = &body[RESULT_HDR..ok_end];
    let mut t = &body[ok_end..];
    let mut failed = Vec::with_capacity(h.exceptions as usize);
    for _ in 0..h.exceptions {
        let (Some(rel), Some(&why)) = (t.get(..4), t.get(4)) else { return Err(bad()) };
        let rel = u32::from_le_bytes(rel.try_into().expect("4 bytes"));
        t = &t[5..];
        let idx = h.first + u64::from(rel);
        let e = match why {
            wire::UNDECODABLE => Error::Decode { what: "argument", task: idx, message: wire::get_str(&mut t) },
            wire::PANICKED => Error::TaskPanicked { task: idx, message: wire::get_str(&mut t) },
            wire::UNENCODABLE => Error::Encode { what: "result", task: idx, message: wire::get_str(&mut t) },
            wire::TOO_LARGE => {
                let size = wire::get_u64(&mut t) as usize;
                let limit = wire::get_u64(&mut t) as usize;
                Error::MessageTooLarge { what: "result", task: idx, size, limit }
            }
            w => return Err(Error::Corrupt(format!("task {idx}: unknown failure kind {w}"))),
        };
        failed.push((idx, e));
    }
    Ok(Answer { first: h.first, count: h.count, ok, failed, kept })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::wire::{Auto, ChunkBytes};

    /// Regression: a plain-item source (numbers) whose iterator panics on a chunk's first pull
    /// made a chunk of no items, which was sent and then stayed in flight for ever (no worker
    /// answers a chunk with nothing in it).
    #[test]
    fn a_plain_source_panicking_on_a_chunks_first_pull_makes_no_chunk() {
        let iter = (0..10u64).map(|x| if x == 4 { panic!("source broke at {x}") } else { x });
        let mut src = IterSource::<_, Auto>::new(iter, false);
        let (mut buf, mut rejected) = (ChunkBytes::default(), Vec::new());
        let limits = Limits { item: 1 << 20, chunk: 1 << 20 };
        let first = src.next_chunk(&mut buf, 4, limits, &mut rejected).expect("items 0..4");
        assert_eq!((first.first, first.count, buf.len()), (0, 4, 32));
        assert!(src.next_chunk(&mut buf, 4, limits, &mut rejected).is_none(), "an empty chunk was made");
        assert!(matches!(rejected[..], [(4, Error::SourcePanicked { task: 4, .. })]), "{rejected:?}");
        assert!(src.exhausted());
    }
}
