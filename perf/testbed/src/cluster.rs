//! The cluster's fixture: a routed bed ([`BedSpec::cluster`]) with several
//! switches behind a router, each announcing the VIP with BGP from its own
//! BIRD ([`crate::bird`]), nginx and an agent on every backend (the agents
//! list every switch), and the helpers the cluster's system tests share:
//! kill a switch as a machine dies, start one, restart one gracefully as an
//! upgrade does, and watch the router's ECMP route follow.
//!
//! Why a fixture of its own rather than [`crate::scenario::Running`]: a
//! cluster's switches come and go independently while the rest runs, each
//! with a BIRD that must start before it and outlive its graceful stops.
//! The profiles, the processes and the agents are made by the same code as
//! the single switch's ([`crate::baton`]).
//!
//! Who announces the VIP: the switch itself, through its BIRD's control
//! socket, from its profile's `cluster` section ([`Announce::Switch`]).
//! `BATON_CLUSTER_ANNOUNCE=bed` has the bed do it instead with `birdc`
//! ([`Announce::Bed`]: enable once the switch answers, disable and wait the
//! withdraw grace before a graceful stop), and the profiles leave the
//! `cluster` section out: that tells a problem of the bed's routing from
//! one of the switch's announcing.
//!
//! Fields drop in declaration order: switches first (each `baton`, then its
//! BIRD), then the router's BIRD, the agents, nginx, and the namespaces.

use crate::baton::{self, AgentRole, BatonIo, Member, SwitchOptions};
use crate::bird;
use crate::client::{self, Response};
use crate::error::{BedError, Result};
use crate::process::Proc;
use crate::scenario::{tail, STATIC_POOL};
use crate::topology::{Bed, BedSpec, MGMT_IF};
use crate::{addr, netns, nginx};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Who announces the VIP: `switch` (the default) or `bed`.
pub const ANNOUNCE_ENV: &str = "BATON_CLUSTER_ANNOUNCE";

/// Who enables and disables each switch's `vip` protocol in BIRD.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Announce {
    /// The switch, from its profile's `cluster.announce` section.
    Switch,
    /// The bed, with `birdc`, around the switch's start and graceful stop.
    Bed,
}

/// What to bring up.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// The switches' packet I/O backend.
    pub io: BatonIo,
    /// Switches in the bed.
    pub switches: usize,
    /// Switches started at once (the first ones); the others can be started
    /// later with [`Cluster::start_switch`].
    pub running: usize,
    /// Worker threads per switch (three switches share two cores).
    pub workers: u16,
}

impl ClusterOptions {
    /// `switches` switches, all running, one worker each.
    pub fn new(io: BatonIo, switches: usize) -> Self {
        ClusterOptions {
            io,
            switches,
            running: switches,
            workers: 1,
        }
    }
}

/// How a graceful stop went, from the stop's start.
#[derive(Debug, Clone, Copy)]
pub struct Stopped {
    /// When the router's route to the VIP lost the switch (None: not
    /// before it exited).
    pub withdrawn: Option<Duration>,
    /// When the process had exited.
    pub exited: Duration,
}

/// One switch of the cluster: its `baton` and its BIRD.
#[derive(Debug)]
pub struct Switch {
    /// The switch process (None: stopped or killed). Dropped before BIRD.
    pub baton: Option<Proc>,
    /// Its BIRD (None: not started or killed).
    pub bird: Option<Proc>,
    /// The profile `baton` runs.
    pub profile: PathBuf,
    env: Vec<(String, String)>,
    starts: usize,
}

/// A running routed cluster.
pub struct Cluster {
    /// The switches, by index (switch `i` is `sw<i+1>`).
    pub switches: Vec<Switch>,
    /// The router's BIRD.
    pub router_bird: Option<Proc>,
    /// The agents, by backend index.
    pub agents: Vec<Option<Proc>>,
    /// nginx on every backend.
    pub nginx: Vec<Proc>,
    /// The namespaces.
    pub bed: Bed,
    io: BatonIo,
    announce: Announce,
}

impl Cluster {
    /// Brings the cluster up: bed, nginx, the router's BIRD, the agents,
    /// then BIRD and `baton` on the first `opts.running` switches; ready
    /// when the router has a route through each of them and both clients
    /// are served by both static backends.
    pub fn up(opts: &ClusterOptions) -> Result<Cluster> {
        bird::preflight()?;
        if opts.running > opts.switches {
            return Err(BedError::Setup(format!(
                "{} switches to run of {}",
                opts.running, opts.switches
            )));
        }
        let bed = Bed::up(&BedSpec::cluster(opts.switches))?;
        let nginx = nginx::start_all(&bed)?;
        let router_bird = bird::start(&bed, bed.router()?, &bird::router_config(opts.switches))?;
        let mut sw_opts = SwitchOptions::testbed(opts.io);
        sw_opts.workers = Some(opts.workers);
        let agent_bin = baton::find_bin("baton-agent")?;
        let mut agents = Vec::new();
        for i in 0..bed.backends.len() {
            let role = sw_opts
                .agents
                .get(i)
                .copied()
                .unwrap_or(AgentRole::Handover);
            agents.push(match role {
                AgentRole::None => None,
                r => Some(baton::start_agent(&bed, i, r, &agent_bin)?),
            });
        }
        let announce = decide_announce()?;
        let mut switches = Vec::new();
        for i in 0..opts.switches {
            let m = Member {
                index: i,
                cluster_section: announce == Announce::Switch,
            };
            let profile = baton::member_profile(&bed, &sw_opts, m)?;
            let env = baton::switch_env_of(&bed, i);
            switches.push(Switch {
                baton: None,
                bird: None,
                profile,
                env,
                starts: 0,
            });
        }
        let mut c = Cluster {
            switches,
            router_bird: Some(router_bird),
            agents,
            nginx,
            bed,
            io: opts.io,
            announce,
        };
        for i in 0..opts.running {
            c.start_switch(i)?;
        }
        c.wait_nexthops(opts.running, Duration::from_secs(20))?;
        for k in 0..c.bed.clients.len() {
            c.wait_backends(k, "/static/1k.bin", &STATIC_POOL, Duration::from_secs(30))?;
        }
        Ok(c)
    }

    /// Who announces the VIP in this cluster.
    pub fn announce(&self) -> Announce {
        self.announce
    }

    /// The switches' packet I/O backend.
    pub fn io(&self) -> BatonIo {
        self.io
    }

    fn slot(&mut self, i: usize) -> Result<&mut Switch> {
        let n = self.switches.len();
        self.switches
            .get_mut(i)
            .ok_or_else(|| BedError::Setup(format!("no switch {} of {n}", i + 1)))
    }

    /// Starts switch `i`: its management link up (after a
    /// [`Cluster::kill_switch`]), its BIRD unless it runs, then `baton`
    /// (waiting for its admin endpoint). The switch announces the VIP once
    /// ready (or, with [`Announce::Bed`], the bed does now).
    pub fn start_switch(&mut self, i: usize) -> Result<()> {
        let host = self.bed.switch_host(i)?.clone();
        netns::ip(&host.ns, &["link", "set", MGMT_IF, "up"])?;
        let needs_bird = !self.slot(i)?.bird.as_mut().is_some_and(|b| b.is_running());
        if needs_bird {
            let b = bird::start(&self.bed, &host, &bird::switch_config(i))?;
            self.slot(i)?.bird = Some(b);
        }
        let io = self.io;
        let baton_bin = baton::find_bin("baton")?;
        let (profile, env, log) = {
            let s = self.slot(i)?;
            let log = match s.starts {
                0 => format!("baton-{}-{}.log", io.as_str(), host.name),
                n => format!("baton-{}-{}.{n}.log", io.as_str(), host.name),
            };
            s.starts += 1;
            (s.profile.clone(), s.env.clone(), log)
        };
        baton::prepare_switch_port(&self.bed, i, io, &baton_bin, &profile, &env)?;
        let p = baton::spawn_switch(&self.bed, i, io, &profile, &env, &log)?;
        self.slot(i)?.baton = Some(p);
        if self.announce == Announce::Bed {
            bird::set_protocol(&bird::socket(&self.bed, &host), bird::VIP_PROTOCOL, true)?;
        }
        Ok(())
    }

    /// Switch `i`'s machine dies: its management link goes silent (so the
    /// router hears no session close and withdraws the route only when the
    /// BGP hold timer expires, as for a machine that lost power), then its
    /// `baton` and its BIRD are killed at once (SIGKILL).
    pub fn kill_switch(&mut self, i: usize) -> Result<()> {
        let ns = self.bed.switch_host(i)?.ns.clone();
        netns::ip(&ns, &["link", "set", MGMT_IF, "down"])?;
        let s = self.slot(i)?;
        if let Some(mut p) = s.baton.take() {
            p.kill_now();
        }
        if let Some(mut b) = s.bird.take() {
            b.kill_now();
        }
        Ok(())
    }

    /// Stops switch `i` gracefully, as an upgrade does: SIGTERM, after which
    /// `baton` withdraws the VIP, keeps forwarding for the withdraw grace,
    /// then exits (with [`Announce::Bed`] the bed withdraws and waits the
    /// grace first). Its BIRD keeps running. Fails when the switch does not
    /// exit within its grace and 10 s (it is then killed).
    pub fn stop_switch(&mut self, i: usize) -> Result<Stopped> {
        let t0 = Instant::now();
        let me = addr::switch_data(i);
        let mut withdrawn = None;
        if self.announce == Announce::Bed {
            let host = self.bed.switch_host(i)?.clone();
            bird::set_protocol(&bird::socket(&self.bed, &host), bird::VIP_PROTOCOL, false)?;
            let grace_end = t0 + baton::WITHDRAW_GRACE;
            while Instant::now() < grace_end {
                if withdrawn.is_none() && !self.ecmp_nexthops()?.contains(&me) {
                    withdrawn = Some(t0.elapsed());
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let Some(mut p) = self.slot(i)?.baton.take() else {
            return Ok(Stopped {
                withdrawn,
                exited: t0.elapsed(),
            });
        };
        p.signal(libc::SIGTERM);
        let deadline = Instant::now() + baton::WITHDRAW_GRACE + Duration::from_secs(10);
        loop {
            if withdrawn.is_none() && !self.ecmp_nexthops()?.contains(&me) {
                withdrawn = Some(t0.elapsed());
            }
            // Reaps it once it exited (so nothing signals a stale pid).
            if p.wait_exit(Duration::from_millis(10)).is_some() || !p.is_running() {
                break;
            }
            if Instant::now() >= deadline {
                let log = p.log_tail(3000);
                p.kill_now();
                return Err(BedError::Timeout(format!(
                    "switch {} to stop after SIGTERM (killed):\n{log}",
                    i + 1
                )));
            }
        }
        Ok(Stopped {
            withdrawn,
            exited: t0.elapsed(),
        })
    }

    /// A graceful restart of switch `i` ([`Cluster::stop_switch`], then
    /// [`Cluster::start_switch`]): how the stop went, and how long the
    /// switch was gone (stop begun to admin endpoint answering again).
    pub fn restart_switch(&mut self, i: usize) -> Result<(Stopped, Duration)> {
        let t0 = Instant::now();
        let stopped = self.stop_switch(i)?;
        self.start_switch(i)?;
        Ok((stopped, t0.elapsed()))
    }

    /// The next hops of the router's route to the VIP.
    pub fn ecmp_nexthops(&self) -> Result<Vec<Ipv4Addr>> {
        bird::ecmp_nexthops(self.bed.router()?)
    }

    /// Waits until the router's route to the VIP has `n` next hops; returns
    /// how long that took.
    pub fn wait_nexthops(&self, n: usize, timeout: Duration) -> Result<Duration> {
        let t0 = Instant::now();
        loop {
            let hops = self.ecmp_nexthops()?;
            if hops.len() == n {
                return Ok(t0.elapsed());
            }
            if t0.elapsed() >= timeout {
                return Err(BedError::Timeout(format!(
                    "{n} next hops to the VIP on the router; it has {hops:?}\nrouter's BGP:\n{}",
                    self.router_protocols()
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `birdc show protocols` on the router (for failure messages).
    pub fn router_protocols(&self) -> String {
        match self.bed.router() {
            Ok(r) => bird::birdc(&bird::socket(&self.bed, r), &["show", "protocols"])
                .unwrap_or_else(|e| e.to_string()),
            Err(e) => e.to_string(),
        }
    }

    /// Switch `i`'s `/metrics`.
    pub fn metrics(&self, i: usize) -> Result<String> {
        baton::admin_get_of(self.bed.hub(), i, "/metrics")
    }

    /// A metric of switch `i` summed over the series matching `labels` (0
    /// when absent).
    pub fn metric(&self, i: usize, name: &str, labels: &[(&str, &str)]) -> Result<f64> {
        Ok(client::metric_sum(&self.metrics(i)?, name, labels).unwrap_or(0.0))
    }

    /// Indexes of the switches whose `baton` runs.
    pub fn running(&mut self) -> Vec<usize> {
        self.switches
            .iter_mut()
            .enumerate()
            .filter_map(|(i, s)| {
                s.baton
                    .as_mut()
                    .is_some_and(|p| p.is_running())
                    .then_some(i)
            })
            .collect()
    }

    /// Fails with its log when switch `i`'s `baton` has exited.
    pub fn ensure_running(&mut self, i: usize) -> Result<()> {
        match self.slot(i)?.baton.as_mut() {
            Some(p) => Ok(p.ensure_running()?),
            None => Err(BedError::Setup(format!("switch {} is stopped", i + 1))),
        }
    }

    /// Switch `i`'s current log (its last start).
    pub fn switch_log(&self, i: usize) -> String {
        self.switches
            .get(i)
            .and_then(|s| s.baton.as_ref())
            .map(|p| p.log_tail(1 << 16))
            .unwrap_or_default()
    }

    /// Namespace of client `k`.
    pub fn client(&self, k: usize) -> &str {
        &self.bed.clients[k].ns
    }

    /// One GET through the VIP from client `k` on a new connection.
    pub fn get(&self, k: usize, path: &str, timeout: Duration) -> Result<Response> {
        let p = path.to_string();
        netns::in_ns(self.client(k), move || {
            client::get(addr::vip_service(), &p, &[], timeout)
        })?
        .map_err(|e| BedError::io(format!("GET {path} via the VIP"), e))
    }

    /// GETs of `path` from client `k` (new connection each) until every
    /// backend in `expect` has answered, or fails after `timeout`.
    pub fn wait_backends(
        &self,
        k: usize,
        path: &str,
        expect: &[&str],
        timeout: Duration,
    ) -> Result<()> {
        let get = || self.get(k, path, Duration::from_secs(3));
        crate::scenario::wait_served_by(get, expect, timeout).map_err(|seen| {
            BedError::Timeout(format!(
                "{path} from client {} to be served by {expect:?}; {seen}\n\
                 first switch's log:\n{}",
                k + 1,
                tail(&self.switch_log(0), 3000)
            ))
        })
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Switches first, gracefully, while their BIRDs still run (the
        // fields' order then stops each BIRD, the router's, the agents…).
        for s in &mut self.switches {
            if let Some(mut p) = s.baton.take() {
                p.stop(baton::WITHDRAW_GRACE + Duration::from_secs(5));
            }
        }
    }
}

/// Who announces: the switch, unless [`ANNOUNCE_ENV`] says `bed`.
fn decide_announce() -> Result<Announce> {
    match std::env::var(ANNOUNCE_ENV).as_deref() {
        Ok("switch") | Err(_) => Ok(Announce::Switch),
        Ok("bed") => Ok(Announce::Bed),
        Ok(other) => Err(BedError::Setup(format!(
            "{ANNOUNCE_ENV}={other}: `switch` or `bed`"
        ))),
    }
}
