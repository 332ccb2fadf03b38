//! Forked children close the descriptors mproc opened in the parent (pidfds, eventfds, Manager
//! sockets) and keep only the ones they are handed (`keep_fds`).

mod common;

use std::time::Duration;

use mproc::{Manager, Pool, Process, RawArray};

/// Counts of this process's open descriptors by kind: (eventfds, pidfds, sockets).
fn count_fds() -> (u32, u32, u32) {
    let mut n = (0, 0, 0);
    for e in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        let Ok(target) = std::fs::read_link(e.path()) else { continue };
        let t = target.to_string_lossy();
        if t.contains("[eventfd]") {
            n.0 += 1;
        } else if t.contains("[pidfd]") {
            n.1 += 1;
        } else if t.starts_with("socket:") {
            n.2 += 1;
        }
    }
    n
}

/// Regression (children_inherit_mproc_descriptors): a child used to keep every pidfd, eventfd and
/// Manager connection its parent held.
#[test]
fn a_child_closes_the_parents_pidfds_eventfds_and_manager_sockets() {
    common::run("fork_fds_closed", common::SECS(60), || {
        let before = count_fds();
        // The parent holds: a pool (an eventfd, and a pidfd per worker), a running Process (its
        // pidfd), and a Manager connection (a socket), all opened by mproc.
        let pool = Pool::builder().processes(1).build().unwrap();
        let mut sleeper = Process::spawn(|| std::thread::sleep(Duration::from_secs(30))).unwrap();
        let manager = Manager::start().unwrap();
        let client = manager.client();
        client.set("k", b"v").unwrap();
        let held = count_fds();
        assert!(held.0 > before.0 && held.1 > before.1 && held.2 > before.2, "{before:?} -> {held:?}");

        let seen = RawArray::<u32>::zeroed(3).unwrap();
        let mut child = Process::spawn(|| {
            let (e, p, s) = count_fds();
            seen.store(0, e);
            seen.store(1, p);
            seen.store(2, s);
            // The inherited connection is unusable here; the client opens its own.
            assert_eq!(client.get("k").unwrap().as_deref(), Some(&b"v"[..]));
        })
        .unwrap();
        assert!(child.join().unwrap().success());
        let inherited = (seen.load(0), seen.load(1), seen.load(2));
        assert_eq!(
            inherited,
            (before.0, before.1, before.2),
            "descriptors the child inherited (eventfd, pidfd, socket)"
        );

        sleeper.kill().unwrap();
        sleeper.join().unwrap();
        drop(pool);
        drop(manager);
    });
}

/// The other half: what a child is handed in `keep_fds` survives. A pool worker keeps its own
/// pool's wake-up eventfd, and nothing else of mproc's — not another pool's eventfd, not the
/// workers' pidfds.
#[test]
fn a_pool_worker_keeps_its_wake_eventfd_and_nothing_else() {
    common::run("fork_fds_kept", common::SECS(60), || {
        let before = count_fds();
        let other = Pool::builder().processes(1).build().unwrap();
        let pool = Pool::builder().processes(2).build().unwrap();
        let seen = pool.map(|_, _: u32| count_fds(), 0..8u32, Some(1)).unwrap();
        for s in seen {
            assert_eq!(s, (before.0 + 1, before.1, before.2), "a worker's (eventfd, pidfd, socket) descriptors");
        }
        drop((other, pool));
    });
}

/// The Manager server is a child handed its listening socket in `keep_fds`: if it were closed
/// like the other inherited descriptors, no client could connect.
#[test]
fn the_manager_server_keeps_its_listening_socket() {
    common::run("fork_fds_manager", common::SECS(60), || {
        let manager = Manager::start().unwrap();
        let c = manager.client();
        assert_eq!(c.incr("n", 2).unwrap(), 2);
        drop(manager);
    });
}
