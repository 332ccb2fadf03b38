//! What a caller holds while work runs: [`AsyncResult`] (one task, or a whole map) and
//! [`ResultIter`] (results one at a time).

use std::marker::PhantomData;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::pool::Pool;
use crate::pool::job::{Fill, Job, Window};
use crate::pool::wire::Wire;

/// The pending result of [`Pool::apply_async`] (`T` is the task's result) or of
/// [`Pool::map_async`] / [`Pool::starmap_async`] (`T` is the `Vec` of results).
///
/// There is no background thread: the pool makes progress whenever you call into it — this
/// handle's methods, or any other call on the pool.
#[must_use = "dropping an AsyncResult abandons its work (use on_result to be called back instead)"]
pub struct AsyncResult<'p, Ctx, T> {
    pool: &'p Pool<Ctx>,
    id: u64,
    taken: bool,
    finish: fn(&mut Job) -> Result<T>,
}

impl<Ctx, T> std::fmt::Debug for AsyncResult<'_, Ctx, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncResult").field("job", &self.id).field("taken", &self.taken).finish_non_exhaustive()
    }
}

/// One task's result.
pub(crate) fn finish_one<R: 'static, W: Wire<R> + 'static>(job: &mut Job) -> Result<R> {
    job.sink_as::<Window<R, W>>().pop().unwrap_or_else(|| Err(Error::Corrupt("the task produced no result".into())))
}

/// Every result in order, or [`Error::MapFailed`] with the first failure.
pub(crate) fn finish_all<R: 'static, W: Wire<R> + 'static>(job: &mut Job) -> Result<Vec<R>> {
    let total = job.resolved as usize;
    job.sink_as::<Fill<R, W>>().take(total)
}

/// The next result of a streaming job, if it is there.
pub(crate) fn pop_next<R: 'static, W: Wire<R> + 'static>(job: &mut Job) -> Option<Result<R>> {
    let r = job.sink_as::<Window<R, W>>().pop();
    job.taken += u64::from(r.is_some());
    r
}

impl<'p, Ctx, T: 'static> AsyncResult<'p, Ctx, T> {
    pub(crate) fn new(pool: &'p Pool<Ctx>, id: u64, finish: fn(&mut Job) -> Result<T>) -> Self {
        AsyncResult { pool, id, taken: false, finish }
    }

    fn drive_until(&self, deadline: Option<Instant>) -> Result<bool> {
        if self.taken {
            return Err(Error::Misuse("the result was already taken".into()));
        }
        let id = self.id;
        self.pool.drive(|c| c.jobs.finished(id), deadline)
    }

    /// A time limit for each task of this call, in place of the pool's
    /// ([`PoolBuilder::task_timeout`](crate::PoolBuilder::task_timeout)).
    pub fn task_timeout(self, d: Duration) -> Self {
        if let Some(j) = self.pool.core.borrow_mut().jobs.get_mut(self.id) {
            j.timeout = Some(d);
        }
        self
    }

    /// Cancels the work: tasks that have not started are not run (those running finish, and
    /// their results are dropped). Python's `AsyncResult` has no equivalent.
    pub fn cancel(mut self) {
        self.taken = true;
        self.pool.core.borrow_mut().abandon(self.id);
    }

    /// Whether the result is there (makes progress without blocking).
    pub fn ready(&self) -> bool {
        self.drive_until(Some(Instant::now())).unwrap_or(true)
    }

    /// Waits until the result is there.
    pub fn wait(&self) -> Result<()> {
        self.drive_until(None).map(|_| ())
    }

    /// Waits for the result and takes it.
    pub fn get(mut self) -> Result<T> {
        self.drive_until(None)?;
        self.take()
    }

    /// Waits at most `timeout`: [`Error::Timeout`] if the result is not there yet (ask again);
    /// [`Error::Misuse`] if it was already taken.
    pub fn get_timeout(&mut self, timeout: Duration) -> Result<T> {
        if !self.drive_until(Some(Instant::now() + timeout))? {
            return Err(Error::Timeout);
        }
        self.take()
    }

    /// Hands the result to `callback` instead, in the parent, as soon as the pool collects it:
    /// Python's `callback` and `error_callback` in one (`Ok` or `Err`).
    ///
    /// Callbacks run in the order the work completes, during whatever pool call is collecting at
    /// the time (another handle's `get`, a `map`, [`Pool::wait_all`], [`Pool::join`]); there is
    /// no background thread to run them (one would make the pool's later forks unsafe). The
    /// pool is free while a callback runs, so a callback may submit more work. If the pool is
    /// terminated first, the callback is dropped without being called.
    pub fn on_result(mut self, callback: impl FnOnce(Result<T>) + 'static) {
        self.taken = true;
        let finish = self.finish;
        let id = self.id;
        {
            let mut core = self.pool.core.borrow_mut();
            if let Some(job) = core.jobs.get_mut(id) {
                job.then = Some(Box::new(move |job: &mut Job| callback(finish(job))));
                core.jobs.settle(id); // already complete: due now
            }
        }
        self.pool.run_callbacks();
    }

    fn take(&mut self) -> Result<T> {
        self.taken = true;
        let job = self.pool.core.borrow_mut().take(self.id);
        match job {
            Some(mut job) => (self.finish)(&mut job),
            None => Err(Error::Corrupt("the job vanished".into())),
        }
    }
}

impl<Ctx, T> Drop for AsyncResult<'_, Ctx, T> {
    fn drop(&mut self) {
        if !self.taken
            && let Ok(mut core) = self.pool.core.try_borrow_mut()
        {
            core.abandon(self.id);
        }
    }
}

/// The results of [`Pool::imap`] / [`Pool::imap_unordered`], one `Result` per task. Dropping it
/// early stops feeding the job's remaining items to the workers.
#[must_use = "iterators are lazy; dropping a ResultIter abandons its remaining tasks"]
pub struct ResultIter<'p, Ctx, R> {
    pool: &'p Pool<Ctx>,
    id: u64,
    finished: bool,
    pop: fn(&mut Job) -> Option<Result<R>>,
    _r: PhantomData<fn() -> R>,
}

impl<Ctx, R> std::fmt::Debug for ResultIter<'_, Ctx, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResultIter").field("job", &self.id).field("finished", &self.finished).finish_non_exhaustive()
    }
}

impl<'p, Ctx, R> ResultIter<'p, Ctx, R> {
    pub(crate) fn new(pool: &'p Pool<Ctx>, id: u64, pop: fn(&mut Job) -> Option<Result<R>>) -> Self {
        ResultIter { pool, id, finished: false, pop, _r: PhantomData }
    }

    /// Back-pressure: at most `chunks` chunks of this call out at once (sent, running, or done
    /// and not yet taken); at least 1. Python 3.14's `imap(..., buffersize=)`.
    pub fn buffersize(self, chunks: usize) -> Self {
        if let Some(j) = self.pool.core.borrow_mut().jobs.get_mut(self.id) {
            j.window = Some((chunks.max(1) * j.chunksize) as u64);
        }
        self
    }

    /// A time limit for each task of this call, in place of the pool's
    /// ([`PoolBuilder::task_timeout`](crate::PoolBuilder::task_timeout)).
    pub fn task_timeout(self, d: Duration) -> Self {
        if let Some(j) = self.pool.core.borrow_mut().jobs.get_mut(self.id) {
            j.timeout = Some(d);
        }
        self
    }
}

impl<Ctx, R: 'static> Iterator for ResultIter<'_, Ctx, R> {
    type Item = Result<R>;

    fn next(&mut self) -> Option<Result<R>> {
        if self.finished {
            return None;
        }
        let id = self.id;
        loop {
            {
                let mut core = self.pool.core.borrow_mut();
                let Some(job) = core.jobs.get_mut(id) else {
                    self.finished = true;
                    return None;
                };
                if let Some(r) = (self.pop)(job) {
                    return Some(r);
                }
                if job.complete() {
                    core.take(id);
                    self.finished = true;
                    return None;
                }
            }
            // Drive until a result can be handed out (or the job is over).
            let progressed =
                self.pool.drive(|c| c.jobs.get(id).is_none_or(|j| j.complete() || j.sink.has_ready()), None);
            if let Err(e) = progressed {
                self.pool.core.borrow_mut().abandon(id);
                self.finished = true;
                return Some(Err(e));
            }
        }
    }
}

impl<Ctx, R> Drop for ResultIter<'_, Ctx, R> {
    fn drop(&mut self) {
        if !self.finished
            && let Ok(mut core) = self.pool.core.try_borrow_mut()
        {
            core.abandon(self.id);
        }
    }
}
