//! `mproc bench queue --json`: every transport's row for every size, the floor beside them, the
//! wake-up rows, and a clear error for bad input. (Figures only, no timing asserted.)

#[path = "../../tests/common/mod.rs"]
mod common;

use std::process::Command;

#[test]
fn bench_queue_reports_every_transport_and_the_floor_for_every_size() {
    common::run("bench_queue_rows", common::SECS(120), || {
        let out = Command::new(env!("CARGO_BIN_EXE_mproc"))
            .args(["bench", "queue", "--json", "--sizes", "8,1024", "--round-trips", "300", "--repeat", "2"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let rows: Vec<serde_json::Value> =
            String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        let finite = |r: &serde_json::Value, k: &str| r[k].as_f64().is_some_and(|x| x.is_finite() && x > 0.0);
        for bytes in [8, 1024] {
            for t in ["atomic floor", "Queue", "Queue plain", "Pipe", "socketpair", "ipc-channel"] {
                let r = rows
                    .iter()
                    .find(|r| r["bench"] == "queue" && r["transport"] == t && r["bytes"] == bytes)
                    .unwrap_or_else(|| panic!("no {t} row for {bytes} B: {rows:?}"));
                assert!(finite(r, "round_trip_us"), "{r}");
                if t != "atomic floor" {
                    assert!(finite(r, "items_per_s") && finite(r, "items_per_s_2x2"), "{r}");
                }
            }
        }
        let wake = rows.iter().filter(|r| r["bench"] == "queue_wake" && finite(r, "wake_us")).count();
        assert_eq!(wake, 2, "{rows:?}");
    });
}

#[test]
fn bench_queue_refuses_a_zero_repeat_with_a_message() {
    let out = Command::new(env!("CARGO_BIN_EXE_mproc")).args(["bench", "queue", "--repeat", "0"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--repeat"), "{}", String::from_utf8_lossy(&out.stderr));
}
