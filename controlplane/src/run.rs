//! `baton run`: opens the data port, starts one pinned worker thread per
//! queue, the control-plane thread, the admin endpoint, and waits for
//! signals: SIGHUP reloads the profile, SIGTERM/SIGINT stop gracefully (stop
//! accepting, let handoffs and connections finish within
//! `timeouts.shutdown_grace`, then stop).

use std::collections::HashMap;
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use dataplane::dispatch::{channels, Commander, LocalDecider, WorkerCommand};
use dataplane::io::memory::MemoryIo;
use dataplane::io::{PacketIo, PortMonitor};
use dataplane::worker::Worker;
use dataplane::{Counters, WorkerConfig};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::admin::{AdminContext, AdminServer, Reloader};
use crate::compile;
use crate::config::{load_file_with, properties_from_env, IoSection, Profile};
use crate::control::{AdminRequest, Clock, ControlPlane, ReloadOutcome};
use crate::metrics::Metrics;

/// Entry point of `baton run`.
pub fn main(config: &Path, set: &[(String, String)]) -> ExitCode {
    let props = properties_from_env(set);
    let loaded = match load_file_with(config, &props) {
        Ok(l) => l,
        Err(errs) => {
            for e in &errs.0 {
                eprintln!("error: {e}");
            }
            eprintln!(
                "{}: {} problem(s); not starting",
                config.display(),
                errs.0.len()
            );
            return ExitCode::from(2);
        }
    };
    crate::logging::init(&loaded.profile.logging);
    let switch = match Switch::start(loaded.profile, config, props) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut signals = match Signals::new([SIGHUP, SIGTERM, SIGINT]) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: cannot install signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    };
    for sig in signals.forever() {
        match sig {
            SIGHUP => match switch.reload() {
                Ok(o) => {
                    tracing::info!(generation = o.generation, restart_required = ?o.restart_required, "SIGHUP: reloaded")
                }
                Err(e) => {
                    tracing::error!(error = %e, "SIGHUP: reload failed; the running profile stays")
                }
            },
            _ => {
                tracing::info!(
                    signal = sig,
                    "stopping gracefully (signal again to stop at once)"
                );
                let stopper = std::thread::spawn(move || switch.shutdown());
                while !stopper.is_finished() {
                    if signals.pending().any(|s| s == SIGTERM || s == SIGINT) {
                        tracing::warn!("second stop signal: stopping at once");
                        return ExitCode::from(130);
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                return ExitCode::SUCCESS;
            }
        }
    }
    ExitCode::SUCCESS
}

/// A running switch (also started in-process by tests).
pub struct Switch {
    workers: Vec<JoinHandle<()>>,
    hard_stop: Arc<AtomicBool>,
    /// Commands to the workers; each one rings the worker's doorbell.
    commands: Commander,
    control: Option<JoinHandle<()>>,
    control_stop: Arc<AtomicBool>,
    admin: Option<AdminServer>,
    reloader: Arc<Reloader>,
    stopping: Arc<AtomicBool>,
    grace: Duration,
    /// Announces the VIPs (`cluster.announce`) and how long to keep serving
    /// after withdrawing them on stop.
    announcer: Option<(Arc<crate::announce::Announcer>, Duration)>,
    /// The workers' counters, in worker order.
    pub counters: Vec<Arc<Counters>>,
    pub metrics: Arc<Metrics>,
    pub admin_tx: Sender<AdminRequest>,
}

impl Switch {
    /// Starts everything for `profile` (read from `path`, used again on reload).
    pub fn start(
        profile: Profile,
        path: &Path,
        props: HashMap<String, String>,
    ) -> Result<Switch, String> {
        let n = usize::from(profile.workers.count);
        let metrics = Arc::new(Metrics::new(&profile.name));
        // Open the data port first: the commonest start-up failure, reported plainly.
        let (ios, mac, monitor) = open_io(&profile, n)?;
        let wcfg = compile::worker_config(&profile, mac).map_err(|e| e.to_string())?;
        let (wqs, cq) = channels(n, profile.limits.dispatch_queue as usize);
        let shared = wqs[0].shared.clone();
        let clock: Clock = Arc::new(move || shared.now_ns());
        let commands = cq.commander();

        let mut control = ControlPlane::new(profile.clone(), metrics.clone(), clock)?;
        let announcer = match &profile.cluster.announce {
            Some(a) => Some(Arc::new(
                crate::announce::Announcer::start(&a.bird, metrics.clone())
                    .map_err(|e| format!("cannot start the announcer: {e}"))?,
            )),
            None => None,
        };
        if let Some(a) = &announcer {
            control.set_announcer(a.clone());
        }
        let generation = control.generation();
        // Workers decide stateless pools themselves (tuning.local_decisions).
        let mut deciders = control.local_deciders(n).into_iter();
        let (admin_tx, admin_rx) = crossbeam_channel::bounded(64);
        let control_stop = Arc::new(AtomicBool::new(false));
        let cstop = control_stop.clone();
        let control_core = profile.workers.control_core;
        let control_thread = std::thread::Builder::new()
            .name("control".into())
            .spawn(move || {
                if let Some(c) = control_core {
                    pin("control", c);
                }
                control.run(cq, admin_rx, cstop)
            })
            .map_err(|e| e.to_string())?;

        // The admin endpoint before the workers: a taken port fails the start cleanly.
        let reloader = Arc::new(Reloader {
            path: path.to_path_buf(),
            props,
            admin_tx: admin_tx.clone(),
            metrics: metrics.clone(),
        });
        let stopping = Arc::new(AtomicBool::new(false));
        let admin = AdminServer::start(
            &profile.admin,
            AdminContext {
                metrics: metrics.clone(),
                admin_tx: admin_tx.clone(),
                generation,
                reloader: reloader.clone(),
                profile_name: profile.name.clone(),
                stopping: stopping.clone(),
                capture: Some(crate::admin::capture::CaptureSource {
                    shared: wqs[0].shared.clone(),
                    port_name: port_name(&profile.io),
                }),
            },
        )
        .inspect_err(|_| control_stop.store(true, Ordering::Relaxed))?;

        let hard_stop = Arc::new(AtomicBool::new(false));
        let fail = |e: String| {
            hard_stop.store(true, Ordering::Relaxed);
            commands.wake_all();
            control_stop.store(true, Ordering::Relaxed);
            e
        };
        let (counter_tx, counter_rx) = crossbeam_channel::bounded(n);
        let mut workers = Vec::with_capacity(n);
        for (i, (io, q)) in ios.into_iter().zip(wqs).enumerate() {
            let core = profile.workers.cores.get(i).copied();
            let w = spawn_worker(
                i,
                io,
                q,
                wcfg.clone(),
                core,
                deciders.next(),
                hard_stop.clone(),
                counter_tx.clone(),
            );
            workers.push(w.map_err(fail)?);
        }
        let mut counters = Vec::with_capacity(n);
        for _ in 0..n {
            match counter_rx.recv_timeout(Duration::from_secs(30)) {
                Ok(Ok((i, c))) => counters.push((i, c)),
                Ok(Err(e)) => return Err(fail(e)),
                Err(_) => return Err(fail("a worker did not start".into())),
            }
        }
        counters.sort_by_key(|(i, _)| *i);
        let counters: Vec<Arc<Counters>> = counters.into_iter().map(|(_, c)| c).collect();
        metrics.set_workers(counters.clone());
        if let Some(m) = monitor {
            for note in m.notes() {
                tracing::warn!(port = %m.name(), "{note}");
            }
            metrics.set_port(m);
        }
        tracing::info!(
            profile = %profile.name,
            workers = n,
            io = io_name(&profile),
            forwarding = compile::forwarding_mode(&profile),
            admin = %admin.addr(),
            services = profile.services.len(),
            backends = profile.backends.len(),
            "baton running"
        );
        Ok(Switch {
            workers,
            hard_stop,
            commands,
            control: Some(control_thread),
            control_stop,
            admin: Some(admin),
            reloader,
            stopping,
            grace: profile.timeouts.shutdown_grace.0,
            announcer: announcer.map(|a| {
                // The workers run: from now on the VIPs may be announced.
                a.set_ready();
                let grace = profile
                    .cluster
                    .announce
                    .as_ref()
                    .map_or(Duration::ZERO, |c| c.withdraw_grace.0);
                (a, grace)
            }),
            counters,
            metrics,
            admin_tx,
        })
    }

    /// The admin endpoint's address.
    pub fn admin_addr(&self) -> Option<std::net::SocketAddr> {
        self.admin.as_ref().map(|a| a.addr())
    }

    /// Re-reads the profile file and swaps it in.
    pub fn reload(&self) -> Result<ReloadOutcome, String> {
        self.reloader.reload()
    }

    /// Graceful stop: refuse new connections, let the others finish within
    /// the grace period, then stop everything.
    pub fn shutdown(mut self) {
        if let Some((a, grace)) = self.announcer.take() {
            // Routers first: they move the flows to the other switches (which
            // recover them from the agents) while this one still serves.
            let done = a.withdraw_for_stop(Duration::from_secs(3));
            tracing::info!(
                confirmed = done,
                grace_ms = grace.as_millis() as u64,
                "stopping: VIPs withdrawn, serving on while the routers move the flows"
            );
            std::thread::sleep(grace);
        }
        self.stopping.store(true, Ordering::Relaxed);
        self.commands
            .try_broadcast(WorkerCommand::Stop { now: false });
        let deadline = Instant::now() + self.grace;
        while Instant::now() < deadline && self.workers.iter().any(|w| !w.is_finished()) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let left = self.workers.iter().filter(|w| !w.is_finished()).count();
        if left > 0 {
            tracing::warn!(
                workers = left,
                "grace period over; stopping with connections open"
            );
            self.commands
                .try_broadcast(WorkerCommand::Stop { now: true });
            self.hard_stop.store(true, Ordering::Relaxed);
            self.commands.wake_all();
        }
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        self.stop_rest();
        tracing::info!("stopped");
    }

    fn stop_rest(&mut self) {
        self.control_stop.store(true, Ordering::Relaxed);
        if let Some(c) = self.control.take() {
            let _ = c.join();
        }
        self.admin.take();
    }
}

impl Drop for Switch {
    fn drop(&mut self) {
        self.hard_stop.store(true, Ordering::Relaxed);
        self.commands.wake_all();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        self.stop_rest();
    }
}

fn io_name(p: &Profile) -> &'static str {
    match p.io {
        IoSection::AfPacket(_) => "af_packet",
        IoSection::AfXdp(_) => "af_xdp",
        IoSection::Dpdk(_) => "dpdk",
        IoSection::Memory(_) => "memory",
    }
}

/// One queue per worker, the port's MAC and its monitor.
type Opened = (Vec<WorkerIo>, [u8; 6], Option<Arc<dyn PortMonitor>>);

/// A worker's queue: a real port's or an in-memory one (dry runs, tests).
pub enum WorkerIo {
    Port(dataplane::io::AnyQueue),
    Memory(MemoryIo),
}

fn open_io(p: &Profile, n: usize) -> Result<Opened, String> {
    match compile::io_config(p) {
        Some(cfg) => {
            let queues = dataplane::io::open(&cfg, n)
                .map_err(|e| format!("cannot open the data port: {e}"))?;
            let mac = queues.first().map(|q| q.mac()).unwrap_or_default();
            let monitor = queues.first().map(|q| q.monitor());
            Ok((
                queues.into_iter().map(WorkerIo::Port).collect(),
                mac,
                monitor,
            ))
        }
        None => {
            let cap = match &p.io {
                IoSection::Memory(m) => m.capacity as usize,
                _ => 4096,
            };
            // A locally administered MAC for the dry-run port.
            Ok((
                (0..n)
                    .map(|_| WorkerIo::Memory(MemoryIo::new(cap)))
                    .collect(),
                [0x02, 0xba, 0x70, 0, 0, 0x02],
                None,
            ))
        }
    }
}

type CounterMsg = Result<(usize, Arc<Counters>), String>;

#[allow(clippy::too_many_arguments)]
fn spawn_worker(
    i: usize,
    io: WorkerIo,
    q: dataplane::dispatch::WorkerQueues,
    cfg: WorkerConfig,
    core: Option<u16>,
    decider: Option<Box<dyn LocalDecider>>,
    stop: Arc<AtomicBool>,
    report: Sender<CounterMsg>,
) -> Result<JoinHandle<()>, String> {
    fn run<Io: PacketIo>(
        i: usize,
        io: Io,
        q: dataplane::dispatch::WorkerQueues,
        cfg: &WorkerConfig,
        decider: Option<Box<dyn LocalDecider>>,
        stop: &AtomicBool,
        report: &Sender<CounterMsg>,
    ) {
        match Worker::new(i as u16, cfg, io, q) {
            Ok(mut w) => {
                if let Some(d) = decider {
                    w.set_decider(d);
                }
                let _ = report.send(Ok((i, w.counters())));
                w.run(stop);
            }
            Err(e) => {
                let _ = report.send(Err(format!("worker {i}: {e}")));
            }
        }
    }
    std::thread::Builder::new()
        .name(format!("worker-{i}"))
        .spawn(move || {
            if let Some(c) = core {
                pin(&format!("worker-{i}"), c);
            }
            match io {
                WorkerIo::Port(q0) => {
                    #[cfg(feature = "testing")]
                    if let Some(f) = test_faults() {
                        let faulty = dataplane::io::faulty::FaultyIo::new(q0, f);
                        return run(i, faulty, q, &cfg, decider, &stop, &report);
                    }
                    run(i, q0, q, &cfg, decider, &stop, &report)
                }
                WorkerIo::Memory(m) => run(i, m, q, &cfg, decider, &stop, &report),
            }
        })
        .map_err(|e| format!("cannot start worker {i}: {e}"))
}

/// Test-only, compiled with the `testing` feature alone (the namespace test
/// bed's fault tests, docs/testbed.md; release builds do not have it):
/// `BATON_TEST_FAULTS="seed=7,reorder=0.05,duplicate=0.05,drop=0"` wraps each
/// worker's packet I/O in the dataplane's seeded `FaultyIo` (receive side).
/// An environment variable, never a profile field, so no operator's profile
/// can turn it on. A malformed value is ignored with an error log.
#[cfg(feature = "testing")]
fn test_faults() -> Option<dataplane::io::faulty::FaultConfig> {
    let spec = std::env::var("BATON_TEST_FAULTS").ok()?;
    let mut f = dataplane::io::faulty::FaultConfig::default();
    for kv in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        let ok = match k {
            "seed" => v.parse().ok().inspect(|x| f.seed = *x).is_some(),
            "drop" => v.parse().ok().inspect(|x| f.drop = *x).is_some(),
            "duplicate" => v.parse().ok().inspect(|x| f.duplicate = *x).is_some(),
            "reorder" => v.parse().ok().inspect(|x| f.reorder = *x).is_some(),
            _ => false,
        };
        if !ok {
            tracing::error!(
                setting = kv,
                "BATON_TEST_FAULTS: cannot parse; fault injection off"
            );
            return None;
        }
    }
    tracing::warn!(
        ?f,
        "TEST-ONLY fault injection on every worker's packet I/O (BATON_TEST_FAULTS)"
    );
    Some(f)
}

/// Pins the calling thread to `core`; a failure is logged, not fatal.
fn pin(name: &str, core: u16) {
    // SAFETY: cpu_set_t is plain data; CPU_SET writes inside it; the call
    // affects only the calling thread (pid 0).
    let ok = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(usize::from(core), &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    };
    if ok {
        tracing::info!(thread = name, core, "pinned");
    } else {
        tracing::warn!(thread = name, core, error = %std::io::Error::last_os_error(), "cannot pin thread to core");
    }
}

/// The data port as a capture file names it.
fn port_name(io: &crate::config::types::IoSection) -> String {
    use crate::config::types::IoSection;
    match io {
        IoSection::AfPacket(a) => format!("{} (AF_PACKET)", a.interface),
        IoSection::AfXdp(a) => format!("{} (AF_XDP)", a.interface),
        IoSection::Dpdk(_) => "DPDK port 0".to_string(),
        IoSection::Memory(_) => "memory".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pin_sets_the_calling_threads_affinity_only() {
        let got = std::thread::spawn(|| {
            pin("t", 0);
            // SAFETY: reading our own affinity into a zeroed set.
            unsafe {
                let mut set: libc::cpu_set_t = std::mem::zeroed();
                assert_eq!(
                    libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set),
                    0
                );
                (0..libc::CPU_SETSIZE as usize)
                    .filter(|&c| libc::CPU_ISSET(c, &set))
                    .collect::<Vec<_>>()
            }
        })
        .join()
        .unwrap();
        assert_eq!(got, vec![0]);
    }
}
