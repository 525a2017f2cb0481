//! `baton-bench` (`make bench`): Baton against nginx, HAProxy and direct
//! client→backend, on one namespace bed, in one run. Writes
//! `perf/results/<timestamp>.json`, `perf/results/latest.json`, an SVG chart
//! beside them, and the tables in `docs/performance.md`. The previous
//! `latest.json` is read first, so keep-alive rows can be compared with it.

use clap::Parser;
use std::path::PathBuf;
use std::time::Duration;
use testbed::bench::{self, Landed, Settings, System};
use testbed::report::Previous;
use testbed::{baton, report, timefmt};

#[derive(Parser)]
#[command(about = "Benchmark Baton against L7 proxies and direct access on the namespace test bed")]
struct Cli {
    /// Smoke mode: two 1 KiB workloads and the two HTTPS ones, 2 s each
    /// (figures not for quoting).
    #[arg(long)]
    quick: bool,
    /// Seconds per cell (overrides the mode's default).
    #[arg(long)]
    duration: Option<u64>,
    /// wrk connections (overrides the mode's default).
    #[arg(long)]
    connections: Option<u32>,
    /// Only these systems (comma-separated names: direct, direct-ipv6,
    /// nginx-proxy, haproxy, haproxy-tcp, haproxy-tls, baton-afpacket,
    /// baton-afpacket-ipv6, baton-afpacket-relay, baton-dpdk, baton-afxdp).
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
    /// Serial new connections per system and object of the latency probe
    /// (0 leaves the probe out).
    #[arg(long, default_value_t = bench::PROBE_N)]
    probe_n: usize,
    /// Results file whose keep-alive rows this run is compared with
    /// (default: the `latest.json` this run replaces; with --render, none).
    #[arg(long)]
    baseline: Option<PathBuf>,
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
    s.probe_n = cli.probe_n;
    if !cli.only.is_empty() {
        s.systems
            .retain(|sys: &System| cli.only.iter().any(|o| *o == sys.name()));
    }
    let root = baton::workspace_root();
    let out_dir = cli.out_dir.unwrap_or_else(|| root.join("perf/results"));
    let doc = cli.doc.unwrap_or_else(|| root.join("docs/performance.md"));
    let baseline = cli.baseline.as_deref().and_then(Previous::load);
    if let Some(file) = &cli.render {
        if let Err(e) = render(file, &out_dir, &doc, baseline.as_ref()) {
            eprintln!("baton-bench: {e}");
            std::process::exit(1);
        }
        return;
    }
    // Read before this run replaces it.
    let previous = baseline.or_else(|| Previous::load(&out_dir.join("latest.json")));
    let started = timefmt::now_secs();
    eprintln!(
        "baton-bench: {} systems × {} workloads, {} s each at {} connections",
        s.systems.len(),
        s.workloads.len(),
        s.duration.as_secs(),
        s.connections
    );
    let measured = match bench::run(&s, |landed| {
        match landed {
        Landed::Row(r) => match &r.error {
            Some(e) => eprintln!(
                "  {:<20} {:>8} {:<17} not measured: {}",
                r.system,
                r.size,
                r.conn_label(),
                e.lines().next().unwrap_or("")
            ),
            None => {
                eprintln!(
                    "  {:<20} {:<8} {:>8} {:<17} {:>9.0} req/s  p50 {:>7.0} µs  p99 {:>7.0} µs  failed {}",
                    r.system,
                    r.polling.as_deref().unwrap_or("-"),
                    r.size,
                    r.conn_label(),
                    r.rps,
                    r.p50_us,
                    r.p99_us,
                    r.failures
                );
                if r.failures > 0 {
                    eprintln!("  {:<20} failures: {}", "", r.failure_kinds);
                }
                if let Some(l) = &r.ledger {
                    let o = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{x:.1}"));
                    eprintln!(
                        "  {:<20} CPU µs/req: machine {:.1} = client {:.1} + switch {}/{}/{} + proxy {} + agent {} + web {:.1} + other {:.1}; softirq {:.1}",
                        "",
                        l.machine_us,
                        l.client_us,
                        o(l.switch_workers_us),
                        o(l.switch_control_us),
                        o(l.switch_other_us),
                        o(l.proxy_us),
                        o(l.agent_us),
                        l.web_us,
                        l.other_us,
                        l.softirq_us
                    );
                }
            }
        },
        Landed::Probe(p) => match (p.measured(), &p.error) {
            (true, _) => eprintln!(
                "  {:<20} {:<8} {:>8} probe      {} serial: p50 {:.0} µs  p99 {:.0} µs  mean {:.0} µs  failed {}",
                p.system,
                p.polling.as_deref().unwrap_or("-"),
                p.size,
                p.connections,
                p.p50_us,
                p.p99_us,
                p.mean_us,
                p.failures
            ),
            (false, e) => eprintln!(
                "  {:<20} {:>8} probe not measured: {}",
                p.system,
                p.size,
                e.as_deref().unwrap_or("")
            ),
        },
    }
    }) {
        Ok(m) => m,
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
    let res = report::results(
        &s,
        measured.rows,
        measured.probe,
        micro,
        started,
        previous.as_ref(),
    );
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
    // Baton over IPv6 against the same cells over IPv4.
    for p in bench::ipv6_vs_ipv4(&res.rows)
        .iter()
        .filter(|p| p.system.starts_with("baton"))
    {
        println!(
            "IPv6 vs IPv4: {} ({}) {} {}: {:.0} vs {:.0} req/s ({:.0}%), p50 {:.0} vs {:.0} µs",
            p.system,
            p.polling.as_deref().unwrap_or("-"),
            p.size,
            p.connection,
            p.rps6,
            p.rps4,
            p.ratio() * 100.0,
            p.p50_us6,
            p.p50_us4
        );
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
    previous: Option<&Previous>,
) -> Result<(), String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", file.display()))?;
    let rows: Vec<bench::Row> =
        serde_json::from_value(v["rows"].clone()).map_err(|e| format!("rows: {e}"))?;
    let probe: Vec<testbed::probe::ProbeRow> =
        serde_json::from_value(v["probe"].clone()).unwrap_or_default();
    let micro = v["micro"].as_array().cloned().unwrap_or_default();
    let mut s = Settings::full(true);
    s.quick = v["quick"].as_bool().unwrap_or(false);
    s.duration = Duration::from_secs(v["settings"]["duration_s"].as_u64().unwrap_or(6));
    s.connections = v["settings"]["connections"].as_u64().unwrap_or(32) as u32;
    let stamp = v["timestamp"].as_str().unwrap_or("").to_string();
    let mut res = report::results(&s, rows, probe, micro, 0, previous);
    if previous.is_none() {
        // Without the earlier run at hand, keep the comparison made then.
        report::merge_targets(&mut res.targets, report::previous_run_targets(&v));
        res.previous_run = v["previous_run"].as_str().map(str::to_string);
    }
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
