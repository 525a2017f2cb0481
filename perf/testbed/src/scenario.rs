//! The system tests' fixture: a bed with nginx on every backend and Baton
//! started from the test-bed profile, plus the helpers the scenarios share.
//! Fields drop in declaration order: Baton stops first, then nginx, then the
//! namespaces go.

use crate::baton::{self, BatonIo, Stack, SwitchOptions};
use crate::client::{self, Response};
use crate::error::{BedError, Result};
use crate::process::Proc;
use crate::topology::{Bed, BedSpec};
use crate::{addr, netns, nginx};
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
        let p = path.to_string();
        self.in_client(0, move || {
            client::get(addr::vip_service(), &p, &[], Duration::from_secs(10))
        })?
        .map_err(|e| BedError::io(format!("GET {path} via the VIP"), e))
    }

    /// Sends GETs of `path` (new connection each) until every backend in
    /// `expect` has answered, or fails after `timeout` with what was seen.
    pub fn wait_backends(&self, path: &str, expect: &[&str], timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let mut seen = BTreeSet::new();
        let mut last = String::new();
        while Instant::now() < deadline {
            match self.get(path) {
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
        Err(BedError::Timeout(format!(
            "{path} to be served by {expect:?}; seen {seen:?}; last error: {last}\nswitch log:\n{}",
            tail(&self.stack.switch_log(), 3000)
        )))
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
}

/// The last `n` bytes of a text.
pub fn tail(s: &str, n: usize) -> &str {
    let mut i = s.len().saturating_sub(n);
    while !s.is_char_boundary(i) {
        i += 1;
    }
    &s[i..]
}

/// Declares a system test once per packet I/O backend: `mod afpacket` always,
/// `mod dpdk` when the `dpdk` feature is on (as in `make test`). Each test
/// function takes the backend as its argument.
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
    };
}
