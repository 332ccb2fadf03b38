//! One Redis connection with bounded waits, and the names of the keys a queue uses.
//!
//! Keys of queue `q` (default `mproc`):
//! - `q:tasks` — the task stream, consumer group `workers`; one entry per chunk, deleted once
//!   acknowledged. It and its group outlive jobs (they are the queue), nothing else does;
//! - `q:job:<id>` — a job's result stream, made by the caller and deleted when the job ends (a
//!   TTL, renewed while the caller waits, removes it if the caller dies);
//! - `q:job:<id>:stop` — the job's early-exit key; channel `q:stop` carries the job id when set;
//! - `q:host:<name>` — a live worker host's process count (TTL renewed; deleted when it stops).

use std::time::Duration;

use crate::error::{Error, Result};

/// Consumer group of the task stream.
pub(crate) const GROUP: &str = "workers";

/// The keys of one queue.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    pub queue: String,
}

impl Keys {
    pub fn tasks(&self) -> String {
        format!("{}:tasks", self.queue)
    }
    pub fn results(&self, job: u64) -> String {
        format!("{}:job:{job:016x}", self.queue)
    }
    pub fn stop(&self, job: u64) -> String {
        format!("{}:job:{job:016x}:stop", self.queue)
    }
    /// A worker host's presence key (its process count, with a short TTL it renews).
    pub fn host(&self, name: &str) -> String {
        format!("{}:host:{name}", self.queue)
    }
    pub fn channel(&self) -> String {
        format!("{}:stop", self.queue)
    }
}

/// Connection settings.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub url: String,
    pub connect_timeout: Duration,
    pub io_timeout: Duration,
}

impl Target {
    pub fn fail(&self, message: impl Into<String>) -> Error {
        Error::Redis { url: self.url.clone(), message: message.into() }
    }

    /// Opens a connection, failing within the connect timeout.
    pub fn connect(&self) -> Result<Conn> {
        let client = redis::Client::open(self.url.as_str())
            .map_err(|e| self.fail(format!("not a Redis URL ({e}); expected redis://HOST:PORT")))?;
        let c = client.get_connection_with_timeout(self.connect_timeout).map_err(|e| {
            self.fail(format!("cannot connect ({e}); is redis-server running there? (e.g. `redis-server --port 6379`)"))
        })?;
        c.set_read_timeout(Some(self.io_timeout))
            .and_then(|()| c.set_write_timeout(Some(self.io_timeout)))
            .map_err(|e| self.fail(e.to_string()))?;
        Ok(Conn { target: self.clone(), conn: c })
    }
}

/// A connection whose errors name the server.
pub(crate) struct Conn {
    pub target: Target,
    pub conn: redis::Connection,
}

impl Conn {
    pub fn query<T: redis::FromRedisValue>(&mut self, cmd: &redis::Cmd) -> Result<T> {
        cmd.query(&mut self.conn).map_err(|e| self.lost(&e))
    }

    pub fn pipe<T: redis::FromRedisValue>(&mut self, p: &redis::Pipeline) -> Result<T> {
        p.query(&mut self.conn).map_err(|e| self.lost(&e))
    }

    fn lost(&self, e: &redis::RedisError) -> Error {
        if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() {
            self.target.fail(format!("lost the connection ({e})"))
        } else {
            self.target.fail(e.to_string())
        }
    }

    /// Creates the task stream and its group if they are missing.
    pub fn ensure_group(&mut self, keys: &Keys) -> Result<()> {
        let r: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(keys.tasks())
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query(&mut self.conn);
        match r {
            Ok(()) => Ok(()),
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
            Err(e) => Err(self.lost(&e)),
        }
    }
}

/// A field of a stream entry as bytes (empty if missing).
pub(crate) fn field_bytes(map: &std::collections::HashMap<String, redis::Value>, k: &str) -> Vec<u8> {
    match map.get(k) {
        Some(redis::Value::BulkString(b)) => b.clone(),
        Some(redis::Value::SimpleString(s)) => s.clone().into_bytes(),
        _ => Vec::new(),
    }
}

/// A field of a stream entry as a number.
pub(crate) fn field_u64(map: &std::collections::HashMap<String, redis::Value>, k: &str) -> Option<u64> {
    std::str::from_utf8(&field_bytes(map, k)).ok()?.parse().ok()
}

/// A field of a stream entry as text.
pub(crate) fn field_str(map: &std::collections::HashMap<String, redis::Value>, k: &str) -> String {
    String::from_utf8_lossy(&field_bytes(map, k)).into_owned()
}
