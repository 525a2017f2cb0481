//! Control-plane decisions per second, one core: a request header parsed,
//! routed by the test-bed rules and decided by each policy. Prints figures;
//! `cargo bench -p controlplane --bench decide`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use controlplane::config::load_str;
use controlplane::control::ControlPlane;
use controlplane::metrics::Metrics;
use dataplane::dispatch::{ConnToken, DispatchRequest};

const KEY: &str = "6261746f6e2d746573746265642d6b65792d6e6f742d666f722d70726f642121";

fn profile(policy: &str) -> String {
    let backends: String = (0..8)
        .map(|i| format!("  - {{ name: b{i}, address: 198.18.0.{} }}\n", 20 + i))
        .collect();
    let names: Vec<String> = (0..8).map(|i| format!("b{i}")).collect();
    format!(
        "name: bench\nio: {{ memory: {{}} }}\nswitch: {{ data_ip: 198.18.0.2 }}\nthop: {{ allow_sample_keys: true, keys: [{{ id: 1, secret_hex: \"{KEY}\" }}] }}\n\
         health: {{ check: {{ none: {{}} }} }}\nlogging: {{ access_log: {{ enabled: false }} }}\nbackends:\n{backends}\
         pools:\n  - {{ name: p, backends: [{}], policy: {policy} }}\n\
         services:\n  - name: web\n    vip: 198.18.0.10\n    rules:\n      - {{ match: {{ path_prefix: [/static/], extension: [png] }}, pool: p }}\n      - {{ match: {{ path_prefix: [/api/] }}, pool: p }}\n    default_pool: p\n",
        names.join(", ")
    )
}

fn main() {
    let policies = [
        ("weighted_round_robin", "{ weighted_round_robin: {} }"),
        ("least_connections", "{ least_connections: {} }"),
        ("lard", "{ lard: {} }"),
        ("lard_r", "{ lard_r: {} }"),
        (
            "cap",
            "{ cap: { cpu_bound: ['^/api/'], disk_bound: ['^/db/'] } }",
        ),
        ("maglev", "{ maglev: {} }"),
        ("sticky", "{ sticky: {} }"),
    ];
    let headers: Vec<Vec<u8>> = (0..4096)
        .map(|i| {
            format!(
                "GET /static/img{}.png?v={i} HTTP/1.1\r\nHost: shop.example\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64)\r\nAccept: */*\r\nCookie: BATON_BACKEND=s{}\r\n\r\n",
                i % 1000,
                i % 64
            )
            .into_bytes()
        })
        .collect();
    println!(
        "{:<22} {:>14} {:>12}",
        "policy", "decisions/s", "ns/decision"
    );
    for (name, policy) in policies {
        let p = load_str(&profile(policy), Path::new("bench.yaml"), &HashMap::new())
            .unwrap_or_else(|e| panic!("{e}"))
            .profile;
        let mut cp = ControlPlane::new(p, Arc::new(Metrics::new("bench")), Arc::new(|| 0)).unwrap();
        let n = 400_000;
        let start = Instant::now();
        for i in 0..n {
            let header = headers[i % headers.len()].clone();
            let d = cp.decide(DispatchRequest {
                token: ConnToken {
                    worker: 0,
                    slot: i as u32,
                    generation: 1,
                },
                client: "198.18.0.101:40000".parse().unwrap(),
                vip: "198.18.0.10:80".parse().unwrap(),
                header,
                exclude: Vec::new(),
                header_complete_ns: 0,
            });
            // Keep loads realistic: the connection closes at once.
            if let dataplane::dispatch::Verdict::Backend(b) = &d.verdict {
                cp.on_event(dataplane::dispatch::WorkerEvent::Closed { backend: b.id });
            }
            std::hint::black_box(d);
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "{name:<22} {:>14.0} {:>12.0}",
            n as f64 / secs,
            secs * 1e9 / n as f64
        );
    }
}
