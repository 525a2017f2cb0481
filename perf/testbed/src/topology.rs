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
//! The data segment is dual-stack: every host with a kernel address on
//! `br-data` also holds its IPv6 twin from 2001:2::/64 (198.18.0.11 and
//! 2001:2::11; the backends hold the VIP's 2001:2::10 on `lo` beside
//! 198.18.0.10), with IPv6 turned on for `data0` (and the backends' `lo`)
//! alone: no router solicitations, no autoconfiguration, no duplicate
//! address detection, so addresses are usable at once and the only IPv6
//! frames are the tests' own and neighbour discovery. The management
//! segment, the switch's data port and a routed bed's client segment stay
//! IPv4-only.
//!
//! A routed bed ([`BedSpec::routed`]) is the cluster of several switches
//! behind a router, as a site runs it: the clients move to a third bridge,
//! `br-cl` (198.18.1.0/24), and reach the VIP only through the router
//! namespace `rt`, which spreads the VIP's flows over the switches
//! `sw1`…`swN` by ECMP (the routes come from BGP: see [`crate::bird`]).
//! The backends answer the clients through the router too, so the paths
//! are asymmetric and reverse-path filtering is off where they cross.
//!
//! ```text
//!   clients c1 .101, c2 .102 --- br-cl 198.18.1.0/24
//!                                   | cl0 .1
//!                      router rt  (ip_forward, 4-tuple ECMP hash, BIRD: AS 65000)
//!                      data0 198.18.0.1      mgmt0 198.19.0.254
//!                                   |                 |
//!   br-data: sw1 .2, sw2 .4, sw3 .5 (no kernel address)  backends .11–.13
//!   br-mgmt: sw1 .2, sw2 .4, sw3 .5 (BIRD: AS 65001…, BGP to .254)
//! ```
//!
//! Interfaces inside a host are always `data0` and `mgmt0` (the router's
//! client side is `cl0`); the hub-side ends are named for the host (`c1d`,
//! `swd`, `sw2d`, `b2m`, `rtc`…). Both ends are created directly in their
//! namespaces, so no name ever appears in the root namespace and parallel
//! beds cannot collide; namespace names carry the pid and a per-process
//! counter. Everything is removed on drop.

use crate::addr;
use crate::cleanup::{self, NS_PREFIX};
use crate::error::{BedError, Result};
use crate::netns::{self, IfCounters};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// Name of the data interface inside every host namespace.
pub const DATA_IF: &str = "data0";
/// Name of the management interface inside hosts that have one.
pub const MGMT_IF: &str = "mgmt0";
/// The hub-side end of the switch's data veth (in a bed of one unrouted
/// switch; see [`Bed::switch_data_peer`]).
pub const SWITCH_DATA_PEER: &str = "swd";
/// The router's interface on the clients' bridge (`br-cl`).
pub const ROUTER_CLIENT_IF: &str = "cl0";
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
    /// Switch hosts (data port without a kernel address): 0 (a bed for
    /// the proxies only), 1 (`sw`), or up to [`addr::MAX_SWITCHES`] in a
    /// routed bed (`sw1`…).
    pub switches: usize,
    /// A router between the clients (198.18.1.0/24) and the switches, which
    /// it reaches by ECMP routes to the VIP; needs at least one switch.
    pub routed: bool,
    /// A proxy host with a kernel address (198.18.0.3) for nginx/HAProxy.
    pub proxy: bool,
}

impl Default for BedSpec {
    fn default() -> Self {
        BedSpec {
            clients: 2,
            backends: 3,
            switches: 1,
            routed: false,
            proxy: false,
        }
    }
}

impl BedSpec {
    /// The routed cluster: `switches` switches behind the router, two
    /// clients, three backends.
    pub fn cluster(switches: usize) -> Self {
        BedSpec {
            switches,
            routed: true,
            ..BedSpec::default()
        }
    }

    /// Refuses what the bed cannot build.
    pub fn check(&self) -> Result<()> {
        if self.routed && self.switches == 0 {
            return Err(BedError::Setup(
                "a routed bed needs at least one switch behind its router".into(),
            ));
        }
        if self.switches > 1 && !self.routed {
            return Err(BedError::Setup(
                "several switches need a routed bed: only a router spreads the VIP over them"
                    .into(),
            ));
        }
        if self.switches > addr::MAX_SWITCHES {
            return Err(BedError::Setup(format!(
                "at most {} switches ({} asked for)",
                addr::MAX_SWITCHES,
                self.switches
            )));
        }
        if self.clients > 100 || self.backends > 89 {
            return Err(BedError::Setup(format!(
                "{} clients and {} backends: at most 100 and 89",
                self.clients, self.backends
            )));
        }
        Ok(())
    }
}

/// One host of the bed.
#[derive(Debug, Clone)]
pub struct Host {
    /// Short role name: `c1`, `sw` (`sw1`… in a routed bed), `rt`, `px`, `b1`…
    pub name: String,
    /// The namespace.
    pub ns: String,
    /// Kernel address on `data0`, if any (the switch has none).
    pub data_ip: Option<Ipv4Addr>,
    /// IPv6 kernel address on `data0` (2001:2::/64), for hosts on the
    /// data segment that have an IPv4 one there.
    pub data_ip6: Option<Ipv6Addr>,
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
    /// The switch hosts (none, one, or the routed cluster's).
    pub switches: Vec<Host>,
    /// The router of a routed bed.
    pub router: Option<Host>,
    /// The proxy host, when built.
    pub proxy: Option<Host>,
    /// Backend hosts.
    pub backends: Vec<Host>,
}

/// A bed is its directory where files are concerned (the TLS files, for
/// example, are named relative to it).
impl AsRef<Path> for Bed {
    fn as_ref(&self) -> &Path {
        &self.dir
    }
}

impl Bed {
    /// Builds the bed. Needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN).
    pub fn up(spec: &BedSpec) -> Result<Bed> {
        spec.check()?;
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
            switches: Vec::new(),
            router: None,
            proxy: None,
            backends: Vec::new(),
        };
        // Any error below drops `bed`, which removes what was already made.
        bed.build(spec)?;
        // A fresh CA, server certificate and ticket key for this bed.
        crate::tls::generate(&bed.dir)?;
        Ok(bed)
    }

    fn build(&mut self, spec: &BedSpec) -> Result<()> {
        let hub = self.hub.clone();
        self.new_ns(&hub)?;
        let bridges: &[&str] = if spec.routed {
            &["br-data", "br-mgmt", CLIENT_BRIDGE]
        } else {
            &["br-data", "br-mgmt"]
        };
        for br in bridges {
            // No multicast snooping: the bed has no MLD querier, and a
            // bridge floods neighbour solicitations to every port, as a
            // plain segment would.
            netns::ip(
                &hub,
                &["link", "add", br, "type", "bridge", "mcast_snooping", "0"],
            )?;
            netns::ip(&hub, &["link", "set", br, "up"])?;
        }
        // The bridges are wires: with `br_netfilter` loaded (by anything
        // on the machine), bridged frames would pass the hub's firewall,
        // which also drops IP packets it finds malformed before they reach
        // the switch. Without the module there is nothing to turn off.
        let _ = sysctls(
            &hub,
            &["iptables", "ip6tables", "arptables"]
                .map(|t| (format!("net.bridge.bridge-nf-call-{t}"), "0")),
        );
        let hub_mgmt = format!("{}/{}", addr::HUB_MGMT, addr::PREFIX);
        netns::ip(&hub, &["addr", "add", &hub_mgmt, "dev", "br-mgmt"])?;

        if spec.routed {
            self.router = Some(self.router_host()?);
        }
        for i in 0..spec.clients {
            let name = format!("c{}", i + 1);
            let h = if spec.routed {
                let client = (Some(addr::routed_client(i)), None);
                let h = self.host_on(&name, CLIENT_BRIDGE, client, None, 1)?;
                let via = addr::ROUTER_CLIENT.to_string();
                netns::ip(&h.ns, &["route", "add", "default", "via", &via])?;
                h
            } else {
                self.host(&name, Some(addr::client_data(i)), None, 1)?
            };
            // New-connection benchmarks open tens of thousands of connections.
            netns::sysctl(&h.ns, "net.ipv4.ip_local_port_range", "1024 65000")?;
            netns::sysctl(&h.ns, "net.ipv4.tcp_tw_reuse", "1")?;
            self.clients.push(h);
        }
        for i in 0..spec.switches {
            // `sw` alone, as every single-switch bed always had it.
            let name = if spec.routed {
                format!("sw{}", i + 1)
            } else {
                "sw".to_string()
            };
            let h = self.host(&name, None, Some(addr::switch_mgmt(i)), SWITCH_DATA_QUEUES)?;
            self.switches.push(h);
            // As a one-queue veth until a switch asks for more.
            self.set_switch_port_of(i, 1, false)?;
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
            // And its IPv6 address: neighbour discovery answers only for
            // addresses of the interface asked, so `lo` keeps it quiet.
            ipv6_on(&h.ns, "lo")?;
            let vip6 = format!("{}/128", addr::VIP6);
            netns::ip(&h.ns, &["-6", "addr", "add", &vip6, "dev", "lo", "nodad"])?;
            for scope in ["all", DATA_IF] {
                netns::sysctl(&h.ns, &format!("net.ipv4.conf.{scope}.arp_ignore"), "1")?;
                netns::sysctl(&h.ns, &format!("net.ipv4.conf.{scope}.arp_announce"), "2")?;
            }
            if spec.routed {
                // Answers to the clients leave through the router, while
                // the clients' segments reach the backend from a switch.
                let net = format!("{}/{}", addr::CLIENT_NET, addr::PREFIX);
                let via = addr::ROUTER_DATA.to_string();
                netns::ip(&h.ns, &["route", "add", &net, "via", &via])?;
                rp_filter_off(&h.ns, &["all", "default", DATA_IF])?;
            }
            self.backends.push(h);
        }
        Ok(())
    }

    /// The router of a routed bed: `cl0` on the clients' bridge, `data0` on
    /// the data bridge, `mgmt0` on the management bridge (its BGP sessions),
    /// forwarding, ECMP hashed on the 4-tuple (so a connection stays on one
    /// switch while the set of routes stays the same), no reverse-path
    /// filter (the backends' answers come back on `data0` for clients
    /// behind `cl0`, beside routes that do not lead back there).
    fn router_host(&mut self) -> Result<Host> {
        // IPv4 only: a routed bed's clients reach the VIP over IPv4.
        let h = self.host_on(
            "rt",
            "br-data",
            (Some(addr::ROUTER_DATA), None),
            Some(addr::ROUTER_MGMT),
            1,
        )?;
        self.plug(
            &h.ns,
            "rtc",
            ROUTER_CLIENT_IF,
            CLIENT_BRIDGE,
            (Some(addr::ROUTER_CLIENT), None),
            1,
        )?;
        netns::sysctl(&h.ns, "net.ipv4.ip_forward", "1")?;
        // The 4-tuple hashed from the headers (policy 3, custom fields:
        // addresses, protocol, ports). Policy 1 would reuse the hash a
        // veth leaves on the packet, the sending socket's, which TCP draws
        // anew on every SYN or timeout retransmission: a connection would
        // change switches where a real router keeps it on one.
        netns::sysctl(&h.ns, "net.ipv4.fib_multipath_hash_policy", "3")?;
        netns::sysctl(
            &h.ns,
            "net.ipv4.fib_multipath_hash_fields",
            MULTIPATH_HASH_FIELDS,
        )?;
        rp_filter_off(
            &h.ns,
            &["all", "default", DATA_IF, MGMT_IF, ROUTER_CLIENT_IF],
        )?;
        Ok(h)
    }

    fn new_ns(&mut self, ns: &str) -> Result<()> {
        // Registered before creation: a signal between the two still cleans.
        cleanup::register(ns);
        self.namespaces.push(ns.to_string());
        netns::add(ns)?;
        // IPv6 stays off wherever a host does not need it (management,
        // the switch's data port): router solicitations, autoconfiguration
        // and DAD would add noise to counters. Interfaces made later take
        // the defaults; [`ipv6_on`] turns it on for the data segment.
        let mut kv = Vec::new();
        for scope in ["all", "default"] {
            for (k, v) in IPV6_QUIET {
                kv.push((format!("net.ipv6.conf.{scope}.{k}"), v));
            }
            kv.push((format!("net.ipv6.conf.{scope}.disable_ipv6"), "1"));
        }
        let _ = sysctls(ns, &kv);
        Ok(())
    }

    /// A host on the data bridge whose data veth has `data_queues` queues
    /// at each end; one with an IPv4 data address also gets its IPv6 twin
    /// ([`addr::data6_of`]).
    fn host(
        &mut self,
        name: &str,
        data: Option<Ipv4Addr>,
        mgmt: Option<Ipv4Addr>,
        data_queues: u32,
    ) -> Result<Host> {
        let data6 = data.and_then(addr::data6_of);
        self.host_on(name, "br-data", (data, data6), mgmt, data_queues)
    }

    /// A host whose `data0` is on bridge `bridge` with addresses `data`
    /// (IPv4, IPv6).
    fn host_on(
        &mut self,
        name: &str,
        bridge: &str,
        (data, data6): (Option<Ipv4Addr>, Option<Ipv6Addr>),
        mgmt: Option<Ipv4Addr>,
        data_queues: u32,
    ) -> Result<Host> {
        let ns = format!("{}-{name}", self.id);
        self.new_ns(&ns)?;
        self.plug(
            &ns,
            &format!("{name}d"),
            DATA_IF,
            bridge,
            (data, data6),
            data_queues,
        )?;
        if let Some(m) = mgmt {
            self.plug(
                &ns,
                &format!("{name}m"),
                MGMT_IF,
                "br-mgmt",
                (Some(m), None),
                1,
            )?;
        }
        Ok(Host {
            name: name.to_string(),
            ns,
            data_ip: data,
            data_ip6: data6,
            mgmt_ip: mgmt,
        })
    }

    /// A veth from the hub's bridge `br` to `inner` in `ns`, offloads off,
    /// with `queues` transmit and receive queues at each end, and the
    /// inner end's IPv4 and IPv6 addresses (IPv6 turned on for it only
    /// when it gets one).
    fn plug(
        &self,
        ns: &str,
        outer: &str,
        inner: &str,
        br: &str,
        (ip, ip6): (Option<Ipv4Addr>, Option<Ipv6Addr>),
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
        if let Some(ip6) = ip6 {
            ipv6_on(ns, inner)?;
            let a = format!("{ip6}/{}", addr::PREFIX6);
            netns::ip(ns, &["-6", "addr", "add", &a, "dev", inner, "nodad"])?;
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
        self.set_switch_port_of(0, queues, peer_napi)
    }

    /// [`Bed::set_switch_port`] for switch `i` (0-based).
    pub fn set_switch_port_of(&self, i: usize, queues: u32, peer_napi: bool) -> Result<()> {
        let sw = self.switch_host(i)?;
        let peer = switch_data_peer(sw);
        let peer = peer.as_str();
        if queues == 0 || queues > SWITCH_DATA_QUEUES {
            return Err(BedError::Setup(format!(
                "the switch's data veth has {SWITCH_DATA_QUEUES} queues; {queues} asked for"
            )));
        }
        let q = queues.to_string();
        for (ns, ifc) in [(sw.ns.as_str(), DATA_IF), (self.hub.as_str(), peer)] {
            netns::run(Some(ns), "ethtool", &["-L", ifc, "rx", &q, "tx", &q])?;
        }
        netns::run(Some(&self.hub), "ethtool", &["-K", peer, "gro", "off"])?;
        // Whatever an earlier switch of this bed left there goes first.
        netns::ip(&self.hub, &["link", "set", "dev", peer, "xdp", "off"])?;
        if peer_napi {
            let obj = self.peer_napi_program()?;
            let obj = obj.to_string_lossy();
            netns::ip(
                &self.hub,
                &[
                    "link", "set", "dev", peer, "xdpdrv", "obj", &obj, "sec", "xdp",
                ],
            )?;
        } else {
            netns::ip(&self.hub, &["link", "set", "dev", peer, "xdp", "off"])?;
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

    /// The (first) switch host; an error if the bed was built without one.
    pub fn switch(&self) -> Result<&Host> {
        self.switch_host(0)
    }

    /// Switch host `i` (0-based); an error if the bed has no such switch.
    pub fn switch_host(&self, i: usize) -> Result<&Host> {
        self.switches.get(i).ok_or_else(|| {
            BedError::Setup(format!(
                "bed built with {} switch(es): no switch {}",
                self.switches.len(),
                i + 1
            ))
        })
    }

    /// The router of a routed bed; an error for any other bed.
    pub fn router(&self) -> Result<&Host> {
        self.router
            .as_ref()
            .ok_or_else(|| BedError::Setup("bed built without a router".into()))
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

/// The hub-side end of a switch host's data veth (`swd`, `sw2d`…).
pub fn switch_data_peer(sw: &Host) -> String {
    format!("{}d", sw.name)
}

/// The router's ECMP hash fields (`net.ipv4.fib_multipath_hash_fields`):
/// source and destination address, protocol, source and destination port.
pub const MULTIPATH_HASH_FIELDS: &str = "0x0037";

/// The clients' bridge of a routed bed.
pub const CLIENT_BRIDGE: &str = "br-cl";

/// The IPv6 settings of every interface that has IPv6: no router
/// solicitations or advertisements taken, no autoconfiguration, no
/// duplicate address detection (addresses usable at once, counters quiet).
const IPV6_QUIET: [(&str, &str); 4] = [
    ("accept_ra", "0"),
    ("autoconf", "0"),
    ("accept_dad", "0"),
    ("router_solicitations", "0"),
];

/// Turns IPv6 on for interface `iface` of namespace `ns`, quiet
/// ([`IPV6_QUIET`]): the settings first, so nothing is sent before they
/// hold.
pub fn ipv6_on(ns: &str, iface: &str) -> Result<()> {
    let mut kv: Vec<(String, &str)> = IPV6_QUIET
        .iter()
        .map(|(k, v)| (format!("net.ipv6.conf.{iface}.{k}"), *v))
        .collect();
    kv.push((format!("net.ipv6.conf.{iface}.disable_ipv6"), "0"));
    sysctls(ns, &kv)
}

/// Sets several sysctls in namespace `ns` with one `sysctl` run, in order.
fn sysctls(ns: &str, kv: &[(String, &str)]) -> Result<()> {
    let args: Vec<String> = kv.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mut argv = vec!["-q", "-w"];
    argv.extend(args.iter().map(String::as_str));
    netns::run(Some(ns), "sysctl", &argv).map(|_| ())
}

/// Turns reverse-path filtering off on `scopes` (`all`, `default`,
/// interface names) of namespace `ns`.
fn rp_filter_off(ns: &str, scopes: &[&str]) -> Result<()> {
    for scope in scopes {
        netns::sysctl(ns, &format!("net.ipv4.conf.{scope}.rp_filter"), "0")?;
    }
    Ok(())
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
    for tool in ["ip", "ethtool", "sysctl", "openssl"] {
        if netns::run(None, "sh", &["-c", &format!("command -v {tool}")]).is_err() {
            return Err(BedError::Setup(format!(
                "`{tool}` is missing: run scripts/install-deps.sh"
            )));
        }
    }
    Ok(())
}
