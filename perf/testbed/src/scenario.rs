//! The system tests' fixture: a bed with nginx on every backend and Baton
//! started from the test-bed profile, plus the helpers the scenarios share.
//! Fields drop in declaration order: Baton stops first, then nginx, then the
//! namespaces go. Over AF_XDP, the fixture first checks that the XDP fast
//! path's flow map holds no flow the switch has forgotten
//! ([`Running::check_fast_path`]).

use crate::baton::{self, BatonIo, Stack, SwitchOptions};
use crate::client::{self, Response};
use crate::error::{BedError, Result};
use crate::process::Proc;
use crate::topology::{Bed, BedSpec, DATA_IF};
use crate::{addr, netns, nginx, xdp};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// Backends of the static pool, as they name themselves (`X-Backend`).
pub const STATIC_POOL: [&str; 2] = ["b1", "b2"];
/// The backend of the app pool (runs the agent's listener example).
pub const APP_BACKEND: &str = "b3";

/// A running system under test.
pub struct Running {
    /// Baton: switch and agents.
    pub stack: Stack,
    /// nginx on every backend.
    pub nginx: Vec<Proc>,
    /// The namespaces.
    pub bed: Bed,
}

impl Running {
    /// The standard system: 2 clients, 3 backends, the test-bed profile.
    pub fn up(io: BatonIo) -> Result<Running> {
        Self::up_with(io, |_| {})
    }

    /// The standard system with changes to the switch options.
    pub fn up_with(io: BatonIo, f: impl FnOnce(&mut SwitchOptions)) -> Result<Running> {
        let bed = Bed::up(&BedSpec::default())?;
        let nginx = nginx::start_all(&bed)?;
        let mut opts = SwitchOptions::testbed(io);
        f(&mut opts);
        let app_agent = opts
            .agents
            .get(2)
            .is_some_and(|a| *a != baton::AgentRole::None);
        let stack = Stack::start(&bed, &opts)?;
        let r = Running { stack, nginx, bed };
        // Ready when each static backend has served (health checks passed)
        // and the app pool answers.
        r.wait_backends("/static/1k.bin", &STATIC_POOL, Duration::from_secs(30))?;
        if app_agent {
            r.wait_until(
                "the app pool to answer /api/",
                Duration::from_secs(30),
                || Ok(r.get("/api/items").is_ok_and(|x| x.status == 200)),
            )?;
        }
        Ok(r)
    }

    /// Namespace of client `i`.
    pub fn client(&self, i: usize) -> &str {
        &self.bed.clients[i].ns
    }

    /// Runs `f` inside client `i`'s namespace.
    pub fn in_client<T: Send + 'static>(
        &self,
        i: usize,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T> {
        netns::in_ns(self.client(i), f)
    }

    /// One GET through the VIP from client 0 on a new connection.
    pub fn get(&self, path: &str) -> Result<Response> {
        self.get_at(addr::vip_service(), path)
    }

    /// One GET to `svc` (e.g. [`addr::vip6_service`]) from client 0 on a
    /// new connection.
    pub fn get_at(&self, svc: std::net::SocketAddr, path: &str) -> Result<Response> {
        let p = path.to_string();
        self.in_client(0, move || {
            client::get(svc, &p, &[], Duration::from_secs(10))
        })?
        .map_err(|e| BedError::io(format!("GET {path} via {svc}"), e))
    }

    /// Sends GETs of `path` (new connection each) until every backend in
    /// `expect` has answered, or fails after `timeout` with what was seen.
    pub fn wait_backends(&self, path: &str, expect: &[&str], timeout: Duration) -> Result<()> {
        wait_served_by(|| self.get(path), expect, timeout).map_err(|seen| {
            BedError::Timeout(format!(
                "{path} to be served by {expect:?}; {seen}\nswitch log:\n{}",
                tail(&self.stack.switch_log(), 3000)
            ))
        })
    }

    /// Connections in the switch's tables (all workers, all states).
    pub fn table_size(&self) -> Result<f64> {
        self.stack.metric("baton_worker_connections", &[])
    }

    /// Polls `cond` every 200 ms until true or `timeout`.
    pub fn wait_until(
        &self,
        what: &str,
        timeout: Duration,
        mut cond: impl FnMut() -> Result<bool>,
    ) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if cond()? {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(BedError::Timeout(what.to_string()));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The switch's admin endpoint, GET from the hub.
    pub fn admin(&self, path: &str) -> Result<String> {
        baton::admin_get(self.bed.hub(), path)
    }

    /// The XDP fast path's flow count, as the switch reports it
    /// (`baton_xdp_flows`) and as the kernel holds it (the flow map's
    /// entries, read with bpftool); `None` when the switch does not run over
    /// AF_XDP. With the fast path off, a program without the map counts as
    /// an empty map.
    pub fn fast_path_flows(&self) -> Result<Option<FastPathFlows>> {
        let BatonIo::AfXdp { fast_path } = self.stack.io else {
            return Ok(None);
        };
        let sw = self.bed.switch()?;
        let metric = self.stack.metric("baton_xdp_flows", &[])?;
        let map = match xdp::flow_count(&sw.ns, DATA_IF)? {
            Some(n) => n,
            None if !fast_path => 0,
            None => {
                return Err(BedError::Setup(format!(
                    "no XDP program with a `{}` map on the switch's {DATA_IF}",
                    xdp::FLOW_MAP
                )))
            }
        };
        Ok(Some(FastPathFlows {
            metric,
            map,
            table: self.table_size()?,
        }))
    }

    /// Over AF_XDP: the fast path holds no flow the switch has forgotten.
    /// Every flow in the kernel's map belongs to a connection in the
    /// switch's table (more would be relayed by the kernel after the switch
    /// ended them), the switch's `baton_xdp_flows` agrees with the map, and
    /// with the fast path off the map stays empty. Connections still
    /// closing may move the figures: they must hold within a few seconds.
    /// Nothing to check for other backends or once the switch has stopped.
    pub fn check_fast_path(&mut self) -> Result<()> {
        let BatonIo::AfXdp { fast_path } = self.stack.io else {
            return Ok(());
        };
        if self.stack.ensure_running().is_err() {
            return Ok(());
        }
        // A failed look (a scrape refused after an admin-abuse test) is
        // retried like a disagreement; the last of either is reported.
        let mut last = String::new();
        let held = self.wait_until(
            "the XDP flow map to agree with the switch",
            Duration::from_secs(10),
            || {
                Ok(match self.fast_path_flows() {
                    Ok(Some(f)) => {
                        last = format!("{f:?}");
                        let limit = if fast_path { f.table } else { 0.0 };
                        f.map as f64 <= limit && f.metric == f.map as f64
                    }
                    Ok(None) => true,
                    Err(e) => {
                        last = e.to_string();
                        false
                    }
                })
            },
        );
        held.map_err(|e| {
            BedError::Setup(format!(
                "{e}: last seen {last} (fast path {})\nswitch log:\n{}",
                if fast_path { "on" } else { "off" },
                tail(&self.stack.switch_log(), 3000)
            ))
        })
    }
}

impl Running {
    /// Downloads 10 MB from `url` with `curl <curl_flag>` on the first
    /// client and checks it arrived whole (SHA-256) while the switch sent
    /// less than 5 % of the bytes the client received: the response went
    /// from the backend to the client, only the client's side (ACKs,
    /// handshake, THOP) crossed the switch.
    pub fn ten_megabytes_bypass_the_switch(&self, curl_flag: &str, url: &str) {
        use crate::content::{expected_sha256, OBJ_10M};
        let sw = self.bed.switch().unwrap();
        let c = &self.bed.clients[0];
        let sw0 = sw.data_counters().unwrap();
        let c0 = c.data_counters().unwrap();
        let cmd = format!("curl {curl_flag} -sf --max-time 60 {url} | sha256sum");
        let out = netns::run_stdout(Some(&c.ns), "sh", &["-c", &cmd]).expect("curl");
        assert_eq!(
            out.split_whitespace().next(),
            Some(expected_sha256(OBJ_10M).as_str()),
            "{url}"
        );
        let sent = sw.data_counters().unwrap().since(&sw0).tx_bytes;
        let got = c.data_counters().unwrap().since(&c0).rx_bytes;
        assert!(got >= OBJ_10M.size as u64, "client received {got} bytes");
        assert!(
            sent * 20 < got,
            "switch transmitted {sent} bytes for a {got}-byte download from {url} (≥ 5%)"
        );
    }
}

/// The fast path's flows, from the switch and from the kernel, beside the
/// switch's connection count.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FastPathFlows {
    /// `baton_xdp_flows` on the switch's metrics.
    pub metric: f64,
    /// Entries in the XDP program's flow map (bpftool).
    pub map: usize,
    /// Connections in the switch's tables (all states).
    pub table: f64,
}

impl Drop for Running {
    fn drop(&mut self) {
        // A failing test has already said why; a second panic would abort.
        if std::thread::panicking() {
            return;
        }
        if let Err(e) = self.check_fast_path() {
            panic!("after the test, over {}: {e}", self.stack.io.as_str());
        }
    }
}

/// The last `n` bytes of a text.
/// Calls `get` (a GET on a new connection) until every backend in `expect`
/// has answered it, for at most `timeout`; the error says what was seen.
pub fn wait_served_by(
    mut get: impl FnMut() -> Result<Response>,
    expect: &[&str],
    timeout: Duration,
) -> std::result::Result<(), String> {
    let deadline = Instant::now() + timeout;
    let mut seen = BTreeSet::new();
    let mut last = String::new();
    while Instant::now() < deadline {
        match get() {
            Ok(r) if r.status == 200 => {
                seen.insert(r.backend().unwrap_or("?").to_string());
            }
            Ok(r) => last = format!("status {}", r.status),
            Err(e) => last = e.to_string(),
        }
        if expect.iter().all(|b| seen.contains(*b)) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!("seen {seen:?}; last error: {last}"))
}

pub use crate::text::tail;

/// Declares a system test once per packet I/O backend: `mod afpacket` always,
/// `mod dpdk` when the `dpdk` feature is on, `mod afxdp` (fast path on) and
/// `mod afxdp_nofast` (every packet through the workers) when the `af_xdp`
/// feature is on (as in `make test`). Each test function takes the backend as
/// its argument. Over AF_XDP, [`Running`] checks the fast path's flow map
/// when the test's system goes down.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod afpacket {
            $(
                #[test]
                fn $name() {
                    super::$name($crate::baton::BatonIo::AfPacket)
                }
            )*
        }
        #[cfg(feature = "dpdk")]
        mod dpdk {
            $(
                #[test]
                fn $name() {
                    super::$name($crate::baton::BatonIo::Dpdk)
                }
            )*
        }
        #[cfg(feature = "af_xdp")]
        mod afxdp {
            $(
                #[test]
                fn $name() {
                    super::$name($crate::baton::BatonIo::AfXdp { fast_path: true })
                }
            )*
        }
        #[cfg(feature = "af_xdp")]
        mod afxdp_nofast {
            $(
                #[test]
                fn $name() {
                    super::$name($crate::baton::BatonIo::AfXdp { fast_path: false })
                }
            )*
        }
    };
}
