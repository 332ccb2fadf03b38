//! Jobs and their results: where a job's items come from (a source that encodes them lazily into
//! chunks), where its results go (a sink that decodes them, in order or as they come), the table
//! of jobs, and the collection of results from the workers' rings.

use std::any::Any;
use std::collections::{BTreeMap, VecDeque};
use std::marker::PhantomData;
use std::rc::Rc;

use crate::error::{Error, Result};
use crate::pool::slots::Slot;
use crate::pool::task::TaskFn;
use crate::pool::wire::{self, RESULT_HDR, ResultHeader, Wire};

/// Hands out a job's items, encoded, a chunk at a time.
pub(crate) trait Source {
    /// Encodes up to `max_items` contiguous items (at most `max_bytes`) into `buf`; returns the
    /// index of the first and their number, or `None` when no item is left. Items that cannot be
    /// sent (encoding failed, too large) go to `rejected` instead, and end the chunk.
    fn next_chunk(
        &mut self,
        buf: &mut Vec<u8>,
        max_items: usize,
        max_bytes: usize,
        rejected: &mut Vec<(u64, Error)>,
    ) -> Option<(u64, u32)>;
    /// Items taken so far (sent or rejected).
    fn produced(&self) -> u64;
    /// Whether every item has been taken.
    fn exhausted(&self) -> bool;
}

pub(crate) struct IterSource<I: Iterator, W> {
    iter: I,
    next: u64,
    pending: Option<(u64, Vec<u8>)>,
    done: bool,
    scratch: Vec<u8>,
    _w: PhantomData<W>,
}

impl<I: Iterator, W> IterSource<I, W> {
    pub(crate) fn new(iter: I) -> Self {
        IterSource { iter, next: 0, pending: None, done: false, scratch: Vec::new(), _w: PhantomData }
    }
}

impl<I: Iterator, W: Wire<I::Item>> Source for IterSource<I, W> {
    fn next_chunk(
        &mut self,
        buf: &mut Vec<u8>,
        max_items: usize,
        max_bytes: usize,
        rejected: &mut Vec<(u64, Error)>,
    ) -> Option<(u64, u32)> {
        buf.clear();
        let mut first = None;
        let mut count = 0u32;
        while (count as usize) < max_items {
            let (idx, bytes) = match self.pending.take() {
                Some(p) => p,
                None => {
                    let Some(x) = self.iter.next() else {
                        self.done = true;
                        break;
                    };
                    let idx = self.next;
                    self.next += 1;
                    let mut b = std::mem::take(&mut self.scratch);
                    b.clear();
                    if let Err(e) = W::encode(&x, &mut b) {
                        self.scratch = b;
                        rejected.push((idx, Error::Encode { what: "argument", task: idx, message: e }));
                        if count > 0 {
                            break;
                        }
                        continue;
                    }
                    (idx, b)
                }
            };
            if bytes.len() > max_bytes {
                rejected.push((
                    idx,
                    Error::MessageTooLarge { what: "argument", task: idx, size: bytes.len(), limit: max_bytes },
                ));
                self.scratch = bytes;
                if count > 0 {
                    break;
                }
                continue;
            }
            if buf.len() + bytes.len() > max_bytes {
                self.pending = Some((idx, bytes));
                break;
            }
            first.get_or_insert(idx);
            buf.extend_from_slice(&bytes);
            self.scratch = bytes;
            count += 1;
        }
        first.map(|f| (f, count))
    }

    fn produced(&self) -> u64 {
        self.next - u64::from(self.pending.is_some())
    }

    fn exhausted(&self) -> bool {
        self.done && self.pending.is_none()
    }
}

/// Receives a job's results.
pub(crate) trait Sink: Any {
    /// Decodes one successful result for task `idx` from the front of `body`.
    fn put_ok(&mut self, idx: u64, body: &mut &[u8]) -> Result<(), String>;
    /// Records a failed task.
    fn fail(&mut self, idx: u64, e: Error);
    /// Whether a result can be handed out now.
    fn has_ready(&self) -> bool;
    fn as_any(&mut self) -> &mut dyn Any;
}

/// Decodes the tagged items of one results record into `sink`; returns how many failed.
pub(crate) fn deliver(sink: &mut dyn Sink, first: u64, count: u32, mut body: &[u8]) -> usize {
    let mut failed = 0;
    for k in 0..u64::from(count) {
        let idx = first + k;
        let Some((&tag, rest)) = body.split_first() else {
            sink.fail(idx, Error::Corrupt(format!("task {idx}: result record truncated")));
            failed += 1;
            continue;
        };
        body = rest;
        let err = match tag {
            wire::OK => match sink.put_ok(idx, &mut body) {
                Ok(()) => continue,
                Err(e) => {
                    body = &[]; // the rest of the record cannot be parsed any more
                    Error::Decode { what: "result", task: idx, message: e }
                }
            },
            wire::UNDECODABLE => Error::Decode { what: "argument", task: idx, message: wire::get_str(&mut body) },
            wire::PANICKED => Error::TaskPanicked { task: idx, message: wire::get_str(&mut body) },
            wire::UNENCODABLE => Error::Encode { what: "result", task: idx, message: wire::get_str(&mut body) },
            wire::TOO_LARGE => {
                let size = wire::get_u64(&mut body) as usize;
                let limit = wire::get_u64(&mut body) as usize;
                Error::MessageTooLarge { what: "result", task: idx, size, limit }
            }
            t => {
                body = &[];
                Error::Corrupt(format!("task {idx}: unknown result tag {t}"))
            }
        };
        sink.fail(idx, err);
        failed += 1;
    }
    failed
}

/// Results kept by task index and handed out in order (`map`, `imap`, `apply`), or handed out as
/// they come (`imap_unordered`).
pub(crate) struct Collect<R, W> {
    ordered: bool,
    /// Ordered: slot `i` holds task `base + i`.
    base: u64,
    slots: VecDeque<Option<Result<R, Error>>>,
    /// Unordered: results as they arrived.
    ready: VecDeque<Result<R, Error>>,
    _w: PhantomData<W>,
}

impl<R, W> Collect<R, W> {
    pub(crate) fn new(ordered: bool) -> Self {
        Collect { ordered, base: 0, slots: VecDeque::new(), ready: VecDeque::new(), _w: PhantomData }
    }

    fn store(&mut self, idx: u64, r: Result<R, Error>) {
        if !self.ordered {
            self.ready.push_back(r);
            return;
        }
        let Some(pos) = idx.checked_sub(self.base) else { return };
        let pos = pos as usize;
        if self.slots.len() <= pos {
            self.slots.resize_with(pos + 1, || None);
        }
        if self.slots[pos].is_none() {
            self.slots[pos] = Some(r);
        }
    }

    /// The next result in order (ordered) or in arrival (unordered), if it is there.
    pub(crate) fn pop(&mut self) -> Option<Result<R, Error>> {
        if !self.ordered {
            return self.ready.pop_front();
        }
        if self.slots.front().is_some_and(Option::is_some) {
            self.base += 1;
            return self.slots.pop_front().flatten();
        }
        None
    }
}

impl<R: 'static, W: Wire<R> + 'static> Sink for Collect<R, W> {
    fn put_ok(&mut self, idx: u64, body: &mut &[u8]) -> Result<(), String> {
        let v = W::decode(body)?;
        self.store(idx, Ok(v));
        Ok(())
    }

    fn fail(&mut self, idx: u64, e: Error) {
        self.store(idx, Err(e));
    }

    fn has_ready(&self) -> bool {
        if self.ordered { self.slots.front().is_some_and(Option::is_some) } else { !self.ready.is_empty() }
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
    /// Nobody will read the results any more (an iterator or AsyncResult was dropped).
    pub abandoned: bool,
    /// Detached: run this (the caller's callback) once the job is complete.
    pub then: Option<Then>,
}

impl Job {
    pub(crate) fn new(task: TaskFn, chunksize: usize, source: Box<dyn Source>, sink: Box<dyn Sink>) -> Job {
        Job { task, chunksize, arg: None, source, sink, resolved: 0, failed: 0, abandoned: false, then: None }
    }

    pub(crate) fn complete(&self) -> bool {
        self.source.exhausted() && self.resolved == self.source.produced()
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

    /// The oldest job that still has items to hand out.
    pub(crate) fn oldest_feedable(&self) -> Option<u64> {
        self.map.iter().find(|(_, j)| !j.abandoned && !j.source.exhausted()).map(|(&id, _)| id)
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

    /// Reads every finished result of the worker in `slot` into its job; returns how many tasks
    /// they answered. Answered chunks' buffers go to `recycle`.
    pub(crate) fn collect_from(&mut self, slot: &mut Slot, recycle: &mut impl FnMut(Rc<Vec<u8>>)) -> Result<usize> {
        let mut answered = 0;
        let mut results = slot.chan.results();
        while let Some(rec) = results.try_recv() {
            let body = rec.body();
            let h: ResultHeader = wire::read_header(body)
                .ok_or_else(|| Error::Corrupt(format!("a results record of {} bytes", body.len())))?;
            let mut due = false;
            if let Some(job) = self.map.get_mut(&h.job) {
                let failed =
                    if job.abandoned { 0 } else { deliver(&mut *job.sink, h.first, h.count, &body[RESULT_HDR..]) };
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
            slot.inflight_items = slot.inflight_items.saturating_sub(h.count as usize);
            if let Some(f) = slot.inflight.front_mut()
                && f.job == h.job
                && f.first + u64::from(f.start) == h.first
            {
                f.start += h.count;
                if f.start >= f.end {
                    recycle(slot.inflight.pop_front().expect("front exists").bytes);
                }
            }
        }
        Ok(answered)
    }
}
