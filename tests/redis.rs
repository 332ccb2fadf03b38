//! RedisFlag and RedisCounter against the server `make test` starts (feature `redis`).
#![cfg(feature = "redis")]

mod common;
#[path = "common/redis.rs"]
mod redis_server;

use mproc::{EarlyExit, Process, RedisCounter, RedisFlag};

#[test]
fn a_redis_flag_set_in_one_process_is_seen_in_another() {
    let Some(url) = redis_server::url("a_redis_flag_set_in_one_process_is_seen_in_another") else { return };
    common::run("redis_flag", common::SECS(60), || {
        let flag = RedisFlag::new(&url, &format!("test:flag:{}", std::process::id())).unwrap();
        assert!(!flag.is_set().unwrap());
        let mut p = Process::spawn(|| flag.set()).unwrap(); // connects on its own after fork
        assert!(p.join().unwrap().success());
        assert!(flag.is_set().unwrap());
        flag.clear().unwrap();
        assert!(!flag.is_set().unwrap());
    });
}

#[test]
fn four_processes_times_1000_redis_increments_end_at_exactly_4000() {
    let Some(url) = redis_server::url("four_processes_times_1000_redis_increments_end_at_exactly_4000") else {
        return;
    };
    common::run("redis_counter", common::SECS(60), || {
        let c = RedisCounter::new(&url, &format!("test:count:{}", std::process::id())).unwrap();
        let procs: Vec<_> = (0..4)
            .map(|_| {
                Process::spawn(|| -> mproc::Result<()> {
                    for _ in 0..1000 {
                        c.incr()?;
                    }
                    Ok(())
                })
                .unwrap()
            })
            .collect();
        for mut p in procs {
            let st = p.join().unwrap();
            assert!(st.success(), "{st}");
        }
        assert_eq!(c.get().unwrap(), 4000);
    });
}

#[test]
fn an_unreachable_server_is_an_error_naming_the_url() {
    let e = RedisFlag::new("redis://127.0.0.1:1/", "x").unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("redis://127.0.0.1:1/") && msg.contains("redis-server"), "{msg}");
    assert!(RedisFlag::new("not a url", "x").is_err());
}
