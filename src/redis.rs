//! Redis-backed [`RedisFlag`] and [`RedisCounter`] (feature `redis`): the book's Redis variants.
//!
//! Each process opens its own connection on first use (a socket is never shared across fork).
//! An unreachable server is an [`Error::Backend`] naming the URL and how to start one — never a
//! panic or a hang (connections time out after 2 s, commands after 10 s).

use std::sync::Mutex;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::flag::EarlyExit;
use crate::sys;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// One Redis connection per process, opened lazily.
struct PerProcess {
    url: String,
    client: redis::Client,
    conn: Mutex<Option<(i32, redis::Connection)>>,
}

impl PerProcess {
    fn new(url: &str) -> Result<PerProcess> {
        let client = redis::Client::open(url).map_err(|e| fail(url, format!("not a Redis URL: {e}")))?;
        Ok(PerProcess { url: url.to_owned(), client, conn: Mutex::new(None) })
    }

    fn run<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T> {
        let me = sys::current_pid();
        let mut guard = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        if guard.as_ref().is_none_or(|(pid, _)| *pid != me) {
            let c = self.client.get_connection_with_timeout(CONNECT_TIMEOUT).map_err(|e| unreachable(&self.url, &e))?;
            c.set_read_timeout(Some(IO_TIMEOUT))
                .and_then(|()| c.set_write_timeout(Some(IO_TIMEOUT)))
                .map_err(|e| fail(&self.url, e.to_string()))?;
            *guard = Some((me, c));
        }
        let conn = &mut guard.as_mut().expect("connected above").1;
        cmd.query(conn).map_err(|e| {
            *guard = None;
            fail(&self.url, e.to_string())
        })
    }
}

fn fail(url: &str, message: String) -> Error {
    Error::Backend { backend: "redis", target: url.to_owned(), message }
}

fn unreachable(url: &str, e: &redis::RedisError) -> Error {
    fail(
        url,
        format!(
            "cannot connect ({e}); start a server, e.g. `redis-server --port 6379 --save ''` \
             (Debian: apt-get install redis-server), or pass another --redis-url"
        ),
    )
}

/// The early-exit flag as a Redis key (the book's Redis way): `"1"` when set.
///
/// ```no_run
/// use mproc::EarlyExit;
/// let flag = mproc::RedisFlag::new("redis://127.0.0.1:6379/", "found")?;
/// flag.set()?;
/// assert!(flag.is_set()?);
/// # Ok::<(), mproc::Error>(())
/// ```
pub struct RedisFlag {
    conn: PerProcess,
    key: String,
}

impl std::fmt::Debug for RedisFlag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisFlag").field("url", &self.conn.url).field("key", &self.key).finish()
    }
}

impl RedisFlag {
    /// Connects to `url` (failing now, clearly, if it cannot) and lowers the flag `key`.
    pub fn new(url: &str, key: &str) -> Result<RedisFlag> {
        let f = RedisFlag { conn: PerProcess::new(url)?, key: key.to_owned() };
        EarlyExit::clear(&f)?;
        Ok(f)
    }
}

impl EarlyExit for RedisFlag {
    fn set(&self) -> Result<()> {
        self.conn.run(redis::cmd("SET").arg(&self.key).arg("1"))
    }
    fn is_set(&self) -> Result<bool> {
        Ok(self.conn.run::<Option<String>>(redis::cmd("GET").arg(&self.key))?.as_deref() == Some("1"))
    }
    fn clear(&self) -> Result<()> {
        self.conn.run(redis::cmd("SET").arg(&self.key).arg("0"))
    }
}

/// A counter in Redis, incremented atomically by the server (`INCR`): the book's Redis counter.
pub struct RedisCounter {
    conn: PerProcess,
    key: String,
}

impl std::fmt::Debug for RedisCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCounter").field("url", &self.conn.url).field("key", &self.key).finish()
    }
}

impl RedisCounter {
    /// Connects to `url` and sets the counter `key` to 0.
    pub fn new(url: &str, key: &str) -> Result<RedisCounter> {
        let c = RedisCounter { conn: PerProcess::new(url)?, key: key.to_owned() };
        c.conn.run::<()>(redis::cmd("SET").arg(&c.key).arg(0))?;
        Ok(c)
    }

    /// Adds 1; returns the new count.
    pub fn incr(&self) -> Result<i64> {
        self.conn.run(redis::cmd("INCR").arg(&self.key))
    }

    /// The current count.
    pub fn get(&self) -> Result<i64> {
        Ok(self.conn.run::<Option<i64>>(redis::cmd("GET").arg(&self.key))?.unwrap_or(0))
    }
}
