//! Manager: values shared through a server process, authentication, cleanup.

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use mproc::{EarlyExit, Manager, Process};

#[test]
fn values_and_flags_are_shared_and_incr_loses_nothing() {
    common::run("manager_shared", common::SECS(60), || {
        let m = Manager::start().unwrap();
        let c = m.client();
        c.set("greeting", b"hello").unwrap();
        assert_eq!(c.get("greeting").unwrap().as_deref(), Some(&b"hello"[..]));
        assert_eq!(c.get("absent").unwrap(), None);
        let flag = m.flag("stop").unwrap();
        let procs: Vec<_> = (0..4)
            .map(|_| {
                Process::spawn(|| -> mproc::Result<()> {
                    for _ in 0..250 {
                        c.incr("count", 1)?;
                    }
                    flag.set()
                })
                .unwrap()
            })
            .collect();
        for mut p in procs {
            let st = p.join().unwrap();
            assert!(st.success(), "{st}");
        }
        assert_eq!(c.incr("count", 0).unwrap(), 1000);
        assert!(flag.is_set().unwrap());
        flag.clear().unwrap();
        assert!(!flag.is_set().unwrap());
    });
}

#[test]
fn a_client_without_the_key_is_refused_and_the_directory_is_private() {
    common::run("manager_auth", common::SECS(30), || {
        let m = Manager::start().unwrap();
        let dir = m.socket().parent().unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(dir).unwrap().permissions().mode() & 0o777, 0o700);
        let mut s = std::os::unix::net::UnixStream::connect(m.socket()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(&[0u8; 32]).unwrap();
        let mut buf = [0u8; 5];
        assert!(s.read_exact(&mut buf).is_err(), "the server answered a client with the wrong key");
    });
}

#[test]
fn dropping_the_manager_stops_the_server_and_removes_its_directory() {
    common::run("manager_drop", common::SECS(30), || {
        let m = Manager::start().unwrap();
        let (pid, dir) = (m.server_pid().unwrap(), m.socket().parent().unwrap().to_owned());
        m.client().set("x", b"1").unwrap();
        drop(m);
        assert!(!dir.exists());
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    });
}

#[test]
fn when_the_owner_is_killed_the_server_cleans_up_and_exits() {
    common::run("manager_owner_killed", common::SECS(30), || {
        let info = mproc::Value::new([0u8; 256]).unwrap();
        let server_pid = mproc::RawValue::new(0i32).unwrap();
        let mut owner = Process::spawn(|| {
            let m = Manager::start().unwrap();
            let d = m.socket().parent().unwrap().to_string_lossy().into_owned();
            info.lock().unwrap()[..d.len()].copy_from_slice(d.as_bytes());
            server_pid.store(m.server_pid().unwrap());
            // SAFETY: raise has no memory-safety preconditions.
            unsafe { libc::raise(libc::SIGKILL) };
        })
        .unwrap();
        owner.join().unwrap();
        let raw = info.get().unwrap();
        let dir = String::from_utf8_lossy(&raw).trim_end_matches('\0').to_owned();
        let pid = server_pid.load();
        let deadline = Instant::now() + Duration::from_secs(2);
        while std::path::Path::new(&dir).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z"))
        {
            assert!(Instant::now() < deadline, "server {pid} or directory {dir} survived its owner");
            std::thread::sleep(Duration::from_millis(10));
        }
    });
}

#[test]
fn a_stopped_server_is_a_clear_error_not_a_hang() {
    common::run("manager_gone", common::SECS(30), || {
        let m = Manager::start().unwrap();
        let c = m.client();
        drop(m);
        let e = c.get("x").unwrap_err();
        assert!(matches!(e, mproc::Error::Backend { backend: "manager", .. }), "{e}");
    });
}
