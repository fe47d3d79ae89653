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
}

/// The committed chart (docs/benchmarks.md shows it) is this script's drawing of the latest run
/// bench/README.md records, memory rows included.
#[test]
fn committed_chart_is_the_drawing_of_the_latest_recorded_run_with_its_memory_rows() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = tempfile::tempdir().unwrap();
    let svg_path = out.path().join("chart.svg");
    let Ok(run) = Command::new("python3")
        .arg(root.join("bench/chart.py"))
        .arg(root.join("bench/results-2026-12-03.tsv"))
        .arg(&svg_path)
        .arg("make bench, 2026-12-03: proxies head to head, and memory")
        .output()
    else {
        eprintln!("SKIPPED: python3 cannot be run; `make deps` installs it");
        return;
    };
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let svg = std::fs::read_to_string(&svg_path).unwrap();
    for label in [
        "tether idle",
        "haproxy idle",
        "tether, 15000 idle",
        "tls keep-alive, tether",
    ] {
        assert!(svg.contains(&format!(">{label}</text>")), "no row {label}");
    }
    assert!(svg.contains("<title>tether idle: 5.5 KiB</title>"), "{svg}");
    let committed = std::fs::read_to_string(root.join("bench/chart.svg")).unwrap();
    assert_eq!(
        svg, committed,
        "bench/chart.svg is stale: regenerate it with bench/chart.py"
    );
}

#[test]
fn bench_chart_draws_each_group_on_its_own_scale_with_its_own_panels() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = tempfile::tempdir().unwrap();
    let tsv = out.path().join("results.tsv");
    std::fs::write(
        &tsv,
        "row\treq_s\tp50_us\tp99_us\tcpu_us\tcpu_range\tgroup\n\
         tether cookie\t40000\t700\t1400\t21.2\t-\thttp\n\
         tls keep-alive, tether\t30000\t800\t1600\t30.5\t-\ttls\n\
         tls new, rsa, tether\t450\t-\t-\t785.1\t-\thandshake\n\
         tls new, rsa, haproxy\t110\t-\t-\t887.6\t-\thandshake\n\
         pool 1000, tether\t1000\t-\t-\t2.8\t-\tpool\n",
    )
    .unwrap();
    let svg_path = out.path().join("chart.svg");
    let Ok(run) = Command::new("python3")
        .arg(root.join("bench/chart.py"))
        .arg(&tsv)
        .arg(&svg_path)
        .output()
    else {
        eprintln!("SKIPPED: python3 cannot be run; `make deps` installs it");
        return;
    };
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let svg = std::fs::read_to_string(&svg_path).unwrap();
    for heading in [
        "HTTP/1.1 in clear, kept alive",
        "New TLS connections (handshake + one request each)",
        "Proxy CPU µs per connection (lower is better)",
        "connections per second (client-bound)",
        "KiB of RSS per pooled connection (lower is better)",
    ] {
        assert!(svg.contains(&format!(">{heading}</text>")), "no {heading}");
    }
    assert!(svg.contains("<title>tls new, rsa, tether: 785.1 µs</title>"));
    assert!(svg.contains("<title>tls new, rsa, haproxy: 110 /s</title>"));
    assert!(svg.contains("<title>pool 1000, tether: 2.8 KiB</title>"));
    assert!(svg.contains("<title>pool 1000, tether: 1000</title>"));
    // Each group has its own scale: the handshake rows' 887.6 µs does not shrink the others'
    // bars, so the largest bar of every group is drawn full width (its axis ends at or above).
    let widths: Vec<f64> = svg
        .match_indices("width=\"")
        .skip(2) // the <svg> and the background <rect>
        .map(|(i, _)| {
            let rest = &svg[i + 7..];
            rest[..rest.find('"').unwrap()].parse().unwrap()
        })
        .collect();
    let widest = widths.iter().cloned().fold(0.0, f64::max);
    let http_bar = widths[0];
    assert!(http_bar > widest / 4.0, "{http_bar} of {widest}");
    // A tether row is blue whether its name starts or ends with "tether".
    assert!(svg.contains("fill=\"#1f6fb4\" rx=\"2\"><title>tls keep-alive, tether"));
    assert!(svg.contains("fill=\"#9a9a9a\" rx=\"2\"><title>tls new, rsa, haproxy"));
}
