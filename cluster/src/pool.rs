//! The caller's side: [`ClusterPool`] puts a job's chunks on the task stream and collects their
//! results from the job's result stream, each exactly once.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::marker::PhantomData;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::conn::{Conn, GROUP, Keys, Target, field_bytes, field_str, field_u64};
use crate::error::{Error, Result};
use crate::registry::Named;

/// How long a job's keys live without the caller renewing them (it renews them while it waits).
pub(crate) const JOB_TTL: Duration = Duration::from_secs(30);
/// Entries per pipelined XADD batch.
const SUBMIT_BATCH: usize = 512;
/// How long one read of the result stream blocks.
const READ_BLOCK_MS: u64 = 100;

/// Options of a [`ClusterPool`]; [`ClusterPoolBuilder::build`] connects.
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until build()"]
pub struct ClusterPoolBuilder {
    target: Target,
    queue: String,
    max_deliveries: u64,
    timeout: Option<Duration>,
}

impl ClusterPoolBuilder {
    /// The queue (key prefix) workers serve: `mproc` unless both sides say otherwise.
    pub fn queue(mut self, name: impl Into<String>) -> Self {
        self.queue = name.into();
        self
    }

    /// A task handed out this many times without finishing (its workers died) fails with
    /// [`Error::KilledWorkers`] instead of being handed out again (default 3).
    pub fn max_deliveries(mut self, n: u64) -> Self {
        self.max_deliveries = n.max(1);
        self
    }

    /// A job that has not finished after `d` fails with [`Error::Timeout`] (default: none; a job
    /// waits for workers to come).
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = Some(d);
        self
    }

    /// Time allowed to connect (default 2 s) and for any one reply (default 5 s).
    pub fn timeouts(mut self, connect: Duration, io: Duration) -> Self {
        self.target.connect_timeout = connect;
        self.target.io_timeout = io;
        self
    }

    /// Connects and makes the task stream's consumer group if it is missing.
    pub fn build(self) -> Result<ClusterPool> {
        let keys = Keys { queue: self.queue };
        let mut conn = self.target.connect()?;
        conn.ensure_group(&keys)?;
        Ok(ClusterPool {
            conn: RefCell::new(conn),
            keys,
            max_deliveries: self.max_deliveries,
            timeout: self.timeout,
            last: Cell::new(JobStats::default()),
        })
    }
}

/// What the last finished job of a pool saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct JobStats {
    /// Chunks in the job.
    pub tasks: u64,
    /// Results that arrived for a chunk whose result had arrived already (the chunk ran twice:
    /// its first worker died after posting, or was taken for dead): dropped, not delivered.
    pub duplicates: u64,
    /// Chunks whose result came from a second or later delivery (a worker died with them).
    pub redelivered: u64,
    /// When the last of those arrived.
    pub last_redelivered: Option<std::time::SystemTime>,
}

/// A Pool whose workers are processes on other hosts (`mproc worker --connect URL`), fed
/// through a Redis stream.
///
/// A separate type rather than a backend of [`mproc::Pool`]: a local task is a function
/// address and a cluster task a registered name ([`Named`]), its arguments must be serde (no
/// plain-bytes path), its context cannot be shared memory, and its failures are different
/// (Redis down, a task that kills workers). One type behind both would make every local call
/// pay for checks that only make sense remotely, and hide the difference in guarantees.
///
/// ```no_run
/// use mproc_cluster::{ClusterPool, Named};
/// const SQUARE: Named<u64, u64> = Named::new("square");
///
/// let pool = ClusterPool::connect("redis://127.0.0.1:6379/")?;
/// let squares = pool.map(SQUARE, 0..1000u64, Some(100))?;
/// assert_eq!(squares[999], 998_001);
/// # Ok::<(), mproc_cluster::Error>(())
/// ```
pub struct ClusterPool {
    conn: RefCell<Conn>,
    keys: Keys,
    max_deliveries: u64,
    timeout: Option<Duration>,
    last: Cell<JobStats>,
}

impl std::fmt::Debug for ClusterPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterPool")
            .field("url", &self.conn.borrow().target.url)
            .field("queue", &self.keys.queue)
            .finish_non_exhaustive()
    }
}

impl ClusterPool {
    /// Options for a pool on the Redis server at `url` (`redis://HOST:PORT/`).
    pub fn builder(url: &str) -> ClusterPoolBuilder {
        ClusterPoolBuilder {
            target: Target {
                url: url.to_owned(),
                connect_timeout: Duration::from_secs(2),
                io_timeout: Duration::from_secs(5),
            },
            queue: "mproc".into(),
            max_deliveries: 3,
            timeout: None,
        }
    }

    /// A pool on `url` with the default options.
    pub fn connect(url: &str) -> Result<ClusterPool> {
        ClusterPool::builder(url).build()
    }

    /// Worker processes of the hosts serving this queue now (each host renews a presence key).
    pub fn workers(&self) -> Result<usize> {
        let mut conn = self.conn.borrow_mut();
        let pattern = self.keys.host("*");
        let mut cursor = 0u64;
        let mut keys: Vec<String> = Vec::new();
        loop {
            let (next, batch): (u64, Vec<String>) =
                conn.query(redis::cmd("SCAN").arg(cursor).arg("MATCH").arg(&pattern).arg("COUNT").arg(1000))?;
            keys.extend(batch);
            if next == 0 || keys.len() > 100_000 {
                break;
            }
            cursor = next;
        }
        if keys.is_empty() {
            return Ok(0);
        }
        let counts: Vec<Option<usize>> = conn.query(redis::cmd("MGET").arg(&keys))?;
        Ok(counts.into_iter().flatten().sum())
    }

    /// What the last job that ended saw.
    pub fn last_job(&self) -> JobStats {
        self.last.get()
    }

    /// Applies `task` to every item on the workers; results in input order. `chunksize`: items
    /// per stream entry (`None`: a quarter of each live worker's share, as Python's Pool).
    ///
    /// If tasks fail, the others still run and the call returns [`Error::MapFailed`].
    pub fn map<A, R>(
        &self,
        task: Named<A, R>,
        items: impl IntoIterator<Item = A>,
        chunksize: Option<usize>,
    ) -> Result<Vec<R>>
    where
        A: Serialize,
        R: DeserializeOwned,
    {
        let items: Vec<A> = items.into_iter().collect();
        let n = items.len();
        let c = self.chunksize(chunksize, n)?;
        let mut job = self.submit(task.name(), &items, c)?;
        let mut out: Vec<Option<R>> = (0..n).map(|_| None).collect();
        let mut failures: Vec<(u64, Error)> = Vec::new();
        while job.remaining > 0 {
            for (t, outcome) in job.fetch(self)? {
                let start = t as usize * c;
                match outcome.and_then(|bytes| decode::<R>(&bytes, t, task.name())) {
                    Ok(rs) if rs.len() == job.lens[t as usize] => {
                        for (i, r) in rs.into_iter().enumerate() {
                            out[start + i] = Some(r);
                        }
                    }
                    Ok(rs) => failures.push((t, length_mismatch(t, task.name(), rs.len(), job.lens[t as usize]))),
                    Err(e) => failures.push((t, e)),
                }
            }
        }
        self.finish(job);
        if let Some(first) = failures.iter().map(|(t, _)| *t).min() {
            let failed: usize = failures.len();
            let total = n.div_ceil(c);
            let first = failures.into_iter().find(|(t, _)| *t == first).map(|(_, e)| e).expect("found above");
            return Err(Error::MapFailed { failed, total, first: Box::new(first) });
        }
        Ok(out.into_iter().map(|r| r.expect("every chunk arrived")).collect())
    }

    /// Like [`ClusterPool::map`], but the results come one at a time as chunks finish, in the
    /// order they finish. Dropping the iterator ends the job (its keys are removed; chunks not
    /// yet started are skipped, running ones see the job's flag raised).
    ///
    /// The job's keys are renewed while the iterator is read: take the next result at least every
    /// 30 s, or the job expires (and the next read says so).
    pub fn imap_unordered<A, R>(
        &self,
        task: Named<A, R>,
        items: impl IntoIterator<Item = A>,
        chunksize: usize,
    ) -> Result<ClusterIter<'_, R>>
    where
        A: Serialize,
        R: DeserializeOwned,
    {
        if chunksize == 0 {
            return Err(Error::InvalidArgument("chunksize must be at least 1".into()));
        }
        let items: Vec<A> = items.into_iter().collect();
        let job = self.submit(task.name(), &items, chunksize)?;
        Ok(ClusterIter { pool: self, job: Some(job), ready: VecDeque::new(), _r: PhantomData })
    }

    /// Starts one task; [`ClusterResult::get`] waits for its result.
    pub fn apply_async<A, R>(&self, task: Named<A, R>, arg: A) -> Result<ClusterResult<'_, R>>
    where
        A: Serialize,
        R: DeserializeOwned,
    {
        let job = self.submit(task.name(), std::slice::from_ref(&arg), 1)?;
        Ok(ClusterResult { pool: self, job: Some(job), _r: PhantomData })
    }

    /// Runs one task and waits for its result.
    pub fn apply<A, R>(&self, task: Named<A, R>, arg: A) -> Result<R>
    where
        A: Serialize,
        R: DeserializeOwned,
    {
        self.apply_async(task, arg)?.get()
    }

    fn chunksize(&self, chunksize: Option<usize>, n: usize) -> Result<usize> {
        match chunksize {
            Some(0) => Err(Error::InvalidArgument("chunksize must be at least 1".into())),
            Some(c) => Ok(c),
            None => Ok(n.div_ceil(4 * self.workers()?.max(1)).max(1)),
        }
    }

    /// Makes the job's result stream, then adds one entry per chunk.
    fn submit<A: Serialize>(&self, name: &'static str, items: &[A], chunksize: usize) -> Result<Job> {
        // Encoded first: a failure leaves nothing in Redis.
        let chunks: Vec<Vec<u8>> = items
            .chunks(chunksize)
            .enumerate()
            .map(|(t, chunk)| {
                postcard::to_allocvec(chunk).map_err(|e| Error::Codec {
                    task: t as u64,
                    name: name.to_owned(),
                    what: "encode its arguments",
                    message: e.to_string(),
                })
            })
            .collect::<Result<_>>()?;
        let id = job_id();
        let tasks = self.keys.tasks();
        let mut job = Job {
            id,
            name,
            results: self.keys.results(id),
            stop: self.keys.stop(id),
            channel: self.keys.channel(),
            tasks: tasks.clone(),
            entry_ids: Vec::with_capacity(chunks.len()),
            lens: items.chunks(chunksize).map(<[A]>::len).collect(),
            done: vec![false; chunks.len()],
            remaining: chunks.len() as u64,
            duplicates: 0,
            redelivered: 0,
            last_redelivered: None,
            last_id: String::new(),
            started: Instant::now(),
            renewed: Instant::now(),
            timeout: self.timeout,
        };
        let mut conn = self.conn.borrow_mut();
        for (b, batch) in chunks.chunks(SUBMIT_BATCH).enumerate() {
            let mut p = redis::pipe();
            if b == 0 {
                // The result stream exists before any task does (in the same round trip):
                // workers post with NOMKSTREAM, so a result for a job that has ended never
                // brings its key back.
                p.cmd("XADD").arg(&job.results).arg("*").arg("t").arg("start");
                p.cmd("PEXPIRE").arg(&job.results).arg(JOB_TTL.as_millis() as u64).ignore();
            }
            for (i, args) in batch.iter().enumerate() {
                let t = (b * SUBMIT_BATCH + i) as u64;
                p.cmd("XADD")
                    .arg(&tasks)
                    .arg("*")
                    .arg("j")
                    .arg(id)
                    .arg("t")
                    .arg(t)
                    .arg("n")
                    .arg(name)
                    .arg("m")
                    .arg(self.max_deliveries)
                    .arg("a")
                    .arg(args);
            }
            let mut ids: Vec<String> = match conn.pipe(&p) {
                Ok(ids) => ids,
                Err(e) => {
                    drop(conn);
                    self.cleanup(&job);
                    return Err(e);
                }
            };
            if b == 0 {
                job.last_id = ids.remove(0);
            }
            job.entry_ids.extend(ids);
        }
        if job.last_id.is_empty() {
            // No items: the job is done before it starts (and has no keys to remove).
            job.last_id = "0-0".into();
        }
        Ok(job)
    }

    /// Records the job's figures and removes its keys.
    fn finish(&self, job: Job) {
        self.last.set(JobStats {
            tasks: job.done.len() as u64,
            duplicates: job.duplicates,
            redelivered: job.redelivered,
            last_redelivered: job.last_redelivered,
        });
        self.cleanup(&job);
    }

    /// Removes everything the job put in Redis: its result stream and stop key, and its task
    /// entries not yet taken (acknowledged too, so a worker holding one lets it go). If the job
    /// did not finish, its flag is raised first so that running tasks that poll it stop.
    fn cleanup(&self, job: &Job) {
        let Ok(mut conn) = self.conn.try_borrow_mut() else { return };
        let mut p = redis::pipe();
        if job.remaining > 0 {
            p.cmd("PUBLISH").arg(&job.channel).arg(job.id).ignore();
        }
        p.cmd("DEL").arg(&job.results).arg(&job.stop).ignore();
        for ids in job.entry_ids.chunks(SUBMIT_BATCH) {
            p.cmd("XACK").arg(&job.tasks).arg(GROUP).arg(ids).ignore();
            p.cmd("XDEL").arg(&job.tasks).arg(ids).ignore();
        }
        if conn.pipe::<()>(&p).is_err() {
            // The connection broke (Redis restarted or a reply timed out): one more try on a new
            // one, bounded by the connect timeout; what still fails expires with the job's TTL.
            if let Ok(mut c) = conn.target.connect() {
                let _ = c.pipe::<()>(&p);
                *conn = c;
            }
        }
    }
}

/// A job in flight: its keys and which chunks have delivered.
struct Job {
    id: u64,
    name: &'static str,
    results: String,
    stop: String,
    channel: String,
    tasks: String,
    entry_ids: Vec<String>,
    lens: Vec<usize>,
    done: Vec<bool>,
    remaining: u64,
    duplicates: u64,
    redelivered: u64,
    last_redelivered: Option<std::time::SystemTime>,
    last_id: String,
    started: Instant,
    renewed: Instant,
    timeout: Option<Duration>,
}

impl Job {
    /// The next results (each chunk's first only), waiting up to one read's block time.
    fn fetch(&mut self, pool: &ClusterPool) -> Result<Vec<(u64, Result<Vec<u8>>)>> {
        if let Some(limit) = self.timeout
            && self.started.elapsed() > limit
        {
            let total = self.done.len() as u64;
            return Err(Error::Timeout { limit, done: total - self.remaining, total });
        }
        let mut conn = pool.conn.borrow_mut();
        if self.renewed.elapsed() > JOB_TTL / 10 {
            let mut p = redis::pipe();
            p.cmd("PEXPIRE").arg(&self.results).arg(JOB_TTL.as_millis() as u64).ignore();
            p.cmd("PEXPIRE").arg(&self.stop).arg(JOB_TTL.as_millis() as u64).ignore();
            conn.pipe::<()>(&p)?;
            self.renewed = Instant::now();
        }
        let reply: Option<redis::streams::StreamReadReply> = conn.query(
            redis::cmd("XREAD")
                .arg("COUNT")
                .arg(1024)
                .arg("BLOCK")
                .arg(READ_BLOCK_MS)
                .arg("STREAMS")
                .arg(&self.results)
                .arg(&self.last_id),
        )?;
        let mut out = Vec::new();
        let Some(reply) = reply else { return Ok(out) };
        if reply.keys.is_empty() {
            // Our result stream is gone: its TTL ran out while we were away, or someone removed it.
            let exists: bool = conn.query(redis::cmd("EXISTS").arg(&self.results))?;
            if !exists {
                return Err(conn.target.fail(format!("the job's result stream {} disappeared", self.results)));
            }
        }
        for key in reply.keys {
            for e in key.ids {
                self.last_id = e.id.clone();
                let Some(t) = field_u64(&e.map, "t") else { continue };
                let Some(slot) = self.done.get_mut(t as usize) else { continue };
                if *slot {
                    self.duplicates += 1;
                    continue;
                }
                *slot = true;
                self.remaining -= 1;
                let name = self.name.to_owned();
                let outcome = match field_str(&e.map, "s").as_str() {
                    "ok" => {
                        if field_u64(&e.map, "c").unwrap_or(1) > 1 {
                            self.redelivered += 1;
                            self.last_redelivered = Some(std::time::SystemTime::now());
                        }
                        Ok(field_bytes(&e.map, "d"))
                    }
                    "unknown" => Err(Error::UnknownTask { task: t, name }),
                    "killed" => {
                        Err(Error::KilledWorkers { task: t, name, deliveries: field_u64(&e.map, "c").unwrap_or(0) })
                    }
                    _ => Err(Error::TaskFailed { task: t, name, message: field_str(&e.map, "d") }),
                };
                out.push((t, outcome));
            }
        }
        Ok(out)
    }
}

fn decode<R: DeserializeOwned>(bytes: &[u8], t: u64, name: &str) -> Result<Vec<R>> {
    postcard::from_bytes(bytes).map_err(|e| Error::Codec {
        task: t,
        name: name.to_owned(),
        what: "decode its result",
        message: e.to_string(),
    })
}

fn length_mismatch(t: u64, name: &str, got: usize, want: usize) -> Error {
    Error::Codec {
        task: t,
        name: name.to_owned(),
        what: "match its result",
        message: format!("{got} results for {want} items"),
    }
}

/// A fresh job id: random enough that two callers never pick the same (std's per-process
/// random hasher keys, the clock and the pid, mixed).
fn job_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(mproc::monotonic_ns());
    h.write_u32(std::process::id());
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    h.finish() | 1
}

/// Results of [`ClusterPool::imap_unordered`], one item at a time, in the order chunks finish.
pub struct ClusterIter<'p, R> {
    pool: &'p ClusterPool,
    job: Option<Job>,
    ready: VecDeque<Result<R>>,
    _r: PhantomData<fn() -> R>,
}

impl<R> std::fmt::Debug for ClusterIter<'_, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterIter").field("job", &self.job.as_ref().map(|j| j.id)).finish_non_exhaustive()
    }
}

impl<R: DeserializeOwned> Iterator for ClusterIter<'_, R> {
    type Item = Result<R>;

    fn next(&mut self) -> Option<Result<R>> {
        loop {
            if let Some(r) = self.ready.pop_front() {
                return Some(r);
            }
            let job = self.job.as_mut()?;
            if job.remaining == 0 {
                let job = self.job.take().expect("checked above");
                self.pool.finish(job);
                return None;
            }
            match job.fetch(self.pool) {
                Ok(batch) => {
                    for (t, outcome) in batch {
                        let want = job.lens[t as usize];
                        match outcome.and_then(|b| decode::<R>(&b, t, job.name)) {
                            Ok(rs) if rs.len() == want => self.ready.extend(rs.into_iter().map(Ok)),
                            Ok(rs) => self.ready.push_back(Err(length_mismatch(t, job.name, rs.len(), want))),
                            Err(e) => {
                                // One error per item of the chunk, so that the count adds up.
                                self.ready.push_back(Err(e));
                                for _ in 1..want {
                                    self.ready.push_back(Err(Error::TaskFailed {
                                        task: t,
                                        name: job.name.to_owned(),
                                        message: "its chunk failed (see the error before)".into(),
                                    }));
                                }
                            }
                        }
                    }
                }
                Err(e) => {
                    let job = self.job.take().expect("checked above");
                    self.pool.cleanup(&job);
                    return Some(Err(e));
                }
            }
        }
    }
}

impl<R> Drop for ClusterIter<'_, R> {
    fn drop(&mut self) {
        if let Some(job) = self.job.take() {
            self.pool.cleanup(&job);
        }
    }
}

/// The pending result of [`ClusterPool::apply_async`].
#[must_use = "dropping a ClusterResult abandons its task"]
pub struct ClusterResult<'p, R> {
    pool: &'p ClusterPool,
    job: Option<Job>,
    _r: PhantomData<fn() -> R>,
}

impl<R> std::fmt::Debug for ClusterResult<'_, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterResult").field("job", &self.job.as_ref().map(|j| j.id)).finish_non_exhaustive()
    }
}

impl<R: DeserializeOwned> ClusterResult<'_, R> {
    /// Waits for the result and takes it.
    pub fn get(mut self) -> Result<R> {
        self.get_until(None)
    }

    /// Waits at most `d`: [`Error::Timeout`] if the result is not there by then (the task is
    /// abandoned).
    pub fn get_timeout(mut self, d: Duration) -> Result<R> {
        self.get_until(Some(Instant::now() + d))
    }

    fn get_until(&mut self, deadline: Option<Instant>) -> Result<R> {
        let job = self.job.as_mut().expect("a result is taken once");
        loop {
            if let Some((t, outcome)) = job.fetch(self.pool)?.into_iter().next() {
                let r = outcome
                    .and_then(|b| decode::<R>(&b, t, job.name))
                    .and_then(|mut v| v.pop().ok_or_else(|| length_mismatch(t, job.name, 0, 1)));
                let job = self.job.take().expect("checked above");
                self.pool.finish(job);
                return r;
            }
            if let Some(d) = deadline
                && Instant::now() >= d
            {
                return Err(Error::Timeout { limit: d.saturating_duration_since(job.started), done: 0, total: 1 });
            }
        }
    }
}

impl<R> Drop for ClusterResult<'_, R> {
    fn drop(&mut self) {
        if let Some(job) = self.job.take() {
            self.pool.cleanup(&job);
        }
    }
}
