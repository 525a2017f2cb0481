//! The verbs of the script language (see the module documentation of
//! `core_bed`).

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use agent::config::{Config, Mode};
use agent::handoff::{AdoptFailure, Adoption};
use agent::repair::AdoptError;
use handoff_proto::{flags, node_id, Abort, AbortReason, Ack, Body, Key, Load, Nack, NackReason};

use super::bed::{close_reason, nack_reason, tcp_state, Bed, Out, FORGED};

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
        ("CLOSE", Out::Close { conn_id, close, .. }) => {
            same(*conn_id)
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
        ("ADOPT", Out::Adopt(o)) => {
            b.last_adopt = Some(o.conn.conn_id);
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
            let conn = b.conn(a.id()?);
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
    let id = match a.num("id")? {
        Some(id) => id,
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
    let (now, conn) = (b.now(), b.conn(id));
    b.core.adopted(now, conn, outcome);
    b.collect();
    Ok(())
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
    match *what {
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
            let echo_seq = match a.num("echo")? {
                Some(n) => n,
                None => *b.closes.get(&id).ok_or("no CLOSE to acknowledge")?,
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
        "REPLAY" => {
            let dgram = b.last_dgram.clone();
            b.deliver(dgram, from);
        }
        other => return Err(format!("unknown frame {other}")),
    }
    Ok(())
}
