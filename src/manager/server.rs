//! The Manager's server process: a thread per client connection over one shared map.

use std::collections::HashMap;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::manager::proto::{self, KEY_LEN};
use crate::sys;

type Store = Arc<Mutex<HashMap<String, Vec<u8>>>>;

/// Runs in the forked server process; never returns.
pub(crate) fn run(listener: sys::Registered<UnixListener>, key: [u8; KEY_LEN], owner: i32, dir: PathBuf) -> i32 {
    // The server is forked without the parent-death signal: it outlives a SIGKILLed owner just
    // long enough to remove its socket directory, watching the owner's pidfd (or, if the owner
    // is already gone, noticing that its parent changed).
    let watch_dir = dir.clone();
    match sys::PidFd::open(owner).ok().filter(|_| sys::parent_pid() == owner) {
        Some(fd) => {
            std::thread::spawn(move || {
                let _ = sys::wait_readable(&[fd.as_raw_fd()], None);
                let _ = std::fs::remove_dir_all(&watch_dir);
                sys::exit_now(0);
            });
        }
        None => {
            std::thread::spawn(move || {
                while sys::parent_pid() == owner {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                let _ = std::fs::remove_dir_all(&watch_dir);
                sys::exit_now(0);
            });
        }
    }
    let store: Store = Arc::default();
    for conn in listener.get().incoming() {
        // Registered like every mproc socket (if the registry is full, the client is refused).
        let Ok(conn) = conn.map_err(crate::Error::Io).and_then(sys::Registered::new) else { continue };
        let store = store.clone();
        std::thread::spawn(move || serve(conn, key, store));
    }
    0
}

fn serve(mut conn: sys::Registered<UnixStream>, key: [u8; KEY_LEN], store: Store) {
    let conn = conn.get_mut();
    let mut got = [0u8; KEY_LEN];
    if conn.read_exact(&mut got).is_err() || !proto::same_key(&got, &key) {
        return; // wrong key: close without a word
    }
    if proto::write_response(conn, proto::OK, &[]).is_err() {
        return;
    }
    while let Ok((op, name, value)) = proto::read_request(conn) {
        let (status, reply) = {
            let mut map = store.lock().unwrap_or_else(|p| p.into_inner());
            match op {
                proto::GET => match map.get(&name) {
                    Some(v) => (proto::OK, v.clone()),
                    None => (proto::MISSING, Vec::new()),
                },
                proto::SET => {
                    map.insert(name, value);
                    (proto::OK, Vec::new())
                }
                proto::INCR => {
                    let by = value.get(..8).map_or(1, |b| i64::from_le_bytes(b.try_into().expect("8 bytes")));
                    let cur = map
                        .get(&name)
                        .and_then(|v| v.get(..8))
                        .map_or(0, |b| i64::from_le_bytes(b.try_into().expect("8 bytes")));
                    let next = cur.wrapping_add(by).to_le_bytes().to_vec();
                    map.insert(name, next.clone());
                    (proto::OK, next)
                }
                _ => (proto::BAD, b"unknown operation".to_vec()),
            }
        };
        if proto::write_response(conn, status, &reply).is_err() {
            return;
        }
    }
}
