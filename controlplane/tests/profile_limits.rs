//! Limits that protect the dataplane's resources are checked at load: held
//! packets must leave most of the packet pool free, pressure holds must be
//! shorter than the normal ones, retry counts stay bounded. Each error names
//! the field.

use std::collections::HashMap;

use controlplane::config::{load_file_with, ConfigError};
use testkit::temp_dir::TempDir;

/// A temporary directory with one profile, removed on drop.
const KEY: &str = "6261746f6e2d746573746265642d6b65792d6e6f742d666f722d70726f642121";

/// A valid profile with `io`, `workers` and `extra` top-level sections.
fn profile(io: &str, workers: u16, extra: &str) -> String {
    format!(
        r#"name: limits
thop:
  allow_sample_keys: true
  keys:
    - id: 1
      secret_hex: "{KEY}"
io:
{io}
workers:
  count: {workers}
switch:
  data_ip: 198.18.0.2
backends:
  - name: app-1
    address: 198.18.0.13
pools:
  - name: app
    backends: [app-1]
services:
  - name: web
    vip: 198.18.0.10
    default_pool: app
{extra}"#
    )
}

fn errors(text: &str) -> Vec<ConfigError> {
    let d = TempDir::with_files("cp-limits", &[("p.yaml", text)]);
    match load_file_with(&d.0.join("p.yaml"), &HashMap::new()) {
        Ok(_) => Vec::new(),
        Err(e) => e.0,
    }
}

fn paths(errs: &[ConfigError]) -> Vec<String> {
    errs.iter().map(|e| e.path.clone()).collect()
}

const AF_PACKET: &str = "  af_packet:\n    interface: sw-data\n    pool_size: 1024";
const DPDK: &str = "  dpdk:\n    eal_args: [\"-l\", \"0-3\"]\n    mempool_size: 4095";

#[test]
fn holds_that_could_pin_half_the_af_packet_pool_are_refused() {
    let ok = profile(
        AF_PACKET,
        2,
        "limits:\n  held_packets: 8\n  held_packets_per_worker: 512\n",
    );
    assert!(errors(&ok).is_empty(), "{:?}", errors(&ok));
    let bad = profile(
        AF_PACKET,
        2,
        "limits:\n  held_packets: 8\n  held_packets_per_worker: 600\n",
    );
    let errs = errors(&bad);
    assert_eq!(
        paths(&errs),
        vec!["limits.held_packets_per_worker"],
        "{errs:?}"
    );
    let msg = errs[0].to_string();
    assert!(
        msg.contains("io.af_packet.pool_size") && msg.contains("600"),
        "{msg}"
    );
    // The defaults (8 per connection, 4,096 connections, 512 per worker)
    // against a smaller pool.
    let small = profile(
        "  af_packet:\n    interface: sw-data\n    pool_size: 1000",
        2,
        "",
    );
    assert_eq!(
        paths(&errors(&small)),
        vec!["limits.held_packets_per_worker"]
    );
    // Few sessions that each hold little cannot pin much, whatever the cap.
    let few = profile(
        AF_PACKET,
        2,
        "limits:\n  held_packets: 2\n  pending_per_worker: 100\n  held_packets_per_worker: 4000\n",
    );
    assert!(errors(&few).is_empty(), "{:?}", errors(&few));
}

#[test]
fn holds_of_all_workers_are_counted_against_the_shared_dpdk_mempool() {
    let ok = profile(DPDK, 3, "limits:\n  held_packets_per_worker: 512\n");
    assert!(errors(&ok).is_empty(), "{:?}", errors(&ok));
    let bad = profile(DPDK, 4, "limits:\n  held_packets_per_worker: 512\n");
    let errs = errors(&bad);
    assert_eq!(
        paths(&errs),
        vec!["limits.held_packets_per_worker"],
        "{errs:?}"
    );
    assert!(
        errs[0].to_string().contains("io.dpdk.mempool_size"),
        "{}",
        errs[0]
    );
}

#[test]
fn pressure_holds_must_be_shorter_and_retries_bounded() {
    let bad = profile(
        AF_PACKET,
        1,
        "tuning:\n  pressure:\n    threshold: 1.5\n    header_timeout: 20s\n    fin_timeout: 0s\n  per_client:\n    max_connections: 10\n    max_pending: 20\ntimeouts:\n  syn_ack_retries: 300\n",
    );
    let mut got = paths(&errors(&bad));
    got.sort();
    assert_eq!(
        got,
        vec![
            "timeouts.syn_ack_retries",
            "tuning.per_client.max_pending",
            "tuning.pressure.fin_timeout",
            "tuning.pressure.header_timeout",
            "tuning.pressure.threshold",
        ]
    );
}
