//! `mproc book --quick` runs end to end without Redis and writes a report with every claim.

#[path = "../../tests/common/mod.rs"]
mod common;

#[test]
fn the_quick_tour_runs_and_its_report_lists_every_claim_with_a_figure() {
    common::run("book_quick", common::SECS(300), || {
        let tmp = common::TempDir::new("book");
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_mproc"))
            .args(["book", "--quick", "--out"])
            .arg(&tmp.0)
            .env_remove("MPROC_REDIS_URL")
            .output()
            .expect("run mproc book");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        let report = std::fs::read_to_string(tmp.0.join("report.md")).expect("report.md written");
        let table = &report[report.find("## The chapter's claims").expect("a claims section")..];
        let rows: Vec<&str> = table.lines().filter(|l| l.starts_with("| ") && !l.starts_with("| claim")).collect();
        assert!(rows.len() >= 13, "{table}");
        for r in &rows {
            let cells: Vec<&str> = r.split(" | ").collect();
            assert_eq!(cells.len(), 3, "claim, figure, verdict: {r}");
            assert!(!cells[1].trim().is_empty() && !cells[2].trim().is_empty(), "{r}");
        }
        assert!(!table.contains("DOES NOT HOLD"), "{table}");
        for svg in ["pi-speedup.svg", "primes-chunksize.svg", "primes-sawtooth.svg"] {
            let s = std::fs::read_to_string(tmp.0.join(svg)).expect(svg);
            assert!(s.starts_with("<svg") && s.contains("</svg>"), "{svg}");
        }
    });
}
