//! The agent's YAML configuration (`configs/agent*.yaml`, documented in
//! `docs/agent.md`).
//!
//! Same conventions as the switch's profiles: serde-saphyr, unknown fields
//! rejected (`deny_unknown_fields`), every error names the field and the line;
//! semantic checks run after parsing and name the field path too.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// A name for this backend in logs (default: the host name).
    #[serde(default)]
    pub name: Option<String>,
    /// THOP reception.
    pub thop: ThopConfig,
    /// The services this backend adopts connections for.
    pub services: Vec<Service>,
    /// LOAD reports to the switch.
    #[serde(default)]
    pub load: LoadConfig,
    /// Capacity and timeouts.
    #[serde(default)]
    pub limits: Limits,
    /// Socket handover to servers started with the preload library.
    #[serde(default)]
    pub handover: HandoverConfig,
    /// Prometheus metrics endpoint.
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// Logging.
    #[serde(default)]
    pub log: LogConfig,
}

/// THOP reception: address, allowed switches, keys.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ThopConfig {
    /// UDP address to receive THOP on (the backend's data address, port 9199).
    pub listen: SocketAddr,
    /// Switches allowed to send THOP: an address (any port) or address:port.
    pub switches: Vec<String>,
    /// Keys shared with the switches (id + 32 bytes, inline or in a file).
    pub keys: Vec<KeyConfig>,
    /// Test beds only: accept published sample keys and low-entropy keys
    /// (all zero, a repeated byte, a sequence, few distinct bytes). Without
    /// it such a key is refused at `check-config` and at start.
    #[serde(default)]
    pub allow_sample_keys: bool,
    /// The key id used to sign frames this agent sends (default: the first).
    #[serde(default)]
    pub send_key: Option<u32>,
    /// Largest request a CREATE may carry, in bytes.
    #[serde(default = "default_max_request")]
    pub max_request_bytes: u32,
    /// CREATEs being reassembled at once (across all switches).
    #[serde(default = "default_max_pending")]
    pub max_pending_creates: u32,
    /// A partial CREATE is dropped after this many milliseconds.
    #[serde(default = "default_reassembly_ms")]
    pub reassembly_timeout_ms: u64,
    /// Frames whose timestamp is further than this from our clock are refused.
    #[serde(default = "default_skew_ms")]
    pub max_clock_skew_ms: u64,
    /// File that keeps the replay windows across restarts (a restarted
    /// agent refuses what the previous process accepted). Default: one per
    /// listen address and network namespace under `/run/baton-agent/`.
    #[serde(default)]
    pub replay_state: Option<PathBuf>,
}

/// One shared key: exactly one of `key` and `key_file`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    /// Key id, carried in every frame's header.
    pub id: u32,
    /// The 32-byte key as 64 hex digits.
    #[serde(default)]
    pub key: Option<String>,
    /// A file holding the 64 hex digits, not readable by group or others
    /// (keeps the key out of the configuration file).
    #[serde(default)]
    pub key_file: Option<std::path::PathBuf>,
    /// The switches (address, as in `thop.switches`) that may use this key;
    /// empty: every configured switch. With several switches, give each its
    /// own key so that none can speak for another.
    #[serde(default)]
    pub switches: Vec<String>,
}

/// How adopted connections reach the application.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Relay to an unmodified local server with splice(2).
    Relay,
    /// Yield sockets through the `HandoffListener` API.
    Listener,
    /// Give the socket to an unmodified server process that runs with the
    /// handover library preloaded (its `accept` returns it).
    Handover,
}

/// Socket handover (services in `handover` mode).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HandoverConfig {
    /// The agent's unix datagram socket, where preloaded servers announce
    /// their listeners (the servers' `BATON_HANDOVER_SOCKET`).
    #[serde(default = "default_handover_socket")]
    pub socket: std::path::PathBuf,
    /// Group allowed to use the socket (a name or a gid; the socket is then
    /// mode 0660, else 0600 and only root's servers can answer).
    #[serde(default)]
    pub group: Option<String>,
    /// The preload library servers are started with; checked at start-up
    /// (present, loadable, same protocol version).
    #[serde(default = "default_handover_library")]
    pub library: std::path::PathBuf,
    /// A connection the server has not accepted after this long is silenced
    /// and refused (NACK), so the switch re-dispatches it. Keep it below the
    /// switch's handoff budget (handoff_rto × retries).
    #[serde(default = "default_accept_timeout_ms")]
    pub accept_timeout_ms: u64,
}

/// One service: the VIP:port clients connect to, and where its connections go.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Service {
    /// The virtual address and port (the VIP must be on `lo`).
    pub vip: SocketAddr,
    /// `relay` or `listener`.
    pub mode: Mode,
    /// The local server (relay mode only), e.g. 127.0.0.1:8080.
    #[serde(default)]
    pub upstream: Option<SocketAddr>,
}

/// LOAD reports.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LoadConfig {
    /// Period in milliseconds (0 disables LOAD).
    #[serde(default = "default_load_ms")]
    pub period_ms: u64,
    /// Where to send LOAD (default: every switch address given with a port,
    /// else that address at port 9199).
    #[serde(default)]
    pub to: Vec<SocketAddr>,
}

/// Capacity and timeouts.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Connections adopted at once; beyond it CREATE is refused (`overloaded`).
    #[serde(default = "default_max_active")]
    pub max_active: u32,
    /// Adopted connections waiting in a listener's accept queue; beyond it
    /// CREATE is refused (`backlog_full`).
    #[serde(default = "default_backlog")]
    pub backlog: u32,
    /// A relayed connection idle this long (seconds) is reset.
    #[serde(default = "default_idle_s")]
    pub idle_timeout_s: u64,
    /// On SIGTERM, adopted connections get this long (seconds) to finish.
    #[serde(default = "default_drain_s")]
    pub drain_timeout_s: u64,
}

/// Metrics endpoint.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Address of `/metrics` (the management address); `null` disables it.
    #[serde(default = "default_metrics")]
    pub listen: Option<SocketAddr>,
    /// Only these client addresses may connect (others are closed before a
    /// byte is read); empty: any.
    #[serde(default)]
    pub allow: Vec<std::net::IpAddr>,
    /// Time (ms) a client has to send a complete request head; also the
    /// longest idle time between keep-alive requests.
    #[serde(default = "default_metrics_header_timeout_ms")]
    pub header_timeout_ms: u64,
    /// Connections served at once; a new one closes the oldest waiting for a request head (counted).
    #[serde(default = "default_metrics_connections")]
    pub max_connections: u32,
}

/// Log output.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `text` or `json`.
    #[serde(default)]
    pub format: LogFormat,
    /// A tracing filter (`info`, `agent=debug`, …); `RUST_LOG` overrides it.
    #[serde(default = "default_level")]
    pub level: String,
}

/// Log line format.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

fn default_max_request() -> u32 {
    1 << 20
}
fn default_max_pending() -> u32 {
    1024
}
fn default_reassembly_ms() -> u64 {
    2000
}
fn default_skew_ms() -> u64 {
    30_000
}
fn default_load_ms() -> u64 {
    1000
}
fn default_max_active() -> u32 {
    50_000
}
fn default_backlog() -> u32 {
    1024
}
fn default_idle_s() -> u64 {
    300
}
fn default_drain_s() -> u64 {
    30
}
fn default_metrics() -> Option<SocketAddr> {
    Some(SocketAddr::from(([0, 0, 0, 0], 9101)))
}
fn default_metrics_header_timeout_ms() -> u64 {
    5000
}
fn default_metrics_connections() -> u32 {
    16
}
fn default_handover_socket() -> std::path::PathBuf {
    handoff_proto::handover::DEFAULT_SOCKET.into()
}
fn default_handover_library() -> std::path::PathBuf {
    "/usr/lib/baton/libbaton_handover.so".into()
}
fn default_accept_timeout_ms() -> u64 {
    250
}
impl Default for HandoverConfig {
    fn default() -> Self {
        HandoverConfig {
            socket: default_handover_socket(),
            group: None,
            library: default_handover_library(),
            accept_timeout_ms: default_accept_timeout_ms(),
        }
    }
}
fn default_level() -> String {
    "info".into()
}

impl Default for LoadConfig {
    fn default() -> Self {
        LoadConfig {
            period_ms: default_load_ms(),
            to: Vec::new(),
        }
    }
}
impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_active: default_max_active(),
            backlog: default_backlog(),
            idle_timeout_s: default_idle_s(),
            drain_timeout_s: default_drain_s(),
        }
    }
}
impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            listen: default_metrics(),
            allow: Vec::new(),
            header_timeout_ms: default_metrics_header_timeout_ms(),
            max_connections: default_metrics_connections(),
        }
    }
}
impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Text,
            level: default_level(),
        }
    }
}

/// A configuration problem, naming the file and the field.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {err}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        err: std::io::Error,
    },
    /// YAML syntax, a wrong type or an unknown field (message has line/column).
    #[error("{0}")]
    Parse(String),
    /// A value parsed but makes no sense.
    #[error("{field}: {msg}")]
    Invalid {
        /// Field path, e.g. `services[1].upstream`.
        field: String,
        /// What is wrong.
        msg: String,
    },
}

fn invalid(field: impl Into<String>, msg: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.into(),
        msg: msg.into(),
    }
}

/// One allowed switch: an address, and optionally the only port allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SwitchAddr {
    /// The switch's data address.
    pub ip: IpAddr,
    /// Its THOP port when given.
    pub port: Option<u16>,
}

impl SwitchAddr {
    /// Parses `ip` or `ip:port` (`[v6]:port` for IPv6).
    pub fn parse(s: &str) -> Option<SwitchAddr> {
        if let Ok(sa) = s.parse::<SocketAddr>() {
            return Some(SwitchAddr {
                ip: sa.ip(),
                port: Some(sa.port()),
            });
        }
        s.parse::<IpAddr>()
            .ok()
            .map(|ip| SwitchAddr { ip, port: None })
    }

    /// Whether a datagram from `from` comes from this switch.
    pub fn matches(&self, from: SocketAddr) -> bool {
        self.ip == from.ip() && self.port.is_none_or(|p| p == from.port())
    }

    /// Where LOAD goes by default.
    pub fn thop_addr(&self) -> SocketAddr {
        SocketAddr::new(self.ip, self.port.unwrap_or(9199))
    }
}

impl Config {
    /// Reads, parses and validates a file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|err| ConfigError::Io {
            path: path.display().to_string(),
            err,
        })?;
        Config::parse(&text).map_err(|e| match e {
            ConfigError::Parse(m) => ConfigError::Parse(format!("{}: {m}", path.display())),
            other => other,
        })
    }

    /// Parses and validates YAML text.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        // serde-saphyr reports the line and column; serde_path_to_error adds the
        // field path (`services[1].mode`), which serde-saphyr gives only for
        // validation errors.
        let mut path = String::new();
        let parsed = serde_saphyr::with_deserializer_from_str(text, |de| {
            serde_path_to_error::deserialize::<_, Config>(de).map_err(|e| {
                path = e.path().to_string();
                e.into_inner()
            })
        });
        let cfg = parsed.map_err(|e| {
            let mut msg = match path.as_str() {
                "" | "." => e.to_string(),
                p => format!("{p}: {e}"),
            };
            // `listen: [2001:db8::1]:9199` is a YAML sequence, not a string.
            if msg.contains("expected string scalar") {
                msg.push_str(
                    "\n(an IPv6 address with a port is quoted in YAML: \"[2001:db8::10]:80\")",
                );
            }
            ConfigError::Parse(msg)
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// The replay state file: `thop.replay_state`, or one named for the
    /// listen address and the network namespace (two agents on one host,
    /// or in two namespaces of it, never share one).
    pub fn replay_state_path(&self) -> PathBuf {
        if let Some(p) = &self.thop.replay_state {
            return p.clone();
        }
        let netns = std::fs::metadata("/proc/self/ns/net")
            .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
            .unwrap_or(0);
        let ip = self.thop.listen.ip().to_string().replace(':', "_");
        PathBuf::from(format!(
            "/run/baton-agent/replay-{ip}-{}-net{netns}",
            self.thop.listen.port()
        ))
    }

    /// The allowed switches, parsed.
    pub fn switches(&self) -> Vec<SwitchAddr> {
        self.thop
            .switches
            .iter()
            .filter_map(|s| SwitchAddr::parse(s))
            .collect()
    }

    /// Where LOAD reports go.
    pub fn load_targets(&self) -> Vec<SocketAddr> {
        if !self.load.to.is_empty() {
            return self.load.to.clone();
        }
        self.switches().iter().map(SwitchAddr::thop_addr).collect()
    }

    /// The keys, read (key files included) and checked: well-formed, and
    /// neither a published sample nor low-entropy unless
    /// `thop.allow_sample_keys` says this is a test bed.
    pub fn thop_keys(&self) -> Result<Vec<handoff_proto::Key>, ConfigError> {
        let mut out = Vec::new();
        for (i, k) in self.thop.keys.iter().enumerate() {
            let (field, key) = match (&k.key, &k.key_file) {
                (Some(hex), None) => {
                    let field = format!("thop.keys[{i}].key");
                    let key = handoff_proto::Key::from_hex(k.id, hex)
                        .map_err(|_| invalid(&field, "must be 64 hex digits (32 bytes)"))?;
                    (field, key)
                }
                (None, Some(path)) => {
                    let field = format!("thop.keys[{i}].key_file");
                    let bytes =
                        handoff_proto::read_key_file(path).map_err(|e| invalid(&field, e))?;
                    (field, handoff_proto::Key::new(k.id, bytes))
                }
                _ => {
                    return Err(invalid(
                        format!("thop.keys[{i}]"),
                        "give exactly one of `key` and `key_file`",
                    ))
                }
            };
            if let Some(w) = key.weakness() {
                if !self.thop.allow_sample_keys {
                    return Err(invalid(
                        field,
                        format!(
                            "the key {w}: generate one with `head -c32 /dev/urandom | xxd -p -c64` \
                             (test beds may set thop.allow_sample_keys: true)"
                        ),
                    ));
                }
            }
            out.push(key);
        }
        Ok(out)
    }

    /// The node ids of the switches, and for each key the switches' node
    /// ids it is bound to (all switches when the key names none).
    pub fn key_bindings(&self) -> Vec<(u32, Vec<u32>)> {
        let all: Vec<u32> = self
            .switches()
            .iter()
            .map(|s| handoff_proto::node_id(s.ip))
            .collect();
        self.thop
            .keys
            .iter()
            .map(|k| {
                let nodes = if k.switches.is_empty() {
                    all.clone()
                } else {
                    k.switches
                        .iter()
                        .filter_map(|s| SwitchAddr::parse(s))
                        .map(|a| handoff_proto::node_id(a.ip))
                        .collect()
                };
                (k.id, nodes)
            })
            .collect()
    }

    /// Semantic checks, each naming its field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let listen = self.thop.listen;
        if listen.ip().is_unspecified() || listen.port() == 0 {
            return Err(invalid(
                "thop.listen",
                "needs the backend's data address and a port (its address is the agent's THOP node id)",
            ));
        }
        if let Some(why) = thop_addr_problem(listen.ip()) {
            return Err(invalid("thop.listen", format!("{}: {why}", listen.ip())));
        }
        if self.thop.switches.is_empty() {
            return Err(invalid(
                "thop.switches",
                "at least one switch address is required",
            ));
        }
        for (i, s) in self.thop.switches.iter().enumerate() {
            let Some(a) = SwitchAddr::parse(s) else {
                return Err(invalid(
                    format!("thop.switches[{i}]"),
                    format!("{s:?} is not an address or address:port"),
                ));
            };
            if let Some(why) = thop_addr_problem(a.ip) {
                return Err(invalid(
                    format!("thop.switches[{i}]"),
                    format!("{s}: {why}"),
                ));
            }
            if a.ip.is_ipv4() != listen.is_ipv4() {
                return Err(invalid(
                    format!("thop.switches[{i}]"),
                    format!(
                        "{s} is {} but thop.listen ({listen}) is {}: THOP goes through one \
                         socket, so the switches' addresses are of thop.listen's family",
                        family(a.ip),
                        family(listen.ip())
                    ),
                ));
            }
        }
        for (i, to) in self.load.to.iter().enumerate() {
            if to.is_ipv4() != listen.is_ipv4() {
                return Err(invalid(
                    format!("load.to[{i}]"),
                    format!(
                        "{to} is {} but thop.listen ({listen}) is {}: LOAD leaves from the THOP socket",
                        family(to.ip()),
                        family(listen.ip())
                    ),
                ));
            }
        }
        if self.thop.keys.is_empty() {
            return Err(invalid("thop.keys", "at least one key is required"));
        }
        if !(1..=300_000).contains(&self.metrics.header_timeout_ms) {
            return Err(invalid(
                "metrics.header_timeout_ms",
                "must be between 1 and 300000",
            ));
        }
        if !(1..=4096).contains(&self.metrics.max_connections) {
            return Err(invalid(
                "metrics.max_connections",
                "must be between 1 and 4096",
            ));
        }
        let mut ids = HashSet::new();
        for (i, k) in self.thop.keys.iter().enumerate() {
            if !ids.insert(k.id) {
                return Err(invalid(
                    format!("thop.keys[{i}].id"),
                    format!("key id {} appears twice", k.id),
                ));
            }
            for (j, s) in k.switches.iter().enumerate() {
                let ok = SwitchAddr::parse(s)
                    .is_some_and(|a| self.switches().iter().any(|w| w.ip == a.ip));
                if !ok {
                    return Err(invalid(
                        format!("thop.keys[{i}].switches[{j}]"),
                        format!("{s:?} is not one of thop.switches"),
                    ));
                }
            }
        }
        self.thop_keys()?;
        if let Some(id) = self.thop.send_key {
            if !ids.contains(&id) {
                return Err(invalid(
                    "thop.send_key",
                    format!("no key with id {id} in thop.keys"),
                ));
            }
        }
        if self.thop.max_request_bytes == 0 || self.thop.max_request_bytes > (16 << 20) {
            return Err(invalid(
                "thop.max_request_bytes",
                "must be between 1 and 16777216",
            ));
        }
        if self.thop.max_pending_creates == 0 {
            return Err(invalid("thop.max_pending_creates", "must be at least 1"));
        }
        if self.services.is_empty() {
            return Err(invalid("services", "at least one service is required"));
        }
        let mut vips = HashSet::new();
        for (i, s) in self.services.iter().enumerate() {
            if !vips.insert(s.vip) {
                return Err(invalid(
                    format!("services[{i}].vip"),
                    format!("{} is listed twice", s.vip),
                ));
            }
            if s.vip.port() == 0 || s.vip.ip().is_unspecified() {
                return Err(invalid(
                    format!("services[{i}].vip"),
                    "needs a concrete address and a port",
                ));
            }
            if let Some(why) = vip_problem(s.vip) {
                return Err(invalid(
                    format!("services[{i}].vip"),
                    format!("{}: {why}", s.vip),
                ));
            }
            match (s.mode, s.upstream) {
                (Mode::Relay, None) => {
                    return Err(invalid(
                        format!("services[{i}].upstream"),
                        "relay mode needs an upstream address",
                    ))
                }
                (Mode::Listener, Some(_)) => {
                    return Err(invalid(
                        format!("services[{i}].upstream"),
                        "listener mode takes no upstream",
                    ))
                }
                (Mode::Handover, Some(_)) => {
                    return Err(invalid(
                        format!("services[{i}].upstream"),
                        "handover mode takes no upstream: the server accepts the socket itself",
                    ))
                }
                _ => {}
            }
        }
        if self.limits.max_active == 0 {
            return Err(invalid("limits.max_active", "must be at least 1"));
        }
        if self.limits.backlog == 0 {
            return Err(invalid("limits.backlog", "must be at least 1"));
        }
        if self.services.iter().any(|s| s.mode == Mode::Handover) {
            if self.handover.accept_timeout_ms == 0 || self.handover.accept_timeout_ms > 60_000 {
                return Err(invalid(
                    "handover.accept_timeout_ms",
                    "must be between 1 and 60000",
                ));
            }
            if !self.handover.socket.is_absolute() {
                return Err(invalid("handover.socket", "must be an absolute path"));
            }
        }
        Ok(())
    }
}

fn family(ip: IpAddr) -> &'static str {
    if ip.is_ipv4() {
        "IPv4"
    } else {
        "IPv6"
    }
}

/// `fe80::/10`.
fn is_link_local_v6(ip: &std::net::Ipv6Addr) -> bool {
    ip.segments()[0] & 0xffc0 == 0xfe80
}

/// Why an IPv6 address cannot serve as a VIP (IPv4 VIPs are taken as given).
fn vip_problem(vip: SocketAddr) -> Option<&'static str> {
    let SocketAddr::V6(v) = vip else {
        return None;
    };
    let ip = v.ip();
    if ip.to_ipv4_mapped().is_some() {
        return Some(
            "an IPv4-mapped IPv6 address; an IPv4 VIP is written as IPv4 (e.g. 198.18.0.10:80): \
             the switch hands its connections off as IPv4",
        );
    }
    if is_link_local_v6(ip) {
        return Some(
            "a link-local address; a VIP needs a global or unique-local address that clients \
             reach through the switch",
        );
    }
    if ip.is_multicast() || ip.is_loopback() {
        return Some("not a unicast address clients can reach");
    }
    if v.scope_id() != 0 {
        return Some("a VIP takes no zone index (%…)");
    }
    None
}

/// Why an address cannot be a THOP endpoint.
fn thop_addr_problem(ip: IpAddr) -> Option<&'static str> {
    let IpAddr::V6(v6) = ip else {
        return None;
    };
    if v6.to_ipv4_mapped().is_some() {
        return Some("an IPv4-mapped IPv6 address; write the IPv4 address itself");
    }
    if is_link_local_v6(&v6) {
        return Some("a link-local address; THOP needs the data segment's global address");
    }
    if v6.is_multicast() {
        return Some("a multicast address");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
name: backend-1
thop:
  listen: 198.18.0.11:9199
  switches: [198.18.0.2]
  keys:
    - id: 1
      key: "3f1c9a7be20d44c58e61b0f29d7a3c11e5b8047f6d92ac30b1e4f8a7256c0d9e"
services:
  - vip: 198.18.0.10:80
    mode: relay
    upstream: 127.0.0.1:8080
  - vip: 198.18.0.10:81
    mode: listener
metrics:
  listen: 198.19.0.11:9101
"#;

    #[test]
    fn parses_and_fills_defaults() {
        let c = Config::parse(GOOD).unwrap();
        assert_eq!(c.services.len(), 2);
        assert_eq!(c.limits, Limits::default());
        assert_eq!(
            c.load_targets(),
            vec!["198.18.0.2:9199".parse::<SocketAddr>().unwrap()]
        );
        assert!(c.switches()[0].matches("198.18.0.2:5555".parse().unwrap()));
    }

    #[test]
    fn unknown_field_names_field_and_line() {
        let bad = GOOD.replace("    mode: listener", "    mode: listener\n    colour: red");
        let e = Config::parse(&bad).unwrap_err().to_string();
        assert!(e.contains("colour"), "{e}");
        assert!(e.starts_with("services[1]"), "{e}");
        assert!(e.contains("line 15"), "{e}");
    }

    #[test]
    fn wrong_type_names_line() {
        let bad = GOOD.replace("listen: 198.18.0.11:9199", "listen: not-an-address");
        let e = Config::parse(&bad).unwrap_err().to_string();
        assert!(e.starts_with("thop.listen"), "{e}");
        assert!(e.contains("line 4"), "{e}");
    }

    #[test]
    fn semantic_errors_name_the_path() {
        let bad = GOOD.replace("    upstream: 127.0.0.1:8080\n", "");
        let e = Config::parse(&bad).unwrap_err().to_string();
        assert!(e.starts_with("services[0].upstream"), "{e}");
        let bad = GOOD.replace("44c58e61b0", "44c58e61");
        let e = Config::parse(&bad).unwrap_err().to_string();
        assert!(e.starts_with("thop.keys[0].key"), "{e}");
    }

    #[test]
    fn sample_and_low_entropy_keys_are_refused_outside_a_test_bed() {
        for (key, why) in [
            (
                "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
                "published sample",
            ),
            (
                "0000000000000000000000000000000000000000000000000000000000000000",
                "same value in every byte",
            ),
            (
                "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
                "published sample",
            ),
        ] {
            let bad = GOOD.replace(
                "3f1c9a7be20d44c58e61b0f29d7a3c11e5b8047f6d92ac30b1e4f8a7256c0d9e",
                key,
            );
            let e = Config::parse(&bad).unwrap_err().to_string();
            assert!(e.starts_with("thop.keys[0].key:"), "{e}");
            assert!(e.contains(why) && e.contains("allow_sample_keys"), "{e}");
            let bed = bad.replace("  keys:\n", "  allow_sample_keys: true\n  keys:\n");
            assert!(Config::parse(&bed).is_ok(), "{bed}");
        }
    }

    #[test]
    fn key_file_readable_by_others_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("agent-cfg-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("thop.key");
        std::fs::write(
            &path,
            "3f1c9a7be20d44c58e61b0f29d7a3c11e5b8047f6d92ac30b1e4f8a7256c0d9e\n",
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let yaml = GOOD.replace(
            "key: \"3f1c9a7be20d44c58e61b0f29d7a3c11e5b8047f6d92ac30b1e4f8a7256c0d9e\"",
            &format!("key_file: {}", path.display()),
        );
        let e = Config::parse(&yaml).unwrap_err().to_string();
        assert!(
            e.starts_with("thop.keys[0].key_file:") && e.contains("0644"),
            "{e}"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let c = Config::parse(&yaml).unwrap();
        assert_eq!(c.thop_keys().unwrap()[0].id(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    const GOOD6: &str = r#"
thop:
  listen: "[2001:2::11]:9199"
  switches: ["2001:2::2", "[2001:2::3]:9199"]
  keys:
    - id: 1
      key: "3f1c9a7be20d44c58e61b0f29d7a3c11e5b8047f6d92ac30b1e4f8a7256c0d9e"
      switches: ["2001:2::2"]
services:
  - vip: "[2001:2::10]:80"
    mode: handover
  - vip: "[2001:2::10]:8080"
    mode: relay
    upstream: "[::1]:8080"
  - vip: 198.18.0.10:80
    mode: listener
metrics:
  listen: "[::1]:9101"
"#;

    #[test]
    fn ipv6_addresses_parse_and_derive_node_ids() {
        let c = Config::parse(GOOD6).unwrap();
        assert_eq!(c.services[0].vip, "[2001:2::10]:80".parse().unwrap());
        assert_eq!(c.services[1].upstream, Some("[::1]:8080".parse().unwrap()));
        assert_eq!(
            c.load_targets(),
            vec![
                "[2001:2::2]:9199".parse::<SocketAddr>().unwrap(),
                "[2001:2::3]:9199".parse().unwrap()
            ]
        );
        assert!(c.switches()[0].matches("[2001:2::2]:40000".parse().unwrap()));
        assert!(!c.switches()[1].matches("[2001:2::3]:40000".parse().unwrap()));
        let s2 = handoff_proto::node_id("2001:2::2".parse().unwrap());
        assert_eq!(c.key_bindings(), vec![(1, vec![s2])]);
        // Unquoted, `[…]` starts a YAML sequence: the error names the field.
        let bad = GOOD6.replace("\"[2001:2::11]:9199\"", "[2001:2::11]:9199");
        let e = Config::parse(&bad).unwrap_err().to_string();
        assert!(e.contains("line 3") && e.contains("quoted"), "{e}");
    }

    #[test]
    fn unusable_ipv6_vips_are_refused_naming_the_field() {
        for (vip, why) in [
            ("[::ffff:198.18.0.10]:80", "IPv4-mapped"),
            ("[fe80::10]:80", "link-local"),
            ("[fe80::10%2]:80", "link-local"),
            ("[ff02::1]:80", "unicast"),
            ("[::1]:80", "unicast"),
            ("[2001:2::10%2]:80", "zone"),
        ] {
            let bad = GOOD6.replace("\"[2001:2::10]:8080\"", &format!("\"{vip}\""));
            let e = Config::parse(&bad).unwrap_err().to_string();
            assert!(e.starts_with("services[1].vip: "), "{vip}: {e}");
            assert!(e.contains(why), "{vip}: {e}");
        }
    }

    #[test]
    fn thop_addresses_of_another_family_or_mapped_are_refused() {
        let bad = GOOD6.replace("\"[2001:2::3]:9199\"", "198.18.0.3");
        let e = Config::parse(&bad).unwrap_err().to_string();
        assert!(
            e.starts_with("thop.switches[1]: ") && e.contains("IPv4") && e.contains("thop.listen"),
            "{e}"
        );
        let bad = GOOD6.replace("2001:2::11]:9199", "::ffff:198.18.0.11]:9199");
        let e = Config::parse(&bad).unwrap_err().to_string();
        assert!(
            e.starts_with("thop.listen: ") && e.contains("IPv4-mapped"),
            "{e}"
        );
        let bad = GOOD6.replace("2001:2::11]:9199", "fe80::11]:9199");
        let e = Config::parse(&bad).unwrap_err().to_string();
        assert!(
            e.starts_with("thop.listen: ") && e.contains("link-local"),
            "{e}"
        );
        let bad = GOOD6.replace("\"2001:2::2\", ", "\"::ffff:198.18.0.2\", ");
        let e = Config::parse(&bad).unwrap_err().to_string();
        assert!(e.starts_with("thop.switches[0]: "), "{e}");
        let bad = GOOD6.replace("metrics:", "load:\n  to: [198.18.0.2:9199]\nmetrics:");
        let e = Config::parse(&bad).unwrap_err().to_string();
        assert!(e.starts_with("load.to[0]: "), "{e}");
    }

    #[test]
    fn garbage_never_panics() {
        for s in [
            "",
            "[",
            "thop: 3",
            "services: {a: b}",
            "\u{0}\u{1}",
            "thop:\n  listen: [1,2]",
        ] {
            assert!(Config::parse(s).is_err());
        }
    }
}
