//! Baton in the bed: the `baton` switch in the switch host and `baton-agent`
//! on the backends (relay mode in front of nginx, or the agent's listener
//! example), started from generated profiles that use the shared addresses.
//! The profile and process plumbing takes a switch index so the routed
//! cluster ([`crate::cluster`]) shares it with the single switch's [`Stack`].

use crate::error::{BedError, Result};
use crate::process::Proc;
use crate::topology::{Bed, DATA_IF};
use crate::{addr, client, netns};
use std::path::PathBuf;
use std::time::Duration;

/// The switch's packet I/O backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatonIo {
    /// TPACKET_V3 on the data veth.
    AfPacket,
    /// DPDK with the af_packet PMD on the data veth (`--no-huge --no-pci`).
    Dpdk,
    /// AF_XDP sockets on the data veth (native XDP, one queue per worker),
    /// with the XDP program relaying FORWARDING connections in the kernel
    /// (`fast_path`) or handing every packet to the workers.
    AfXdp { fast_path: bool },
}

impl BatonIo {
    /// `afpacket` / `dpdk` / `afxdp` / `afxdp-nofast`.
    pub fn as_str(self) -> &'static str {
        match self {
            BatonIo::AfPacket => "afpacket",
            BatonIo::Dpdk => "dpdk",
            BatonIo::AfXdp { fast_path: true } => "afxdp",
            BatonIo::AfXdp { fast_path: false } => "afxdp-nofast",
        }
    }

    /// The backend named by [`BatonIo::as_str`] (`af_packet` and `af_xdp`
    /// also accepted).
    pub fn parse(s: &str) -> Option<BatonIo> {
        Some(match s {
            "afpacket" | "af_packet" => BatonIo::AfPacket,
            "dpdk" => BatonIo::Dpdk,
            "afxdp" | "af_xdp" => BatonIo::AfXdp { fast_path: true },
            "afxdp-nofast" | "af_xdp-nofast" => BatonIo::AfXdp { fast_path: false },
            _ => return None,
        })
    }

    /// Every backend's name, for usage messages.
    pub const NAMES: &'static str = "afpacket, dpdk, afxdp or afxdp-nofast";
}

/// The workers' polling mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Polling {
    /// Spin on the queues: peak rate, one core at 100 % by design.
    Busy,
    /// Spin, then block when idle: fair CPU-per-request figures.
    Adaptive,
}

impl Polling {
    /// `busy` / `adaptive`.
    pub fn as_str(self) -> &'static str {
        match self {
            Polling::Busy => "busy",
            Polling::Adaptive => "adaptive",
        }
    }
}

/// How to start the switch.
#[derive(Debug, Clone)]
pub struct SwitchOptions {
    /// Packet I/O backend.
    pub io: BatonIo,
    /// Polling mode.
    pub polling: Polling,
    /// Worker threads (None: the profile's).
    pub workers: Option<u16>,
    /// Extra top-level YAML appended to the generated profile (overrides).
    pub extra_yaml: String,
    /// What runs on each backend (index = backend); missing entries: handover.
    pub agents: Vec<AgentRole>,
    /// Extra environment for `baton` (e.g. the test-only [`FAULTS_ENV`]).
    pub env: Vec<(String, String)>,
}

/// Test-only switch setting: wraps every worker's packet I/O in the
/// dataplane's seeded fault injector, e.g.
/// `seed=7,reorder=0.05,duplicate=0.05,drop=0` (receive side). Only a
/// `baton` built with the controlplane `testing` feature honours it (test
/// builds of the workspace have it; release builds do not).
pub const FAULTS_ENV: &str = "BATON_TEST_FAULTS";

impl SwitchOptions {
    /// The system tests' switch: the test-bed profile as committed.
    pub fn testbed(io: BatonIo) -> Self {
        SwitchOptions {
            io,
            polling: Polling::Adaptive,
            workers: None,
            extra_yaml: String::new(),
            agents: vec![
                AgentRole::Handover,
                AgentRole::Handover,
                AgentRole::Listener,
            ],
            env: Vec::new(),
        }
    }

    /// The benchmark's switch: one worker, handover agents on two nginx backends.
    pub fn bench() -> Self {
        SwitchOptions {
            io: BatonIo::AfPacket,
            polling: Polling::Adaptive,
            workers: Some(1),
            extra_yaml: String::new(),
            agents: vec![AgentRole::Handover, AgentRole::Handover],
            env: Vec::new(),
        }
    }
}

/// What a backend runs in front of (or instead of) its web server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentRole {
    /// `baton-agent` giving adopted connections to nginx itself (handover
    /// library preloaded in nginx; its `accept` on the VIP returns them).
    Handover,
    /// `baton-agent` relaying adopted connections to nginx on 127.0.0.1:8080.
    Relay,
    /// The agent's Rust listener example, serving HTTP itself.
    Listener,
    /// No agent (a backend that is down from the start).
    None,
}

pub use crate::bins::{find_bin, workspace_root};

/// The key id of the bed's THOP key.
pub const THOP_KEY_ID: u32 = 1;

/// The bed's THOP key file: a fresh random key, created on first use with
/// mode 0600 and read by the switch and every agent of the bed (no bed runs
/// with a published key, and none accepts another bed's frames).
pub fn thop_key_file(bed: &Bed) -> Result<PathBuf> {
    secret_file(bed, "thop.key")
}

/// The bed's cluster secret file (`<bed dir>/cluster.secret`): 64 random
/// hex digits, mode 0600, created once per bed and read by every switch of
/// a routed cluster (`cluster.secret_file`).
pub fn cluster_secret_file(bed: &Bed) -> Result<PathBuf> {
    secret_file(bed, "cluster.secret")
}

/// A file of 32 random bytes in hex in the bed's directory, created on
/// first use with mode 0600.
fn secret_file(bed: &Bed, name: &str) -> Result<PathBuf> {
    use std::io::{Read, Write};
    use std::os::unix::fs::OpenOptionsExt;
    let path = bed.path(name);
    if path.is_file() {
        return Ok(path);
    }
    let mut key = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut key))
        .map_err(|e| BedError::Setup(format!("/dev/urandom: {e}")))?;
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
    {
        Ok(mut f) => f
            .write_all(format!("{hex}\n").as_bytes())
            .map_err(|e| BedError::file(&path, e))?,
        // Another thread of this bed made it first: use that one.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(BedError::file(&path, e)),
    }
    Ok(path)
}

/// Backend names of the test-bed profile, by backend index.
pub const PROFILE_BACKENDS: [&str; 3] = ["static-1", "static-2", "app-1"];

/// The agent profile for backend `i` (handover to nginx, relay to nginx, or
/// listener). Handover and relay serve the VIP's :80 and its :443 (HTTPS:
/// nginx terminates TLS on the adopted socket, or on 127.0.0.1:8443 behind
/// the relay, which passes the TLS bytes through); the listener example
/// speaks plain HTTP only, so its profile has the VIP's :80 alone (a CREATE
/// for :443 is refused, and the switch dispatches it elsewhere). Handover
/// and relay list every service for both of the VIP's addresses,
/// 198.18.0.10 and [2001:2::10], in the same mode; so does the listener
/// example, which serves every listener service of its profile.
pub fn agent_config(bed: &Bed, i: usize, role: AgentRole) -> Result<String> {
    let b = &bed.backends[i];
    let http = [addr::vip_service(), addr::vip6_service()];
    let https = [addr::vip_tls_service(), addr::vip6_tls_service()];
    let each = |vips: &[std::net::SocketAddr], rest: &str| -> String {
        vips.iter()
            .map(|v| format!("  - vip: \"{v}\"\n{rest}"))
            .collect()
    };
    let mode = match role {
        AgentRole::Listener => each(&http, "    mode: listener\n"),
        AgentRole::Handover => format!(
            "{}{}handover:\n  socket: {}\n  library: {}\n",
            each(&http, "    mode: handover\n"),
            each(&https, "    mode: handover\n"),
            crate::nginx::handover_socket(bed, b).display(),
            find_bin(crate::nginx::HANDOVER_LIBRARY)?.display()
        ),
        _ => format!(
            "{}{}",
            each(
                &http,
                &format!(
                    "    mode: relay\n    upstream: 127.0.0.1:{}\n",
                    addr::WEB_PORT
                )
            ),
            each(
                &https,
                &format!(
                    "    mode: relay\n    upstream: 127.0.0.1:{}\n",
                    addr::WEB_TLS_PORT
                )
            ),
        ),
    };
    let key_file = thop_key_file(bed)?;
    // Every switch of the bed: each may hand connections off, look them up
    // and must hear of their end.
    let n = bed.switches.len().max(1);
    let switches: Vec<String> = (0..n)
        .map(|i| format!("\"{}\"", addr::switch_data(i)))
        .collect();
    let load_to: Vec<String> = (0..n)
        .map(|i| format!("\"{}:{}\"", addr::switch_data(i), addr::THOP_PORT))
        .collect();
    Ok(format!(
        "# Generated by the Baton test bed for {name}.\n\
         name: {name}\n\
         thop:\n  listen: {data}:{thop}\n  switches: [{switches}]\n  keys:\n    - id: {kid}\n      key_file: \"{key}\"\n  \
         replay_state: \"{state}\"\n\
         services:\n{mode}\
         load:\n  period_ms: 500\n  to: [{load_to}]\n\
         metrics:\n  listen: {mgmt}:{metrics}\n\
         log:\n  format: text\n  level: info\n",
        name = b.name,
        data = addr::backend_data(i),
        mgmt = addr::backend_mgmt(i),
        thop = addr::THOP_PORT,
        switches = switches.join(", "),
        load_to = load_to.join(", "),
        kid = THOP_KEY_ID,
        key = key_file.display(),
        state = bed.dir().join(format!("{}.replay", b.name)).display(),
        metrics = addr::AGENT_METRICS_PORT,
    ))
}

/// The profile file the switch runs: the committed test-bed profile (copied
/// with its includes into the bed's directory, since includes are confined
/// to the profile's folder) plus the overrides of `opts`.
pub fn switch_profile(bed: &Bed, opts: &SwitchOptions) -> Result<PathBuf> {
    write_switch_profile(bed, opts, None)
}

/// Switch `index` (0-based) of a routed cluster, as its profile describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    /// Which switch: its data address is [`addr::switch_data`] of it.
    pub index: usize,
    /// The profile's `cluster` section (secret, announcing through BIRD):
    /// off only while the bed announces the VIP for a switch that does not
    /// know that section.
    pub cluster_section: bool,
}

/// How long a stopping switch keeps forwarding after it withdrew the VIP
/// (the profile's `cluster.announce.withdraw_grace`).
pub const WITHDRAW_GRACE: Duration = Duration::from_secs(1);

/// The profile of switch `m.index` of a routed cluster
/// (`bed-<io>-sw<n>.yaml`): [`switch_profile`]'s, with its own data
/// address, the cluster section (the bed's cluster secret, the VIP announced
/// through its BIRD's control socket and the [`crate::bird::VIP_PROTOCOL`]
/// protocol, [`WITHDRAW_GRACE`]), and SYN cookies always on: stateless
/// handshakes, so any switch completes a handshake another one began.
pub fn member_profile(bed: &Bed, opts: &SwitchOptions, m: Member) -> Result<PathBuf> {
    write_switch_profile(bed, opts, Some(m))
}

fn write_switch_profile(
    bed: &Bed,
    opts: &SwitchOptions,
    member: Option<Member>,
) -> Result<PathBuf> {
    let src = workspace_root().join("configs");
    let dst = bed.path("configs");
    std::fs::create_dir_all(&dst).map_err(|e| BedError::file(&dst, e))?;
    let entries = std::fs::read_dir(&src).map_err(|e| BedError::file(&src, e))?;
    for e in entries.flatten() {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "yaml" || x == "yml") {
            let to = dst.join(e.file_name());
            std::fs::copy(&p, &to).map_err(|e| BedError::file(&to, e))?;
        }
    }
    let base = match opts.io {
        BatonIo::AfPacket => "testbed.yaml",
        BatonIo::Dpdk => "testbed-dpdk.yaml",
        BatonIo::AfXdp { .. } => "testbed-afxdp.yaml",
    };
    if !dst.join(base).is_file() {
        return Err(BedError::Setup(format!("configs/{base} is missing")));
    }
    let stem = match member {
        None => format!("bed-{}", opts.io.as_str()),
        Some(m) => format!("bed-{}-sw{}", opts.io.as_str(), m.index + 1),
    };
    let mut y = format!("# Generated by the Baton test bed.\n<<: !include {base}\nname: {stem}\n");
    if let Some(m) = member {
        // The committed `switch` section with this switch's own address.
        y.push_str(&format!(
            "switch:\n  <<: !include testbed.yaml#switch\n  data_ip: {}\n",
            addr::switch_data(m.index)
        ));
        if m.cluster_section {
            let sw = bed.switch_host(m.index)?;
            y.push_str(&format!(
                "cluster:\n  secret_file: {}\n  announce:\n    bird:\n      socket: {}\n      protocol: {}\n    withdraw_grace: {}ms\n",
                cluster_secret_file(bed)?.display(),
                crate::bird::socket(bed, sw).display(),
                crate::bird::VIP_PROTOCOL,
                WITHDRAW_GRACE.as_millis(),
            ));
        }
    }
    if let Some(w) = opts.workers {
        y.push_str(&format!("workers:\n  count: {w}\n"));
    }
    y.push_str(&format!(
        "thop:\n  keys:\n    - id: {THOP_KEY_ID}\n      secret_file: \"{}\"\n",
        thop_key_file(bed)?.display()
    ));
    // The admin endpoint answers the hub (198.19.0.1, where tests and the
    // demo scrape it) and takes writes with this bed's own token.
    let token = write_admin_token(bed)?;
    y.push_str(&format!(
        "admin:\n  listen: ${{BATON_ADMIN_LISTEN}}\n  allow: [127.0.0.1, {}]\n  token_file: {}\n",
        addr::HUB_MGMT,
        token.display()
    ));
    let mode = opts.polling.as_str();
    y.push_str(&format!(
        "tuning:\n  <<: !include base.yaml#tuning\n  polling:\n    mode: {mode}\n    idle_spins: 256\n    max_sleep: 1ms\n"
    ));
    if member.is_some() {
        y.push_str("  syn_cookies:\n    mode: always\n");
    }
    if opts.io == (BatonIo::AfXdp { fast_path: false }) {
        // The AF_XDP test bed's section with one field changed.
        y.push_str(
            "io:\n  af_xdp:\n    <<: !include testbed-afxdp.yaml#af_xdp\n    fast_path: off\n",
        );
    }
    y.push_str(&opts.extra_yaml);
    let path = dst.join(format!("{stem}.yaml"));
    std::fs::write(&path, y).map_err(|e| BedError::file(&path, e))?;
    Ok(path)
}

/// This bed's admin token file (created on first use, mode 0600).
pub fn admin_token_path(bed: &Bed) -> PathBuf {
    bed.path("admin.token")
}

fn write_admin_token(bed: &Bed) -> Result<PathBuf> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let path = admin_token_path(bed);
    if path.is_file() {
        return Ok(path);
    }
    let mut bytes = [0u8; 24];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .map_err(|e| BedError::io("reading /dev/urandom".to_string(), e))?;
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .and_then(|mut f| writeln!(f, "{token}"))
        .map_err(|e| BedError::file(&path, e))?;
    Ok(path)
}

/// Environment for `baton` in the bed (the profiles' `${BATON_*}` variables).
pub fn switch_env(bed: &Bed) -> Vec<(String, String)> {
    switch_env_of(bed, 0)
}

/// [`switch_env`] for switch `i` (0-based): its own admin address and DPDK
/// file prefix.
pub fn switch_env_of(bed: &Bed, i: usize) -> Vec<(String, String)> {
    let prefix = match i {
        0 => bed.id().to_string(),
        i => format!("{}-sw{}", bed.id(), i + 1),
    };
    vec![
        ("BATON_DATA_IFACE".into(), DATA_IF.into()),
        (
            "BATON_ADMIN_LISTEN".into(),
            addr::switch_metrics_of(i).to_string(),
        ),
        ("BATON_DPDK_FILE_PREFIX".into(), prefix),
        (
            "BATON_DPDK_VDEV".into(),
            format!("net_af_packet0,iface={DATA_IF}"),
        ),
    ]
}

/// The receive queues an AF_XDP switch will serve with `profile`: its
/// `io.af_xdp.queues`, else its `workers.count`, as `baton check-config`
/// resolves them (includes, overrides and variables as the switch will see
/// them).
pub fn switch_queues(
    baton_bin: &std::path::Path,
    profile: &std::path::Path,
    env: &[(String, String)],
) -> Result<u32> {
    let out = std::process::Command::new(baton_bin)
        .arg("check-config")
        .arg("--json")
        .arg(profile)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .map_err(|e| BedError::io(format!("running {} check-config", baton_bin.display()), e))?;
    if !out.status.success() {
        return Err(BedError::Setup(format!(
            "{} does not pass check-config: {}",
            profile.display(),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    queues_of_resolved(&text)
}

/// `io.af_xdp.queues`, else `workers.count`, of a profile resolved to JSON.
fn queues_of_resolved(json: &str) -> Result<u32> {
    let v: serde_json::Value = serde_json::from_str(json).map_err(|e| BedError::Parse {
        what: "baton check-config --json",
        detail: e.to_string(),
    })?;
    v.pointer("/io/af_xdp/queues")
        .and_then(serde_json::Value::as_u64)
        .or_else(|| {
            v.pointer("/workers/count")
                .and_then(serde_json::Value::as_u64)
        })
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| BedError::Parse {
            what: "baton check-config --json",
            detail: "no workers.count".into(),
        })
}

/// Baton running in a bed: the switch and one agent per backend.
#[derive(Debug)]
pub struct Stack {
    /// The agents, by backend index (None: not started or killed).
    pub agents: Vec<Option<Proc>>,
    /// The switch (stopped first on drop, so agents see it go).
    pub switch: Option<Proc>,
    /// The profile the switch runs.
    pub profile: PathBuf,
    /// The switch's packet I/O backend.
    pub io: BatonIo,
    hub: String,
    /// The switch's environment (to start it again).
    env: Vec<(String, String)>,
    /// Times the switch was started (its logs are numbered after the first).
    starts: usize,
}

impl Stack {
    /// Starts an agent per backend, then the switch; waits until the switch's
    /// admin endpoint answers.
    pub fn start(bed: &Bed, opts: &SwitchOptions) -> Result<Stack> {
        let agent_bin = find_bin("baton-agent")?;
        let baton_bin = find_bin("baton")?;
        let mut agents = Vec::new();
        for (i, b) in bed.backends.iter().enumerate() {
            let role = opts.agents.get(i).copied().unwrap_or(AgentRole::Handover);
            if role == AgentRole::None {
                agents.push(None);
                continue;
            }
            agents.push(Some(start_agent(bed, i, role, &agent_bin)?));
            let _ = b;
        }
        let profile = switch_profile(bed, opts)?;
        let mut env = switch_env(bed);
        env.extend(opts.env.iter().cloned());
        prepare_switch_port(bed, 0, opts.io, &baton_bin, &profile, &env)?;
        let mut stack = Stack {
            agents,
            switch: None,
            profile,
            io: opts.io,
            hub: bed.hub().to_string(),
            env,
            starts: 0,
        };
        stack.spawn_switch(bed)?;
        Ok(stack)
    }

    /// Starts the switch process and waits for its admin endpoint.
    fn spawn_switch(&mut self, bed: &Bed) -> Result<()> {
        let name = match self.starts {
            0 => format!("baton-{}.log", self.io.as_str()),
            n => format!("baton-{}.{n}.log", self.io.as_str()),
        };
        self.starts += 1;
        let switch = spawn_switch(bed, 0, self.io, &self.profile, &self.env, &name)?;
        self.switch = Some(switch);
        Ok(())
    }

    /// Stops the switch — at once (`SIGKILL`, a crash) or gracefully
    /// (`SIGTERM`, at most `grace`) — and starts the same build with the
    /// same profile again; returns how long the switch was gone (stop sent
    /// to admin endpoint answering).
    pub fn restart_switch(&mut self, bed: &Bed, crash: bool, grace: Duration) -> Result<Duration> {
        let t0 = std::time::Instant::now();
        if let Some(mut s) = self.switch.take() {
            if crash {
                s.kill_now();
            } else {
                s.stop(grace);
            }
        }
        self.spawn_switch(bed)?;
        Ok(t0.elapsed())
    }

    /// Scrapes the switch's `/metrics` (from the hub's management address).
    pub fn metrics(&self) -> Result<String> {
        admin_get(&self.hub, "/metrics")
    }

    /// A metric summed over the series matching `labels` (0 when absent).
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> Result<f64> {
        Ok(client::metric_sum(&self.metrics()?, name, labels).unwrap_or(0.0))
    }

    /// Asks the switch to reload its profile (SIGHUP).
    pub fn reload(&self) {
        if let Some(s) = &self.switch {
            s.signal(libc::SIGHUP);
        }
    }

    /// Kills backend `i`'s agent at once (SIGKILL).
    pub fn kill_agent(&mut self, i: usize) {
        if let Some(Some(mut a)) = self.agents.get_mut(i).map(Option::take) {
            a.kill_now();
        }
    }

    /// Kills backend `i`'s agent and starts a new one in `role` (a new
    /// process: a new THOP boot, no memory of the old one's connections).
    pub fn restart_agent(&mut self, bed: &Bed, i: usize, role: AgentRole) -> Result<()> {
        self.kill_agent(i);
        let p = start_agent(bed, i, role, &find_bin("baton-agent")?)?;
        if let Some(slot) = self.agents.get_mut(i) {
            *slot = Some(p);
        }
        Ok(())
    }

    /// Fails with the switch's log if it has exited.
    pub fn ensure_running(&mut self) -> Result<()> {
        match self.switch.as_mut() {
            Some(s) => Ok(s.ensure_running()?),
            None => Err(BedError::Setup("switch stopped".into())),
        }
    }

    /// The processes, switch first (for callers that only keep them alive).
    pub fn into_procs(mut self) -> Vec<Proc> {
        let mut v: Vec<Proc> = self.switch.take().into_iter().collect();
        v.extend(self.agents.drain(..).flatten());
        v
    }

    /// The switch's log so far.
    pub fn switch_log(&self) -> String {
        self.switch
            .as_ref()
            .map(|s| s.log_tail(1 << 16))
            .unwrap_or_default()
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // The switch stops first (graceful: SIGTERM), then the agents.
        if let Some(mut s) = self.switch.take() {
            s.stop(Duration::from_secs(5));
        }
    }
}

/// Sets the data veth of switch `i` up for the backend about to start on
/// it: one queue per worker and the hub side's XDP program for AF_XDP
/// (queues as `baton check-config` resolves `profile`), the bed's default
/// otherwise.
pub fn prepare_switch_port(
    bed: &Bed,
    i: usize,
    io: BatonIo,
    baton_bin: &std::path::Path,
    profile: &std::path::Path,
    env: &[(String, String)],
) -> Result<()> {
    match io {
        BatonIo::AfXdp { .. } => {
            let q = switch_queues(baton_bin, profile, env)?;
            bed.set_switch_port_of(i, q, true)
        }
        _ => bed.set_switch_port_of(i, 1, false),
    }
}

/// Starts `baton run --config profile` in switch `i`'s namespace, logging
/// to `<bed dir>/<log>`, and waits until its admin endpoint answers.
pub fn spawn_switch(
    bed: &Bed,
    i: usize,
    io: BatonIo,
    profile: &std::path::Path,
    env: &[(String, String)],
    log: &str,
) -> Result<Proc> {
    let baton_bin = find_bin("baton")?;
    let sw = bed.switch_host(i)?;
    let env_ref: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let prof = profile.display().to_string();
    let label = match bed.switches.len() {
        1 => format!("baton ({})", io.as_str()),
        _ => format!("baton@{} ({})", sw.name, io.as_str()),
    };
    let mut switch = Proc::spawn_env(
        &label,
        &sw.ns,
        &baton_bin.display().to_string(),
        &["run", "--config", &prof],
        &env_ref,
        &bed.path(log),
    )?;
    switch.wait_tcp(addr::switch_metrics_of(i), Duration::from_secs(30))?;
    Ok(switch)
}

/// GET on the switch's admin endpoint from the hub (198.19.0.1).
pub fn admin_get(hub: &str, path: &str) -> Result<String> {
    admin_get_of(hub, 0, path)
}

/// GET on switch `i`'s admin endpoint from the hub.
pub fn admin_get_of(hub: &str, i: usize, path: &str) -> Result<String> {
    let p = path.to_string();
    let a = addr::switch_metrics_of(i);
    let r = netns::in_ns(hub, move || client::get(a, &p, &[], Duration::from_secs(5)))?
        .map_err(|e| BedError::io(format!("GET {path} on the admin endpoint {a}"), e))?;
    Ok(r.text())
}

/// A state-changing call (POST) on the switch's admin endpoint from the hub,
/// with the bed's token; returns (status, body).
pub fn admin_post(bed: &Bed, path: &str) -> Result<(u16, String)> {
    let tf = admin_token_path(bed);
    let token = std::fs::read_to_string(&tf).map_err(|e| BedError::file(&tf, e))?;
    let p = path.to_string();
    let r = netns::in_ns(bed.hub(), move || -> std::io::Result<client::Response> {
        use std::io::Write as _;
        let a = addr::switch_metrics();
        let mut s = client::connect(a, Duration::from_secs(15))?;
        write!(
            s,
            "POST {p} HTTP/1.1\r\nHost: {a}\r\nAuthorization: Bearer {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            token.trim()
        )?;
        client::read_response(&mut s, &mut Vec::new())
    })?
    .map_err(|e| BedError::io(format!("POST {path} on the switch admin endpoint"), e))?;
    Ok((r.status, r.text()))
}

/// Starts `baton-agent` (or the listener example) on backend `i`.
pub fn start_agent(
    bed: &Bed,
    i: usize,
    role: AgentRole,
    agent_bin: &std::path::Path,
) -> Result<Proc> {
    let b = &bed.backends[i];
    let dir = bed.path(&b.name);
    std::fs::create_dir_all(&dir).map_err(|e| BedError::file(&dir, e))?;
    let conf = dir.join("agent.yaml");
    std::fs::write(&conf, agent_config(bed, i, role)?).map_err(|e| BedError::file(&conf, e))?;
    let log = dir.join("agent.log");
    let c = conf.display().to_string();
    let mut p = match role {
        AgentRole::Listener => {
            let ex = find_bin(&format!("examples/{LISTENER_EXAMPLE}"))?;
            let root = bed.path(&format!("{}/nginx/www", b.name));
            if !root.is_dir() {
                crate::content::write_site(&root, &b.name)?;
            }
            let r = root.display().to_string();
            Proc::spawn(
                &format!("listener@{}", b.name),
                &b.ns,
                &ex.display().to_string(),
                &["--config", &c, "--root", &r, "--name", &b.name],
                &log,
            )?
        }
        _ => Proc::spawn(
            &format!("agent@{}", b.name),
            &b.ns,
            &agent_bin.display().to_string(),
            &["run", "--config", &c],
            &log,
        )?,
    };
    let metrics = std::net::SocketAddr::from((addr::backend_mgmt(i), addr::AGENT_METRICS_PORT));
    p.wait_tcp(metrics, Duration::from_secs(15))?;
    Ok(p)
}

/// The agent crate's listener example (serves HTTP on adopted connections).
pub const LISTENER_EXAMPLE: &str = "handoff_server";

/// Starts the agents and the switch; returns the processes (switch first,
/// so it stops first). Used by the benchmark.
pub fn start_stack(bed: &Bed, opts: &SwitchOptions) -> Result<Vec<Proc>> {
    let stack = Stack::start(bed, opts)?;
    let procs = stack.into_procs();
    wait_serving(
        bed,
        &addr::vip_service(),
        "/static/1k.bin",
        Duration::from_secs(20),
    )?;
    Ok(procs)
}

/// Waits until a request through `svc` from the first client succeeds.
pub fn wait_serving(
    bed: &Bed,
    svc: &std::net::SocketAddr,
    path: &str,
    timeout: Duration,
) -> Result<()> {
    let deadline = std::time::Instant::now() + timeout;
    let ns = bed.clients[0].ns.clone();
    loop {
        let (svc2, p2) = (*svc, path.to_string());
        let r = netns::in_ns(&ns, move || {
            client::get(svc2, &p2, &[], Duration::from_secs(2))
        })?;
        match r {
            Ok(resp) if resp.status == 200 => return Ok(()),
            other => {
                if std::time::Instant::now() >= deadline {
                    return Err(BedError::Timeout(format!(
                        "a 200 for {path} through {svc}; last: {other:?}"
                    )));
                }
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for io in [
            BatonIo::AfPacket,
            BatonIo::Dpdk,
            BatonIo::AfXdp { fast_path: true },
            BatonIo::AfXdp { fast_path: false },
        ] {
            assert_eq!(BatonIo::parse(io.as_str()), Some(io));
        }
        assert_eq!(BatonIo::parse("nope"), None);
    }

    #[test]
    fn queues_come_from_the_resolved_profile() {
        let workers = r#"{"io":{"af_xdp":{"interface":"data0"}},"workers":{"count":2}}"#;
        assert_eq!(queues_of_resolved(workers).unwrap(), 2);
        let queues = r#"{"io":{"af_xdp":{"interface":"data0","queues":3}},"workers":{"count":3}}"#;
        assert_eq!(queues_of_resolved(queues).unwrap(), 3);
        assert!(queues_of_resolved("{}").is_err());
    }
}
