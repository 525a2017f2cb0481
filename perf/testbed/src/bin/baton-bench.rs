//! `baton-bench` (`make bench`): Baton against nginx, HAProxy and direct
//! client→backend, on one namespace bed, in one run (issue 8). Writes
//! `perf/results/<timestamp>.json`, `perf/results/latest.json`, an SVG chart
//! beside them, and the table in `docs/performance.md`.

use clap::Parser;
use std::path::PathBuf;
use std::time::Duration;
use testbed::bench::{self, Settings, System};
use testbed::{baton, report, timefmt};

#[derive(Parser)]
#[command(about = "Benchmark Baton against L7 proxies and direct access on the namespace test bed")]
struct Cli {
    /// Smoke mode: two 1 KiB workloads, 2 s each (figures not for quoting).
    #[arg(long)]
    quick: bool,
    /// Seconds per cell (overrides the mode's default).
    #[arg(long)]
    duration: Option<u64>,
    /// wrk connections (overrides the mode's default).
    #[arg(long)]
    connections: Option<u32>,
    /// Only these systems (comma-separated names: direct, nginx-proxy,
    /// haproxy, baton-afpacket, baton-dpdk).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Leave out the DPDK rows (a build without the `dpdk` feature).
    #[arg(long)]
    no_dpdk: bool,
    /// Directory for the JSON and SVG results.
    #[arg(long)]
    out_dir: Option<PathBuf>,
    /// Markdown file whose generated block receives the table.
    #[arg(long)]
    doc: Option<PathBuf>,
    /// JSON files with dataplane micro-benchmark figures to include.
    #[arg(long)]
    micro: Vec<PathBuf>,
    /// Measure nothing: rebuild the table, targets and chart from a results
    /// file (e.g. perf/results/latest.json) after a change to the report.
    #[arg(long)]
    render: Option<PathBuf>,
}

fn main() {
    let cli = Cli::parse();
    let dpdk = !cli.no_dpdk;
    let mut s = if cli.quick {
        Settings::quick(dpdk)
    } else {
        Settings::full(dpdk)
    };
    if let Some(d) = cli.duration {
        s.duration = Duration::from_secs(d.max(1));
    }
    if let Some(c) = cli.connections {
        s.connections = c.max(1);
    }
    if !cli.only.is_empty() {
        s.systems
            .retain(|sys: &System| cli.only.iter().any(|o| *o == sys.name()));
    }
    let root = baton::workspace_root();
    let out_dir = cli.out_dir.unwrap_or_else(|| root.join("perf/results"));
    let doc = cli.doc.unwrap_or_else(|| root.join("docs/performance.md"));
    if let Some(file) = &cli.render {
        if let Err(e) = render(file, &out_dir, &doc) {
            eprintln!("baton-bench: {e}");
            std::process::exit(1);
        }
        return;
    }
    let started = timefmt::now_secs();
    eprintln!(
        "baton-bench: {} systems × {} workloads, {} s each at {} connections",
        s.systems.len(),
        s.workloads.len(),
        s.duration.as_secs(),
        s.connections
    );
    let rows = match bench::run(&s, |r| match &r.error {
        Some(e) => eprintln!(
            "  {:<16} {:>8} {:<10} not measured: {}",
            r.system,
            r.size,
            r.connection,
            e.lines().next().unwrap_or("")
        ),
        None => eprintln!(
            "  {:<16} {:<8} {:>8} {:<10} {:>9.0} req/s  p50 {:>7.0} µs  p99 {:>7.0} µs  failed {}",
            r.system,
            r.polling.as_deref().unwrap_or("-"),
            r.size,
            r.connection,
            r.rps,
            r.p50_us,
            r.p99_us,
            r.failures
        ),
    }) {
        Ok(rows) => rows,
        Err(e) => {
            eprintln!("baton-bench: {e}");
            std::process::exit(1);
        }
    };
    let micro = cli
        .micro
        .iter()
        .filter_map(|p| {
            let text = std::fs::read_to_string(p).ok()?;
            serde_json::from_str(&text).ok()
        })
        .collect();
    let res = report::results(&s, rows, micro, started);
    match report::write_all(&res, &out_dir, &doc, &timefmt::file_stamp(started)) {
        Ok(paths) => {
            for p in paths {
                println!("wrote {}", p.display());
            }
        }
        Err(e) => {
            eprintln!("baton-bench: {e}");
            std::process::exit(1);
        }
    }
    for t in res.targets.iter().filter(|t| !t.met) {
        println!(
            "target missed: {} [{}]: required {}, measured {:.2}",
            t.name, t.system, t.required, t.measured
        );
    }
}

/// Rebuilds the outputs of an earlier run from its JSON results.
fn render(
    file: &std::path::Path,
    out_dir: &std::path::Path,
    doc: &std::path::Path,
) -> Result<(), String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", file.display()))?;
    let rows: Vec<bench::Row> =
        serde_json::from_value(v["rows"].clone()).map_err(|e| format!("rows: {e}"))?;
    let micro = v["micro"].as_array().cloned().unwrap_or_default();
    let mut s = Settings::full(true);
    s.quick = v["quick"].as_bool().unwrap_or(false);
    s.duration = Duration::from_secs(v["settings"]["duration_s"].as_u64().unwrap_or(6));
    s.connections = v["settings"]["connections"].as_u64().unwrap_or(32) as u32;
    let stamp = v["timestamp"].as_str().unwrap_or("").to_string();
    let mut res = report::results(&s, rows, micro, 0);
    res.timestamp = stamp.clone();
    if let Ok(m) = serde_json::from_value::<f64>(v["machine"]["load_avg_1m"].clone()) {
        res.machine.load_avg_1m = m;
    }
    let file_stamp = stamp.replace(['-', ':'], "");
    let paths = report::write_all(&res, out_dir, doc, &file_stamp).map_err(|e| e.to_string())?;
    for p in paths {
        println!("wrote {}", p.display());
    }
    Ok(())
}
