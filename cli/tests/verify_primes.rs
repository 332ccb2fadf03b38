//! verify-primes: every flag variant gives the oracle's answers; a killed worker is reported.

#[path = "../../tests/common/mod.rs"]
mod common;
#[path = "../../tests/common/redis.rs"]
mod redis_server;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mproc_book::kernel::Kernel;
use mproc_book::primes::{BOOK_NUMBERS, CheckEvery, Config, Split, Variant, Verifier, is_prime_miller_rabin};

/// Every variant, and the Redis URL; without a server the redis variant is left out (and said so).
fn variants(test: &str) -> (Vec<Variant>, Option<String>) {
    let url = if cfg!(feature = "redis") { redis_server::url(&format!("{test} (its redis variant)")) } else { None };
    (Variant::ALL.into_iter().filter(|&v| v != Variant::Redis || url.is_some()).collect(), url)
}

fn numbers() -> Vec<u64> {
    let mut v = BOOK_NUMBERS.to_vec();
    v.extend([
        0,
        1,
        2,
        3,
        4,
        9,
        21,
        25,
        23 * 23,
        97,
        1_000_003 * 999_983,
        999_983 * 999_983,
        1 << 40,
        4_294_967_291 * 3,
        18_446_744_073_709_551_615,
    ]);
    v
}

#[test]
fn every_flag_variant_gives_the_miller_rabin_answer_for_every_number() {
    common::run("verify_all_variants", common::SECS(300), || {
        let (vs, url) = variants("every_flag_variant_gives_the_miller_rabin_answer_for_every_number");
        for split in [Split::Interleaved, Split::Contiguous] {
            let cfg = Config { processes: 2, split, redis_url: url.clone(), ..Config::default() };
            let v = Verifier::new(cfg, &vs).unwrap();
            for &variant in &vs {
                for n in numbers() {
                    let c = v.check(variant, n).unwrap();
                    assert_eq!(c.is_prime, is_prime_miller_rabin(n), "{variant} {split:?} {n}");
                    if let Some(f) = c.factor.filter(|_| n > 1) {
                        assert_eq!(n % f, 0, "{variant}: {f} does not divide {n}");
                    }
                }
            }
        }
    });
}

#[test]
fn the_books_poll_interval_works_for_every_flag_and_the_flag_stops_the_others() {
    common::run("verify_check_every_1000", common::SECS(300), || {
        let (vs, url) = variants("the_books_poll_interval_works_for_every_flag_and_the_flag_stops_the_others");
        // √n ≈ 10⁸: each worker has 25 M divisors (9 ms with the fast kernel, 50 ms with the
        // plain one), and the factor sits 20 % of the way, so the finder stops the other worker
        // early. Scheduling on a loaded machine can still start one worker after the other
        // finished; the flag must stop a worker in at least one of 3 tries.
        let n = 20_000_003u64 * 500_000_003;
        for kernel in Kernel::ALL {
            let cfg = Config {
                processes: 2,
                check_every: CheckEvery::Every(1000),
                redis_url: url.clone(),
                kernel,
                ..Config::default()
            };
            let v = Verifier::new(cfg, &vs).unwrap();
            for &variant in vs.iter().filter(|v| v.has_flag()) {
                assert_eq!(v.check_every(variant), Some(1000));
                let mut stopped = false;
                for _ in 0..3 {
                    let c = v.check(variant, n).unwrap();
                    assert_eq!((c.is_prime, c.factor), (false, Some(20_000_003)), "{variant} {kernel}");
                    stopped |= c.stop_latency.is_some();
                    if stopped {
                        break;
                    }
                }
                assert!(stopped, "{variant} {kernel}: the flag never stopped a worker");
                assert!(v.check(variant, 1_000_003).unwrap().is_prime);
            }
        }
    });
}

fn mproc() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mproc"))
}

/// Runs verify-primes on the prime, kills one worker once the pool is up, and returns the exit
/// status, stderr and how long after the kill it exited.
fn kill_a_worker(extra: &[&str]) -> (std::process::ExitStatus, String, String, Duration, i32) {
    let child = mproc()
        .args(["verify-primes", "--numbers", "100109100129100151", "--repeat", "8", "--processes", "2"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let deadline = Instant::now() + Duration::from_secs(60);
    let workers = loop {
        let kids: Vec<i32> = children_of(pid);
        if kids.len() >= 2 {
            break kids;
        }
        assert!(Instant::now() < deadline, "the pool never started");
        std::thread::sleep(Duration::from_millis(5));
    };
    std::thread::sleep(Duration::from_millis(30));
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(workers[0], libc::SIGKILL) };
    let killed = Instant::now();
    let out = child.wait_with_output().unwrap();
    let took = killed.elapsed();
    for w in &workers {
        assert!(!std::path::Path::new(&format!("/proc/{w}")).exists(), "worker {w} left behind");
    }
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
        took,
        workers[0],
    )
}

fn children_of(pid: i32) -> Vec<i32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

#[test]
fn killing_a_worker_exits_1_within_a_second_naming_the_worker_and_its_range() {
    common::run("verify_kill_worker", common::SECS(120), || {
        let (status, _out, err, took, victim) = kill_a_worker(&[]);
        assert_eq!(status.code(), Some(1), "stderr: {err}");
        assert!(
            err.contains(&format!("worker {victim} died")) && err.contains("SIGKILL") && err.contains("range"),
            "{err}"
        );
        assert_eq!(err.lines().count(), 1, "one line, not a backtrace: {err}");
        assert!(took < Duration::from_secs(1), "exited {took:?} after the kill");
        assert!(common::my_segments().is_empty());
    });
}

#[test]
fn with_retry_a_killed_workers_range_runs_again_and_the_answer_is_right() {
    common::run("verify_kill_worker_retry", common::SECS(120), || {
        let (status, out, err, _took, _) = kill_a_worker(&["--retry", "--json"]);
        assert_eq!(status.code(), Some(0), "stderr: {err}");
        let rows: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(rows.len(), 2, "{out}");
        assert!(rows.iter().all(|r| r["is_prime"] == true && r["number"] == 100109100129100151u64), "{out}");
    });
}

#[test]
fn an_unreachable_redis_is_one_clear_line_and_exit_1() {
    if !cfg!(feature = "redis") {
        return;
    }
    common::run("verify_redis_unreachable", common::SECS(60), || {
        let t0 = Instant::now();
        let out = mproc()
            .args(["verify-primes", "--flag", "redis", "--numbers", "97", "--redis-url", "redis://127.0.0.1:1/"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains("redis://127.0.0.1:1/") && err.contains("redis-server"), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(t0.elapsed() < Duration::from_secs(10));
    });
}

#[test]
fn json_rows_have_the_documented_keys() {
    common::run("verify_json", common::SECS(60), json_rows);
}

fn json_rows() {
    let out = mproc()
        .args([
            "verify-primes",
            "--numbers",
            "97,91",
            "--flag",
            "rawvalue,none",
            "--repeat",
            "1",
            "--json",
            "--processes",
            "2",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rows: Vec<serde_json::Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), 6); // serial, rawvalue, none × 2 numbers
    for r in &rows {
        for k in ["variant", "number", "is_prime", "processes", "best_s", "median_s", "repeat"] {
            assert!(r.get(k).is_some(), "{k} missing in {r}");
        }
        assert_eq!(r["is_prime"], r["number"] == 97);
    }
    let bad = mproc().args(["verify-primes", "--flag", "nope"]).output().unwrap();
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("mmap-redux"));
}
