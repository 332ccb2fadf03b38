//! [`Pipe`]: two connected [`Connection`]s, like Python's `multiprocessing.Pipe()`, over two
//! shared-memory [`Queue`]s of byte messages (one per direction) instead of a socket pair. A
//! message's bytes go into a slot as they are, with no encoding around them (as a serde
//! `Vec<u8>` they were written and read one byte at a time: 1 MiB took milliseconds).
//!
//! An end belongs to the first process that uses it (sends, receives or polls). When that
//! process drops its end, or dies, the other end's `recv` returns [`Error::Disconnected`] once
//! the messages already sent are read — end of file. A death is noticed within
//! [`DEATH_CHECK`]: a receiver with nothing to read sleeps on the queue's futex in slices of that
//! length and checks the peer's pid between them (a pidfd per end would cost a descriptor each,
//! which is what this design avoids). A sender asks the kernel whether its peer lives (a system
//! call) only on its first message, then every 64th or once [`DEATH_CHECK`] has passed (read on
//! the coarse clock), and whenever the pipe is full; a peer found dead is marked closed for both
//! ends. The slow paths (nothing to read, no room) read `/proc`, so that a killed peer not yet
//! reaped (a zombie) counts as dead too. A message already waiting, or room to send, costs no
//! clock read and no system call: an 8-byte round trip is ~0.4 µs here (it was ~1.6 µs with
//! the kernel asked on every send).

use std::fmt;
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::queue::{PutError, Queue};
use crate::shm::{ShmBox, ShmSafe};
use crate::sys;

/// How often a waiting receiver checks that its peer is still alive.
pub(crate) const DEATH_CHECK: Duration = Duration::from_millis(20);

/// Who holds each end.
#[repr(C)]
struct Ends {
    /// Pid of each end's owner (0: not used yet).
    owner: [AtomicI32; 2],
    /// Whether each end was dropped by its owner.
    closed: [AtomicU32; 2],
}

// SAFETY: atomics only (every bit pattern valid); no pointers; no Drop.
unsafe impl ShmSafe for Ends {}

/// Builds a [`Pipe`].
#[derive(Debug, Clone)]
#[must_use]
pub struct Pipe {
    duplex: bool,
    capacity: usize,
    max_message_bytes: usize,
}

impl Default for Pipe {
    fn default() -> Self {
        Pipe { duplex: true, capacity: 64, max_message_bytes: 1 << 20 }
    }
}

impl Pipe {
    /// A duplex pipe with the defaults (64 messages in flight each way, 1 MiB each). Returns the
    /// two ends, as Python's `Pipe()` does (hence a `new` that does not return a `Pipe`).
    #[allow(clippy::new_ret_no_self)]
    pub fn new() -> Result<(Connection, Connection)> {
        Pipe::default().build()
    }

    /// Options: `duplex`, `capacity`, `max_message_bytes`.
    pub fn builder() -> Pipe {
        Pipe::default()
    }

    /// `false`: the first connection only receives and the second only sends (Python's
    /// `Pipe(duplex=False)`).
    pub fn duplex(mut self, yes: bool) -> Self {
        self.duplex = yes;
        self
    }

    /// Messages in flight in each direction before `send` waits.
    pub fn capacity(mut self, n: usize) -> Self {
        self.capacity = n;
        self
    }

    /// Largest message (encoded) in bytes.
    pub fn max_message_bytes(mut self, n: usize) -> Self {
        self.max_message_bytes = n;
        self
    }

    /// Creates the two ends. Create them before forking.
    pub fn build(self) -> Result<(Connection, Connection)> {
        let ends = ShmBox::new(Ends {
            owner: [AtomicI32::new(0), AtomicI32::new(0)],
            closed: [AtomicU32::new(0), AtomicU32::new(0)],
        })?;
        // Raw byte messages (`Queue::put_bytes`): a slot holds exactly the largest message.
        let q = || Queue::<Vec<u8>>::with_max_item_bytes(self.capacity, self.max_message_bytes);
        let to_1 = q()?; // end 0 sends, end 1 receives
        let to_0 = if self.duplex { Some(q()?) } else { None };
        let max = self.max_message_bytes;
        let a_rx = to_0.clone().unwrap_or_else(|| to_1.clone());
        let a_tx = self.duplex.then(|| to_1.clone());
        let b_rx = self.duplex.then(|| to_1.clone());
        let a = Connection::new(ends.clone(), 0, Some(a_rx), a_tx, max);
        let b = Connection::new(ends, 1, b_rx, Some(to_0.unwrap_or(to_1)), max);
        Ok((a, b))
    }
}

/// One end of a [`Pipe`].
///
/// # Example: a child answers on the other end
/// ```
/// let (parent, child) = mproc::Pipe::new()?;
/// let mut p = mproc::Process::spawn(move || -> mproc::Result<()> {
///     let n: u64 = child.recv()?;
///     child.send(&(n * 2))?;
///     Ok(())
/// })?;
/// parent.send(&21u64)?;
/// assert_eq!(parent.recv::<u64>()?, 42);
/// assert!(p.join()?.success());
/// // The child's end was dropped when it exited: end of file.
/// assert!(matches!(parent.recv::<u64>(), Err(mproc::Error::Disconnected)));
/// # Ok::<(), mproc::Error>(())
/// ```
pub struct Connection {
    ends: ShmBox<Ends>,
    me: usize,
    rx: Option<Queue<Vec<u8>>>,
    tx: Option<Queue<Vec<u8>>>,
    /// [`Pipe::max_message_bytes`] (the slots may hold a little more: they are whole words).
    max: usize,
    /// Messages sent through this handle (every 64th asks the kernel whether the peer lives).
    sends: AtomicU32,
    /// [`sys::coarse_ns`] when a send last asked.
    asked_at: AtomicU64,
}

/// How [`Connection::peer_gone`] asks the kernel whether the peer's owner lives.
#[derive(Clone, Copy)]
enum Ask {
    No,
    Alive,
    Running,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("end", &self.me)
            .field("readable", &self.rx.is_some())
            .field("writable", &self.tx.is_some())
            .finish()
    }
}

impl Connection {
    fn new(ends: ShmBox<Ends>, me: usize, rx: Option<Queue<Vec<u8>>>, tx: Option<Queue<Vec<u8>>>, max: usize) -> Self {
        Connection { ends, me, rx, tx, max, sends: AtomicU32::new(0), asked_at: AtomicU64::new(0) }
    }

    /// Claims this end for the calling process on first use. (A load first: a compare-exchange
    /// on every message would take the line that both ends' owners share away from the other
    /// process each time.)
    fn claim(&self) -> Result<()> {
        let me = sys::current_pid();
        if self.ends.owner[self.me].load(Ordering::Acquire) == me {
            return Ok(());
        }
        match self.ends.owner[self.me].compare_exchange(0, me, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => Ok(()),
            Err(owner) if owner == me => Ok(()),
            Err(owner) => Err(Error::Misuse(format!(
                "this end of the pipe belongs to process {owner}: each end is used by one process (send the other end to the other process)"
            ))),
        }
    }

    /// Whether the other end is gone: dropped by its owner, or its owner died, which the kernel
    /// is asked only as `ask` says: [`Ask::No`]; [`Ask::Alive`], `kill(pid, 0)`, a system call
    /// that sees a killed peer not yet reaped (a zombie) as alive; [`Ask::Running`], which reads
    /// `/proc` and sees a zombie as dead (for the slow paths: one that waits for a peer its
    /// owner has not reaped yet would otherwise wait for ever).
    fn peer_gone(&self, ask: Ask) -> bool {
        let peer = 1 - self.me;
        if self.ends.closed[peer].load(Ordering::Acquire) != 0 {
            return true;
        }
        let owner = self.ends.owner[peer].load(Ordering::Acquire);
        let dead = owner != 0
            && match ask {
                Ask::No => false,
                Ask::Alive => !sys::pid_alive(owner),
                Ask::Running => !sys::pid_running(owner),
            };
        if dead {
            // Closed on its behalf: every later call sees it without asking the kernel again.
            self.ends.closed[peer].store(1, Ordering::Release);
        }
        dead
    }

    /// Sends `bytes` as one message.
    ///
    /// A peer that dropped its end is noticed at once; one that died without dropping it is
    /// asked after (a system call) on the first send, then every 64th or once 20 ms
    /// has passed since the last time, and whenever the pipe is full: a few messages may go to
    /// a dead peer before [`Error::Disconnected`].
    pub fn send_bytes(&self, bytes: &[u8]) -> Result<()> {
        self.claim()?;
        let tx = self.tx.as_ref().ok_or_else(|| Error::Misuse("this end of a one-way pipe only receives".into()))?;
        if bytes.len() > self.max {
            return Err(Error::MessageTooLarge { what: "pipe message", task: 0, size: bytes.len(), limit: self.max });
        }
        let n = self.sends.fetch_add(1, Ordering::Relaxed);
        let now = sys::coarse_ns();
        let ask = n.is_multiple_of(64)
            || now.saturating_sub(self.asked_at.load(Ordering::Relaxed)) > DEATH_CHECK.as_nanos() as u64;
        if ask {
            self.asked_at.store(now, Ordering::Relaxed);
        }
        if self.peer_gone(if ask { Ask::Alive } else { Ask::No }) {
            return Err(Error::Disconnected);
        }
        match tx.put_bytes(bytes, None, false) {
            Ok(()) => return Ok(()),
            Err(PutError::Full(())) => {}
            Err(e) => return Err(e.into()),
        }
        loop {
            if self.peer_gone(Ask::Running) {
                return Err(Error::Disconnected);
            }
            match tx.put_bytes(bytes, Some(Instant::now() + DEATH_CHECK), true) {
                Ok(()) => return Ok(()),
                Err(PutError::Timeout(())) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Sends `value` (serde/postcard) as one message.
    pub fn send<T: Serialize>(&self, value: &T) -> Result<()> {
        let bytes = postcard::to_allocvec(value).map_err(|e| Error::Encode {
            what: "message",
            task: 0,
            message: e.to_string(),
        })?;
        self.send_bytes(&bytes)
    }

    fn recv_until(&self, deadline: Option<Instant>) -> Result<Vec<u8>> {
        self.claim()?;
        let rx = self.rx.as_ref().ok_or_else(|| Error::Misuse("this end of a one-way pipe only sends".into()))?;
        // A message already there is taken without reading the clock.
        match rx.get_bytes(None, false) {
            Err(Error::WouldBlock) => {}
            r => return r,
        }
        loop {
            let slice = match deadline {
                None => DEATH_CHECK,
                Some(d) => d.saturating_duration_since(Instant::now()).min(DEATH_CHECK),
            };
            match rx.get_bytes(Some(Instant::now() + slice), true) {
                Ok(m) => return Ok(m),
                Err(Error::Timeout) => {}
                Err(e) => return Err(e),
            }
            // Nothing came: end of file if the peer is gone (and nothing is left to read).
            if self.peer_gone(Ask::Running) && rx.is_empty() {
                return Err(Error::Disconnected);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(Error::Timeout);
            }
        }
    }

    /// Waits for a message and returns its bytes; [`Error::Disconnected`] at end of file.
    pub fn recv_bytes(&self) -> Result<Vec<u8>> {
        self.recv_until(None)
    }

    /// Waits for a message and decodes it.
    pub fn recv<T: DeserializeOwned>(&self) -> Result<T> {
        let b = self.recv_bytes()?;
        postcard::from_bytes(&b).map_err(|e| Error::Decode { what: "message", task: 0, message: e.to_string() })
    }

    /// Like [`Connection::recv`], for at most `timeout` ([`Error::Timeout`] then).
    pub fn recv_timeout<T: DeserializeOwned>(&self, timeout: Duration) -> Result<T> {
        let b = self.recv_until(Some(Instant::now() + timeout))?;
        postcard::from_bytes(&b).map_err(|e| Error::Decode { what: "message", task: 0, message: e.to_string() })
    }

    /// Whether a message can be read now, waiting at most `timeout` for one (Python's `poll`);
    /// `true` also at end of file, where `recv` returns at once.
    pub fn poll(&self, timeout: Duration) -> Result<bool> {
        self.claim()?;
        let rx = self.rx.as_ref().ok_or_else(|| Error::Misuse("this end of a one-way pipe only sends".into()))?;
        let deadline = Instant::now() + timeout;
        loop {
            if !rx.is_empty() || self.peer_gone(Ask::Running) {
                return Ok(true);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(false);
            }
            std::thread::sleep(left.min(Duration::from_micros(200)));
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        // Only the owner closes its end: a forked copy that never used it leaves it alone.
        if self.ends.owner[self.me].load(Ordering::Acquire) == sys::current_pid() {
            self.ends.closed[self.me].store(1, Ordering::Release);
        }
    }
}
