//! `baton` stopped and started again and again under load (same profile):
//! no client may hang. Each request either completes or fails fast; a
//! request connected to the switch and then left without an answer until
//! the client's timeout is a hang, and so is a connect nobody answers.
//!
//! A restarted switch numbers its connections from the start again, while
//! the agents still remember the previous run's recent connection ids; an
//! agent that takes a new connection for a duplicate of an old one never
//! adopts it, and that client waits forever. This attack finds it.

use super::{Legit, LegitSpec, Outcome, Size, LEGIT};
use crate::addr;
use crate::baton::{self, BatonIo};
use crate::error::Result;
use crate::process::Proc;
use crate::scenario::{Running, STATIC_POOL};
use std::time::{Duration, Instant};

/// Parameters of the restarts.
#[derive(Debug, Clone, Copy)]
pub struct Restarts {
    /// Stop-start cycles.
    pub cycles: usize,
    /// Time the switch serves between two restarts.
    pub up: Duration,
    /// Legitimate client threads.
    pub threads: usize,
}

impl Restarts {
    /// The size's parameters.
    pub fn new(size: Size) -> Restarts {
        match size {
            Size::Short => Restarts {
                cycles: 5,
                up: Duration::from_secs(2),
                threads: 4,
            },
            Size::Full => Restarts {
                cycles: 5,
                up: Duration::from_secs(8),
                threads: 8,
            },
        }
    }
}

/// Profile overrides: a short shutdown grace, so a stop takes seconds.
pub fn profile_yaml() -> String {
    "timeouts:\n  <<: !include base.yaml#timeouts\n  shutdown_grace: 2s\n".to_string()
}

/// Stops the running switch (SIGTERM, its graceful stop) and starts a new
/// one on the same profile; returns when its admin endpoint answers.
pub fn restart_switch(sys: &mut Running, io: BatonIo) -> Result<Duration> {
    let t = Instant::now();
    if let Some(mut old) = sys.stack.switch.take() {
        old.stop(Duration::from_secs(15));
    }
    start_switch(sys, io)?;
    Ok(t.elapsed())
}

/// Starts a switch on the running system's profile in place of one that
/// stopped or died; returns when its admin endpoint answers.
pub fn start_switch(sys: &mut Running, io: BatonIo) -> Result<()> {
    let bin = baton::find_bin("baton")?;
    let env = baton::switch_env(&sys.bed);
    let env_ref: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let log = sys.bed.path(&format!("baton-{}.log", io.as_str()));
    let prof = sys.stack.profile.display().to_string();
    let mut p = Proc::spawn_env(
        &format!("baton ({})", io.as_str()),
        &sys.bed.switch()?.ns,
        &bin.display().to_string(),
        &["run", "--config", &prof],
        &env_ref,
        &log,
    )?;
    p.wait_tcp(addr::switch_metrics(), Duration::from_secs(30))?;
    sys.stack.switch = Some(p);
    Ok(())
}

/// Runs the restarts against a system started with [`profile_yaml`].
pub fn run(sys: &mut Running, p: Restarts) -> Result<Outcome> {
    let io = super::synflood::sys_io(sys);
    let mut o = Outcome::new("switch_restarts", io);
    let spec = LegitSpec {
        threads: p.threads,
        gap: Duration::from_millis(5),
        connect_timeout: Duration::from_secs(5),
        timeout: Duration::from_secs(3),
        ..LegitSpec::small()
    };
    let legit = Legit::start(sys.client(LEGIT), spec);
    std::thread::sleep(p.up);
    let t0 = Instant::now();
    let mut downtimes = Vec::new();
    for _ in 0..p.cycles {
        let d = restart_switch(sys, io)?;
        downtimes.push(format!("{:.1}", d.as_secs_f64()));
        o.sent += 1;
        std::thread::sleep(p.up);
    }
    o.seconds = t0.elapsed().as_secs_f64();
    let served = sys.wait_backends("/static/1k.bin", &STATIC_POOL, Duration::from_secs(15));
    let r = legit.stop();
    o.check(
        "no request hangs (answered or failed fast)",
        r.hung == 0 && r.connect_timeouts == 0 && r.ok > 0,
        format!(
            "{} served, {} failed ({} within 1 s), {} hung after connecting, {} connects unanswered; {:?}",
            r.ok, r.failed, r.failed_fast, r.hung, r.connect_timeouts, r.errors
        ),
    );
    o.check(
        "serving after the last restart",
        served.is_ok(),
        served.err().map(|e| e.to_string()).unwrap_or_default(),
    );
    o.figure("restart_seconds", downtimes.join(","));
    // Failures during a restart are expected; hangs are not. The success
    // rate is a figure here, not a check.
    o.figure(
        "legit_success_pct",
        format!("{:.2}", r.success_rate() * 100.0),
    );
    o.legit = r;
    Ok(o)
}
