//! The verbs of the script language (see the module documentation of
//! `core_bed`).

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use agent::config::{Config, Mode};
use agent::handoff::{AdoptFailure, Adoption, ConnKey};
use agent::repair::AdoptError;
use handoff_proto::{
    flags, node_id, Abort, AbortReason, Ack, Body, FlowRecord, Flows, Hello, Key, Load, Lookup,
    Nack, NackReason, Records,
};

use super::bed::{close_reason, nack_reason, tcp_state, Bed, Out, FORGED, RESTART_SEQ_JUMP};

type Res = Result<(), String>;

/// Arguments: `name=value` pairs and bare flags (value "").
struct Args<'a>(HashMap<&'a str, &'a str>);

impl<'a> Args<'a> {
    fn parse(words: &[&'a str]) -> Args<'a> {
        Args(
            words
                .iter()
                .map(|w| w.split_once('=').unwrap_or((w, "")))
                .collect(),
        )
    }
    fn has(&self, k: &str) -> bool {
        self.0.contains_key(k)
    }
    fn str(&self, k: &str) -> Option<&'a str> {
        self.0.get(k).copied()
    }
    fn num<T: std::str::FromStr>(&self, k: &str) -> Result<Option<T>, String> {
        self.str(k)
            .map(|v| v.parse().map_err(|_| format!("{k}={v}: not a number")))
            .transpose()
    }
    fn id(&self) -> Result<u64, String> {
        self.num("id")?.ok_or_else(|| "id= missing".into())
    }
    fn addr(&self, k: &str, default: &str) -> Result<SocketAddr, String> {
        let v = self.str(k).unwrap_or(default);
        v.parse().map_err(|_| format!("{k}={v}: not IP:PORT"))
    }
    /// A comma-separated list of `IP:PORT`.
    fn addrs(&self, k: &str, default: &str) -> Result<Vec<SocketAddr>, String> {
        let v = self.str(k).unwrap_or(default);
        v.split(',')
            .map(|a| a.parse().map_err(|_| format!("{k}={v}: not IP:PORT,…")))
            .collect()
    }
    /// A comma-separated list of numbers.
    fn nums<T: std::str::FromStr>(&self, k: &str) -> Result<Option<Vec<T>>, String> {
        self.str(k)
            .map(|v| {
                v.split(',')
                    .map(|n| n.parse().map_err(|_| format!("{k}={v}: not numbers")))
                    .collect()
            })
            .transpose()
    }
    /// `switch=IP[:PORT]` names `to` (the switch a frame went to), or is absent.
    fn names_switch(&self, to: SocketAddr) -> Result<bool, String> {
        let Some(v) = self.str("switch") else {
            return Ok(true);
        };
        if let Ok(a) = v.parse::<SocketAddr>() {
            return Ok(a == to);
        }
        let ip: IpAddr = v
            .parse()
            .map_err(|_| format!("switch={v}: not IP or IP:PORT"))?;
        Ok(ip == to.ip())
    }
}

/// `set NAME=VALUE`: a configuration change before the core starts.
pub fn set(cfg: &mut Config, word: &str) -> Res {
    let (k, v) = word.split_once('=').ok_or("set NAME=VALUE")?;
    let n: u64 = v.parse().map_err(|_| format!("{word}: not a number"))?;
    match k {
        "max_active" => cfg.limits.max_active = n as _,
        "load_period_ms" => cfg.load.period_ms = n,
        "drain_timeout_s" => cfg.limits.drain_timeout_s = n,
        "reassembly_timeout_ms" => cfg.thop.reassembly_timeout_ms = n,
        "max_request_bytes" => cfg.thop.max_request_bytes = n as _,
        _ => return Err(format!("unknown setting {k}")),
    }
    Ok(())
}

/// Fails while something emitted is not matched.
pub fn check_drained(b: &Bed) -> Res {
    match b.out.front() {
        None => Ok(()),
        Some((at, o)) => Err(format!("emitted at {at:?} and not matched: {o:?}")),
    }
}

/// A `>` line: the next output is this one.
pub fn expect(b: &mut Bed, words: &[&str]) -> Res {
    let (what, args) = words.split_first().ok_or("> what?")?;
    let a = Args::parse(args);
    let (at, out) = b
        .out
        .pop_front()
        .ok_or_else(|| format!("expected {what}, nothing was emitted"))?;
    if b.t.abs_diff(at) > Duration::from_millis(1) {
        return Err(format!("{out:?} emitted at {at:?}, not at {:?}", b.t));
    }
    let want_id = a.num::<u64>("id")?;
    let same = |id: u64| want_id.is_none_or(|w| w == id);
    let ok = match (*what, &out) {
        (
            "ACK",
            Out::Ack {
                conn_id,
                echo_seq,
                flags: f,
            },
        ) => {
            same(*conn_id)
                && b.echoes(*conn_id, *echo_seq)
                && (f & flags::DUPLICATE != 0) == a.has("dup")
        }
        (
            "NACK",
            Out::Nack {
                conn_id,
                echo_seq,
                reason,
            },
        ) => {
            same(*conn_id)
                && a.str("reason").is_none_or(|r| nack_reason(r) == *reason)
                && (*reason == NackReason::UnsupportedVersion || b.echoes(*conn_id, *echo_seq))
        }
        (
            "CLOSE",
            Out::Close {
                to, conn_id, close, ..
            },
        ) => {
            same(*conn_id)
                && a.names_switch(*to)?
                && a.str("reason")
                    .is_none_or(|r| close_reason(r) == close.reason)
                && a.num("from")?
                    .is_none_or(|n: u64| n == close.bytes_from_client)
                && a.num("to")?.is_none_or(|n: u64| n == close.bytes_to_client)
        }
        ("LOAD", Out::Load(l)) => {
            a.num("active")?.is_none_or(|n: u32| n == l.active_conns)
                && a.num("capacity")?.is_none_or(|n: u32| n == l.capacity_hint)
                && a.num("rate")?.is_none_or(|n: u32| n == l.adopted_per_sec)
        }
        (
            "FLOWS",
            Out::Flows {
                to,
                flags: f,
                records,
            },
        ) => {
            let mut ids: Vec<u64> = records.iter().map(|r| r.conn_id).collect();
            ids.sort_unstable();
            let want_ids = a.nums::<u64>("ids")?.map(|mut v| {
                v.sort_unstable();
                v
            });
            a.names_switch(*to)?
                && (f & Flows::LAST != 0) == a.has("last")
                && (f & Flows::ANSWER != 0) == a.has("answer")
                && a.num("count")?.is_none_or(|n: usize| n == records.len())
                && want_ids.is_none_or(|w| w == ids)
        }
        ("ADOPT", Out::Adopt(o)) => {
            b.last_adopt = Some(o.conn);
            same(o.conn.conn_id) && a.str("mode").is_none_or(|m| mode(m) == Some(o.mode))
        }
        ("SILENCE", Out::Silence { conn, mode: m }) => {
            same(conn.conn_id) && a.str("mode").is_none_or(|x| mode(x) == Some(*m))
        }
        ("RESET", Out::ResetAll) | ("STOPPED", Out::Stopped) => true,
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!("expected {what} {args:?}, got {out:?}"))
    }
}

fn mode(s: &str) -> Option<Mode> {
    match s {
        "relay" => Some(Mode::Relay),
        "listener" => Some(Mode::Listener),
        "handover" => Some(Mode::Handover),
        _ => None,
    }
}

/// Every other verb.
pub fn run(b: &mut Bed, words: &[&str]) -> Res {
    let (verb, rest) = words.split_first().ok_or("no verb")?;
    match *verb {
        "<" => inbound(b, rest),
        "adopt" => adopt(b, rest),
        "end" => {
            let a = Args::parse(rest);
            let conn = conn_of(b, &a, a.id()?)?;
            let reason = close_reason(a.str("reason").unwrap_or("server_close"));
            let (from, to) = (a.num("from")?.unwrap_or(0), a.num("to")?.unwrap_or(0));
            let now = b.now();
            b.core.ended(now, conn, reason, from, to);
            b.collect();
            Ok(())
        }
        "stop" => {
            let now = b.now();
            b.core.stop(now, rest.first() == Some(&"now"));
            b.collect();
            Ok(())
        }
        "counter" => {
            for w in rest {
                let (name, v) = w.split_once('=').ok_or("counter NAME=VALUE")?;
                let want: i64 = v.parse().map_err(|_| format!("{w}: not a number"))?;
                let got = b.metric(name);
                if got != want {
                    return Err(format!("{name} is {got}, expected {want}"));
                }
            }
            Ok(())
        }
        other => Err(format!("unknown verb {other}")),
    }
}

fn adopt(b: &mut Bed, words: &[&str]) -> Res {
    let (result, rest) = words.split_first().ok_or("adopt ok|wait|err=KIND")?;
    let a = Args::parse(rest);
    let conn = match a.num("id")? {
        Some(id) => conn_of(b, &a, id)?,
        None => b.last_adopt.ok_or("no ADOPT to answer")?,
    };
    let outcome = match result.split_once('=').unwrap_or((result, "")) {
        ("ok", _) => Adoption::Ready,
        ("wait", _) => Adoption::Waiting,
        ("err", kind) => Adoption::Failed(match kind {
            "invalid" => AdoptFailure::Repair(AdoptError::InvalidState("mss")),
            "exists" => AdoptFailure::Repair(AdoptError::Exists(io::Error::from_raw_os_error(
                libc_eaddrinuse(),
            ))),
            "permission" => {
                AdoptFailure::Repair(AdoptError::Permission(io::Error::from_raw_os_error(1)))
            }
            "repair" => AdoptFailure::Repair(AdoptError::Sys {
                step: "connect",
                err: io::Error::from_raw_os_error(22),
            }),
            "backlog" => AdoptFailure::BacklogFull("listener backlog full"),
            "internal" => AdoptFailure::Internal("upstream connect failed"),
            k => return Err(format!("unknown failure {k}")),
        }),
        (r, _) => return Err(format!("unknown outcome {r}")),
    };
    let now = b.now();
    b.core.adopted(now, conn, outcome);
    b.collect();
    Ok(())
}

/// The connection `id` handed off by `sender=IP` (default: the switch).
fn conn_of(b: &Bed, a: &Args<'_>, id: u64) -> Result<ConnKey, String> {
    let mut conn = b.conn(id);
    if let Some(ip) = a.str("sender") {
        let ip: IpAddr = ip.parse().map_err(|_| format!("sender={ip}: not an IP"))?;
        conn.sender = node_id(ip);
    }
    Ok(conn)
}

/// EADDRINUSE on Linux.
fn libc_eaddrinuse() -> i32 {
    98
}

fn inbound(b: &mut Bed, words: &[&str]) -> Res {
    let (what, rest) = words.split_first().ok_or("< what?")?;
    let a = Args::parse(rest);
    let from = a.addr("from", super::bed::SWITCH)?;
    let key = match a.str("key") {
        None => b.key.clone(),
        Some("forged") => Key::new(1, FORGED),
        Some(k) => return Err(format!("key={k}: only `forged`")),
    };
    let sender = match a.str("sender") {
        None => None,
        Some(ip) => Some(node_id(
            ip.parse::<IpAddr>()
                .map_err(|_| format!("sender={ip}: not an IP"))?,
        )),
    };
    let skew: i64 = a.num("skew")?.unwrap_or(0);
    // A forger's boot, or a late frame's, is that frame's only: the
    // switch's next frames carry the switch's own.
    let node = sender.unwrap_or(b.switch_node);
    let kept_boot = b.boots.get(&node).copied();
    let once = a.has("key") || a.has("late");
    if let Some(boot) = a.num::<u32>("boot")? {
        if !once && kept_boot.is_some_and(|k| k != boot) {
            // A restarted switch numbers its frames above its predecessor's.
            b.seq += RESTART_SEQ_JUMP;
        }
        b.boots.insert(node, boot);
    }
    b.late = a.num("late")?.unwrap_or(0);
    let result = inbound_frame(b, what, &a, key.clone(), sender, skew, from);
    b.late = 0;
    if once {
        match kept_boot {
            Some(boot) => b.boots.insert(node, boot),
            None => b.boots.remove(&node),
        };
    }
    result
}

/// Seals and delivers one inbound frame (see [`inbound`]).
fn inbound_frame(
    b: &mut Bed,
    what: &str,
    a: &Args<'_>,
    key: Key,
    sender: Option<u32>,
    skew: i64,
    from: SocketAddr,
) -> Res {
    match what {
        "CREATE" => {
            let id = a.id()?;
            let client = a.addr("client", "198.18.0.101:40000")?;
            let vip = a.addr("vip", "198.18.0.10:80")?;
            let isn: u32 = a.num("isn")?.unwrap_or(1000);
            let len: u32 = a.num("len")?.unwrap_or(27);
            let req: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
            let st = tcp_state(client, vip, isn, len);
            let (mtu, only) = (a.num("mtu")?, a.num("frag")?);
            b.create(id, &st, &req, mtu, only, sender, skew, &key, from);
        }
        "ABORT" => {
            let h = b.header(a.id()?, sender, skew);
            let body = Body::Abort(Abort {
                reason: AbortReason::HandoffTimeout,
            });
            b.send(&h, &body, &key, from);
        }
        "ACK" => {
            let id = a.id()?;
            let node = sender.unwrap_or(b.switch_node);
            let echo_seq = match a.num("echo")? {
                Some(n) => n,
                None => *b.closes.get(&(node, id)).ok_or("no CLOSE to acknowledge")?,
            };
            let h = b.header(id, sender, skew);
            b.send(&h, &Body::Ack(Ack { echo_seq }), &key, from);
        }
        "NACK" => {
            let h = b.header(a.id()?, sender, skew);
            let body = Body::Nack(Nack {
                echo_seq: 1,
                reason: NackReason::Internal,
                versions: &[],
            });
            b.send(&h, &body, &key, from);
        }
        "LOAD" => {
            let h = b.header(0, sender, skew);
            let body = Body::Load(Load {
                active_conns: 0,
                adopted_per_sec: 0,
                capacity_hint: 0,
                interval_ms: 1000,
            });
            b.send(&h, &body, &key, from);
        }
        "HELLO" => {
            let h = b.header(0, sender, skew);
            let body = Body::Hello(Hello {
                interval_ms: 1000,
                flags: if a.has("draining") {
                    Hello::DRAINING
                } else {
                    0
                },
            });
            b.send(&h, &body, &key, from);
        }
        "LOOKUP" => {
            let clients = a.addrs("client", "198.18.0.101:40000")?;
            let vips = a.addrs("vip", "198.18.0.10:80")?;
            if vips.len() != 1 && vips.len() != clients.len() {
                return Err("vip=: one, or one per client".into());
            }
            let records: Vec<FlowRecord> = clients
                .iter()
                .enumerate()
                .map(|(i, &client)| FlowRecord {
                    conn_id: 0,
                    origin_boot: 0,
                    client,
                    vip: vips[i.min(vips.len() - 1)],
                })
                .collect();
            let h = b.header(0, sender, skew);
            let body = Body::Lookup(Lookup {
                records: Records::List(&records),
            });
            b.send(&h, &body, &key, from);
        }
        "FLOWS" => {
            let record = FlowRecord {
                conn_id: a.num("id")?.unwrap_or(1),
                origin_boot: 0,
                client: a.addr("client", "198.18.0.101:40000")?,
                vip: a.addr("vip", "198.18.0.10:80")?,
            };
            let h = b.header(0, sender, skew);
            let body = Body::Flows(Flows {
                flags: Flows::LAST,
                records: Records::List(&[record]),
            });
            b.send(&h, &body, &key, from);
        }
        "REPLAY" => {
            let dgram = b.last_dgram.clone();
            b.deliver(dgram, from);
        }
        other => return Err(format!("unknown frame {other}")),
    }
    Ok(())
}
