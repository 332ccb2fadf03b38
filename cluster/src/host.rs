//! The worker side: [`WorkerHost`] forks worker processes that take chunks from the task stream,
//! and supervises them (keeps their claims alive, hands a dead one's chunks back, relays stops).
//!
//! # Why processes of our own, not a local Pool
//! Each worker process is a consumer of the group and pulls its own chunks, so a fast process
//! takes more and a chunk crosses one hop (Redis → the process) instead of two (Redis → a host
//! loop → a Pool ring). And the host must drain on Ctrl-C (let running chunks finish), where a
//! Pool call stops at once and kills its workers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mproc::{Flag, Process, RawValue};
use redis::streams::{StreamAutoClaimReply, StreamId, StreamPendingCountReply, StreamReadReply};

use crate::conn::{Conn, GROUP, Keys, Target, field_bytes, field_str, field_u64};
use crate::error::{Error, Result};
use crate::pool::JOB_TTL;
use crate::registry::{Registry, RunError, TaskCtx};

/// Set by SIGINT/SIGTERM: drain and exit. Each process has its own copy (fork copies it).
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop_signal(_: libc_int) {
    STOP.store(true, Ordering::SeqCst);
}

#[allow(non_camel_case_types)]
type libc_int = std::ffi::c_int;

fn install_stop_handlers() -> Result<()> {
    use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
    let sa = SigAction::new(SigHandler::Handler(on_stop_signal), SaFlags::SA_RESTART, SigSet::empty());
    for sig in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe; it replaces
        // the default disposition of a process that serves tasks until told to stop.
        unsafe { sigaction(sig, &sa) }
            .map_err(|e| Error::Local(mproc::Error::InvalidArgument(format!("cannot catch {sig}: {e}"))))?;
    }
    Ok(())
}

/// Options of a [`WorkerHost`].
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until serve()"]
pub struct WorkerHost {
    target: Target,
    queue: String,
    processes: usize,
    reclaim_after: Duration,
    prefetch: usize,
    drain: Duration,
    log: Option<fn(&str)>,
}

/// What a host did before it stopped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HostReport {
    /// Chunks run to the end by its processes.
    pub tasks: u64,
    /// Worker processes that died and were replaced.
    pub respawned: u64,
    /// Chunks handed back to the group (of dead processes, or not finished when draining ended).
    pub handed_back: u64,
}

/// One worker process's slot in shared memory: the job it runs and that job's flag here.
struct Row {
    job: RawValue<u64>,
    flag: Flag,
    tasks: RawValue<u64>,
}

impl WorkerHost {
    /// A host serving the queue on the Redis server at `url`, with one process per CPU.
    pub fn new(url: &str) -> WorkerHost {
        WorkerHost {
            target: Target {
                url: url.to_owned(),
                connect_timeout: Duration::from_secs(2),
                io_timeout: Duration::from_secs(5),
            },
            queue: "mproc".into(),
            processes: std::thread::available_parallelism().map_or(1, |n| n.get()),
            reclaim_after: Duration::from_secs(1),
            prefetch: 1,
            drain: Duration::from_secs(10),
            log: None,
        }
    }

    /// Worker processes on this host.
    pub fn processes(mut self, n: usize) -> Self {
        self.processes = n.max(1);
        self
    }

    /// The queue (key prefix) to serve (default `mproc`).
    pub fn queue(mut self, name: impl Into<String>) -> Self {
        self.queue = name.into();
        self
    }

    /// A chunk nobody has renewed for this long belongs to a dead host and is taken over
    /// (`XAUTOCLAIM`; default 1 s). Live hosts renew their running chunks three times as often.
    pub fn reclaim_after(mut self, d: Duration) -> Self {
        self.reclaim_after = d.max(Duration::from_millis(30));
        self
    }

    /// Chunks a process takes at once (default 1: work is pulled one chunk at a time, so fast
    /// processes take more; more saves round trips when chunks are tiny).
    pub fn prefetch(mut self, n: usize) -> Self {
        self.prefetch = n.max(1);
        self
    }

    /// After SIGINT/SIGTERM, how long running chunks may take to finish before they are handed
    /// back (default 10 s).
    pub fn drain(mut self, d: Duration) -> Self {
        self.drain = d;
        self
    }

    /// Where the host reports what it does (a process died, draining, ...): none by default.
    pub fn log(mut self, f: fn(&str)) -> Self {
        self.log = Some(f);
        self
    }

    fn say(&self, msg: &str) {
        if let Some(f) = self.log {
            f(msg);
        }
    }

    /// Serves `registry`'s tasks until SIGINT or SIGTERM (or an unrecoverable Redis error):
    /// forks the worker processes, then supervises them. On the signal it stops taking chunks,
    /// lets running ones finish (up to [`WorkerHost::drain`]), hands the rest back and returns.
    ///
    /// Call it from a single-threaded process (it forks).
    pub fn serve(self, registry: &Registry) -> Result<HostReport> {
        let keys = Keys { queue: self.queue.clone() };
        let mut conn = self.target.connect()?;
        conn.ensure_group(&keys)?;
        install_stop_handlers()?;
        STOP.store(false, Ordering::SeqCst);
        let rows: Vec<Row> = (0..self.processes)
            .map(|_| Ok(Row { job: RawValue::new(0)?, flag: Flag::new()?, tasks: RawValue::new(0)? }))
            .collect::<mproc::Result<_>>()?;
        let host = hostname();
        let me = std::process::id();
        let mut report = HostReport::default();
        let mut generation = 0u64;
        let spawn = |ix: usize, generation: &mut u64| -> Result<(Process, String)> {
            *generation += 1;
            let consumer = format!("{host}:{me}:{ix}.{generation}");
            let c = consumer.clone();
            let (rows, keys, cfg) = (&rows, &keys, &self);
            let p = Process::spawn(move || child_main(ix, &c, rows, registry, keys, cfg))?;
            Ok((p, consumer))
        };
        let mut children: Vec<Option<(Process, String)>> = Vec::new();
        for ix in 0..self.processes {
            children.push(Some(spawn(ix, &mut generation)?));
        }
        self.say(&format!(
            "worker host {host}: {} processes serving queue {:?} at {} ({} tasks: {})",
            self.processes,
            self.queue,
            self.target.url,
            registry.names().count(),
            registry.names().collect::<Vec<_>>().join(", ")
        ));
        let result =
            self.supervise(&mut conn, &keys, &rows, &mut children, &mut report, &mut |ix| spawn(ix, &mut generation));
        // Drain: children saw the signal too (or are told now); wait, then hand back the rest.
        let deadline = Instant::now() + self.drain;
        for (p, _) in children.iter().flatten() {
            let _ = p.terminate();
        }
        for (p, _) in children.iter_mut().flatten() {
            let left = deadline.saturating_duration_since(Instant::now());
            if p.join_timeout(left).is_err() {
                self.say(&format!("worker {} still running after the drain limit: killing it", p.pid()));
                let _ = p.kill();
                let _ = p.join();
            }
        }
        let mut tidy = || -> Result<()> {
            let mut c = self.target.connect()?;
            for (_, consumer) in children.iter().flatten() {
                report.handed_back += hand_back(&mut c, &keys, consumer, false)?;
                let _: i64 =
                    c.query(redis::cmd("XGROUP").arg("DELCONSUMER").arg(keys.tasks()).arg(GROUP).arg(consumer))?;
            }
            Ok(())
        };
        let tidied = if result.is_ok() { tidy() } else { Ok(()) };
        report.tasks = rows.iter().map(|r| r.tasks.load()).sum();
        result.and(tidied).map(|()| report)
    }

    /// The supervisor's loop: relays stops, renews claims, replaces dead processes.
    fn supervise(
        &self,
        conn: &mut Conn,
        keys: &Keys,
        rows: &[Row],
        children: &mut [Option<(Process, String)>],
        report: &mut HostReport,
        spawn: &mut dyn FnMut(usize) -> Result<(Process, String)>,
    ) -> Result<()> {
        let mut sub = self.target.connect()?;
        let mut ps = sub.conn.as_pubsub();
        ps.subscribe(keys.channel()).map_err(|e| self.target.fail(format!("cannot subscribe: {e}")))?;
        ps.set_read_timeout(Some(Duration::from_millis(50))).map_err(|e| self.target.fail(e.to_string()))?;
        let renew_every = self.reclaim_after / 3;
        let presence = keys.host(&format!("{}:{}", hostname(), std::process::id()));
        let presence_ttl = (renew_every * 3).max(Duration::from_secs(3)).as_millis() as u64;
        let _: () = conn.query(redis::cmd("SET").arg(&presence).arg(children.len()).arg("PX").arg(presence_ttl))?;
        let mut renewed = Instant::now();
        let mut dead: Vec<String> = Vec::new();
        while !STOP.load(Ordering::SeqCst) {
            match ps.get_message() {
                Ok(msg) => {
                    if let Ok(job) = msg.get_payload::<u64>() {
                        raise(rows, job);
                    }
                }
                Err(e) if e.is_timeout() => {}
                Err(_) if STOP.load(Ordering::SeqCst) => break,
                Err(e) => return Err(self.target.fail(format!("lost the stop channel ({e})"))),
            }
            for (ix, slot) in children.iter_mut().enumerate() {
                let Some((p, consumer)) = slot.as_mut() else { continue };
                if p.is_alive()? {
                    continue;
                }
                let status = p.exit_status().map_or_else(|| "ended".into(), |s| s.to_string());
                let (pid, consumer) = (p.pid(), consumer.clone());
                if STOP.load(Ordering::SeqCst) {
                    break;
                }
                let back = hand_back(conn, keys, &consumer, true)?;
                report.handed_back += back;
                report.respawned += 1;
                dead.push(consumer);
                self.say(&format!("worker {pid} {status}; {back} of its chunks handed back; starting another"));
                if status.contains("code 3") {
                    std::thread::sleep(Duration::from_millis(500)); // Redis trouble: do not spin
                }
                *slot = Some(spawn(ix)?);
            }
            if renewed.elapsed() >= renew_every {
                renewed = Instant::now();
                let _: () =
                    conn.query(redis::cmd("SET").arg(&presence).arg(children.len()).arg("PX").arg(presence_ttl))?;
                for (_, consumer) in children.iter().flatten() {
                    renew(conn, keys, consumer)?;
                }
                // Consumers of dead processes, once nothing is pending for them, go.
                for c in std::mem::take(&mut dead) {
                    let _: i64 =
                        conn.query(redis::cmd("XGROUP").arg("DELCONSUMER").arg(keys.tasks()).arg(GROUP).arg(&c))?;
                }
            }
        }
        self.say("worker host: stopping; running chunks may finish");
        let _: () = conn.query(redis::cmd("DEL").arg(&presence))?;
        Ok(())
    }
}

/// Sets the stop key (KEYS[2]) if the job's result stream (KEYS[1]) exists and the key does not.
const STOP_IF_LIVE: &str =
    "if redis.call('EXISTS', KEYS[1]) == 1 then return redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[1]) end";

/// Raises the flag of every process running a chunk of `job`.
fn raise(rows: &[Row], job: u64) {
    for r in rows {
        if r.job.load() == job {
            r.flag.set();
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map_or_else(|_| "host".into(), |s| s.trim().to_owned())
}

/// The ids and delivery counts of the chunks pending for `consumer`.
fn pending(conn: &mut Conn, keys: &Keys, consumer: &str) -> Result<Vec<(String, u64)>> {
    let r: StreamPendingCountReply =
        conn.query(redis::cmd("XPENDING").arg(keys.tasks()).arg(GROUP).arg("-").arg("+").arg(10_000).arg(consumer))?;
    Ok(r.ids.into_iter().map(|p| (p.id, p.times_delivered as u64)).collect())
}

/// Renews `consumer`'s claim on its running chunks (XCLAIM JUSTID: the idle time is reset, the
/// delivery count is not raised), so that a long chunk is not taken for a dead one.
fn renew(conn: &mut Conn, keys: &Keys, consumer: &str) -> Result<()> {
    let ids: Vec<String> = pending(conn, keys, consumer)?.into_iter().map(|(id, _)| id).collect();
    if !ids.is_empty() {
        let _: Vec<String> =
            conn.query(redis::cmd("XCLAIM").arg(keys.tasks()).arg(GROUP).arg(consumer).arg(0).arg(&ids).arg("JUSTID"))?;
    }
    Ok(())
}

/// Puts `consumer`'s pending chunks back on the stream at once, as new entries (a copy, then
/// the original acknowledged and deleted, in one transaction). With `counted`, the deliveries
/// they had count towards the task's limit (their process died); without, the last does not.
fn hand_back(conn: &mut Conn, keys: &Keys, consumer: &str, counted: bool) -> Result<u64> {
    let mut n = 0;
    for (id, delivered) in pending(conn, keys, consumer)? {
        let entries: redis::streams::StreamRangeReply =
            conn.query(redis::cmd("XRANGE").arg(keys.tasks()).arg(&id).arg(&id))?;
        let mut p = redis::pipe();
        p.atomic();
        if let Some(e) = entries.ids.first() {
            let before = field_u64(&e.map, "h").unwrap_or(0);
            let h = before + delivered - u64::from(!counted).min(delivered);
            let x = p.cmd("XADD").arg(keys.tasks()).arg("*");
            for f in ["j", "t", "n", "m", "a"] {
                x.arg(f).arg(field_bytes(&e.map, f));
            }
            x.arg("h").arg(h).ignore();
            n += 1;
        }
        p.cmd("XACK").arg(keys.tasks()).arg(GROUP).arg(&id).ignore();
        p.cmd("XDEL").arg(keys.tasks()).arg(&id).ignore();
        conn.pipe::<()>(&p)?;
    }
    Ok(n)
}

/// A worker process: takes chunks, runs them, posts results. Exit code 3: Redis trouble.
fn child_main(ix: usize, consumer: &str, rows: &[Row], registry: &Registry, keys: &Keys, cfg: &WorkerHost) -> i32 {
    let mut conn = match cfg.target.connect() {
        Ok(c) => c,
        Err(e) => {
            cfg.say(&format!("worker {}: {e}", std::process::id()));
            return 3;
        }
    };
    let mut w = Worker { ix, consumer, rows, registry, keys, cfg, live: HashMap::new(), cursor: "0-0".into() };
    let mut next_reclaim = Instant::now();
    while !STOP.load(Ordering::SeqCst) {
        let r = (|| -> Result<()> {
            let mut batch = Vec::new();
            if Instant::now() >= next_reclaim {
                next_reclaim = Instant::now() + cfg.reclaim_after / 4;
                batch = w.reclaim(&mut conn)?;
            }
            if batch.is_empty() {
                batch = w.take(&mut conn)?;
            }
            for (e, delivered) in batch {
                w.handle(&mut conn, e, delivered)?;
            }
            Ok(())
        })();
        if let Err(e) = r {
            if STOP.load(Ordering::SeqCst) {
                break; // a read interrupted by the signal; what it took goes back with the host
            }
            cfg.say(&format!("worker {}: {e}", std::process::id()));
            return 3;
        }
    }
    0
}

struct Worker<'a> {
    ix: usize,
    consumer: &'a str,
    rows: &'a [Row],
    registry: &'a Registry,
    keys: &'a Keys,
    cfg: &'a WorkerHost,
    /// Jobs seen alive, and when.
    live: HashMap<u64, Instant>,
    cursor: String,
}

impl Worker<'_> {
    /// New chunks: up to `prefetch`, waiting at most 200 ms.
    fn take(&mut self, conn: &mut Conn) -> Result<Vec<(StreamId, u64)>> {
        let r: Option<StreamReadReply> = conn.query(
            redis::cmd("XREADGROUP")
                .arg("GROUP")
                .arg(GROUP)
                .arg(self.consumer)
                .arg("COUNT")
                .arg(self.cfg.prefetch)
                .arg("BLOCK")
                .arg(200)
                .arg("STREAMS")
                .arg(self.keys.tasks())
                .arg(">"),
        )?;
        Ok(r.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids).map(|e| (e, 1)).collect())
    }

    /// Chunks nobody renewed for the idle limit (their host is gone), with their delivery counts.
    fn reclaim(&mut self, conn: &mut Conn) -> Result<Vec<(StreamId, u64)>> {
        let r: StreamAutoClaimReply = conn.query(
            redis::cmd("XAUTOCLAIM")
                .arg(self.keys.tasks())
                .arg(GROUP)
                .arg(self.consumer)
                .arg(self.cfg.reclaim_after.as_millis() as u64)
                .arg(&self.cursor)
                .arg("COUNT")
                .arg(self.cfg.prefetch),
        )?;
        self.cursor = r.next_stream_id;
        let mut out = Vec::new();
        for e in r.claimed {
            let p: StreamPendingCountReply =
                conn.query(redis::cmd("XPENDING").arg(self.keys.tasks()).arg(GROUP).arg(&e.id).arg(&e.id).arg(1))?;
            let delivered = p.ids.first().map_or(1, |p| p.times_delivered as u64);
            out.push((e, delivered));
        }
        Ok(out)
    }

    fn handle(&mut self, conn: &mut Conn, e: StreamId, delivered: u64) -> Result<()> {
        let tasks = self.keys.tasks();
        let (Some(job), Some(t)) = (field_u64(&e.map, "j"), field_u64(&e.map, "t")) else {
            // Not ours (or damaged): drop it, so that it does not come round for ever.
            return drop_entry(conn, &tasks, &e.id);
        };
        let name = field_str(&e.map, "n");
        let results = self.keys.results(job);
        let stop = self.keys.stop(job);
        let row = &self.rows[self.ix];
        let max = field_u64(&e.map, "m").unwrap_or(3);
        let deliveries = delivered + field_u64(&e.map, "h").unwrap_or(0);
        let (status, data, count): (&str, Vec<u8>, u64) = if deliveries > max {
            ("killed", Vec::new(), deliveries - 1)
        } else {
            // The flag first, then the stop key: a stop published after this store is relayed
            // into the flag, one published before it is seen in the key.
            let fresh = row.job.swap(job) != job;
            if fresh {
                row.flag.clear();
            }
            if fresh || self.live.get(&job).is_none_or(|t| t.elapsed() > Duration::from_secs(1)) {
                let (alive, stopped): (bool, bool) =
                    conn.pipe(redis::pipe().cmd("EXISTS").arg(&results).cmd("EXISTS").arg(&stop))?;
                if !alive {
                    // The job ended (or its caller died): skip its chunks.
                    self.live.remove(&job);
                    return drop_entry(conn, &tasks, &e.id);
                }
                if self.live.len() > 1000 {
                    self.live.clear();
                }
                self.live.insert(job, Instant::now());
                if stopped {
                    row.flag.set();
                }
            }
            let ctx = TaskCtx { flag: &row.flag, job, task: t };
            match self.registry.run(&name, &ctx, &field_bytes(&e.map, "a")) {
                Ok(bytes) => ("ok", bytes, deliveries),
                Err(RunError::Unknown) => ("unknown", Vec::new(), 0),
                Err(RunError::Failed(m)) => ("err", m.into_bytes(), 0),
            }
        };
        // A task here stopped the job: tell the other processes here, then every other host
        // (once: the key is set only if it was not). Before the result is posted, so that the
        // caller, which deletes the key when the last result is in, cannot see the result first.
        if status == "ok" && row.flag.is_set() {
            raise(self.rows, job);
            // Only while the job lives: a chunk that saw the flag of a job its caller just
            // ended must not bring the key back.
            let first: Option<String> = conn.query(
                redis::cmd("EVAL").arg(STOP_IF_LIVE).arg(2).arg(&results).arg(&stop).arg(JOB_TTL.as_millis() as u64),
            )?;
            if first.is_some() {
                let _: i64 = conn.query(redis::cmd("PUBLISH").arg(self.keys.channel()).arg(job))?;
            }
        }
        let mut p = redis::pipe();
        p.atomic();
        p.cmd("XADD")
            .arg(&results)
            .arg("NOMKSTREAM")
            .arg("*")
            .arg("t")
            .arg(t)
            .arg("s")
            .arg(status)
            .arg("d")
            .arg(data)
            .arg("c")
            .arg(count)
            .ignore();
        p.cmd("XACK").arg(&tasks).arg(GROUP).arg(&e.id).ignore();
        p.cmd("XDEL").arg(&tasks).arg(&e.id).ignore();
        conn.pipe::<()>(&p)?;
        row.tasks.fetch_add(1);
        Ok(())
    }
}

/// Acknowledges and deletes a task entry that will never be run (not ours, or its job ended),
/// so that it does not come round again.
fn drop_entry(conn: &mut Conn, tasks: &str, id: &str) -> Result<()> {
    let _: () = conn.pipe(
        redis::pipe().cmd("XACK").arg(tasks).arg(GROUP).arg(id).ignore().cmd("XDEL").arg(tasks).arg(id).ignore(),
    )?;
    Ok(())
}
