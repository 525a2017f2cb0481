//! The agent tests' three hosts: a client, a "switch" and a backend on one
//! L2 segment (a bridge inside the switch namespace), removed on drop
//! (namespaces and plumbing from `testkit::netns`).
//!
//! The switch namespace's kernel plays the switch: it owns the VIP, accepts the
//! client's connection, and after the handoff forwards that flow's packets to
//! the backend unchanged (policy routing + ip_forward): the same L2 direct
//! routing the real dataplane does with a MAC rewrite.
//!
//! The segment is dual-stack: IPv4 from 198.18.0.0/24 and IPv6 from
//! 2001:2::/64 (the test bed's 2001:2::/48), the same host numbers in both;
//! the IPv6 addresses are added with `nodad`, so they are usable at once.

use std::net::SocketAddr;
use std::process::Output;
use testkit::netns::{self, Netns};

pub const VIP: &str = "198.18.0.10";
pub const SWITCH_IP: &str = "198.18.0.2";
pub const BACKEND_IP: &str = "198.18.0.11";
pub const CLIENT_IP: &str = "198.18.0.101";
pub const VIP6: &str = "2001:2::10";
pub const SWITCH_IP6: &str = "2001:2::2";
pub const BACKEND_IP6: &str = "2001:2::11";
pub const CLIENT_IP6: &str = "2001:2::101";

/// The VIP of `client`'s family.
pub fn vip_for(client: SocketAddr) -> &'static str {
    if client.is_ipv4() {
        VIP
    } else {
        VIP6
    }
}

/// The three hosts of one test. Dropping it deletes the namespaces (and with
/// them every process, interface, route and rule the test made).
pub struct Bed {
    pub client: String,
    pub switch: String,
    pub backend: String,
    _hosts: [Netns; 3],
}

/// Per-host knobs for the TCP options a test wants negotiated.
#[derive(Clone, Debug)]
pub struct TcpKnobs {
    pub timestamps: bool,
    pub sack: bool,
    /// `tcp_rmem` max: decides the window scale Linux announces
    /// (65535 → 0; 6 MiB → 7; 1 GiB → 14).
    pub rmem_max: u64,
}

impl Default for TcpKnobs {
    fn default() -> Self {
        TcpKnobs {
            timestamps: true,
            sack: true,
            rmem_max: 6 * 1024 * 1024,
        }
    }
}

impl Bed {
    /// Builds the three namespaces and the segment.
    pub fn new() -> Bed {
        testkit::require_root();
        let tag = netns::unique("ag");
        let [c, s, b] = ["c", "s", "b"].map(|r| Netns::named(&format!("{tag}{r}")));
        for ns in [&c, &s, &b] {
            for k in ["all", "default"] {
                ns.sysctl(&format!("net.ipv4.conf.{k}.rp_filter"), "0");
                // IPv6 on (whatever the host's defaults), no router
                // advertisements or redirects acted upon.
                ns.sysctl(&format!("net.ipv6.conf.{k}.disable_ipv6"), "0");
                ns.sysctl(&format!("net.ipv6.conf.{k}.accept_ra"), "0");
                ns.sysctl(&format!("net.ipv6.conf.{k}.accept_redirects"), "0");
                ns.sysctl(&format!("net.ipv6.conf.{k}.accept_dad"), "0");
            }
            ns.sysctl("net.ipv6.conf.lo.disable_ipv6", "0");
        }
        // Multicast snooping off: neighbour solicitations are flooded like
        // ARP broadcasts, with no MLD querier on the segment.
        s.ip(&[
            "link",
            "add",
            "br0",
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ]);
        for (peer, port) in [(&c, "pc"), (&b, "pb")] {
            peer.veth("eth0", &s, port);
            s.ip(&["link", "set", port, "master", "br0", "up"]);
        }
        s.ip(&["link", "set", "br0", "up"]);
        s.addr("br0", &format!("{SWITCH_IP}/24"));
        s.addr("br0", &format!("{VIP}/32"));
        addr6(&s, "br0", &format!("{SWITCH_IP6}/64"));
        addr6(&s, "br0", &format!("{VIP6}/128"));
        s.sysctl("net.ipv4.ip_forward", "1");
        s.sysctl("net.ipv6.conf.all.forwarding", "1");
        for k in ["all", "default", "br0"] {
            s.sysctl(&format!("net.ipv4.conf.{k}.send_redirects"), "0");
        }
        // Handed-off flows are routed by rules placed before the local table.
        for fam in ["-4", "-6"] {
            s.ip(&[fam, "rule", "add", "pref", "100", "lookup", "local"]);
            s.ip(&[fam, "rule", "del", "pref", "0", "lookup", "local"]);
        }
        for (vip, backend) in [
            (format!("{VIP}/32"), BACKEND_IP),
            (format!("{VIP6}/128"), BACKEND_IP6),
        ] {
            s.ip(&[
                "route", "add", &vip, "via", backend, "dev", "br0", "table", "200",
            ]);
        }

        c.addr("eth0", &format!("{CLIENT_IP}/24"));
        addr6(&c, "eth0", &format!("{CLIENT_IP6}/64"));

        b.addr("eth0", &format!("{BACKEND_IP}/24"));
        addr6(&b, "eth0", &format!("{BACKEND_IP6}/64"));
        b.addr("lo", &format!("{VIP}/32"));
        // The IPv6 VIP on lo needs no sysctl: Linux answers neighbour
        // solicitations only for addresses of the receiving interface.
        addr6(&b, "lo", &format!("{VIP6}/128"));
        for k in ["all", "eth0"] {
            b.sysctl(&format!("net.ipv4.conf.{k}.arp_ignore"), "1");
            b.sysctl(&format!("net.ipv4.conf.{k}.arp_announce"), "2");
        }
        Bed {
            client: c.name.clone(),
            switch: s.name.clone(),
            backend: b.name.clone(),
            _hosts: [c, s, b],
        }
    }

    /// Applies TCP option knobs to one host.
    pub fn knobs(&self, ns: &str, k: &TcpKnobs) {
        self.sysctl(
            ns,
            "net.ipv4.tcp_timestamps",
            if k.timestamps { "1" } else { "0" },
        );
        self.sysctl(ns, "net.ipv4.tcp_sack", if k.sack { "1" } else { "0" });
        self.sysctl(
            ns,
            "net.ipv4.tcp_rmem",
            &format!("4096 32768 {}", k.rmem_max),
        );
    }

    /// Makes the client announce this MSS for the VIP (route `advmss`).
    pub fn client_mss(&self, mss: u16) {
        let vip = format!("{VIP}/32");
        let mss = mss.to_string();
        let args = ["route", "add", &vip, "dev", "eth0", "advmss", &mss];
        netns::ip(&self.client, &args).unwrap_or_else(|e| panic!("{e}"));
    }

    /// Makes the client announce this MSS for the IPv6 VIP.
    pub fn client_mss6(&self, mss: u16) {
        let vip = format!("{VIP6}/128");
        let mss = mss.to_string();
        let args = ["-6", "route", "add", &vip, "dev", "eth0", "advmss", &mss];
        netns::ip(&self.client, &args).unwrap_or_else(|e| panic!("{e}"));
    }

    /// Runs a command inside a namespace, panicking on failure.
    pub fn exec(&self, ns: &str, args: &[&str]) -> Output {
        netns::exec(ns, args)
    }

    /// Sets a sysctl inside a namespace.
    pub fn sysctl(&self, ns: &str, key: &str, val: &str) {
        netns::sysctl(ns, key, val).unwrap_or_else(|e| panic!("{e}"));
    }

    /// The policy rule (after `pref N`) that matches one client flow.
    fn flow_rule(pref: &str, client: SocketAddr) -> Vec<String> {
        let port = client.port().to_string();
        let ip = client.ip().to_string();
        let fam = if client.is_ipv4() { "-4" } else { "-6" };
        [
            fam,
            "rule",
            "OP",
            "pref",
            pref,
            "from",
            &ip,
            "to",
            vip_for(client),
            "ipproto",
            "tcp",
            "sport",
            &port,
        ]
        .map(str::to_string)
        .to_vec()
    }

    fn rule(&self, op: &str, pref: &str, client: SocketAddr, action: &[&str]) {
        let mut rule = Self::flow_rule(pref, client);
        rule[2] = op.to_string();
        let mut args: Vec<&str> = rule.iter().map(String::as_str).collect();
        args.extend_from_slice(action);
        netns::ip(&self.switch, &args).unwrap_or_else(|e| panic!("{e}"));
    }

    /// Blackholes one client flow (the client's address and port) in the
    /// switch namespace (no RST while the connection is in flight).
    pub fn hold_flow(&self, client: SocketAddr) {
        self.rule("add", "10", client, &["blackhole"]);
    }

    /// Forwards one client flow to the backend, then lifts the hold.
    pub fn forward_flow(&self, client: SocketAddr) {
        self.rule("add", "9", client, &["lookup", "200"]);
        self.rule("del", "10", client, &["blackhole"]);
    }

    /// Runs `f` on a thread whose network namespace is `ns`; sockets it makes
    /// (and threads it spawns) live there.
    pub fn in_ns<R: Send + 'static>(&self, ns: &str, f: impl FnOnce() -> R + Send + 'static) -> R {
        netns::in_ns(ns, f).unwrap_or_else(|e| panic!("setns into {ns}: {e}"))
    }
}

/// Adds an IPv6 address usable at once (no duplicate address detection).
fn addr6(ns: &Netns, ifc: &str, cidr: &str) {
    ns.ip(&["-6", "addr", "add", cidr, "dev", ifc, "nodad"]);
}
