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
//! # Where things are
//! - `builder`: [`PoolBuilder`], settings, `build()` (forks the workers, installs the panic hook);
//! - `task`: [`TaskFn`](task::TaskFn), the one typed record of a task function (erased once,
//!   recovered once), and the typed code that runs a chunk in a worker;
//! - `wire`: record kinds and headers (plain data), per-item tags, the codecs;
//! - `slots`: each worker's channel (segment, two rings), process and in-flight chunks;
//! - `dispatch`: which chunk goes to which worker next;
//! - `job`: jobs, their sources and sinks, and the collection of results;
//! - `supervise`: forking, reaping, blaming the task of a dead worker, respawning, strikes;
//! - `core`: the loop that drives the above and sleeps; `worker`: the worker's loop;
//! - `handle`: [`AsyncResult`] and [`ResultIter`].
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

mod builder;
mod core;
mod dispatch;
mod fixint;
mod handle;
mod job;
mod slots;
mod supervise;
mod task;
mod wire;
mod worker;

use std::cell::RefCell;
use std::time::Instant;

use serde::Serialize;
use serde::de::DeserializeOwned;

pub(crate) use self::builder::Settings;
pub use self::builder::{DEFAULT_MAX_MESSAGE_BYTES, OnWorkerDeath, PoolBuilder};
pub use self::handle::{AsyncResult, ResultIter};

use self::core::Core;
pub use self::task::RangeItem;

use self::handle::{finish_all, finish_one, pop_next};
use self::job::{Fill, IterSource, Job, RangeSource, Sink, Source, Window};
use self::task::{ArrayFn, ArrayIntoFn, MapFn, RangeFn, RangeIntoFn, StarFn, Task, TaskFn, WithFn};
use self::wire::{Auto, Plain, Serde, Wire};
use crate::error::{Error, Result};
use crate::{AtomicValue, RawArray};

/// A pool of worker processes, like Python's `multiprocessing.Pool`.
///
/// Workers are forked once by [`PoolBuilder::build`] and kept. Calls take `&self` and run on the
/// calling thread. Dropping the pool kills and reaps the workers; [`Pool::close`] +
/// [`Pool::join`] lets them finish first.
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
///
/// # Threads
/// A `Pool` is neither `Send` nor `Sync`: it belongs to the thread that built it, and its
/// replacement workers are forked from that thread later (a worker dies with the thread that
/// forked it). Two patterns work:
/// - **one pool per thread**, each built on its own thread — but every build and every
///   replacement forks a multi-threaded process, so opt in with
///   [`PoolBuilder::fork_policy`]`(ForkPolicy::AllowThreads)` only if the other threads hold no
///   lock a child could need;
/// - **one owning thread fed through a channel** (the usual way): build the pool first, on the
///   main thread, before any other thread exists; other threads send it work and get answers
///   back on channels.
///
/// ```
/// use std::sync::mpsc;
///
/// let pool = mproc::Pool::new(2)?; // built before any other thread
/// let (jobs, inbox) = mpsc::channel::<(Vec<u64>, mpsc::Sender<Vec<u64>>)>();
/// let client = std::thread::spawn(move || {
///     let (reply, answer) = mpsc::channel();
///     jobs.send(((1..=4).collect(), reply)).unwrap();
///     answer.recv().unwrap()
/// });
/// for (items, reply) in inbox { // ends when every sender is gone
///     let _ = reply.send(pool.map(|_, x: u64| x * x, items, None)?);
/// }
/// assert_eq!(client.join().unwrap(), vec![1, 4, 9, 16]);
/// # Ok::<(), mproc::Error>(())
/// ```
#[must_use = "dropping a Pool kills its workers"]
pub struct Pool<Ctx = ()> {
    core: RefCell<Core>,
    // Boxed: the workers read their copy at this address, so it must not move. Declared after
    // `core`, so it is dropped after the workers are gone.
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
        PoolBuilder::new()
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

    /// Drives the pool until `done`, then runs the callbacks that became due.
    fn drive(&self, done: impl Fn(&Core) -> bool, deadline: Option<Instant>) -> Result<bool> {
        let r = self.core.borrow_mut().drive(done, deadline);
        self.run_callbacks();
        r
    }

    /// Runs the callbacks of completed detached jobs, in order of completion, with the pool free.
    fn run_callbacks(&self) {
        loop {
            let Some(mut job) = self.core.borrow_mut().jobs.pop_done() else { break };
            if let Some(cb) = job.then.take() {
                cb(&mut job);
            }
        }
    }

    fn submit_job(&self, mut job: Job, arg: Option<Vec<u8>>) -> Result<u64> {
        job.arg = arg;
        self.core.borrow_mut().submit(job)
    }

    fn resolve_chunksize(&self, chunksize: Option<usize>, len: usize) -> Result<usize> {
        match chunksize {
            Some(0) => Err(Error::InvalidArgument("chunksize must be at least 1".into())),
            Some(c) => Ok(c),
            None => Ok(auto_chunksize(len, self.processes())),
        }
    }

    /// Submits a whole list as one job whose results fill a `Vec` in place. An iterator whose
    /// length is known (`size_hint`) is read lazily, as workers have room, and never held whole;
    /// one that borrows must then be done with before the call returns: `lazy` says whether the
    /// caller guarantees that (it runs the job to the end and removes it, see [`JobGuard`]).
    fn submit_list<'i, T, R, WI, WO, S>(
        &self,
        task: S,
        items: impl IntoIterator<Item = T> + 'i,
        chunksize: Option<usize>,
        arg: Option<Vec<u8>>,
        lazy: bool,
    ) -> Result<u64>
    where
        T: 'static,
        R: 'static,
        WI: Wire<T> + 'static,
        WO: Wire<R> + 'static,
        S: Task<Ctx>,
    {
        let iter = items.into_iter();
        let (lo, hi) = iter.size_hint();
        let keep = wire::is_buffer::<T>() && WO::reuses_buffers();
        let (source, len): (Box<dyn Source + 'i>, usize) = if lazy && hi == Some(lo) {
            (Box::new(IterSource::<_, WI>::new(iter, keep)), lo)
        } else {
            let v: Vec<T> = iter.collect();
            let n = v.len();
            (Box::new(IterSource::<_, WI>::new(v.into_iter(), keep)), n)
        };
        let c = self.resolve_chunksize(chunksize, len)?;
        // SAFETY: only the lifetime is changed. A lazy source may borrow for 'i; its callers
        // (`run_all` under a `JobGuard`) remove the job, and so drop the source, before they
        // return, inside 'i. A collected source owns its items and is 'static already.
        let source: Box<dyn Source> = unsafe { std::mem::transmute::<Box<dyn Source + 'i>, Box<dyn Source>>(source) };
        let sink = Box::new(Fill::<R, WO>::new(len));
        self.submit_job(Job::new(TaskFn::new(task), c, source, sink), arg)
    }

    /// Submits items handed out one result at a time ([`ResultIter`], `apply`).
    fn submit_stream<T, R, WI, WO>(
        &self,
        task: TaskFn,
        items: impl Iterator<Item = T> + 'static,
        chunksize: usize,
        ordered: bool,
        window: Option<u64>,
    ) -> Result<u64>
    where
        T: 'static,
        R: 'static,
        WI: Wire<T> + 'static,
        WO: Wire<R> + 'static,
    {
        // An `imap`'s results are not built in kept buffers.
        let source = Box::new(IterSource::<_, WI>::new(items, false));
        let sink: Box<dyn Sink> = Box::new(Window::<R, WO>::new(ordered));
        let mut job = Job::new(task, chunksize, source, sink);
        job.window = window;
        self.submit_job(job, None)
    }

    /// Runs a whole job and returns its results in order.
    fn run_all<R: 'static, WO: Wire<R> + 'static>(&self, id: u64) -> Result<Vec<R>> {
        let guard = JobGuard { pool: self, id };
        let r = self.drive(|c| c.jobs.finished(id), None);
        let job = self.core.borrow_mut().take(id);
        std::mem::forget(guard);
        let mut job = job.ok_or_else(|| Error::Corrupt("the job vanished".into()))?;
        r?;
        finish_all::<R, WO>(&mut job)
    }

    /// Default window of an `imap`: chunks out at once, per worker.
    fn default_buffersize(&self) -> usize {
        16 * self.processes()
    }

    /// Applies `f` to every item in the workers; results in input order. `chunksize`: tasks sent
    /// to a worker at once (`None`: automatic, as Python's). Arguments and results cross as
    /// serde bytes in shared memory (the Pool's own fixed-width format) — except the primitive number types (`u64`, `f64`,
    /// …), which cross as their bytes, as with [`Pool::map_plain`] (picked per type, at no cost).
    ///
    /// An iterator whose length is known (`0..n`, a `Vec`, `slice.iter().copied()`) is read as
    /// the workers have room, never held whole; the output is sized once and each result decoded
    /// straight into its place. An output of 4 MiB or more is advised onto transparent huge pages
    /// (`madvise(MADV_HUGEPAGE)`, where the system allows them): a fresh output's page faults were
    /// most of the calling process's time on large maps.
    ///
    /// Each argument is dropped once encoded, with two exceptions. When the result is a
    /// `String` or `Vec<u8>`, a `String` or `Vec<u8>` argument shorter than 16 KiB keeps its
    /// buffer until the result comes back, and the result is built in it (a map from strings to
    /// strings allocates and frees nothing per item in the calling process; a buffer more than
    /// about twice the result's size is freed instead, so no result holds on to a much larger
    /// argument's memory). A `Vec<u8>` of 16 KiB or more is moved into its chunk whole and
    /// dropped when the chunk is answered. The same holds for [`Pool::map_async`] and
    /// [`Pool::map_with`]; `imap` drops every argument once encoded. In a worker, for every map
    /// and `imap`, a `String` or `Vec<u8>` argument is decoded into the buffer of the previous
    /// `String` or `Vec<u8>` result once that is sent: a map from strings to strings allocates
    /// nowhere per item.
    ///
    /// If some tasks fail, the others still run and the call returns [`Error::MapFailed`] with
    /// the count and the first failure ([`Error::root`] gets at it). An argument or result whose
    /// `Serialize` fails is [`Error::Encode`] for its task, with the serializer's message.
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
        let task = MapFn::<Ctx, T, R, Auto, Auto>::new(f);
        let id = self.submit_list::<T, R, Auto, Auto, _>(task, items, chunksize, None, true)?;
        self.run_all::<R, Auto>(id)
    }

    /// [`Pool::map`] over a range of integers: the workers compute each item from its index, so
    /// no argument crosses at all (a chunk is its index range), and plain results (numbers) are
    /// copied straight into the output.
    ///
    /// ```
    /// let pool = mproc::Pool::new(2)?;
    /// let squares = pool.map_range(|_, x: u64| x * x, 0..1000u64, None)?;
    /// assert_eq!(squares[999], 998_001);
    /// let shifted = pool.map_range(|_, x: i32| x, -5..5i32, Some(3))?;
    /// assert_eq!(shifted, (-5..5).collect::<Vec<_>>());
    /// # Ok::<(), mproc::Error>(())
    /// ```
    ///
    /// `f` is a closure that captures nothing, or a function's name, as for
    /// [`Pool::map_range_into`]: the workers call it inlined into their loop over a chunk (a `fn`
    /// pointer would be an indirect call per item, the larger part of a worker's time on cheap
    /// tasks). Anything else does not compile:
    ///
    /// ```compile_fail
    /// # let pool = mproc::Pool::new(2)?;
    /// let f: fn(&(), u64) -> u64 = |_, x| x; // a fn pointer: 8 bytes
    /// pool.map_range(f, 0..10u64, None)?;
    /// # Ok::<(), mproc::Error>(())
    /// ```
    pub fn map_range<T, R, F>(&self, f: F, range: std::ops::Range<T>, chunksize: Option<usize>) -> Result<Vec<R>>
    where
        T: RangeItem,
        R: Serialize + DeserializeOwned + 'static,
        F: Fn(&Ctx, T) -> R + Copy + Send + 'static,
    {
        let len = T::count(range.start, range.end) as usize;
        let task = TaskFn::new(RangeFn::<Ctx, T, R, Auto, F>::new(f));
        self.map_indices::<R, Auto>(task, RangeSource::new(range), len, chunksize, None)
    }

    /// The shared body of [`Pool::map_range`], [`Pool::map_array`] and their `_into` forms:
    /// `len` tasks handed out as index ranges, their results filled into one output.
    fn map_indices<R, WO>(
        &self,
        task: TaskFn,
        source: RangeSource,
        len: usize,
        chunksize: Option<usize>,
        arg: Option<Vec<u8>>,
    ) -> Result<Vec<R>>
    where
        R: 'static,
        WO: Wire<R> + 'static,
    {
        let c = self.resolve_chunksize(chunksize, len)?;
        let job = Job::new(task, c, Box::new(source), Box::new(Fill::<R, WO>::new(len)));
        let id = self.submit_job(job, arg)?;
        self.run_all::<R, WO>(id)
    }

    /// [`Error::Misuse`] unless the workers have `array` mapped (it was made before the pool).
    fn check_mapped<T: crate::Plain>(&self, array: &RawArray<T>, what: &str) -> Result<()> {
        if array.mapping_serial() > self.core.borrow().mapped_before {
            return Err(Error::Misuse(format!(
                "{what}: the array was created after the pool, so its workers do not have it mapped; \
                 create it before PoolBuilder::build (e.g. in the context)"
            )));
        }
        Ok(())
    }

    /// The body of the `_into` maps: the task stores each result at its index of `output`,
    /// whose address and length go to each worker once, as the job's per-call value.
    fn map_into<R: AtomicValue>(
        &self,
        task: TaskFn,
        source: RangeSource,
        output: &RawArray<R>,
        len: usize,
        chunksize: Option<usize>,
    ) -> Result<()> {
        self.check_mapped(output, "the output array")?;
        if output.len() != len {
            return Err(Error::InvalidArgument(format!(
                "the output array has {} elements for {len} items",
                output.len()
            )));
        }
        let mut arg = (output.as_ptr().expose_provenance() as u64).to_le_bytes().to_vec();
        arg.extend_from_slice(&(len as u64).to_le_bytes());
        self.map_indices::<(), Plain>(task, source, len, chunksize, Some(arg)).map(drop)
    }

    /// [`Pool::map_range`] with each result stored by the worker that computed it straight into
    /// `output[i]`, a shared array made before the pool: no result crosses a ring or is copied by
    /// the parent, so array work runs at close to the speed of threads. Only failures come back:
    /// a panic in some tasks leaves their elements as they were and returns
    /// [`Error::MapFailed`], as [`Pool::map`] does. On x86-64 a large chunk's 4- and 8-byte
    /// results are stored past the workers' caches (non-temporal stores), so a first read of a
    /// large output comes from memory rather than from a cache.
    ///
    /// ```
    /// let squares = mproc::RawArray::<u64>::zeroed(1000)?; // before the pool
    /// let pool = mproc::Pool::new(2)?;
    /// pool.map_range_into(|_, x: u64| x * x, 0..1000u64, &squares, None)?;
    /// assert_eq!(squares.load(999), 998_001);
    /// # Ok::<(), mproc::Error>(())
    /// ```
    ///
    /// An `output` of another length than the range is [`Error::InvalidArgument`]; one made
    /// after the pool is [`Error::Misuse`].
    ///
    /// `f` is a closure that captures nothing, or a function's name: its type then has no bytes,
    /// so the workers call it inlined into their loop, as threads would (a `fn` pointer would be
    /// an indirect call per item). Anything else does not compile:
    ///
    /// ```compile_fail
    /// # let out = mproc::RawArray::<u64>::zeroed(10)?;
    /// # let pool = mproc::Pool::new(2)?;
    /// let f: fn(&(), u64) -> u64 = |_, x| x; // a fn pointer: 8 bytes
    /// pool.map_range_into(f, 0..10u64, &out, None)?;
    /// # Ok::<(), mproc::Error>(())
    /// ```
    pub fn map_range_into<T, R, F>(
        &self,
        f: F,
        range: std::ops::Range<T>,
        output: &RawArray<R>,
        chunksize: Option<usize>,
    ) -> Result<()>
    where
        T: RangeItem,
        R: AtomicValue,
        F: Fn(&Ctx, T) -> R + Copy + Send + 'static,
    {
        let len = T::count(range.start, range.end) as usize;
        let task = TaskFn::new(RangeIntoFn::<Ctx, T, R, F>::new(f));
        self.map_into(task, RangeSource::new(range), output, len, chunksize)
    }

    /// [`Pool::map_array`] with each result stored by the worker straight into `output[i]` (see
    /// [`Pool::map_range_into`]): shared array in, shared array out, nothing encoded or copied on
    /// the way. Both arrays must be made before the pool, have the same length and be apart (in
    /// place is [`Error::InvalidArgument`]); `f` is a closure that captures nothing or a
    /// function's name, as for [`Pool::map_range_into`].
    ///
    /// ```
    /// let data = mproc::RawArray::from_slice(&(0..1000u32).collect::<Vec<_>>())?;
    /// let doubled = mproc::RawArray::<u64>::zeroed(1000)?;
    /// let pool = mproc::Pool::new(2)?;
    /// pool.map_array_into(|_, x: u32| u64::from(x) * 2, &data, &doubled, None)?;
    /// assert_eq!(doubled.load(999), 1998);
    /// # Ok::<(), mproc::Error>(())
    /// ```
    pub fn map_array_into<T, R, F>(
        &self,
        f: F,
        array: &RawArray<T>,
        output: &RawArray<R>,
        chunksize: Option<usize>,
    ) -> Result<()>
    where
        T: AtomicValue,
        R: AtomicValue,
        F: Fn(&Ctx, T) -> R + Copy + Send + 'static,
    {
        self.check_mapped(array, "map_array_into")?;
        // In place would be wrong after a worker's death: the items of its chunk that are sent
        // again would read results instead of inputs.
        let (a, o) = (array.as_ptr() as usize, output.as_ptr() as usize);
        let (a_end, o_end) = (a + array.len() * size_of::<T>(), o + output.len() * size_of::<R>());
        if a < a_end && o < o_end && a < o_end && o < a_end {
            return Err(Error::InvalidArgument(
                "map_array_into: the output overlaps the input array; in place is not supported \
                 (items sent again after a worker's death would read results instead of inputs)"
                    .into(),
            ));
        }
        let source = RangeSource::indices(array.as_ptr().expose_provenance() as u64, array.len() as u64);
        self.map_into(TaskFn::new(ArrayIntoFn::<Ctx, T, R, F>::new(f)), source, output, array.len(), chunksize)
    }

    /// [`Pool::map`] over the elements of a shared array, which the workers read themselves: a
    /// chunk is an index range, no element is encoded or copied on its way in, and plain results
    /// (numbers) are copied straight into the output — array work at close to the speed of
    /// threads. Elements are read with atomic loads, so other processes may update the array
    /// meanwhile (each task sees some value the element held).
    ///
    /// The workers must have the array mapped: create it (or the [`crate::Arena`] it lives in)
    /// **before** the pool, e.g. as part of the context. An array made after
    /// [`PoolBuilder::build`] is [`Error::Misuse`]. A [`crate::SharedArray`] goes through its
    /// [`raw`](crate::SharedArray::raw) array.
    ///
    /// ```
    /// let data = mproc::RawArray::from_slice(&(0..1000u32).collect::<Vec<_>>())?; // before the pool
    /// let pool = mproc::Pool::new(2)?;
    /// let doubled = pool.map_array(|_, x: u32| u64::from(x) * 2, &data, None)?;
    /// assert_eq!(doubled[999], 1998);
    /// let late = mproc::RawArray::<u32>::zeroed(10)?; // after: the workers do not have it
    /// assert!(matches!(pool.map_array(|_, x: u32| x, &late, None), Err(mproc::Error::Misuse(_))));
    /// # Ok::<(), mproc::Error>(())
    /// ```
    ///
    /// `f` is a closure that captures nothing, or a function's name (see [`Pool::map_range`]).
    pub fn map_array<T, R, F>(&self, f: F, array: &RawArray<T>, chunksize: Option<usize>) -> Result<Vec<R>>
    where
        T: AtomicValue,
        R: Serialize + DeserializeOwned + 'static,
        F: Fn(&Ctx, T) -> R + Copy + Send + 'static,
    {
        self.check_mapped(array, "map_array")?;
        let len = array.len();
        let source = RangeSource::indices(array.as_ptr().expose_provenance() as u64, len as u64);
        self.map_indices::<R, Auto>(TaskFn::new(ArrayFn::<Ctx, T, R, Auto, F>::new(f)), source, len, chunksize, None)
    }

    /// [`Pool::map`] with a per-call value: `arg` is encoded once and sent once to each worker
    /// (not with every item), and every task receives it as `&A`. For a threshold, a lookup
    /// table, a configuration parsed from the command line.
    ///
    /// ```
    /// let pool = mproc::Pool::new(2)?;
    /// let limit: u64 = "500".parse().unwrap(); // known only at run time
    /// let over = pool.map_with(|_, limit: &u64, x: u64| x > *limit, limit, 0..1000u64, None)?;
    /// assert_eq!(over.iter().filter(|&&b| b).count(), 499);
    /// # Ok::<(), mproc::Error>(())
    /// ```
    ///
    /// An `arg` that cannot be encoded is [`Error::Encode`] (`what: "per-call value"`, `task: 0`);
    /// one larger than the message limit is [`Error::MessageTooLarge`].
    pub fn map_with<A, T, R>(
        &self,
        f: fn(&Ctx, &A, T) -> R,
        arg: A,
        items: impl IntoIterator<Item = T>,
        chunksize: Option<usize>,
    ) -> Result<Vec<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        T: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        let mut bytes = Vec::new();
        <Serde as Wire<A>>::encode(&arg, &mut bytes).map_err(|message| Error::Encode {
            what: "per-call value",
            task: 0,
            message,
        })?;
        let limit = self.core.borrow().max_message_bytes();
        if bytes.len() > limit {
            return Err(Error::MessageTooLarge { what: "per-call value", task: 0, size: bytes.len(), limit });
        }
        let task = WithFn::<Ctx, A, T, R, Auto, Auto>::new(f);
        let id = self.submit_list::<T, R, Auto, Auto, _>(task, items, chunksize, Some(bytes), true)?;
        self.run_all::<R, Auto>(id)
    }

    /// [`Pool::map`] for plain data ([`crate::Plain`]: numbers, arrays of them, `#[repr(C)]`
    /// structs of them without padding): arguments and results are copied as bytes, with no
    /// encoding at all.
    ///
    /// ```
    /// #[derive(Clone, Copy)]
    /// #[repr(C)]
    /// struct Point { x: f64, y: f64 }
    /// // SAFETY: two f64s, no padding; every bit pattern is a valid Point.
    /// unsafe impl mproc::bytemuck::Zeroable for Point {}
    /// // SAFETY: as above.
    /// unsafe impl mproc::bytemuck::Pod for Point {}
    ///
    /// let pool = mproc::Pool::new(2)?;
    /// let norms = pool.map_plain(|_, p: Point| (p.x * p.x + p.y * p.y).sqrt(), [Point { x: 3.0, y: 4.0 }], None)?;
    /// assert_eq!(norms, vec![5.0]);
    /// # Ok::<(), mproc::Error>(())
    /// ```
    ///
    /// A struct with padding is refused at compile time (its padding bytes are uninitialised):
    /// ```compile_fail
    /// // Regression (map_plain_reads_padding): a padded struct was accepted and its padding read.
    /// #[derive(Clone, Copy)]
    /// #[repr(C)]
    /// struct Padded { tag: u8, value: u64 } // 7 bytes of padding after `tag`
    ///
    /// let pool = mproc::Pool::new(1)?;
    /// let _ = pool.map_plain(|_, p: Padded| p.value, [Padded { tag: 1, value: 2 }], None)?;
    /// # Ok::<(), mproc::Error>(())
    /// ```
    pub fn map_plain<T, R>(
        &self,
        f: fn(&Ctx, T) -> R,
        items: impl IntoIterator<Item = T>,
        chunksize: Option<usize>,
    ) -> Result<Vec<R>>
    where
        T: crate::Plain,
        R: crate::Plain,
    {
        let task = MapFn::<Ctx, T, R, Plain, Plain>::new(f);
        let id = self.submit_list::<T, R, Plain, Plain, _>(task, items, chunksize, None, true)?;
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
        let task = StarFn::<Ctx, A, B, R, Serde, Auto>::new(f);
        let id = self.submit_list::<(A, B), R, Serde, Auto, _>(task, items, chunksize, None, true)?;
        self.run_all::<R, Auto>(id)
    }

    /// [`Pool::map`] without waiting: the handle's `ready`, `wait`, `get` and `get_timeout` give
    /// the `Vec` of results (or [`Error::MapFailed`]); [`AsyncResult::on_result`] hands it to a
    /// callback instead.
    ///
    /// ```
    /// let pool = mproc::Pool::new(2)?;
    /// let squares = pool.map_async(|_, x: u64| x * x, 0..10u64, None)?;
    /// // ... other work here ...
    /// assert_eq!(squares.get()?[3], 9);
    /// # Ok::<(), mproc::Error>(())
    /// ```
    pub fn map_async<T, R>(
        &self,
        f: fn(&Ctx, T) -> R,
        items: impl IntoIterator<Item = T>,
        chunksize: Option<usize>,
    ) -> Result<AsyncResult<'_, Ctx, Vec<R>>>
    where
        T: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        let task = MapFn::<Ctx, T, R, Auto, Auto>::new(f);
        let id = self.submit_list::<T, R, Auto, Auto, _>(task, items, chunksize, None, false)?;
        Ok(AsyncResult::new(self, id, finish_all::<R, Auto>))
    }

    /// [`Pool::starmap`] without waiting, as [`Pool::map_async`].
    pub fn starmap_async<A, B, R>(
        &self,
        f: fn(&Ctx, A, B) -> R,
        items: impl IntoIterator<Item = (A, B)>,
        chunksize: Option<usize>,
    ) -> Result<AsyncResult<'_, Ctx, Vec<R>>>
    where
        A: Serialize + DeserializeOwned + 'static,
        B: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        let task = StarFn::<Ctx, A, B, R, Serde, Auto>::new(f);
        let id = self.submit_list::<(A, B), R, Serde, Auto, _>(task, items, chunksize, None, false)?;
        Ok(AsyncResult::new(self, id, finish_all::<R, Auto>))
    }

    /// A lazy [`Pool::map`]: items are taken from `items` as workers have room, and results come
    /// back in order, one `Result` per task. Python's default chunk size for `imap` is 1.
    ///
    /// Back-pressure: at most `buffersize` chunks of the call are out at once — sent, running,
    /// or done and waiting for you to take them — so a slow first item or a slow reader holds
    /// memory in check (default 16 per worker; set it with [`ResultIter::buffersize`]). Dropping
    /// the iterator cancels the tasks that have not started.
    ///
    /// If `items` panics, the results before the failing item come first, then one
    /// [`Error::SourcePanicked`] naming it, then the end.
    pub fn imap<T, R, I>(&self, f: fn(&Ctx, T) -> R, items: I, chunksize: usize) -> Result<ResultIter<'_, Ctx, R>>
    where
        T: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
        I: IntoIterator<Item = T>,
        I::IntoIter: 'static,
    {
        self.stream(f, items, chunksize, true)
    }

    fn stream<T, R, I>(
        &self,
        f: fn(&Ctx, T) -> R,
        items: I,
        chunksize: usize,
        ordered: bool,
    ) -> Result<ResultIter<'_, Ctx, R>>
    where
        T: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
        I: IntoIterator<Item = T>,
        I::IntoIter: 'static,
    {
        let task = TaskFn::new(MapFn::<Ctx, T, R, Auto, Auto>::new(f));
        let window = Some((self.default_buffersize() * chunksize.max(1)) as u64);
        let id = self.submit_stream::<T, R, Auto, Auto>(task, items.into_iter(), chunksize, ordered, window)?;
        Ok(ResultIter::new(self, id, pop_next::<R, Auto>))
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
        self.stream(f, items, chunksize, false)
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
    /// progress on every call into it), or handed to a callback with [`AsyncResult::on_result`].
    ///
    /// ```
    /// use std::{cell::RefCell, rc::Rc};
    ///
    /// let pool = mproc::Pool::new(2)?;
    /// let got = Rc::new(RefCell::new(Vec::new()));
    /// for x in 0..4u64 {
    ///     let got = got.clone();
    ///     pool.apply_async(|_, x: u64| x * 10, x)?.on_result(move |r| got.borrow_mut().push(r.unwrap()));
    /// }
    /// pool.wait_all()?; // callbacks run as results are collected
    /// got.borrow_mut().sort();
    /// assert_eq!(*got.borrow(), vec![0, 10, 20, 30]);
    /// # Ok::<(), mproc::Error>(())
    /// ```
    pub fn apply_async<T, R>(&self, f: fn(&Ctx, T) -> R, arg: T) -> Result<AsyncResult<'_, Ctx, R>>
    where
        T: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        let task = TaskFn::new(MapFn::<Ctx, T, R, Auto, Auto>::new(f));
        let id = self.submit_stream::<T, R, Auto, Auto>(task, std::iter::once(arg), 1, true, None)?;
        Ok(AsyncResult::new(self, id, finish_one::<R, Auto>))
    }

    /// Waits until all submitted work is complete, running the callbacks
    /// ([`AsyncResult::on_result`]) as it goes. Results held for handles stay there.
    pub fn wait_all(&self) -> Result<()> {
        self.drive(Core::all_settled, None).map(|_| ())
    }

    /// Takes no more work; running and submitted work goes on. Then call [`Pool::join`].
    pub fn close(&self) {
        self.core.borrow_mut().close();
    }

    /// After [`Pool::close`]: finishes all submitted work (running callbacks), stops the workers
    /// and waits for them. After [`Pool::terminate`]: returns at once (the workers are already
    /// reaped). Before either: [`Error::Misuse`].
    pub fn join(&self) -> Result<()> {
        let r = self.core.borrow_mut().join();
        self.run_callbacks();
        r
    }

    /// Kills the workers now (SIGKILL) and reaps them; unfinished work is dropped.
    pub fn terminate(&self) {
        self.core.borrow_mut().terminate();
    }

    /// Whether the pool was terminated, joined or interrupted.
    pub fn is_terminated(&self) -> bool {
        self.core.borrow().is_terminated()
    }
}

/// Removes a job from the pool when dropped: `run_all` forgets it on the normal path (it takes
/// the job itself); on an unwind it drops the job, and with it a source that may borrow from the
/// caller, before the caller's borrow ends.
struct JobGuard<'p, Ctx> {
    pool: &'p Pool<Ctx>,
    id: u64,
}

impl<Ctx> Drop for JobGuard<'_, Ctx> {
    fn drop(&mut self) {
        let mut core = match self.pool.core.try_borrow_mut() {
            Ok(c) => c,
            // Cannot happen (every borrow of the core ends inside the call that took it, before an
            // unwind reaches here); if it did, the job's source might outlive what it borrows.
            Err(_) => std::process::abort(),
        };
        core.abandon(self.id);
        let job = core.take(self.id);
        drop(core);
        drop(job);
    }
}
