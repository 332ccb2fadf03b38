//! Named tasks: what crosses machines instead of a code address.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use mproc::Flag;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The name of a task taking `A` and returning `R`: declare it once as a `const`, register it
/// on the workers ([`Registry::task`]) and call it from the caller ([`crate::ClusterPool::map`]).
/// Sharing the constant makes the two sides agree on the types at compile time.
///
/// ```
/// use mproc_cluster::Named;
/// pub const SQUARE: Named<u64, u64> = Named::new("square");
/// assert_eq!(SQUARE.name(), "square");
/// ```
pub struct Named<A, R> {
    name: &'static str,
    _types: PhantomData<fn(A) -> R>,
}

impl<A, R> Named<A, R> {
    /// A task called `name` (unique within a [`Registry`]).
    pub const fn new(name: &'static str) -> Self {
        Named { name, _types: PhantomData }
    }

    /// Its name.
    pub const fn name(&self) -> &'static str {
        self.name
    }
}

impl<A, R> Clone for Named<A, R> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<A, R> Copy for Named<A, R> {}

impl<A, R> fmt::Debug for Named<A, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Named({:?})", self.name)
    }
}

/// What a task sees of where it runs: the job's early-exit flag on this host.
///
/// The flag is shared memory on the worker host: a relay process sets it when any host (or the
/// caller) stops the job, so polling it in an inner loop never touches the network.
pub struct TaskCtx<'a> {
    pub(crate) flag: &'a Flag,
    pub(crate) job: u64,
    pub(crate) task: u64,
}

impl TaskCtx<'_> {
    /// The job's early-exit flag on this host (a Relaxed load per poll).
    pub fn flag(&self) -> &Flag {
        self.flag
    }

    /// Whether the job was stopped (by a task anywhere, or by the caller).
    pub fn stopped(&self) -> bool {
        self.flag.is_set()
    }

    /// Stops the job everywhere: sets the flag here; the host then publishes it to the others.
    pub fn stop(&self) {
        self.flag.set();
    }

    /// The job's id.
    pub fn job(&self) -> u64 {
        self.job
    }

    /// This chunk's index in the job.
    pub fn task(&self) -> u64 {
        self.task
    }
}

/// Why a chunk gave no result.
#[derive(Debug)]
pub(crate) enum RunError {
    Unknown,
    Failed(String),
}

type Erased = Box<dyn Fn(&TaskCtx<'_>, &[u8]) -> Result<Vec<u8>, String>>;

/// The tasks a worker host can run, by name, built once at start-up by the same code on every
/// host: the same binary resolves the same name to the same function.
///
/// ```
/// use mproc_cluster::{Named, Registry, TaskCtx};
///
/// const SQUARE: Named<u64, u64> = Named::new("square");
/// const SHOUT: Named<String, String> = Named::new("shout");
///
/// let registry = Registry::new()
///     .task(SQUARE, |_: &TaskCtx, x| x * x)
///     .task(SHOUT, |_: &TaskCtx, s: String| s.to_uppercase());
/// assert_eq!(registry.names().collect::<Vec<_>>(), ["shout", "square"]);
/// ```
#[derive(Default)]
pub struct Registry {
    tasks: BTreeMap<&'static str, Erased>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry").field("tasks", &self.tasks.keys().collect::<Vec<_>>()).finish()
    }
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Registry {
        Registry::default()
    }

    /// Registers `f` under `task`'s name. A task is a plain function (a closure that captures
    /// nothing): what it computes must depend on its argument only, the same on every host.
    ///
    /// # Panics
    /// If the name is taken already: two functions under one name would make the answer depend
    /// on the host.
    pub fn task<A, R>(mut self, task: Named<A, R>, f: fn(&TaskCtx<'_>, A) -> R) -> Registry
    where
        A: DeserializeOwned + 'static,
        R: Serialize + 'static,
    {
        let run = move |ctx: &TaskCtx<'_>, bytes: &[u8]| -> Result<Vec<u8>, String> {
            let args: Vec<A> = postcard::from_bytes(bytes).map_err(|e| format!("cannot decode its arguments: {e}"))?;
            let out: Vec<R> = args.into_iter().map(|a| f(ctx, a)).collect();
            postcard::to_allocvec(&out).map_err(|e| format!("cannot encode its result: {e}"))
        };
        let name = task.name();
        assert!(self.tasks.insert(name, Box::new(run)).is_none(), "task name {name:?} registered twice");
        self
    }

    /// The registered names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.tasks.keys().copied()
    }

    /// Whether `name` is registered.
    pub fn contains(&self, name: &str) -> bool {
        self.tasks.contains_key(name)
    }

    /// Runs chunk `bytes` (a postcard `Vec` of arguments) of task `name`; a panic is a failure.
    pub(crate) fn run(&self, name: &str, ctx: &TaskCtx<'_>, bytes: &[u8]) -> Result<Vec<u8>, RunError> {
        let f = self.tasks.get(name).ok_or(RunError::Unknown)?;
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(ctx, bytes))) {
            Ok(r) => r.map_err(RunError::Failed),
            Err(p) => {
                let msg = p
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| p.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic without a message".into());
                Err(RunError::Failed(format!("panicked: {msg}")))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOUBLE: Named<u32, u64> = Named::new("double");
    const BOOM: Named<u8, u8> = Named::new("boom");

    fn ctx(flag: &Flag) -> TaskCtx<'_> {
        TaskCtx { flag, job: 7, task: 0 }
    }

    fn registry() -> Registry {
        Registry::new().task(DOUBLE, |_, x| u64::from(x) * 2).task(BOOM, |_, _| panic!("boom"))
    }

    #[test]
    fn a_chunk_runs_by_name_with_postcard_in_and_out() {
        let flag = Flag::new().unwrap();
        let args = postcard::to_allocvec(&vec![1u32, 2, 3]).unwrap();
        let out = registry().run("double", &ctx(&flag), &args).unwrap();
        assert_eq!(postcard::from_bytes::<Vec<u64>>(&out).unwrap(), vec![2, 4, 6]);
    }

    #[test]
    fn an_unknown_name_a_panic_and_bad_bytes_are_errors_not_crashes() {
        let flag = Flag::new().unwrap();
        let r = registry();
        assert!(matches!(r.run("nope", &ctx(&flag), &[]), Err(RunError::Unknown)));
        let args = postcard::to_allocvec(&vec![1u8]).unwrap();
        match r.run("boom", &ctx(&flag), &args) {
            Err(RunError::Failed(m)) => assert!(m.contains("panicked: boom"), "{m}"),
            other => panic!("{other:?}"),
        }
        match r.run("double", &ctx(&flag), &[0xff, 0xff]) {
            Err(RunError::Failed(m)) => assert!(m.contains("cannot decode its arguments"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    #[should_panic(expected = "registered twice")]
    fn two_functions_under_one_name_are_refused() {
        let _ = registry().task(Named::<u32, u64>::new("double"), |_, x| u64::from(x));
    }

    #[test]
    fn the_task_context_stops_through_its_flag() {
        let flag = Flag::new().unwrap();
        let c = ctx(&flag);
        assert!(!c.stopped());
        c.stop();
        assert!(c.stopped() && flag.is_set());
        assert_eq!((c.job(), c.task()), (7, 0));
    }
}
