//! The cluster on loopback, against the Redis `make test` starts: worker hosts are `mproc
//! worker` processes, the caller is this test. Killing a worker process, then a whole host,
//! mid-job still gives every result exactly once; a task that kills its workers, an unknown
//! name, a wrong URL and a Redis killed mid-job each give one clear error.

#[path = "../../tests/common/mod.rs"]
mod common;
#[path = "../../tests/common/redis.rs"]
mod redis_server;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mproc_cluster::{ClusterPool, Error, Named, builtin};

/// A `mproc worker` host, killed (with its processes) when dropped.
struct Host(Child);

impl Host {
    fn start(url: &str, queue: &str, processes: usize) -> Host {
        Host::start_with(url, queue, processes, &[])
    }

    fn start_with(url: &str, queue: &str, processes: usize, extra: &[&str]) -> Host {
        let child = Command::new(env!("CARGO_BIN_EXE_mproc"))
            .args(["worker", "--connect", url, "--queue", queue, "--reclaim-after-ms", "300"])
            .args(["--processes", &processes.to_string()])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mproc worker");
        Host(child)
    }

    /// Its worker processes.
    fn workers(&self) -> Vec<i32> {
        let pid = self.0.id();
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect()
    }

    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.kill();
    }
}

fn kill(pid: i32) {
    // SAFETY: kill has no memory-safety preconditions; the pid is a child of a host we started.
    unsafe { libc::kill(pid, libc::SIGKILL) };
}

fn queue(test: &str) -> String {
    format!("test-{}-{test}", std::process::id())
}

fn pool(url: &str, queue: &str) -> ClusterPool {
    ClusterPool::builder(url).queue(queue).timeout(Duration::from_secs(60)).build().expect("connect")
}

/// Waits until `n` worker processes serve `queue`.
fn wait_for_workers(pool: &ClusterPool, n: usize) {
    let t = Instant::now();
    while pool.workers().unwrap() < n {
        assert!(t.elapsed() < Duration::from_secs(20), "workers did not come up");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn job_keys(url: &str, queue: &str) -> Vec<String> {
    let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
    redis::cmd("KEYS").arg(format!("{queue}:job:*")).query(&mut c).unwrap()
}

#[test]
fn killing_a_worker_process_then_a_whole_host_mid_job_still_gives_every_result_exactly_once() {
    let Some(url) = redis_server::url("cluster: kill a worker and a host mid-job") else { return };
    common::run("cluster_kill", common::SECS(120), || {
        let q = queue("kill");
        let mut a = Host::start(&url, &q, 2);
        let mut b = Host::start(&url, &q, 2);
        let pool = pool(&url, &q);
        wait_for_workers(&pool, 4);
        let n = 300u64;
        let items: Vec<(u64, u64)> = (0..n).map(|x| (x, 10)).collect();
        let mut got = Vec::new();
        for r in pool.imap_unordered(builtin::SLOW_SQUARE, items, 1).unwrap() {
            got.push(r.unwrap());
            if got.len() == 30 {
                let w = a.workers();
                assert!(!w.is_empty(), "host a has worker processes");
                kill(w[0]); // one worker process: its chunk is handed back by its host
            }
            if got.len() == 90 {
                b.kill(); // a whole host: its chunks are reclaimed by the other after the idle limit
            }
        }
        got.sort_unstable();
        assert_eq!(got, (0..n).map(|x| x * x).collect::<Vec<_>>(), "every result exactly once");
        assert!(job_keys(&url, &q).is_empty(), "the job's keys are gone");
        // The host that lost a process replaced it and serves on.
        assert_eq!(pool.map(builtin::SQUARE, 0..100u64, Some(7)).unwrap()[99], 9801);
        a.kill();
    });
}

#[test]
fn map_apply_and_errors_that_name_the_task() {
    let Some(url) = redis_server::url("cluster: map, apply and task errors") else { return };
    common::run("cluster_errors", common::SECS(120), || {
        let q = queue("errors");
        let _h = Host::start(&url, &q, 2);
        let pool =
            ClusterPool::builder(&url).queue(&q).max_deliveries(2).timeout(Duration::from_secs(60)).build().unwrap();
        wait_for_workers(&pool, 2);
        assert_eq!(
            pool.map(builtin::SQUARE, 0..1000u64, None).unwrap(),
            (0..1000u64).map(|x| x * x).collect::<Vec<_>>()
        );
        assert_eq!(pool.apply(builtin::SQUARE, 12).unwrap(), 144);
        assert!(pool.map(builtin::SQUARE, Vec::<u64>::new(), None).unwrap().is_empty());
        let pending = pool.apply_async(builtin::SQUARE, 5).unwrap();
        assert_eq!(pending.get().unwrap(), 25);

        const NOWHERE: Named<u64, u64> = Named::new("no.such.task");
        let e = pool.apply(NOWHERE, 1).unwrap_err();
        assert!(matches!(e, Error::UnknownTask { .. }) && e.to_string().contains("no.such.task"), "{e}");

        let e = pool.map(builtin::PANIC, [1u64, 2], Some(1)).unwrap_err();
        assert!(matches!(e.root(), Error::TaskFailed { .. }) && e.to_string().contains("asked to panic"), "{e}");

        let t = Instant::now();
        let e = pool.apply(builtin::KILL_WORKER, 1).unwrap_err();
        assert!(matches!(e, Error::KilledWorkers { deliveries: 2, .. }), "{e}");
        assert!(e.to_string().contains("mproc.kill_worker"), "{e}");
        assert!(t.elapsed() < Duration::from_secs(30));

        // The workers replaced the processes it killed and serve on; nothing of the jobs is left.
        assert_eq!(pool.apply(builtin::SQUARE, 3).unwrap(), 9);
        assert!(job_keys(&url, &q).is_empty(), "{:?}", job_keys(&url, &q));
    });
}

#[test]
fn early_exit_reaches_running_tasks_on_every_host() {
    let Some(url) = redis_server::url("cluster: early exit") else { return };
    common::run("cluster_stop", common::SECS(120), || {
        let q = queue("stop");
        let _hosts: Vec<Host> = (0..3).map(|_| Host::start(&url, &q, 1)).collect();
        let pool = pool(&url, &q);
        wait_for_workers(&pool, 3);
        // Three hosts of one process each take one chunk each: two sleep 20 s unless stopped,
        // the third stops the job. The sleepers on the other hosts hear of it through Redis.
        let t = Instant::now();
        let r = pool.map(builtin::SLOW_SQUARE, [(3, 20_000), (4, 20_000), (5, 0)], Some(1)).unwrap();
        assert_eq!(r, vec![9, 16, 25]);
        assert!(t.elapsed() < Duration::from_secs(10), "the sleeping chunks were stopped: {:?}", t.elapsed());
        // The caller ending a job early stops its running chunks the same way.
        let mut it = pool.imap_unordered(builtin::SLOW_SQUARE, [(6, 20_000), (7, 20_000), (8, 20_000)], 1).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        drop(it.by_ref().take(0));
        drop(it);
        // A new job starts with its flags down, on processes that are free again.
        let again = pool.map(builtin::SLOW_SQUARE, [(1, 50), (2, 50), (3, 50)], Some(1)).unwrap();
        assert_eq!(again, vec![1, 4, 9]);
        assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
        assert!(job_keys(&url, &q).is_empty(), "{:?}", job_keys(&url, &q));
    });
}

#[test]
fn ctrl_c_lets_running_chunks_finish_and_hands_back_what_cannot() {
    let Some(url) = redis_server::url("cluster: Ctrl-C drains") else { return };
    common::run("cluster_drain", common::SECS(120), || {
        let q = queue("drain");
        let pool = pool(&url, &q);
        // Draining: the running chunk finishes and is delivered; the host exits cleanly.
        let mut a = Host::start(&url, &q, 1);
        wait_for_workers(&pool, 1);
        let job = pool.apply_async(builtin::SLOW_SQUARE, (9, 1500)).unwrap();
        std::thread::sleep(Duration::from_millis(500));
        // SAFETY: kill has no memory-safety preconditions; the pid is the host we started.
        unsafe { libc::kill(a.0.id() as i32, libc::SIGINT) };
        assert_eq!(job.get().unwrap(), 81);
        let st = a.0.wait().unwrap();
        assert!(st.success(), "{st}");
        // No time to drain (--drain 0): the running chunk goes back to the group at once, and a
        // host started afterwards runs it.
        let mut b = Host::start_with(&url, &q, 1, &["--drain", "0"]);
        wait_for_workers(&pool, 1);
        let job = pool.apply_async(builtin::SLOW_SQUARE, (4, 800)).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        // SAFETY: as above.
        unsafe { libc::kill(b.0.id() as i32, libc::SIGINT) };
        let st = b.0.wait().unwrap();
        assert!(st.success(), "{st}");
        let _c = Host::start(&url, &q, 1);
        assert_eq!(job.get().unwrap(), 16);
        assert!(job_keys(&url, &q).is_empty());
    });
}

#[test]
fn the_book_programs_run_on_the_cluster_and_agree_with_the_oracles() {
    let Some(url) = redis_server::url("cluster: verify-primes and primes --backend") else { return };
    common::run("cluster_book", common::SECS(180), || {
        // The CLI's programs use the default queue.
        let _a = Host::start(&url, "mproc", 1);
        let _b = Host::start(&url, "mproc", 1);
        wait_for_workers(&pool(&url, "mproc"), 2);
        let run = |args: &[&str]| {
            let out = Command::new(env!("CARGO_BIN_EXE_mproc")).args(args).output().unwrap();
            assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
            String::from_utf8(out.stdout).unwrap()
        };
        // The checks against Miller–Rabin and the sieve are in the programs: they fail otherwise.
        let v = run(&[
            "verify-primes",
            "--backend",
            &url,
            "--repeat",
            "1",
            "--json",
            "--numbers",
            "1000003,999983000007,100109100129100369",
        ]);
        assert_eq!(v.lines().count(), 3, "{v}");
        assert!(v.contains(r#""is_prime":true"#) && v.contains(r#""is_prime":false"#), "{v}");
        let p = run(&[
            "primes",
            "--backend",
            &url,
            "--range",
            "1000000..1020000",
            "--chunksizes",
            "1,500",
            "--repeat",
            "1",
            "--json",
        ]);
        assert_eq!(p.lines().count(), 2, "{p}");
    });
}

#[test]
fn a_wrong_url_or_a_redis_killed_mid_job_is_one_clear_error_not_a_hang() {
    let Some(_url) = redis_server::url("cluster: Redis down") else { return };
    common::run("cluster_down", common::SECS(120), || {
        let t = Instant::now();
        let e = ClusterPool::connect("redis://127.0.0.1:1/").unwrap_err();
        assert!(e.to_string().contains("cannot connect"), "{e}");
        let e = ClusterPool::connect("http://nowhere").unwrap_err();
        assert!(e.to_string().contains("not a Redis URL"), "{e}");
        assert!(t.elapsed() < Duration::from_secs(5));

        // A private server of our own, killed while a job waits on it.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let mut server = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string(), "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server (make test installs it)");
        let url = format!("redis://127.0.0.1:{port}/");
        let t0 = Instant::now();
        let pool = loop {
            match ClusterPool::connect(&url) {
                Ok(p) => break p,
                Err(_) if t0.elapsed() < Duration::from_secs(10) => std::thread::sleep(Duration::from_millis(20)),
                Err(e) => panic!("{e}"),
            }
        };
        let mut host = Host::start(&url, "mproc", 1);
        wait_for_workers(&pool, 1);
        let job = pool.apply_async(builtin::SLOW_SQUARE, (7, 30_000)).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        server.kill().unwrap();
        server.wait().unwrap();
        let t = Instant::now();
        let e = job.get().unwrap_err();
        assert!(matches!(e, Error::Redis { .. }), "{e}");
        assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
        // The host gives up too, with an error, instead of hanging.
        let t = Instant::now();
        loop {
            if let Some(st) = host.0.try_wait().unwrap() {
                assert!(!st.success());
                break;
            }
            assert!(t.elapsed() < Duration::from_secs(20), "the host outlived its Redis");
            std::thread::sleep(Duration::from_millis(50));
        }
        host.kill();
    });
}
