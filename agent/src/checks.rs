//! Start-up checks that turn the two classic deployment mistakes into one
//! clear message instead of a NACK storm: missing `CAP_NET_ADMIN` (TCP_REPAIR
//! needs it) and a VIP that is not on `lo` (the LVS direct-routing
//! arrangement: the backend owns the VIP locally but never answers ARP for it).

use std::net::IpAddr;

use crate::config::Config;

/// `CAP_NET_ADMIN` (linux/capability.h).
const CAP_NET_ADMIN: u32 = 12;
/// `CAP_NET_BIND_SERVICE` (linux/capability.h).
const CAP_NET_BIND_SERVICE: u32 = 10;

/// A failed start-up check.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The process lacks CAP_NET_ADMIN.
    #[error(
        "CAP_NET_ADMIN is missing: TCP_REPAIR needs it. Run as root, or grant it: \
         `setcap cap_net_admin+ep $(command -v baton-agent)` or systemd `AmbientCapabilities=CAP_NET_ADMIN`"
    )]
    NoCapability,
    /// A service port is privileged and the process may not bind it.
    #[error(
        "services[{index}].vip: port {port} is privileged and CAP_NET_BIND_SERVICE is missing; \
         grant it (systemd `AmbientCapabilities=CAP_NET_ADMIN CAP_NET_BIND_SERVICE`) or run as root"
    )]
    NoBindService {
        /// Index in `services`.
        index: usize,
        /// The port.
        port: u16,
    },
    /// The kernel refused TCP_REPAIR even with the capability.
    #[error("TCP_REPAIR is not available on this kernel or is blocked (seccomp?): {0}")]
    NoRepair(std::io::Error),
    /// Handover mode is configured but its preload library is unusable.
    #[error(
        "handover.library: {path}: {why}. Servers of `handover` services must be started with \
         LD_PRELOAD={path} (build it with `cargo build --release -p baton-handover`; see docs/agent.md)"
    )]
    HandoverLibrary {
        /// The configured path.
        path: String,
        /// What is wrong with it.
        why: String,
    },
    /// A service's VIP is not configured on the loopback interface.
    #[error(
        "services[{index}].vip: {vip} is not on lo. Add it with `ip addr add {vip}/{plen} dev lo`{more} \
         (see docs/agent.md)"
    )]
    VipNotOnLo {
        /// Index in `services`.
        index: usize,
        /// The address.
        vip: IpAddr,
        /// Host prefix length for the hint.
        plen: u8,
        /// The rest of the hint: the ARP sysctls for an IPv4 VIP (an IPv6
        /// VIP on `lo` is never advertised in neighbour discovery).
        more: &'static str,
    },
}

fn has_cap(cap: u32) -> bool {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << cap) != 0)
}

/// Whether the effective capability set holds CAP_NET_ADMIN.
pub fn has_net_admin() -> bool {
    has_cap(CAP_NET_ADMIN)
}

/// The first port that is not privileged in this network namespace.
fn unprivileged_port_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(1024)
}

/// Tries TCP_REPAIR on a throw-away socket.
pub fn repair_works() -> Result<(), std::io::Error> {
    // SAFETY: plain socket/setsockopt/close on a descriptor we own.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let on: libc::c_int = 1;
        let rc = libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_REPAIR,
            &on as *const _ as *const _,
            4,
        );
        let err = std::io::Error::last_os_error();
        libc::close(fd);
        if rc == 0 {
            Ok(())
        } else {
            Err(err)
        }
    }
}

/// The addresses configured on interface `ifname`.
pub fn addresses_on(ifname: &str) -> Vec<IpAddr> {
    let mut out = Vec::new();
    let mut ifap: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills a list we free below; we only read entries
    // whose ifa_addr is non-null and of the family we cast to.
    unsafe {
        if libc::getifaddrs(&mut ifap) != 0 {
            return out;
        }
        let mut p = ifap;
        while !p.is_null() {
            let ifa = &*p;
            p = ifa.ifa_next;
            if ifa.ifa_addr.is_null() || ifa.ifa_name.is_null() {
                continue;
            }
            if std::ffi::CStr::from_ptr(ifa.ifa_name).to_bytes() != ifname.as_bytes() {
                continue;
            }
            match i32::from((*ifa.ifa_addr).sa_family) {
                libc::AF_INET => {
                    let sin = &*(ifa.ifa_addr as *const libc::sockaddr_in);
                    out.push(IpAddr::from(
                        u32::from_be(sin.sin_addr.s_addr).to_be_bytes(),
                    ));
                }
                libc::AF_INET6 => {
                    let sin6 = &*(ifa.ifa_addr as *const libc::sockaddr_in6);
                    out.push(IpAddr::from(sin6.sin6_addr.s6_addr));
                }
                _ => {}
            }
        }
        libc::freeifaddrs(ifap);
    }
    out
}

/// Loads the handover library (without interposing anything: `RTLD_LOCAL`)
/// and checks that it speaks this agent's handover protocol version.
pub fn handover_library(path: &std::path::Path) -> Result<(), CheckError> {
    let fail = |why: String| CheckError::HandoverLibrary {
        path: path.display().to_string(),
        why,
    };
    if !path.is_file() {
        return Err(fail("no such file".into()));
    }
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| fail("path contains a NUL byte".into()))?;
    // SAFETY: dlopen of a path we checked; RTLD_LOCAL keeps its symbols out of
    // this process's global scope, so nothing of ours is interposed.
    let h = unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
    if h.is_null() {
        // SAFETY: dlerror returns a NUL-terminated message or null.
        let msg = unsafe {
            let e = libc::dlerror();
            if e.is_null() {
                "cannot be loaded".to_string()
            } else {
                std::ffi::CStr::from_ptr(e).to_string_lossy().into_owned()
            }
        };
        return Err(fail(msg));
    }
    // SAFETY: dlsym on a live handle; the symbol, if present, is
    // `extern "C" fn() -> u32` (agent/preload).
    let v = unsafe {
        let sym = libc::dlsym(h, c"baton_handover_version".as_ptr());
        let v = if sym.is_null() {
            None
        } else {
            let f: extern "C" fn() -> u32 = std::mem::transmute(sym);
            Some(f())
        };
        libc::dlclose(h);
        v
    };
    let want = u32::from(handoff_proto::handover::HANDOVER_VERSION);
    match v {
        None => Err(fail(
            "not the Baton handover library (no baton_handover_version)".into(),
        )),
        Some(v) if v != want => Err(fail(format!(
            "speaks handover version {v}, this agent speaks {want}"
        ))),
        Some(_) => Ok(()),
    }
}

/// Runs every check; the first failure is returned.
pub fn run(cfg: &Config) -> Result<(), CheckError> {
    if !has_net_admin() {
        return Err(CheckError::NoCapability);
    }
    repair_works().map_err(CheckError::NoRepair)?;
    if cfg
        .services
        .iter()
        .any(|s| s.mode == crate::config::Mode::Handover)
    {
        handover_library(&cfg.handover.library)?;
    }
    let on_lo = addresses_on("lo");
    let first_free = unprivileged_port_start();
    for (index, s) in cfg.services.iter().enumerate() {
        if s.vip.port() < first_free && !has_cap(CAP_NET_BIND_SERVICE) {
            return Err(CheckError::NoBindService {
                index,
                port: s.vip.port(),
            });
        }
        let vip = s.vip.ip();
        if !on_lo.contains(&vip) {
            let (plen, more) = if vip.is_ipv4() {
                (
                    32,
                    " and set net.ipv4.conf.all.arp_ignore=1, arp_announce=2",
                )
            } else {
                (128, "")
            };
            return Err(CheckError::VipNotOnLo {
                index,
                vip,
                plen,
                more,
            });
        }
    }
    Ok(())
}

/// Non-fatal advice about the ARP sysctls of the LVS-DR arrangement, when
/// a service has an IPv4 VIP. IPv6 needs none: Linux answers a neighbour
/// solicitation only for an address of the interface it arrived on, so a
/// VIP on `lo` is never advertised, and it picks the source of its own
/// solicitations from the outgoing interface.
pub fn warnings(cfg: &Config) -> Vec<String> {
    let read = |k: &str| std::fs::read_to_string(format!("/proc/sys/net/ipv4/conf/all/{k}")).ok();
    let mut w = Vec::new();
    if !cfg.services.iter().any(|s| s.vip.is_ipv4()) {
        return w;
    }
    if read("arp_ignore").is_some_and(|v| v.trim() != "1" && v.trim() != "2") {
        w.push(
            "net.ipv4.conf.all.arp_ignore is not 1: this host may answer ARP for the VIP".into(),
        );
    }
    if read("arp_announce").is_some_and(|v| v.trim() != "2") {
        w.push(
            "net.ipv4.conf.all.arp_announce is not 2: ARP requests may carry the VIP as source"
                .into(),
        );
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_has_127_0_0_1() {
        assert!(addresses_on("lo").contains(&IpAddr::from([127, 0, 0, 1])));
    }

    #[test]
    fn vip_not_on_lo_is_named() {
        let cfg = crate::config::Config::parse(
            "thop: {listen: 127.0.0.1:9199, switches: [127.0.0.1], allow_sample_keys: true, keys: [{id: 1, key: \"0000000000000000000000000000000000000000000000000000000000000000\"}]}\nservices:\n  - {vip: 198.51.100.77:80, mode: listener}\n",
        )
        .unwrap();
        match run(&cfg) {
            Err(CheckError::VipNotOnLo { index: 0, .. }) => {}
            Err(CheckError::NoCapability) if !has_net_admin() => {}
            other => panic!("unexpected: {other:?}"),
        }
    }
}
