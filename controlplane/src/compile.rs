//! From a validated profile to the dataplane's plain config structs
//! ([`WorkerConfig`], [`IoConfig`]) and resolved THOP keys. The dataplane
//! never sees YAML; this is the one place that maps profile fields onto it.

use std::net::{IpAddr, Ipv4Addr};

use dataplane::config::{
    Protocol, RecoveryConfig, Service, SynCookieMode, TcpOptionsConfig, ThopConfig,
};
use dataplane::io::{
    AfPacketConfig, AfPacketRing, AfXdpConfig, DpdkConfig, DpdkPort, FastPath, IoConfig, PollMode,
    XdpAttach, XdpBind,
};
use dataplane::WorkerConfig;

use crate::config::{
    AfPacketRingKind, FastPathMode, Forwarding, IoSection, PollMode as ProfilePoll, Profile,
    ServiceProtocol, SynCookieMode as ProfileCookies, XdpBindMode, XdpMode,
};

/// Why a profile cannot be turned into a running configuration.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    #[error("thop.keys[{index}]: {message}")]
    Key { index: usize, message: String },
    #[error("cluster.secret_file: {0}")]
    ClusterSecret(String),
    #[error("dataplane rejected the configuration: {0}")]
    Dataplane(#[from] dataplane::config::ConfigError),
}

/// The secret of ISNs, SYN cookies and table hashing: derived from the
/// cluster's shared file when the profile names one, else random per start.
pub fn switch_secret(p: &Profile) -> Result<[u8; 16], CompileError> {
    let Some(f) = &p.cluster.secret_file else {
        return Ok(dataplane::config::random_secret());
    };
    let key = handoff_proto::read_key_file(std::path::Path::new(f))
        .map_err(CompileError::ClusterSecret)?;
    if let Some(w) = handoff_proto::key_weakness(&key) {
        if !p.thop.allow_sample_keys {
            return Err(CompileError::ClusterSecret(format!(
                "the secret {w} (test beds may set thop.allow_sample_keys: true)"
            )));
        }
    }
    let derived = blake3::derive_key("Baton 2026-12-01 cluster ISN and SYN cookie secret", &key);
    let mut out = [0u8; 16];
    out.copy_from_slice(&derived[..16]);
    Ok(out)
}

/// The THOP keys as (id, 32 bytes), secret files read.
pub fn thop_keys(p: &Profile) -> Result<Vec<(u32, [u8; 32])>, CompileError> {
    let mut out = Vec::new();
    for (index, k) in p.thop.keys.iter().enumerate() {
        let key = match (&k.secret_hex, &k.secret_file) {
            (Some(h), _) => {
                let mut key = [0u8; 32];
                hex::decode_to_slice(h, &mut key).map_err(|_| CompileError::Key {
                    index,
                    message: "secret must be 64 hex digits (32 bytes)".into(),
                })?;
                key
            }
            (None, Some(f)) => handoff_proto::read_key_file(std::path::Path::new(f))
                .map_err(|message| CompileError::Key { index, message })?,
            (None, None) => {
                return Err(CompileError::Key {
                    index,
                    message: "no secret".into(),
                })
            }
        };
        if let Some(w) = handoff_proto::key_weakness(&key) {
            if !p.thop.allow_sample_keys {
                return Err(CompileError::Key {
                    index,
                    message: format!(
                        "the key {w} (test beds may set thop.allow_sample_keys: true)"
                    ),
                });
            }
        }
        out.push((k.id, key));
    }
    Ok(out)
}

/// Backends with a key of their own: (agent node id, key id).
pub fn thop_peers(p: &Profile) -> Vec<(u32, u32)> {
    p.backends
        .iter()
        .filter_map(|b| {
            let thop = b
                .thop
                .unwrap_or_else(|| std::net::SocketAddr::from((b.address, p.thop.port)));
            b.thop_key.map(|k| (handoff_proto::node_id(thop.ip()), k))
        })
        .collect()
}

/// The polling mode of the profile.
pub fn poll_mode(p: &Profile) -> PollMode {
    match p.tuning.polling.mode {
        ProfilePoll::Busy => PollMode::Busy,
        ProfilePoll::Adaptive => PollMode::Adaptive {
            spin_polls: p.tuning.polling.idle_spins,
            max_wait: p.tuning.polling.max_sleep.0,
        },
    }
}

/// The forwarding step after handoff, by the name the dataplane's forwarder
/// has (logged at start). MAC rewriting (L2 direct routing,
/// `dataplane::engine::DirectRouting`) is the only one; a mode for backends on
/// another segment (an IP-in-IP or GUE tunnel) is a new `Forwarder` in the
/// dataplane and a new arm here.
pub fn forwarding_mode(p: &Profile) -> &'static str {
    match p.switch.forwarding {
        Forwarding::MacRewrite => "mac_rewrite",
    }
}

/// The packet I/O configuration; `None` for the in-memory backend.
pub fn io_config(p: &Profile) -> Option<IoConfig> {
    let poll = poll_mode(p);
    match &p.io {
        IoSection::AfPacket(a) => {
            let mut c = AfPacketConfig::new(a.interface.clone());
            c.fanout_group = a.fanout_group;
            c.ring = match a.ring {
                AfPacketRingKind::V3 => AfPacketRing::V3,
                AfPacketRingKind::V2 => AfPacketRing::V2,
            };
            c.block_size = a.block_size;
            c.block_count = a.block_count;
            c.frame_size = a.frame_size;
            c.tx_frames = a.tx_frames;
            c.pool_size = a.pool_size;
            c.block_timeout_ms =
                a.block_timeout.0.as_millis().clamp(1, u128::from(u32::MAX)) as u32;
            c.qdisc_bypass = a.qdisc_bypass;
            c.promiscuous = a.promiscuous || p.switch.data_mac.is_some();
            c.poll = poll;
            Some(IoConfig::AfPacket(c))
        }
        // Built whatever the build's features: `dataplane::io::open` answers a
        // build without the `af_xdp` feature with an error naming it.
        IoSection::AfXdp(x) => {
            let mut c = AfXdpConfig::new(x.interface.clone());
            c.queues = x.queues;
            c.frame_count = x.frame_count;
            c.frame_size = x.frame_size;
            c.ring_size = x.ring_size;
            c.attach = match x.mode {
                XdpMode::Auto => XdpAttach::Auto,
                XdpMode::Native => XdpAttach::Native,
                XdpMode::Generic => XdpAttach::Generic,
            };
            c.bind = match x.bind {
                XdpBindMode::Auto => XdpBind::Auto,
                XdpBindMode::Copy => XdpBind::Copy,
                XdpBindMode::ZeroCopy => XdpBind::ZeroCopy,
            };
            c.fast_path = match x.fast_path {
                FastPathMode::Xdp => FastPath::Xdp,
                FastPathMode::Off => FastPath::Off,
            };
            c.flow_capacity = x.flow_capacity;
            c.poll = poll;
            Some(IoConfig::AfXdp(c))
        }
        IoSection::Dpdk(d) => {
            let port = match &d.device {
                Some(name) => DpdkPort::Name(name.clone()),
                None => DpdkPort::Id(d.port),
            };
            let mut c = DpdkConfig::new(d.eal_args.clone(), port);
            c.rx_ring_size = d.rx_ring;
            c.tx_ring_size = d.tx_ring;
            c.mempool_size = d.mempool_size;
            c.mempool_cache = d.mempool_cache;
            c.promiscuous = d.promiscuous || p.switch.data_mac.is_some();
            c.mtu = d.mtu;
            c.force_software_steering = d.software_steering;
            c.poll = poll;
            Some(IoConfig::Dpdk(c))
        }
        IoSection::Memory(_) => None,
    }
}

/// The workers' configuration; `port_mac` is the data port's own MAC (used
/// unless the profile sets `switch.data_mac`).
pub fn worker_config(p: &Profile, port_mac: [u8; 6]) -> Result<WorkerConfig, CompileError> {
    let keys = thop_keys(p)?;
    let key_id = p
        .thop
        .active_key
        .or_else(|| keys.first().map(|k| k.0))
        .unwrap_or(0);
    let header_max = p.limits.max_header_bytes as usize;
    let hello_max = p.limits.max_client_hello_bytes as usize;
    let any_tls = p
        .services
        .iter()
        .any(|s| s.protocol == ServiceProtocol::Tls);
    let to = &p.timeouts;
    let table = p.tuning.table_capacity as usize;
    // The first data address is the primary; with an IPv4 primary, the
    // IPv6 one (if any) makes the data port dual-stack. A validated profile
    // has at least one; without, the dataplane refuses the unspecified one.
    let ip = p
        .switch
        .data_ip
        .first()
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let ip6 = match ip {
        IpAddr::V4(_) => p.switch.data_ip.v6(),
        IpAddr::V6(_) => None,
    };
    let cfg = WorkerConfig {
        // One dataplane service per VIP address: a dual-stack service is
        // two LISTEN entries with the same port and protocol.
        services: p
            .services
            .iter()
            .flat_map(|s| {
                let protocol = match s.protocol {
                    ServiceProtocol::Http => Protocol::Http,
                    ServiceProtocol::Tls => Protocol::Tls,
                };
                s.vip.iter().map(move |vip| Service {
                    vip,
                    port: s.port,
                    protocol,
                })
            })
            .collect(),
        mac: p.switch.data_mac.map_or(port_mac, |m| m.0),
        ip,
        ip6,
        thop: ThopConfig {
            port: p.thop.port,
            key_id,
            keys,
            peers: thop_peers(p),
        },
        tcp: TcpOptionsConfig {
            mss: p.tcp.mss,
            window_scale: p.tcp.window_scale,
            sack: p.tcp.sack,
            timestamps: p.tcp.timestamps,
        },
        header_max,
        client_hello_max: hello_max,
        // Room for the header plus body or pipelined bytes behind it; on
        // TLS services for the ClientHello with its record headers.
        request_buffer: (header_max + header_max / 2)
            .max(header_max + 1)
            .max(if any_tls {
                dataplane::config::hello_bytes(hello_max) + hello_max / 2
            } else {
                0
            })
            .min(1 << 20),
        handoff_hold: p.limits.held_packets as usize,
        held_capacity: p.limits.held_packets_per_worker as usize,
        client_max_connections: p.tuning.per_client.max_connections as usize,
        client_max_pending: p.tuning.per_client.max_pending as usize,
        pressure_threshold: p.tuning.pressure.threshold,
        pressure_header_timeout: p.tuning.pressure.header_timeout.0,
        pressure_response_retries: p.tuning.pressure.response_retries,
        pressure_fin_timeout: p.tuning.pressure.fin_timeout.0,
        evict_idle_after: p.tuning.evict_idle_after.0,
        synack_rto: to.syn_ack_rto.0,
        synack_retries: to.syn_ack_retries,
        header_timeout: to.header.0,
        decision_timeout: to.decision.0,
        handoff_rto: to.handoff_rto.0,
        handoff_retries: to.handoff_retries,
        dispatch_attempts: to.max_redispatch,
        fin_timeout: to.fin.0,
        idle_timeout: to.idle.0,
        table_capacity: table,
        pending_capacity: (p.limits.pending_per_worker as usize).min(table),
        syncookie_mode: match p.tuning.syn_cookies.mode {
            ProfileCookies::Auto => SynCookieMode::OnOverload,
            ProfileCookies::Always => SynCookieMode::Always,
            ProfileCookies::Never => SynCookieMode::Off,
        },
        syncookie_threshold: ((table as f64) * p.tuning.syn_cookies.threshold).max(1.0) as usize,
        burst: p.tuning.burst_size as usize,
        poll: poll_mode(p),
        secret: switch_secret(p)?,
        recovery: RecoveryConfig {
            enabled: p.recovery.enabled,
            hello_interval: p.recovery.hello_interval.0,
            lookup_timeout: p.recovery.lookup_timeout.0,
            lookup_tries: p.recovery.lookup_tries,
            lookups_per_sec: p.recovery.lookups_per_second,
            max_pending: p.recovery.max_pending_lookups as usize,
        },
        static_macs: p
            .backends
            .iter()
            .filter_map(|b| b.mac.map(|m| (b.address, m.0)))
            .collect(),
        ..WorkerConfig::default()
    };
    cfg.validate()?;
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_bed_profile_maps_onto_a_valid_worker_config() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/testbed.yaml");
        let l = crate::config::load_file_with(&path, &Default::default()).unwrap();
        let c = worker_config(&l.profile, [2, 0, 0, 0, 0, 2]).unwrap();
        // Both services on both of the VIP's addresses (dual stack).
        let got: Vec<_> = c
            .services
            .iter()
            .map(|s| (s.vip.is_ipv6(), s.port, s.protocol))
            .collect();
        assert_eq!(
            got,
            [
                (false, 80, Protocol::Http),
                (true, 80, Protocol::Http),
                (false, 443, Protocol::Tls),
                (true, 443, Protocol::Tls),
            ]
        );
        assert!(c.ip.is_ipv4() && c.ip6.is_some());
        assert_eq!(c.client_hello_max, 16384);
        assert!(c.request_buffer >= dataplane::config::hello_bytes(c.client_hello_max));
        assert_eq!(c.thop.key_id, 1);
        assert_eq!(c.thop.keys[0].1, *b"baton-testbed-key-not-for-prod!!");
        assert_eq!(c.header_max, 16384);
        assert!(c.request_buffer > c.header_max);
        assert_eq!(c.mac, [2, 0, 0, 0, 0, 2]);
        match io_config(&l.profile) {
            Some(IoConfig::AfPacket(a)) => assert_eq!(a.iface, "sw-data"),
            other => panic!("{other:?}"),
        }
    }

    fn configs() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs")
    }

    #[test]
    fn af_xdp_test_bed_profile_maps_onto_the_backend_settings() {
        let path = configs().join("testbed-afxdp.yaml");
        let l = crate::config::load_file_with(&path, &Default::default()).unwrap();
        match io_config(&l.profile) {
            Some(IoConfig::AfXdp(x)) => {
                assert_eq!(x.iface, "sw-data");
                assert_eq!(x.queues, None);
                assert_eq!(x.attach, XdpAttach::Native);
                assert_eq!(x.bind, XdpBind::Auto);
                assert_eq!(x.fast_path, FastPath::Xdp);
                assert_eq!((x.frame_size, x.frame_count), (4096, 4096));
                assert!(x.ring_size.is_power_of_two());
                assert_eq!(x.poll, poll_mode(&l.profile));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(l.profile.workers.count, 2);
    }

    #[test]
    fn af_xdp_fast_path_is_turned_off_by_overriding_one_field() {
        // The test bed's variant without the fast path: the anchored section
        // of testbed-afxdp.yaml, one field changed (`off` is a string here,
        // not a YAML 1.1 boolean).
        let mut files = Vec::new();
        for f in ["base.yaml", "testbed.yaml", "testbed-afxdp.yaml"] {
            files.push((f, std::fs::read_to_string(configs().join(f)).unwrap()));
        }
        let over = "<<: !include testbed-afxdp.yaml\nname: slow\nio:\n  af_xdp:\n    <<: !include testbed-afxdp.yaml#af_xdp\n    fast_path: off\n";
        let mut with: Vec<(&str, &str)> = files.iter().map(|(n, t)| (*n, t.as_str())).collect();
        with.push(("slow.yaml", over));
        let d = testkit::temp_dir::TempDir::with_files("cp-afxdp", &with);
        let l = crate::config::load_file_with(&d.join("slow.yaml"), &Default::default()).unwrap();
        match io_config(&l.profile) {
            Some(IoConfig::AfXdp(x)) => {
                assert_eq!(x.fast_path, FastPath::Off);
                assert_eq!(
                    x.attach,
                    XdpAttach::Native,
                    "kept from the anchored section"
                );
                assert_eq!(x.frame_count, 4096);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn af_xdp_defaults_match_the_backend_defaults() {
        let x: crate::config::AfXdpIo = serde_saphyr::from_str("interface: eth1\n").unwrap();
        let d = AfXdpConfig::new("eth1");
        assert_eq!(x.frame_count, d.frame_count);
        assert_eq!(x.frame_size, d.frame_size);
        assert_eq!(x.ring_size, d.ring_size);
        assert_eq!(x.flow_capacity, d.flow_capacity);
        assert_eq!(x.fast_path, FastPathMode::Xdp);
        assert_eq!(x.mode, XdpMode::Auto);
        assert_eq!(x.bind, XdpBindMode::Auto);
    }

    /// A build without the `af_xdp` feature still compiles the profile; it is
    /// opening the port that names the missing feature.
    #[cfg(not(feature = "af_xdp"))]
    #[test]
    fn af_xdp_without_the_feature_fails_at_open_with_the_feature_named() {
        let path = configs().join("testbed-afxdp.yaml");
        let l = crate::config::load_file_with(&path, &Default::default()).unwrap();
        let cfg = io_config(&l.profile).unwrap();
        let err = dataplane::io::open(&cfg, 2)
            .err()
            .expect("no AF_XDP in this build");
        let msg = err.to_string();
        assert!(msg.contains("af_xdp"), "{msg}");
    }
}
