//! [`PoolBuilder`]: the options of a pool, and `build()`, which forks the workers.

use std::cell::RefCell;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::pool::Pool;
use crate::pool::core::Core;
use crate::pool::supervise::Spawner;
use crate::pool::task::InitFn;
use crate::pool::worker::install_panic_hook;
use crate::process::ForkPolicy;

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
    pub processes: usize,
    pub max_tasks_per_child: Option<u64>,
    pub on_worker_death: OnWorkerDeath,
    pub max_message_bytes: usize,
    pub fork_policy: Option<ForkPolicy>,
    pub task_timeout: Option<Duration>,
}

/// Default limit on one task's encoded argument or result.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 4 << 20;

/// Builds a [`Pool`]. `Pool::builder()` starts one; options are taken by value.
#[must_use = "a builder does nothing until build()"]
pub struct PoolBuilder<Ctx = ()> {
    processes: Option<usize>,
    unit_init: Option<fn(&())>,
    initializer: Option<fn(&Ctx)>,
    max_tasks_per_child: Option<u64>,
    on_worker_death: OnWorkerDeath,
    seed: Option<u64>,
    max_message_bytes: usize,
    fork_policy: Option<ForkPolicy>,
    task_timeout: Option<Duration>,
    ctx: Ctx,
}

impl<Ctx> std::fmt::Debug for PoolBuilder<Ctx> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolBuilder")
            .field("processes", &self.processes)
            .field("initializer", &(self.unit_init.is_some() || self.initializer.is_some()))
            .field("max_tasks_per_child", &self.max_tasks_per_child)
            .field("on_worker_death", &self.on_worker_death)
            .field("seed", &self.seed)
            .field("max_message_bytes", &self.max_message_bytes)
            .field("fork_policy", &self.fork_policy)
            .field("task_timeout", &self.task_timeout)
            .finish_non_exhaustive()
    }
}

impl PoolBuilder<()> {
    pub(crate) fn new() -> PoolBuilder<()> {
        PoolBuilder {
            processes: None,
            unit_init: None,
            initializer: None,
            max_tasks_per_child: None,
            on_worker_death: OnWorkerDeath::Fail,
            seed: None,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            fork_policy: None,
            task_timeout: None,
            ctx: (),
        }
    }

    /// The shared context every task receives as `&Ctx`: create `Flag`s, `Value`s, `Array`s… and
    /// put them here; the workers inherit them through fork (nothing is copied or sent).
    ///
    /// An [`initializer`](PoolBuilder::initializer) given before `context` is kept: it runs with
    /// `&()`, before the one given after (if any), which receives the context.
    pub fn context<C>(self, ctx: C) -> PoolBuilder<C> {
        PoolBuilder {
            processes: self.processes,
            unit_init: self.initializer,
            initializer: None,
            max_tasks_per_child: self.max_tasks_per_child,
            on_worker_death: self.on_worker_death,
            seed: self.seed,
            max_message_bytes: self.max_message_bytes,
            fork_policy: self.fork_policy,
            task_timeout: self.task_timeout,
            ctx,
        }
    }
}

impl<Ctx> PoolBuilder<Ctx> {
    /// Worker processes (default: the CPUs this process may run on).
    pub fn processes(mut self, n: usize) -> Self {
        self.processes = Some(n);
        self
    }

    /// Runs once in each worker (and each replacement) after fork, before any task. If it
    /// panics, the worker exits; a slot whose worker keeps dying that way breaks the pool
    /// ([`Error::PoolBroken`]).
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

    /// Largest encoded argument or result of one task, and of a per-call value (default 4 MiB).
    /// What counts is the payload alone: the serde bytes of the value (fixed-width numbers, `u64` lengths), or `size_of::<T>()` for
    /// plain data — not the pool's own headers. A value of exactly `n` bytes passes; one of
    /// `n + 1` is [`Error::MessageTooLarge`] with `limit: n`, for its task only. Each worker's
    /// two rings reserve about twice this (virtual memory, touched only as used).
    pub fn max_message_bytes(mut self, n: usize) -> Self {
        self.max_message_bytes = n;
        self
    }

    /// A time limit for each task (default: none). A worker that shows no progress for longer —
    /// a task that loops, blocks or was stopped (SIGSTOP) — is killed (SIGKILL) and replaced; its
    /// task fails with [`Error::TaskTimedOut`] (or runs again, under [`OnWorkerDeath::Retry`]),
    /// and the tasks queued behind it go to the other workers. The check runs inside pool calls
    /// (there is no background thread), a few times per limit. Per call:
    /// [`AsyncResult::task_timeout`](crate::AsyncResult::task_timeout),
    /// [`ResultIter::task_timeout`](crate::ResultIter::task_timeout).
    pub fn task_timeout(mut self, d: Duration) -> Self {
        self.task_timeout = Some(d);
        self
    }

    /// Overrides the process-wide [`ForkPolicy`] for this pool's forks.
    pub fn fork_policy(mut self, p: ForkPolicy) -> Self {
        self.fork_policy = Some(p);
        self
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
        // Here, in the parent, once per process: a worker must not set a hook (it takes a lock).
        install_panic_hook();
        let ctx = Box::new(self.ctx);
        let spawner = Spawner {
            ctx: (&raw const *ctx).cast(),
            unit_init: self.unit_init,
            init: self.initializer.map(InitFn::new::<Ctx>),
        };
        let settings = Settings {
            processes,
            max_tasks_per_child: self.max_tasks_per_child,
            on_worker_death: self.on_worker_death,
            max_message_bytes: self.max_message_bytes,
            fork_policy: self.fork_policy,
            task_timeout: self.task_timeout,
        };
        let core = Core::start(settings, spawner, seed)?;
        Ok(Pool { core: RefCell::new(core), ctx })
    }
}
