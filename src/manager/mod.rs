//! [`Manager`]: a server process holding named values, reached over a Unix socket — the way
//! Python's `multiprocessing.Manager()` shares state — and [`ManagerFlag`], the early-exit flag
//! kept there.
//!
//! The server is forked from the owner. Its socket lives in a fresh private directory (mode
//! 0700) and every connection must first present the manager's random 32-byte key, which never
//! touches the disk (clients get it by inheriting the `Manager`'s memory through fork). Each
//! process opens its own connection on first use; a connection is never shared across fork.
//! Dropping the `Manager` stops the server and removes the directory; if the owner dies instead,
//! the server notices (it watches the owner's pidfd), removes the directory and exits.
//!
//! Every `get`/`set` is a round trip through the kernel and the server (~20–50 µs here), so a
//! Manager-backed flag must be polled sparingly: see [`crate::flag::poll_interval`].

mod proto;
mod server;

use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::flag::EarlyExit;
use crate::process::{Process, fork_policy};
use crate::sys;

use self::proto::KEY_LEN;

/// Where a manager listens, and the key it asks for.
struct Address {
    socket: PathBuf,
    key: [u8; KEY_LEN],
}

/// A running manager server: a forked process holding named values, reached over a Unix socket
/// in a private directory with a random key. Each process opens its own connection on first use;
/// dropping the `Manager` stops the server and removes the directory, and if the owner dies the
/// server notices, cleans up and exits. Every get or set is a round trip (~20–150 µs here).
///
/// # Example
/// ```
/// use mproc::{EarlyExit, Manager, Process};
///
/// let manager = Manager::start()?;
/// let flag = manager.flag("found")?;
/// let mut child = Process::spawn(|| flag.set())?; // the child connects on its own
/// child.join()?;
/// assert!(flag.is_set()?);
/// # Ok::<(), mproc::Error>(())
/// ```
#[must_use = "dropping the Manager stops its server"]
pub struct Manager {
    addr: Arc<Address>,
    dir: PathBuf,
    creator: i32,
    server: Option<Process>,
}

impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manager").field("socket", &self.addr.socket).field("server_pid", &self.server_pid()).finish()
    }
}

impl Manager {
    /// Forks the server and waits until it listens.
    pub fn start() -> Result<Manager> {
        let mut key = [0u8; KEY_LEN];
        sys::random_bytes(&mut key)?;
        let mut tag = [0u8; 6];
        sys::random_bytes(&mut tag)?;
        let hex: String = tag.iter().map(|b| format!("{b:02x}")).collect();
        let dir = std::env::temp_dir().join(format!("mproc-manager-{}-{hex}", sys::current_pid()));
        std::fs::DirBuilder::new().mode(0o700).create(&dir).map_err(|e| {
            Error::Io(std::io::Error::new(e.kind(), format!("cannot create manager directory {}: {e}", dir.display())))
        })?;
        let socket = dir.join("socket");
        // Bound before the fork: clients can connect as soon as `start` returns. Registered, so
        // other children close it; the server keeps it (`keep_fds`). The parent's copy is closed
        // when the closure that owns it is dropped here after the fork.
        let listener = match UnixListener::bind(&socket).map_err(Error::Io).and_then(sys::Registered::new) {
            Ok(l) => l,
            Err(Error::Io(e)) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(Error::Io(std::io::Error::new(
                    e.kind(),
                    format!("cannot listen on {}: {e}", socket.display()),
                )));
            }
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e);
            }
        };
        let listener_fd = listener.as_raw_fd();
        let owner = sys::current_pid();
        let server_dir = dir.clone();
        let spawned = Process::builder()
            .fork_policy(fork_policy())
            .die_with_parent(false)
            .keep_fds(vec![listener_fd])
            .spawn(move || server::run(listener, key, owner, server_dir));
        let server = match spawned {
            Ok(p) => p,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e);
            }
        };
        Ok(Manager { addr: Arc::new(Address { socket, key }), dir, creator: owner, server: Some(server) })
    }

    /// The server's pid.
    pub fn server_pid(&self) -> Option<i32> {
        self.server.as_ref().map(Process::pid)
    }

    /// The socket path (in a private directory).
    pub fn socket(&self) -> &Path {
        &self.addr.socket
    }

    /// A client for raw `get`/`set`/`incr` on named values.
    pub fn client(&self) -> ManagerClient {
        ManagerClient { addr: self.addr.clone(), conn: Mutex::new(None) }
    }

    /// An early-exit flag kept in the manager under `name`, lowered now.
    pub fn flag(&self, name: &str) -> Result<ManagerFlag> {
        let f = ManagerFlag { client: self.client(), name: name.to_owned() };
        f.client.set(name, b"0")?;
        Ok(f)
    }
}

impl Drop for Manager {
    fn drop(&mut self) {
        if sys::current_pid() == self.creator {
            drop(self.server.take()); // kills and reaps the server
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// One process's connection, tagged with the pid that opened it. Registered: a forked child
/// closes its inherited copy at once, and dropping the copy there closes nothing.
struct Conn {
    pid: i32,
    stream: sys::Registered<UnixStream>,
}

/// Talks to a [`Manager`]. Opens its connection on first use in each process (after a fork the
/// child opens its own).
pub struct ManagerClient {
    addr: Arc<Address>,
    conn: Mutex<Option<Conn>>,
}

impl Clone for ManagerClient {
    fn clone(&self) -> Self {
        ManagerClient { addr: self.addr.clone(), conn: Mutex::new(None) }
    }
}

impl std::fmt::Debug for ManagerClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManagerClient").field("socket", &self.addr.socket).finish_non_exhaustive()
    }
}

impl ManagerClient {
    fn fail(&self, message: String) -> Error {
        Error::Backend { backend: "manager", target: self.addr.socket.display().to_string(), message }
    }

    fn connect(&self) -> Result<UnixStream> {
        let mut s = UnixStream::connect(&self.addr.socket)
            .map_err(|e| self.fail(format!("cannot connect ({e}); is the manager still running?")))?;
        let timeout = Some(Duration::from_secs(10));
        s.set_read_timeout(timeout)
            .and_then(|()| s.set_write_timeout(timeout))
            .map_err(|e| self.fail(e.to_string()))?;
        use std::io::Write;
        s.write_all(&self.addr.key).map_err(|e| self.fail(format!("handshake: {e}")))?;
        let mut ok = [0u8; 5];
        s.read_exact(&mut ok).map_err(|e| self.fail(format!("handshake refused: {e}")))?;
        Ok(s)
    }

    fn call(&self, op: u8, name: &str, value: &[u8]) -> Result<(u8, Vec<u8>)> {
        if name.len() > proto::MAX_NAME || value.len() > proto::MAX_VALUE {
            return Err(Error::InvalidArgument(format!(
                "manager name or value too long ({} / {} bytes)",
                name.len(),
                value.len()
            )));
        }
        let me = sys::current_pid();
        let mut guard = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        if guard.as_ref().is_none_or(|c| c.pid != me) {
            *guard = Some(Conn { pid: me, stream: sys::Registered::new(self.connect()?)? });
        }
        let stream = guard.as_mut().expect("connected above").stream.get_mut();
        let r = proto::write_request(stream, op, name, value).and_then(|()| proto::read_response(stream));
        match r {
            Ok((proto::BAD, msg)) => Err(self.fail(String::from_utf8_lossy(&msg).into_owned())),
            Ok(ok) => Ok(ok),
            Err(e) => {
                *guard = None;
                Err(self.fail(format!("request failed: {e}")))
            }
        }
    }

    /// The value stored under `name`, if any.
    pub fn get(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let (status, v) = self.call(proto::GET, name, &[])?;
        Ok((status == proto::OK).then_some(v))
    }

    /// Stores `value` under `name`.
    pub fn set(&self, name: &str, value: &[u8]) -> Result<()> {
        self.call(proto::SET, name, value).map(|_| ())
    }

    /// Adds `by` to the integer under `name` (0 if absent) atomically; returns the new value.
    pub fn incr(&self, name: &str, by: i64) -> Result<i64> {
        let (_, v) = self.call(proto::INCR, name, &by.to_le_bytes())?;
        Ok(v.get(..8).map_or(0, |b| i64::from_le_bytes(b.try_into().expect("8 bytes"))))
    }
}

/// The early-exit flag kept in a [`Manager`] (the book's Manager way): `"1"` when set.
#[derive(Debug, Clone)]
pub struct ManagerFlag {
    client: ManagerClient,
    name: String,
}

impl EarlyExit for ManagerFlag {
    fn set(&self) -> Result<()> {
        self.client.set(&self.name, b"1")
    }
    fn is_set(&self) -> Result<bool> {
        Ok(self.client.get(&self.name)?.as_deref() == Some(b"1"))
    }
    fn clear(&self) -> Result<()> {
        self.client.set(&self.name, b"0")
    }
}
