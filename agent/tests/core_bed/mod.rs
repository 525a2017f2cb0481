//! Scripts for the agent's sans-IO handoff core ([`agent::handoff::Core`]):
//! packetdrill-like, with THOP verbs, run on a virtual clock. They need
//! neither root nor a network namespace: the core never touches a socket;
//! the script plays the switch and the event loop.
//!
//! A line is `TIME VERB ARGS…`; `#` starts a comment. `TIME` is seconds,
//! absolute (`0.200`) or relative to the previous line (`+0.2`). Before a
//! line runs, the clock moves to its time and every timer due on the way
//! fires at its own time. Arguments are `name=value` or bare flags.
//!
//! ```text
//! set max_active=1                # before the first timed line: configuration
//! +0     < CREATE id=1 isn=1000   # the switch sends a CREATE (all fragments)
//! +0     > ADOPT id=1 mode=relay  # the core asks the loop to adopt it
//! +0     adopt wait               # … adopted, connecting upstream
//! +0.01  adopt ok                 # upstream connected
//! +0     > ACK id=1
//! +5     end id=1 reason=client_fin from=100 to=2000
//! +0     > CLOSE id=1 reason=client_fin from=73 to=2000
//! +0.2   > CLOSE id=1             # retransmitted: no ACK from the switch
//! +0.1   < ACK id=1               # acknowledges the last CLOSE
//! +30    counter close_retransmits=1 closed.client_fin=1
//! ```
//!
//! Inbound (`<`), from the switch, sealed with the shared key, fresh
//! `msg_seq`, stamped with the switch's clock (the script's wall clock):
//! - `CREATE id=N [client=IP:PORT] [isn=N] [vip=IP:PORT] [len=N] [mtu=N]
//!   [frag=I]`: a CREATE with a request of `len` bytes (default 27), split
//!   into frames of at most `mtu` bytes; `frag=I` sends only fragment `I`.
//!   Defaults: client 198.18.0.101:40000, isn 1000, vip 198.18.0.10:80
//!   (relay; `:81` listener, `:82` handover);
//! - `ABORT id=N`; `ACK id=N [echo=N]` (default: echoes the last CLOSE for
//!   `id` sent to this frame's sender); `NACK id=N`, `LOAD`, `FLOWS [id=N]
//!   [client=IP:PORT] [vip=IP:PORT]` (opcodes an agent does not expect);
//! - `HELLO [draining]`; `LOOKUP [client=IP:PORT,…] [vip=IP:PORT,…]`: one
//!   record per client, with one VIP for all or one per client (defaults:
//!   those of CREATE);
//! - `REPLAY`: the previous inbound datagram again, byte for byte;
//! - common arguments: `key=forged` (a wrong key under the right id),
//!   `from=IP:PORT` (source address), `sender=IP` (the node id in the
//!   header), `skew=MS` (timestamp offset), `boot=N` (the sender's boot in
//!   this frame and, unless `key=forged` or `late`, its next ones; 0, not
//!   reported, until a line sets it; a new one also moves the sender's
//!   `msg_seq` 100 ahead, as a restarted switch's), `late=N` (numbered N
//!   below the sender's last frame: sent earlier, delivered now).
//!
//! Outbound (`>`): the next thing the core emitted must be this, emitted at
//! this line's time (±1 ms); every frame must carry the agent's boot
//! (`bed::AGENT_BOOT`):
//! - `ACK id=N [dup]` (echoes a frame the switch sent about `id`; `dup`:
//!   the DUPLICATE flag), `NACK id=N reason=LABEL`, `CLOSE id=N [reason=LABEL]
//!   [from=N] [to=N] [switch=IP[:PORT]]` (`switch`: where it goes), `LOAD
//!   [active=N] [capacity=N] [rate=N]`;
//! - `FLOWS [ids=N,…] [count=N] [last] [answer] [switch=IP[:PORT]]`: the
//!   records' connection ids in any order; the flags LAST and ANSWER are
//!   set exactly when named;
//! - `ADOPT id=N [mode=relay|listener|handover]`, `SILENCE id=N`, `RESET`
//!   (the drain ran out), `STOPPED`.
//!
//! Loop verbs (what the event loop reports to the core):
//! - `adopt ok|wait|err=KIND [id=N] [sender=IP]`: the outcome of the
//!   adoption of `id` (default: the last `> ADOPT`; `sender`: the switch
//!   that handed it off, default the switch); `ok` after `wait` is the later
//!   readiness (upstream connected, server accepted). Kinds: `invalid`,
//!   `exists`, `repair`, `permission` (from `repair::adopt`), `backlog`,
//!   `internal`;
//! - `end id=N reason=LABEL [from=N] [to=N] [sender=IP]`: the connection
//!   (handed off by `sender`, default the switch) ended;
//! - `stop [now]`: graceful (or immediate) stop.
//!
//! Checks: `counter NAME=VALUE…` with names `dropped.REASON`,
//! `refused.REASON`, `rx.OPCODE`, `closed.REASON`, `adopted.MODE`,
//! `lookups.RESULT`, `duplicate_creates`, `aborts`, `close_retransmits`,
//! `switch_restarts`, `resyncs`, `resync_flows`, `active`, `holders`,
//! `reassembly_pending`. Any line that is not `>`, and the end of the
//! script, fail while something emitted was not matched (`Forget` actions,
//! the core's bookkeeping, are not shown).

#![allow(dead_code)]

pub mod bed;
mod verbs;

use std::time::Duration;

use agent::config::Config;

use bed::{Bed, CONFIG};

/// Runs one script; panics with the line at the first mismatch.
pub fn run_script(name: &str, text: &str) {
    let mut cfg = Config::parse(CONFIG).expect("script configuration");
    let mut bed: Option<Bed> = None;
    let mut t = Duration::ZERO;
    for (n, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let at = format!("{name}:{}: {line}", n + 1);
        let mut words = line.split_whitespace();
        let first = words.next().unwrap_or_default();
        if first == "set" {
            assert!(bed.is_none(), "{at}: `set` after the first timed line");
            for w in words {
                verbs::set(&mut cfg, w).unwrap_or_else(|e| panic!("{at}: {e}"));
            }
            continue;
        }
        t = parse_time(first, t).unwrap_or_else(|| panic!("{at}: bad time {first}"));
        let b = bed.get_or_insert_with(|| Bed::new(&cfg));
        b.advance(t);
        let rest: Vec<&str> = words.collect();
        let result = match rest.first().copied() {
            Some(">") => verbs::expect(b, &rest[1..]),
            Some(_) => verbs::check_drained(b).and_then(|()| verbs::run(b, &rest)),
            None => Err("no verb".into()),
        };
        if let Err(e) = result {
            panic!("{at}: {e}\n  unmatched: {:?}", b.out);
        }
    }
    if let Some(b) = bed.as_mut() {
        if let Err(e) = verbs::check_drained(b) {
            panic!("{name}: at the end: {e}");
        }
    }
}

fn parse_time(s: &str, prev: Duration) -> Option<Duration> {
    match s.strip_prefix('+') {
        Some(rel) => Some(prev + seconds(rel)?),
        None => seconds(s),
    }
}

/// `12.345` as a duration, exactly (no float rounding).
fn seconds(s: &str) -> Option<Duration> {
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    if frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let nanos: u32 = format!("{frac:0<9}").parse().ok()?;
    Some(Duration::new(secs, nanos))
}
