//! The bed itself: a hub namespace with the data and management bridges, and
//! one namespace per host joined to them by veth pairs.
//!
//! ```text
//!             hub namespace: br-data 198.18.0.0/24   br-mgmt 198.19.0.0/24 (hub .1)
//!               |        |         |          |              |          |
//!   client c1 .101   c2 .102   switch sw  proxy px .3     backend b1..bN
//!   (data0)          (data0)   data0: no IP, (data0)      data0 .11.., lo: VIP .10
//!                              mgmt0 198.19.0.2            mgmt0 198.19.0.11..
//! ```
//!
//! Interfaces inside a host are always `data0` and `mgmt0`; the hub-side ends
//! are named for the host (`c1d`, `swd`, `b2m`…). Both ends are created
//! directly in their namespaces, so no name ever appears in the root namespace
//! and parallel beds cannot collide; namespace names carry the pid and a
//! per-process counter. Everything is removed on drop.

use crate::addr;
use crate::cleanup::{self, NS_PREFIX};
use crate::error::{BedError, Result};
use crate::netns::{self, IfCounters};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// Name of the data interface inside every host namespace.
pub const DATA_IF: &str = "data0";
/// Name of the management interface inside hosts that have one.
pub const MGMT_IF: &str = "mgmt0";
/// The hub-side end of the switch's data veth.
pub const SWITCH_DATA_PEER: &str = "swd";
/// Queues the switch's data veth is created with (both ends). One is active
/// until an AF_XDP switch asks for one per worker ([`Bed::set_switch_port`]).
pub const SWITCH_DATA_QUEUES: u32 = 8;

/// What to build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BedSpec {
    /// Client hosts (198.18.0.101+).
    pub clients: usize,
    /// Backend hosts (198.18.0.11+ with the VIP on `lo`).
    pub backends: usize,
    /// The switch host (data port without a kernel address).
    pub switch: bool,
    /// A proxy host with a kernel address (198.18.0.3) for nginx/HAProxy.
    pub proxy: bool,
}

impl Default for BedSpec {
    fn default() -> Self {
        BedSpec {
            clients: 2,
            backends: 3,
            switch: true,
            proxy: false,
        }
    }
}

/// One host of the bed.
#[derive(Debug, Clone)]
pub struct Host {
    /// Short role name: `c1`, `sw`, `px`, `b1`…
    pub name: String,
    /// The namespace.
    pub ns: String,
    /// Kernel address on `data0`, if any (the switch has none).
    pub data_ip: Option<Ipv4Addr>,
    /// Kernel address on `mgmt0`, if the host has a management port.
    pub mgmt_ip: Option<Ipv4Addr>,
}

impl Host {
    /// Runs a command in this host and returns stdout.
    pub fn run(&self, prog: &str, args: &[&str]) -> Result<String> {
        netns::run_stdout(Some(&self.ns), prog, args)
    }

    /// Counters of the host's data interface.
    pub fn data_counters(&self) -> Result<IfCounters> {
        netns::if_counters(&self.ns, DATA_IF)
    }

    /// MAC address of the host's data interface.
    pub fn data_mac(&self) -> Result<String> {
        let p = format!("/sys/class/net/{DATA_IF}/address");
        Ok(self.run("cat", &[&p])?.trim().to_string())
    }
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A running test bed; dropping it removes every namespace it made.
#[derive(Debug)]
pub struct Bed {
    id: String,
    hub: String,
    dir: PathBuf,
    namespaces: Vec<String>,
    /// Client hosts.
    pub clients: Vec<Host>,
    /// The switch host, when built.
    pub switch: Option<Host>,
    /// The proxy host, when built.
    pub proxy: Option<Host>,
    /// Backend hosts.
    pub backends: Vec<Host>,
}

impl Bed {
    /// Builds the bed. Needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN).
    pub fn up(spec: &BedSpec) -> Result<Bed> {
        preflight()?;
        raise_nofile();
        for ns in cleanup::sweep_stale() {
            eprintln!("testbed: removed stale namespace {ns}");
        }
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let id = format!("{NS_PREFIX}{}-{n}", std::process::id());
        let dir = std::env::temp_dir().join(&id);
        std::fs::create_dir_all(&dir).map_err(|e| BedError::file(&dir, e))?;
        cleanup::register_dir(&dir);
        let mut bed = Bed {
            hub: format!("{id}-hub"),
            id,
            dir,
            namespaces: Vec::new(),
            clients: Vec::new(),
            switch: None,
            proxy: None,
            backends: Vec::new(),
        };
        // Any error below drops `bed`, which removes what was already made.
        bed.build(spec)?;
        Ok(bed)
    }

    fn build(&mut self, spec: &BedSpec) -> Result<()> {
        let hub = self.hub.clone();
        self.new_ns(&hub)?;
        for br in ["br-data", "br-mgmt"] {
            netns::ip(&hub, &["link", "add", br, "type", "bridge"])?;
            netns::ip(&hub, &["link", "set", br, "up"])?;
        }
        let hub_mgmt = format!("{}/{}", addr::HUB_MGMT, addr::PREFIX);
        netns::ip(&hub, &["addr", "add", &hub_mgmt, "dev", "br-mgmt"])?;

        for i in 0..spec.clients {
            let h = self.host(&format!("c{}", i + 1), Some(addr::client_data(i)), None, 1)?;
            // New-connection benchmarks open tens of thousands of connections.
            netns::sysctl(&h.ns, "net.ipv4.ip_local_port_range", "1024 65000")?;
            netns::sysctl(&h.ns, "net.ipv4.tcp_tw_reuse", "1")?;
            self.clients.push(h);
        }
        if spec.switch {
            let h = self.host("sw", None, Some(addr::SWITCH_MGMT), SWITCH_DATA_QUEUES)?;
            self.switch = Some(h);
            // As a one-queue veth until a switch asks for more.
            self.set_switch_port(1, false)?;
        }
        if spec.proxy {
            let h = self.host("px", Some(addr::PROXY_DATA), None, 1)?;
            netns::sysctl(&h.ns, "net.ipv4.ip_local_port_range", "1024 65000")?;
            netns::sysctl(&h.ns, "net.ipv4.tcp_tw_reuse", "1")?;
            self.proxy = Some(h);
        }
        for i in 0..spec.backends {
            let name = format!("b{}", i + 1);
            let h = self.host(
                &name,
                Some(addr::backend_data(i)),
                Some(addr::backend_mgmt(i)),
                1,
            )?;
            // LVS-DR: the VIP on lo, never announced or answered by ARP.
            let vip = format!("{}/32", addr::VIP);
            netns::ip(&h.ns, &["addr", "add", &vip, "dev", "lo"])?;
            for scope in ["all", DATA_IF] {
                netns::sysctl(&h.ns, &format!("net.ipv4.conf.{scope}.arp_ignore"), "1")?;
                netns::sysctl(&h.ns, &format!("net.ipv4.conf.{scope}.arp_announce"), "2")?;
            }
            self.backends.push(h);
        }
        Ok(())
    }

    fn new_ns(&mut self, ns: &str) -> Result<()> {
        // Registered before creation: a signal between the two still cleans.
        cleanup::register(ns);
        self.namespaces.push(ns.to_string());
        netns::add(ns)?;
        // IPv6 router solicitations and DAD would add noise to counters.
        let _ = netns::sysctl(ns, "net.ipv6.conf.all.disable_ipv6", "1");
        let _ = netns::sysctl(ns, "net.ipv6.conf.default.disable_ipv6", "1");
        Ok(())
    }

    /// A host whose data veth has `data_queues` queues at each end.
    fn host(
        &mut self,
        name: &str,
        data: Option<Ipv4Addr>,
        mgmt: Option<Ipv4Addr>,
        data_queues: u32,
    ) -> Result<Host> {
        let ns = format!("{}-{name}", self.id);
        self.new_ns(&ns)?;
        self.plug(
            &ns,
            &format!("{name}d"),
            DATA_IF,
            "br-data",
            data,
            data_queues,
        )?;
        if let Some(m) = mgmt {
            self.plug(&ns, &format!("{name}m"), MGMT_IF, "br-mgmt", Some(m), 1)?;
        }
        Ok(Host {
            name: name.to_string(),
            ns,
            data_ip: data,
            mgmt_ip: mgmt,
        })
    }

    /// A veth from the hub's bridge `br` to `inner` in `ns`, offloads off,
    /// with `queues` transmit and receive queues at each end.
    fn plug(
        &self,
        ns: &str,
        outer: &str,
        inner: &str,
        br: &str,
        ip: Option<Ipv4Addr>,
        queues: u32,
    ) -> Result<()> {
        let hub = &self.hub;
        let q = queues.to_string();
        let mut args = vec!["link", "add", outer];
        if queues > 1 {
            args.extend(["numtxqueues", &q, "numrxqueues", &q]);
        }
        args.extend(["type", "veth", "peer", "name", inner, "netns", ns]);
        if queues > 1 {
            args.extend(["numtxqueues", &q, "numrxqueues", &q]);
        }
        netns::ip(hub, &args)?;
        netns::ip(hub, &["link", "set", outer, "master", br])?;
        netns::offloads_off(hub, outer)?;
        netns::offloads_off(ns, inner)?;
        netns::ip(hub, &["link", "set", outer, "up"])?;
        if let Some(ip) = ip {
            let a = format!("{ip}/{}", addr::PREFIX);
            netns::ip(ns, &["addr", "add", &a, "dev", inner])?;
        }
        netns::ip(ns, &["link", "set", inner, "up"])?;
        Ok(())
    }

    /// Prepares the switch's data veth for the switch about to start:
    /// `queues` active receive and transmit queues at both ends (`ethtool
    /// -L`; an AF_XDP switch serves one per worker and needs the hub side's
    /// transmit queues to map onto them), and, when `peer_napi`, an XDP
    /// program that passes every frame on the hub side: a veth takes the
    /// frames its peer's XDP program transmits only while it runs NAPI.
    /// (GRO turns NAPI on as well, but then coalesces the ACKs the switch
    /// relays in the kernel, and downloads stall.) Other backends get the
    /// bed's default: one queue, no program.
    pub fn set_switch_port(&self, queues: u32, peer_napi: bool) -> Result<()> {
        let sw = self.switch()?;
        if queues == 0 || queues > SWITCH_DATA_QUEUES {
            return Err(BedError::Setup(format!(
                "the switch's data veth has {SWITCH_DATA_QUEUES} queues; {queues} asked for"
            )));
        }
        let q = queues.to_string();
        for (ns, ifc) in [
            (sw.ns.as_str(), DATA_IF),
            (self.hub.as_str(), SWITCH_DATA_PEER),
        ] {
            netns::run(Some(ns), "ethtool", &["-L", ifc, "rx", &q, "tx", &q])?;
        }
        netns::run(
            Some(&self.hub),
            "ethtool",
            &["-K", SWITCH_DATA_PEER, "gro", "off"],
        )?;
        // Whatever an earlier switch of this bed left there goes first.
        netns::ip(
            &self.hub,
            &["link", "set", "dev", SWITCH_DATA_PEER, "xdp", "off"],
        )?;
        if peer_napi {
            let obj = self.peer_napi_program()?;
            let obj = obj.to_string_lossy();
            netns::ip(
                &self.hub,
                &[
                    "link",
                    "set",
                    "dev",
                    SWITCH_DATA_PEER,
                    "xdpdrv",
                    "obj",
                    &obj,
                    "sec",
                    "xdp",
                ],
            )?;
        } else {
            netns::ip(
                &self.hub,
                &["link", "set", "dev", SWITCH_DATA_PEER, "xdp", "off"],
            )?;
        }
        Ok(())
    }

    /// The pass-everything XDP program, written into the bed's folder.
    #[cfg(feature = "af_xdp")]
    fn peer_napi_program(&self) -> Result<PathBuf> {
        let p = self.path("baton_pass.bpf.o");
        let obj = dataplane::io::af_xdp::program::pass_program_object();
        std::fs::write(&p, obj).map_err(|e| BedError::file(&p, e))?;
        Ok(p)
    }

    #[cfg(not(feature = "af_xdp"))]
    fn peer_napi_program(&self) -> Result<PathBuf> {
        Err(BedError::Setup(
            "the XDP program for the hub side needs the `af_xdp` feature".into(),
        ))
    }

    /// The bed's unique id (`tbed-<pid>-<n>`), also the prefix of its namespaces.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The hub namespace (bridges; 198.19.0.1 on the management bridge).
    pub fn hub(&self) -> &str {
        &self.hub
    }

    /// The bed's working directory (configs, content, logs).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A path in the working directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The switch host; an error if the bed was built without one.
    pub fn switch(&self) -> Result<&Host> {
        self.switch
            .as_ref()
            .ok_or_else(|| BedError::Setup("bed built without a switch".into()))
    }

    /// The proxy host; an error if the bed was built without one.
    pub fn proxy(&self) -> Result<&Host> {
        self.proxy
            .as_ref()
            .ok_or_else(|| BedError::Setup("bed built without a proxy".into()))
    }

    /// Every namespace of the bed, hub first.
    pub fn namespaces(&self) -> &[String] {
        &self.namespaces
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        for ns in self.namespaces.iter().rev() {
            netns::delete(ns);
            cleanup::unregister(ns);
        }
        cleanup::unregister_dir(&self.dir);
        if std::thread::panicking() || std::env::var_os("TESTBED_KEEP_LOGS").is_some() {
            eprintln!("testbed: logs and configs kept in {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Raises this process's open-file limit to its hard limit: servers started
/// by the bed inherit it, and tests open thousands of connections.
pub fn raise_nofile() {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 && r.rlim_cur < r.rlim_max {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}

/// Fails early, with a message saying what to do, when the bed cannot work.
fn preflight() -> Result<()> {
    if !testkit::root::is_root() {
        return Err(BedError::Setup(
            "the test bed creates network namespaces: run as root (CAP_NET_ADMIN)".into(),
        ));
    }
    for tool in ["ip", "ethtool", "sysctl"] {
        if netns::run(None, "sh", &["-c", &format!("command -v {tool}")]).is_err() {
            return Err(BedError::Setup(format!(
                "`{tool}` is missing: run scripts/install-deps.sh"
            )));
        }
    }
    Ok(())
}
