//! [`Pool`]: worker processes forked once and kept, fed through shared memory.
//!
//! # How it works
//! `build()` forks the workers. Each gets two single-producer rings in an anonymous shared segment
//! (tasks in, results out). A call such as [`Pool::map`] encodes its arguments in chunks straight
//! into the workers' rings, and decodes results as they come back; no pipe, socket or pickling per
//! task. A task is a plain `fn(&Ctx, T) -> R` (a non-capturing closure works): since the workers are
//! forks of this process, the function's address means the same code in them.
//!
//! Each side spins briefly when it runs out of work, then sleeps (workers on a shared futex; the
//! parent in `poll` on an eventfd and every worker's pidfd, so a dying worker wakes it at once).
//!
//! # A worker that dies
//! Each worker records the task it is running in shared memory. When one dies (a signal, `exit`,
//! the OOM killer) the parent reaps it, fails exactly that task with [`Error::WorkerDied`] — or
//! runs it again, with [`OnWorkerDeath::Retry`] — sends the worker's other unfinished tasks to the
//! others, and forks a replacement. Every other result arrives exactly once (a task whose result
//! died unsent with its worker is run again: execution is at-least-once, delivery exactly-once).
//! A task that panics gives [`Error::TaskPanicked`] and its worker keeps serving.
//!
//! # Ctrl-C
//! Workers ignore SIGINT. While a Pool call waits, SIGINT stops it: the parent stops dispatching,
//! kills and reaps the workers, and the call returns [`Error::Interrupted`]. Outside Pool calls
//! SIGINT keeps its usual meaning (and the workers die with the parent: `PR_SET_PDEATHSIG`).

mod core;
mod job;
mod wire;
mod worker;

use std::cell::RefCell;
use std::marker::PhantomData;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use self::core::{Core, InitTramp, Spawner};
use self::job::{Collect, IterSource};
use self::wire::{Plain, Postcard, Wire};
use self::worker::{ChunkRun, Tramp, run_items};
use crate::error::{Error, Result};
use crate::process::ForkPolicy;
use crate::shm::Plain as PlainData;

/// What happens to the task a worker was running when it died.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnWorkerDeath {
    /// The task fails with [`Error::WorkerDied`] (the default).
    #[default]
    Fail,
    /// The task (and the rest of its chunk) runs again on another worker, up to this many times;
    /// then it fails as with `Fail`.
    Retry(u32),
}

#[derive(Debug, Clone)]
pub(crate) struct Settings {
    processes: usize,
    max_tasks_per_child: Option<u64>,
    on_worker_death: OnWorkerDeath,
    max_message_bytes: usize,
    fork_policy: Option<ForkPolicy>,
}

/// Builds a [`Pool`]. `Pool::builder()` starts one; options are taken by value.
#[must_use]
pub struct PoolBuilder<Ctx = ()> {
    processes: Option<usize>,
    initializer: Option<fn(&Ctx)>,
    max_tasks_per_child: Option<u64>,
    on_worker_death: OnWorkerDeath,
    seed: Option<u64>,
    max_message_bytes: usize,
    fork_policy: Option<ForkPolicy>,
    ctx: Ctx,
}

/// Default limit on one task's encoded argument or result.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 4 << 20;

impl<Ctx> PoolBuilder<Ctx> {
    /// Worker processes (default: the CPUs this process may run on).
    pub fn processes(mut self, n: usize) -> Self {
        self.processes = Some(n);
        self
    }

    /// Runs once in each worker (and each replacement) after fork, before any task.
    pub fn initializer(mut self, f: fn(&Ctx)) -> Self {
        self.initializer = Some(f);
        self
    }

    /// A worker exits after this many tasks and is replaced by a fresh fork (bounds leaks).
    pub fn max_tasks_per_child(mut self, n: u64) -> Self {
        self.max_tasks_per_child = Some(n);
        self
    }

    /// What a worker's death does to its task (default [`OnWorkerDeath::Fail`]).
    pub fn on_worker_death(mut self, p: OnWorkerDeath) -> Self {
        self.on_worker_death = p;
        self
    }

    /// The base of the workers' seeds ([`crate::worker::seed`]); default: random.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Largest encoded argument or result of one task (default 4 MiB). Each worker's two rings
    /// reserve twice this (virtual memory, touched only as used).
    pub fn max_message_bytes(mut self, n: usize) -> Self {
        self.max_message_bytes = n;
        self
    }

    /// Overrides the process-wide [`ForkPolicy`] for this pool's forks.
    pub fn fork_policy(mut self, p: ForkPolicy) -> Self {
        self.fork_policy = Some(p);
        self
    }

    /// The shared context every task receives as `&Ctx`: create `Flag`s, `Value`s, `Array`s… and
    /// put them here; the workers inherit them through fork (nothing is copied or sent).
    pub fn context<C>(self, ctx: C) -> PoolBuilder<C> {
        PoolBuilder {
            processes: self.processes,
            initializer: None,
            max_tasks_per_child: self.max_tasks_per_child,
            on_worker_death: self.on_worker_death,
            seed: self.seed,
            max_message_bytes: self.max_message_bytes,
            fork_policy: self.fork_policy,
            ctx,
        }
    }

    /// Forks the workers.
    pub fn build(self) -> Result<Pool<Ctx>> {
        let processes = match self.processes {
            Some(0) => return Err(Error::InvalidArgument("a pool needs at least 1 process".into())),
            Some(n) => n,
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        if self.max_message_bytes < 64 {
            return Err(Error::InvalidArgument("max_message_bytes must be at least 64".into()));
        }
        if self.max_tasks_per_child == Some(0) {
            return Err(Error::InvalidArgument("max_tasks_per_child must be at least 1".into()));
        }
        let seed = match self.seed {
            Some(s) => s,
            None => {
                let mut b = [0u8; 8];
                crate::sys::random_bytes(&mut b)?;
                u64::from_le_bytes(b)
            }
        };
        let ctx = Box::new(self.ctx);
        let spawner = Spawner {
            ctx: (&raw const *ctx).cast(),
            init: self.initializer.map(|f| (tramp_init::<Ctx> as InitTramp, f as usize)),
        };
        let settings = Settings {
            processes,
            max_tasks_per_child: self.max_tasks_per_child,
            on_worker_death: self.on_worker_death,
            max_message_bytes: self.max_message_bytes,
            fork_policy: self.fork_policy,
        };
        let core = Core::start(settings, spawner, seed)?;
        Ok(Pool { core: RefCell::new(core), ctx })
    }
}

/// # Safety
/// `ctx` points to a live `Ctx` and `f` was made from an `fn(&Ctx)`.
unsafe fn tramp_init<Ctx>(ctx: *const (), f: usize) {
    // SAFETY: per the contract, `f` is an `fn(&Ctx)` of this binary.
    let f: fn(&Ctx) = unsafe { std::mem::transmute::<usize, fn(&Ctx)>(f) };
    // SAFETY: per the contract.
    f(unsafe { &*ctx.cast::<Ctx>() });
}

/// # Safety
/// `ctx` points to a live `Ctx` and `func` was made from an `fn(&Ctx, T) -> R`.
unsafe fn tramp_map<Ctx, T, R, WI: Wire<T>, WO: Wire<R>>(ctx: *const (), func: usize, run: &mut ChunkRun<'_, '_>) {
    // SAFETY: per the contract, `func` is an `fn(&Ctx, T) -> R` of this binary.
    let f: fn(&Ctx, T) -> R = unsafe { std::mem::transmute::<usize, fn(&Ctx, T) -> R>(func) };
    // SAFETY: per the contract.
    run_items::<Ctx, T, R, WI, WO>(unsafe { &*ctx.cast::<Ctx>() }, run, f);
}

/// # Safety
/// `ctx` points to a live `Ctx` and `func` was made from an `fn(&Ctx, A, B) -> R`.
unsafe fn tramp_star<Ctx, A, B, R, WI: Wire<(A, B)>, WO: Wire<R>>(
    ctx: *const (),
    func: usize,
    run: &mut ChunkRun<'_, '_>,
) {
    // SAFETY: per the contract, `func` is an `fn(&Ctx, A, B) -> R` of this binary.
    let f: fn(&Ctx, A, B) -> R = unsafe { std::mem::transmute::<usize, fn(&Ctx, A, B) -> R>(func) };
    // SAFETY: per the contract.
    run_items::<Ctx, (A, B), R, WI, WO>(unsafe { &*ctx.cast::<Ctx>() }, run, |c, (a, b)| f(c, a, b));
}

/// A pool of worker processes, like Python's `multiprocessing.Pool`.
///
/// Workers are forked once by [`PoolBuilder::build`] and kept. Calls take `&self` and run on the
/// calling thread; a `Pool` is not `Sync` (use one per thread, or a lock). Dropping it kills and
/// reaps the workers; [`Pool::close`] + [`Pool::join`] lets them finish first.
///
/// # Example: a pool whose tasks share an early-exit flag
/// ```
/// use mproc::{Flag, Pool};
///
/// // Shared objects go in the context, created before build(): the workers inherit them.
/// let pool = Pool::builder().processes(2).context(Flag::new()?).build()?;
/// let found = pool.map(
///     |flag: &Flag, n: u64| {
///         if flag.is_set() { return None; } // someone already found it
///         if n * n == 49 { flag.set(); return Some(n); }
///         None
///     },
///     0..1000u64,
///     None,
/// )?;
/// assert_eq!(found.into_iter().flatten().collect::<Vec<_>>(), vec![7]);
/// assert!(pool.context().is_set());
/// # Ok::<(), mproc::Error>(())
/// ```
pub struct Pool<Ctx = ()> {
    core: RefCell<Core>,
    // Boxed: the workers read their copy at this address, so it must not move.
    ctx: Box<Ctx>,
}

impl<Ctx> std::fmt::Debug for Pool<Ctx> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").field("workers", &self.worker_pids()).finish_non_exhaustive()
    }
}

impl Pool<()> {
    /// Options: processes, initializer, context, death policy, seed, limits.
    pub fn builder() -> PoolBuilder<()> {
        PoolBuilder {
            processes: None,
            initializer: None,
            max_tasks_per_child: None,
            on_worker_death: OnWorkerDeath::Fail,
            seed: None,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            fork_policy: None,
            ctx: (),
        }
    }

    /// A pool of `processes` workers with no context.
    pub fn new(processes: usize) -> Result<Pool<()>> {
        Pool::builder().processes(processes).build()
    }
}

/// Python's automatic chunk size: a quarter of each worker's share, at least 1.
fn auto_chunksize(len: usize, processes: usize) -> usize {
    len.div_ceil(processes * 4).max(1)
}

impl<Ctx> Pool<Ctx> {
    /// The context every task receives.
    pub fn context(&self) -> &Ctx {
        &self.ctx
    }

    /// Number of worker processes.
    pub fn processes(&self) -> usize {
        self.core.borrow().processes()
    }

    /// Pids of the live workers.
    pub fn worker_pids(&self) -> Vec<i32> {
        self.core.borrow().pids()
    }

    fn submit<T, R, WI: Wire<T> + 'static, WO: Wire<R> + 'static>(
        &self,
        tramp: Tramp,
        func: usize,
        items: impl Iterator<Item = T> + 'static,
        chunksize: usize,
        ordered: bool,
    ) -> Result<u64>
    where
        R: 'static,
    {
        let source = Box::new(IterSource::<_, WI>::new(items));
        let sink = Box::new(Collect::<R, WO>::new(ordered));
        self.core.borrow_mut().submit(tramp as usize, func, chunksize, source, sink)
    }

    /// Runs a whole job and returns its results in order.
    fn run_all<R: 'static, WO: Wire<R> + 'static>(&self, id: u64) -> Result<Vec<R>> {
        let mut core = self.core.borrow_mut();
        let r = core.drive(|c| c.jobs.get(&id).is_none_or(|j| j.complete()), None);
        let mut job = core.take(id).ok_or_else(|| Error::Corrupt("the job vanished".into()))?;
        drop(core);
        r?;
        let sink = job.sink.as_any().downcast_mut::<Collect<R, WO>>().expect("sink type matches its job");
        let total = job.resolved as usize;
        let mut out = Vec::with_capacity(total);
        let mut first_err = None;
        while let Some(r) = sink.pop() {
            match r {
                Ok(v) => out.push(v),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        match first_err {
            None => Ok(out),
            Some(first) => Err(Error::MapFailed { failed: job.failed, total, first: Box::new(first) }),
        }
    }

    fn chunks<T>(&self, items: impl IntoIterator<Item = T>, chunksize: Option<usize>) -> Result<(Vec<T>, usize)> {
        let items: Vec<T> = items.into_iter().collect();
        let c = match chunksize {
            Some(0) => return Err(Error::InvalidArgument("chunksize must be at least 1".into())),
            Some(c) => c,
            None => auto_chunksize(items.len(), self.processes()),
        };
        Ok((items, c))
    }

    /// Applies `f` to every item in the workers; results in input order. `chunksize`: tasks sent
    /// to a worker at once (`None`: automatic, as Python's). Arguments and results cross as
    /// serde/postcard bytes in shared memory.
    ///
    /// If some tasks fail, the others still run and the call returns [`Error::MapFailed`] with
    /// the count and the first failure ([`Error::root`] gets at it).
    pub fn map<T, R>(
        &self,
        f: fn(&Ctx, T) -> R,
        items: impl IntoIterator<Item = T>,
        chunksize: Option<usize>,
    ) -> Result<Vec<R>>
    where
        T: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        let (items, c) = self.chunks(items, chunksize)?;
        let id = self.submit::<T, R, Postcard, Postcard>(
            tramp_map::<Ctx, T, R, Postcard, Postcard>,
            f as usize,
            items.into_iter(),
            c,
            true,
        )?;
        self.run_all::<R, Postcard>(id)
    }

    /// [`Pool::map`] for plain data (`Copy` types made of numbers, such as `u64`, `[f64; 4]`, or
    /// your own `#[repr(C)]` `Plain` structs): arguments and results are copied as bytes, with
    /// no encoding at all.
    pub fn map_plain<T, R>(
        &self,
        f: fn(&Ctx, T) -> R,
        items: impl IntoIterator<Item = T>,
        chunksize: Option<usize>,
    ) -> Result<Vec<R>>
    where
        T: PlainData + 'static,
        R: PlainData + 'static,
    {
        let (items, c) = self.chunks(items, chunksize)?;
        let id = self.submit::<T, R, Plain, Plain>(
            tramp_map::<Ctx, T, R, Plain, Plain>,
            f as usize,
            items.into_iter(),
            c,
            true,
        )?;
        self.run_all::<R, Plain>(id)
    }

    /// Like [`Pool::map`], for a function of two arguments given as pairs.
    pub fn starmap<A, B, R>(
        &self,
        f: fn(&Ctx, A, B) -> R,
        items: impl IntoIterator<Item = (A, B)>,
        chunksize: Option<usize>,
    ) -> Result<Vec<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        B: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        let (items, c) = self.chunks(items, chunksize)?;
        let id = self.submit::<(A, B), R, Postcard, Postcard>(
            tramp_star::<Ctx, A, B, R, Postcard, Postcard>,
            f as usize,
            items.into_iter(),
            c,
            true,
        )?;
        self.run_all::<R, Postcard>(id)
    }

    /// A lazy [`Pool::map`]: items are taken from `items` as workers have room, and results come
    /// back in order, one `Result` per task. Python's default chunk size for `imap` is 1.
    pub fn imap<T, R, I>(&self, f: fn(&Ctx, T) -> R, items: I, chunksize: usize) -> Result<ResultIter<'_, Ctx, R>>
    where
        T: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
        I: IntoIterator<Item = T>,
        I::IntoIter: 'static,
    {
        let id = self.submit::<T, R, Postcard, Postcard>(
            tramp_map::<Ctx, T, R, Postcard, Postcard>,
            f as usize,
            items.into_iter(),
            chunksize,
            true,
        )?;
        Ok(ResultIter { pool: self, id, finished: false, _r: PhantomData })
    }

    /// Like [`Pool::imap`], but results come in the order they finish.
    pub fn imap_unordered<T, R, I>(
        &self,
        f: fn(&Ctx, T) -> R,
        items: I,
        chunksize: usize,
    ) -> Result<ResultIter<'_, Ctx, R>>
    where
        T: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
        I: IntoIterator<Item = T>,
        I::IntoIter: 'static,
    {
        let id = self.submit::<T, R, Postcard, Postcard>(
            tramp_map::<Ctx, T, R, Postcard, Postcard>,
            f as usize,
            items.into_iter(),
            chunksize,
            false,
        )?;
        Ok(ResultIter { pool: self, id, finished: false, _r: PhantomData })
    }

    /// Runs one task and waits for its result.
    pub fn apply<T, R>(&self, f: fn(&Ctx, T) -> R, arg: T) -> Result<R>
    where
        T: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        self.apply_async(f, arg)?.get()
    }

    /// Starts one task; its result is collected when you ask the [`AsyncResult`] (the pool makes
    /// progress on every call into it).
    pub fn apply_async<T, R>(&self, f: fn(&Ctx, T) -> R, arg: T) -> Result<AsyncResult<'_, Ctx, R>>
    where
        T: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        let id = self.submit::<T, R, Postcard, Postcard>(
            tramp_map::<Ctx, T, R, Postcard, Postcard>,
            f as usize,
            std::iter::once(arg),
            1,
            true,
        )?;
        Ok(AsyncResult { pool: self, id, taken: false, _r: PhantomData })
    }

    /// Takes no more work; running and submitted work goes on. Then call [`Pool::join`].
    pub fn close(&self) {
        self.core.borrow_mut().closed = true;
    }

    /// After [`Pool::close`]: finishes all submitted work, stops the workers and waits for them.
    pub fn join(&self) -> Result<()> {
        self.core.borrow_mut().join()
    }

    /// Kills the workers now (SIGKILL) and reaps them; unfinished work is dropped.
    pub fn terminate(&self) {
        self.core.borrow_mut().terminate();
    }

    /// Whether the pool was terminated, joined or interrupted.
    pub fn is_terminated(&self) -> bool {
        self.core.borrow().is_terminated()
    }

    fn pop<R: 'static>(&self, id: u64) -> Option<Result<R>> {
        let mut core = self.core.borrow_mut();
        let job = core.jobs.get_mut(&id)?;
        job.sink.as_any().downcast_mut::<Collect<R, Postcard>>().expect("sink type matches its job").pop()
    }
}

/// The results of [`Pool::imap`] / [`Pool::imap_unordered`], one `Result` per task. Dropping it
/// early stops feeding the job's remaining items to the workers.
pub struct ResultIter<'p, Ctx, R> {
    pool: &'p Pool<Ctx>,
    id: u64,
    finished: bool,
    _r: PhantomData<fn() -> R>,
}

impl<Ctx, R: Serialize + DeserializeOwned + 'static> Iterator for ResultIter<'_, Ctx, R> {
    type Item = Result<R>;

    fn next(&mut self) -> Option<Result<R>> {
        if self.finished {
            return None;
        }
        loop {
            if let Some(r) = self.pool.pop::<R>(self.id) {
                return Some(r);
            }
            let mut core = self.pool.core.borrow_mut();
            if core.jobs.get(&self.id).is_none_or(|j| j.complete()) {
                core.take(self.id);
                self.finished = true;
                return None;
            }
            let id = self.id;
            // Drive until a result can be handed out (or the job is over).
            let progressed = core.drive(|c| c.jobs.get(&id).is_none_or(|j| j.complete() || j.sink.has_ready()), None);
            if let Err(e) = progressed {
                core.abandon(id);
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

/// The pending result of [`Pool::apply_async`].
pub struct AsyncResult<'p, Ctx, R> {
    pool: &'p Pool<Ctx>,
    id: u64,
    taken: bool,
    _r: PhantomData<fn() -> R>,
}

impl<Ctx, R: Serialize + DeserializeOwned + 'static> AsyncResult<'_, Ctx, R> {
    fn drive_until(&self, deadline: Option<Instant>) -> Result<bool> {
        if self.taken {
            return Err(Error::Misuse("the result was already taken".into()));
        }
        let id = self.id;
        self.pool.core.borrow_mut().drive(|c| c.jobs.get(&id).is_none_or(|j| j.complete()), deadline)
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
    pub fn get(mut self) -> Result<R> {
        self.drive_until(None)?;
        self.take()
    }

    /// Waits at most `timeout`: [`Error::Timeout`] if the result is not there yet (ask again).
    pub fn get_timeout(&mut self, timeout: Duration) -> Result<R> {
        if !self.drive_until(Some(Instant::now() + timeout))? {
            return Err(Error::Timeout);
        }
        self.take()
    }

    fn take(&mut self) -> Result<R> {
        self.taken = true;
        let r = self.pool.pop::<R>(self.id);
        self.pool.core.borrow_mut().take(self.id);
        r.unwrap_or_else(|| Err(Error::Corrupt("the task produced no result".into())))
    }
}

impl<Ctx, R> Drop for AsyncResult<'_, Ctx, R> {
    fn drop(&mut self) {
        if !self.taken
            && let Ok(mut core) = self.pool.core.try_borrow_mut()
        {
            core.abandon(self.id);
        }
    }
}
