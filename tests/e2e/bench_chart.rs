//! `make bench` draws its table: bench/chart.py turns the results file bench/proxy.sh writes into
//! an SVG bar chart. Checked on the figures recorded in bench/README.md, whose chart is committed.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

const TITLE: &str = "make bench, 2026-12-02: proxies head to head (2 cores, quiet machine)";

#[test]
fn bench_chart_draws_cpu_and_p99_bars_for_every_row_of_the_readme_figures() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let results = root.join("bench/results-2026-12-02.tsv");
    let out = tempfile::tempdir().unwrap();
    let svg_path = out.path().join("chart.svg");
    let run = match Command::new("python3")
        .arg(root.join("bench/chart.py"))
        .arg(&results)
        .arg(&svg_path)
        .arg(TITLE)
        .output()
    {
        Ok(run) => run,
        Err(e) => {
            eprintln!("SKIPPED: python3 cannot be run ({e}); `make deps` installs it");
            return;
        }
    };
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let svg = std::fs::read_to_string(&svg_path).unwrap();
    assert!(
        svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""),
        "{svg}"
    );
    assert!(svg.trim_end().ends_with("</svg>"));

    let tsv = std::fs::read_to_string(&results).unwrap();
    let rows: Vec<Vec<&str>> = tsv
        .lines()
        .skip(1)
        .map(|l| l.split('\t').collect())
        .collect();
    assert_eq!(rows.len(), 13);
    let mut bars = 0;
    for r in &rows {
        let (name, p99, cpu) = (r[0], r[3], r[4]);
        assert!(
            svg.contains(&format!(">{name}</text>")),
            "no label for {name}"
        );
        assert!(
            svg.contains(&format!("<title>{name}: {p99} µs</title>")),
            "no p99 bar for {name}"
        );
        if cpu != "-" {
            let cpu: f64 = cpu.parse().unwrap();
            assert!(
                svg.contains(&format!("<title>{name}: {cpu} µs</title>")),
                "no CPU bar for {name}"
            );
            bars += 1;
        }
        bars += 1;
    }
    assert_eq!(svg.matches("<rect x=").count(), bars);
    // The committed chart is this script's drawing of these figures.
    let committed = std::fs::read_to_string(root.join("bench/chart.svg")).unwrap();
    assert_eq!(
        svg, committed,
        "bench/chart.svg is stale: regenerate it with bench/chart.py"
    );
}
