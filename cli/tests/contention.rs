//! `mproc contention`: every primitive's counter ends exact; a holder killed inside its critical
//! section gives each primitive its expected outcome, and nothing is left behind; bad input is
//! a one-line error. Exactness and outcomes only, never speed.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::process::{Command, Output};

use serde_json::Value;

const ALL: [&str; 15] = [
    "lock",
    "robust",
    "pthread",
    "raw-sync",
    "futex",
    "spin",
    "ticket",
    "flock",
    "fs2",
    "fcntl",
    "ofd",
    "posix-sem",
    "sysv-sem",
    "atomic",
    "padded",
];

/// Makes this test process the reaper of any orphan the command leaves, so the leak check of
/// `common::run` (children of this process) sees grandchildren too.
fn adopt_orphans() {
    #[allow(clippy::disallowed_methods)] // a test-only prctl; the library's rule is about src/
    // SAFETY: PR_SET_CHILD_SUBREAPER takes an integer flag and touches no memory of ours.
    let r = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    assert_eq!(r, 0, "prctl(PR_SET_CHILD_SUBREAPER)");
}

fn mproc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mproc")).arg("contention").args(args).output().expect("run mproc")
}

fn rows(out: &Output, kind: &str) -> Vec<Value> {
    assert!(out.status.success(), "mproc failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .filter(|r| r["row"] == kind)
        .collect()
}

#[test]
fn every_primitive_counts_exactly_at_1_and_2_processes() {
    adopt_orphans();
    common::run("contention_exact", common::SECS(240), || {
        let dir = common::TempDir::new("contention-svg");
        let svg = dir.0.to_str().unwrap();
        let ops = 3000u64;
        let out = mproc(&[
            "--primitives",
            "all",
            "--processes",
            "1,2",
            "--ops",
            "3000",
            "--json",
            "--no-death",
            "--svg",
            svg,
        ]);
        let rows = rows(&out, "throughput");
        assert_eq!(rows.len(), ALL.len() * 2, "one row per primitive and process count");
        for r in &rows {
            let (name, n) = (r["primitive"].as_str().unwrap(), r["processes"].as_u64().unwrap());
            // Two passes (uninstrumented, timed), each of `ops` per process.
            assert_eq!(r["expected"].as_u64(), Some(2 * n * ops), "{name} x{n}: every operation ran");
            assert_eq!(r["counted"].as_u64(), Some(2 * n * ops), "{name} x{n}: counter exact");
            assert_eq!(r["lost"].as_i64(), Some(0), "{name} x{n}");
            assert_eq!(r["exact"], true, "{name} x{n}");
            let per: Vec<u64> = r["ops_per_process"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
            assert_eq!(per, vec![ops; n as usize], "{name} x{n}: per-process counts");
            assert!((r["jain"].as_f64().unwrap() - 1.0).abs() < 1e-9, "{name} x{n}: equal work is perfectly fair");
            let is_lock = !matches!(name, "atomic" | "padded");
            assert_eq!(r["wait_ns"].is_object(), is_lock, "{name}: wait percentiles for locks only");
            if is_lock {
                let w = &r["wait_ns"];
                let (p50, p99, max) =
                    (w["p50"].as_u64().unwrap(), w["p99"].as_u64().unwrap(), w["max"].as_u64().unwrap());
                assert!(p50 <= p99 && p99 <= max, "{name} x{n}: percentiles ordered");
                if n == 1 {
                    assert_eq!(r["contended_fraction"].as_f64(), Some(0.0), "{name}: alone, never contended");
                }
            }
        }
        for f in ["throughput.svg", "wait-cdf.svg"] {
            let text = std::fs::read_to_string(dir.0.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
            assert!(text.starts_with("<svg") && text.contains("</svg>"), "{f} is an SVG document");
        }
    });
}

#[test]
fn a_killed_holder_is_told_recovered_or_hung_as_expected_and_nothing_is_left() {
    adopt_orphans();
    common::run("contention_death", common::SECS(120), || {
        let out =
            mproc(&["--primitives", "all", "--processes", "1", "--ops", "100", "--json", "--death-wait-ms", "300"]);
        let deaths = rows(&out, "holder-death");
        assert_eq!(deaths.len(), ALL.len());
        for d in &deaths {
            let name = d["primitive"].as_str().unwrap();
            let expected = match name {
                "lock" | "robust" => "told",
                "flock" | "fs2" | "fcntl" | "ofd" | "sysv-sem" => "recovered",
                "pthread" | "raw-sync" | "futex" | "spin" | "ticket" | "posix-sem" => "hung",
                "atomic" | "padded" => "n/a",
                other => panic!("unexpected primitive {other}"),
            };
            assert_eq!(d["outcome"], expected, "{name}: {}", d["detail"]);
            match expected {
                "told" | "recovered" => {
                    assert_eq!(d["works_again"], true, "{name}: the lock works after the death");
                    assert!(d["after_us"].as_f64().unwrap() > 0.0, "{name}: taken only after the kill");
                }
                "hung" => {
                    assert_eq!(d["works_again"], false);
                    assert!(d["seconds"].as_f64().unwrap() >= 0.3, "{name}: waited the bounded wait out");
                }
                _ => {}
            }
            for pid in d["pids"].as_array().unwrap() {
                let pid = pid.as_i64().unwrap();
                assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists(), "{name}: process {pid} left behind");
            }
        }
    });
}

#[test]
fn bad_input_is_a_one_line_error_with_exit_code_1() {
    common::run("contention_bad_input", common::SECS(60), || {
        for (args, says) in [
            (&["--primitives", "nope"][..], "--primitives"),
            (&["--processes", "0"][..], "--processes"),
            (&["--processes", "1,x"][..], "--processes"),
            (&["--cs-lines", "65"][..], "--cs-lines"),
            (&["--ops", "0"][..], "--ops"),
            (&["--duration", "0"][..], "--duration"),
        ] {
            let out = mproc(args);
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
            assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: one line, got {err:?}");
            assert!(err.starts_with("mproc: ") && err.contains(says), "{args:?}: {err}");
            assert!(out.stdout.is_empty(), "{args:?}: nothing measured");
        }
    });
}

/// `watch` reads a running program's named locks: here this test is that program (a named arena
/// with two locks hammered by forked workers), and the watcher a separately started `mproc`.
#[test]
fn watch_reads_what_a_separately_started_program_counted_on_its_named_locks() {
    use mproc::{Lock, NamedArena, Process};
    common::run("contention_watch", common::SECS(60), || {
        let name = format!("mproc-watch-test-{}", std::process::id());
        let arena = NamedArena::create(&name, 1 << 16).unwrap();
        let a = arena.add("busy", Lock::new_in).unwrap();
        let b = arena.add("quiet", Lock::new_in).unwrap();
        let stop = arena.add("stop", mproc::Event::new_in).unwrap();
        let ops = [mproc::RawValue::new(0u64).unwrap(), mproc::RawValue::new(0u64).unwrap()];
        let workers: Vec<Process> = (0..2)
            .map(|w| {
                let (a, b, stop, ops) = (&a, &b, &stop, &ops);
                Process::spawn(move || {
                    let mut i = 0u64;
                    while !stop.is_set() {
                        drop(a.lock().unwrap());
                        if w == 0 && i.is_multiple_of(3) {
                            drop(b.lock().unwrap());
                            ops[1].fetch_add(1);
                        }
                        i += 1;
                    }
                    ops[0].fetch_add(i);
                })
                .unwrap()
            })
            .collect();
        // Live: a watcher started while the workers run sees acquisitions go by.
        let live = std::process::Command::new(env!("CARGO_BIN_EXE_mproc"))
            .args(["contention", "watch", &name, "--interval", "0.05", "--count", "3", "--json"])
            .output()
            .unwrap();
        stop.set();
        for mut w in workers {
            assert!(w.join().unwrap().success());
        }
        assert!(live.status.success(), "{}", String::from_utf8_lossy(&live.stderr));
        let lines: Vec<Value> = String::from_utf8_lossy(&live.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect();
        assert_eq!(lines.len(), 3 * 2, "three refreshes of the two locks (an Event has none)");
        // The busy lock moves in every interval; the quiet one (one worker, a third of its
        // rounds) over the three together.
        let moved = |obj: &str| -> Vec<f64> {
            lines.iter().filter(|l| l["object"] == obj).map(|l| l["acquisitions_per_s"].as_f64().unwrap()).collect()
        };
        assert!(moved("busy").iter().all(|&r| r > 0.0), "live figures move");
        assert!(moved("quiet").iter().sum::<f64>() > 0.0, "live figures move");
        // After: the totals it reads are exactly what the program did.
        let out = mproc(&["watch", &name, "--count", "0", "--json"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let read: std::collections::HashMap<String, Value> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .map(|v| (v["object"].as_str().unwrap().to_owned(), v))
            .collect();
        for (object, lock, want) in [("busy", &a, ops[0].load()), ("quiet", &b, ops[1].load())] {
            let s = lock.stats();
            assert_eq!(s.acquisitions, want, "{object}: what the program counted");
            assert_eq!(read[object]["acquisitions"].as_u64(), Some(want), "{object}: what the watcher read");
            assert_eq!(read[object]["contended"].as_u64(), Some(s.contended), "{object}");
        }
        assert!(read["busy"]["kind"].as_str().unwrap().contains("Lock"));
        // Not an arena: a one-line error.
        let bad = mproc(&["watch", "mproc-no-such-arena-here"]);
        assert_eq!(bad.status.code(), Some(1));
        assert_eq!(String::from_utf8_lossy(&bad.stderr).trim().lines().count(), 1);
    });
}
