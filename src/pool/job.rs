//! Where a job's items come from (a source that encodes them lazily into chunks) and where its
//! results go (a sink that decodes them, in order or as they come).

use std::any::Any;
use std::collections::VecDeque;
use std::marker::PhantomData;

use crate::error::Error;
use crate::pool::wire::{self, Wire};

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
            wire::PANICKED => Error::TaskPanicked { task: idx, message: wire::get_str(&mut body) },
            wire::TOO_LARGE => {
                let size = wire::get_u64(&mut body) as usize;
                let limit = wire::get_u64(&mut body) as usize;
                Error::MessageTooLarge { what: "result", task: idx, size, limit }
            }
            _ => Error::Decode { what: "argument", task: idx, message: wire::get_str(&mut body) },
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
