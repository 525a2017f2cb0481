//! Test bed for scenario scripts: one engine, a virtual clock, a sink that
//! records everything the engine emits, and a packetdrill-style script
//! runner.
//!
//! Script lines (`#` starts a comment):
//!
//! ```text
//! 0.000 < S 0:0(0) win 65535 <mss 1460,sackOK,TS val 100 ecr 0,nop,wscale 7>
//! 0.000 > S. 0:0(0) ack 1 win 24576 <mss 1460,sackOK,TS val * ecr 100,nop,wscale 7>
//! 0.010 < P. 1:41(40) ack 1 win 502 "GET / HTTP/1.1\r\nHost: a\r\n\r\n"
//! 0.010 > dispatch "GET / HTTP/1.1"       # a dispatch request was queued
//! 0.011 decide 1                          # the control plane picks backend 1
//! 0.011 > create 1 len 40                 # THOP_CREATE to agent 1 (all fragments)
//! 0.012 < ack 1                           # agent 1 acknowledges
//! 0.020 < . 41:41(0) ack 1 win 502
//! 0.020 > fwd 1 . 41:41(0) ack 1          # relayed to backend 1, MACs rewritten
//! 0.030 counter forwarded 1
//! 0.030 state FORWARDING
//! ```
//!
//! Client sequence numbers are relative to the client's ISN, the switch's
//! to the ISN of its SYN/ACK, as in packetdrill. Outbound lines must match
//! the next frame the engine emitted, in order; an inbound line or the end of
//! the script fails if any emitted frame was not matched. Time only moves
//! forward; every timer due in between fires at its own time.
#![allow(dead_code)]

pub use testkit::sink::RecordingSink;
pub use testkit::worker::*;

use std::net::SocketAddr;
use std::sync::Arc;

use dataplane::config::WorkerConfig;
use dataplane::counters::Counters;
use dataplane::dispatch::{Decision, Verdict};
use dataplane::engine::Engine;
use dataplane::io::memory::MemBuf;
use dataplane::io::PacketBuf;
use dataplane::shared::Shared;
use dataplane::wire::{self, flags, Frame, TcpOpts, TcpOut, Verify};
use handoff_proto::{Body, Header, Key, Keyring};

pub const CLIENT_ISN: u32 = 1_000_000;

/// A drop counter by its label (`"out_of_window"`); 0 when never bumped.
pub fn drops(c: &Counters, reason: &str) -> u64 {
    c.snapshot()
        .drops
        .iter()
        .find(|(n, _)| *n == reason)
        .map_or(0, |(_, v)| *v)
}

/// An abort counter by its label (`"tls_not_tls"`); 0 when never bumped.
pub fn aborts(c: &Counters, reason: &str) -> u64 {
    c.snapshot()
        .aborts
        .iter()
        .find(|(n, _)| *n == reason)
        .map_or(0, |(_, v)| *v)
}

/// One engine on a virtual clock.
pub struct Bed {
    pub engine: Engine<MemBuf>,
    pub sink: RecordingSink,
    pub counters: Arc<Counters>,
    pub shared: Arc<Shared>,
    pub cfg: WorkerConfig,
    /// Virtual nanoseconds.
    pub now: u64,
    /// Our ISN, learned from the first SYN/ACK.
    pub iss: Option<u32>,
    pub client_port: u16,
    pub client_isn: u32,
    /// CREATE frames seen: (backend, conn_id, msg_seq, request bytes).
    pub creates: Vec<(u32, u64, u64, Vec<u8>)>,
    /// ABORT frames seen: (backend, conn_id, msg_seq).
    pub aborts: Vec<(u32, u64, u64)>,
    pub agent_seq: u64,
    pub trace: Vec<String>,
}

impl Bed {
    pub fn new(cfg: WorkerConfig) -> Bed {
        let counters = Arc::new(Counters::default());
        let shared = Arc::new(Shared::new(1, 64));
        let engine = Engine::new(0, &cfg, counters.clone(), shared.clone()).expect("valid config");
        let start = 1_000_000_000;
        let mut b = Bed {
            engine,
            sink: RecordingSink::new(4096),
            counters,
            shared,
            cfg,
            now: start,
            iss: None,
            client_port: 40000,
            client_isn: CLIENT_ISN,
            creates: vec![],
            aborts: vec![],
            agent_seq: 1 << 40,
            trace: vec![],
        };
        b.engine.start(start, &mut b.sink);
        b
    }

    /// Moves the clock to `t` (ns), firing every timer at its own time.
    pub fn advance_to(&mut self, t: u64) {
        assert!(t >= self.now, "time goes forward only");
        while self.now < t {
            let next = match self.engine.poll_timeout() {
                Some(d) => d.max(self.now + 1_000_000).min(t),
                None => t,
            };
            self.now = next;
            self.engine.handle_timeout(next, &mut self.sink);
        }
    }

    /// Feeds one frame to the engine now.
    pub fn inject(&mut self, frame: &[u8]) {
        let b = MemBuf::from_frame(frame);
        self.engine.handle_packet(self.now, b, &mut self.sink);
    }

    /// A client→VIP TCP frame.
    #[allow(clippy::too_many_arguments)]
    pub fn client_frame(
        &self,
        fl: u8,
        seq: u32,
        ack: u32,
        win: u16,
        opts: TcpOpts,
        payload: &[u8],
    ) -> Vec<u8> {
        let t = TcpOut {
            src_mac: CLIENT_MAC,
            dst_mac: SWITCH_MAC,
            src: client_ip(),
            dst: vip(),
            src_port: self.client_port,
            dst_port: 80,
            seq,
            ack,
            flags: fl,
            window: win,
            opts,
            payload,
        };
        let mut b = vec![0u8; wire::tcp_frame_len(&t)];
        wire::emit_tcp(&mut b, &t).unwrap();
        b
    }

    /// A THOP frame from agent `b` to the switch.
    pub fn agent_frame(&mut self, b: u32, conn_id: u64, body: Body<'_>) -> Vec<u8> {
        self.agent_frame_boot(b, 0, conn_id, body)
    }

    /// A THOP frame from agent `b`, whose process has boot identity `boot`.
    pub fn agent_frame_boot(&mut self, b: u32, boot: u32, conn_id: u64, body: Body<'_>) -> Vec<u8> {
        self.agent_seq += 1;
        let hdr = Header {
            flags: 0,
            sender: handoff_proto::node_id(backend_ip(b)),
            receiver: handoff_proto::node_id(switch_ip()),
            boot,
            conn_id,
            msg_seq: self.agent_seq,
            timestamp_ms: self.shared.epoch_unix_ms + self.now / 1_000_000,
        };
        let key = Key::new(1, KEY);
        let flen = handoff_proto::frame_len(&body);
        let mut f = vec![0u8; wire::udp_payload_offset_to(switch_ip()) + flen];
        handoff_proto::seal(
            &hdr,
            &body,
            &key,
            &mut f[wire::udp_payload_offset_to(switch_ip())..],
        );
        wire::emit_udp(
            &mut f,
            backend_mac(b),
            SWITCH_MAC,
            backend_ip(b),
            switch_ip(),
            9199,
            9199,
            flen,
        )
        .unwrap();
        f
    }

    /// Takes the next emitted frame.
    pub fn next_out(&mut self) -> Option<MemBuf> {
        if self.sink.out.is_empty() {
            None
        } else {
            Some(self.sink.out.remove(0))
        }
    }

    /// Describes the emitted frames not yet matched (for failures).
    pub fn pending_desc(&self) -> String {
        self.sink
            .out
            .iter()
            .map(|b| describe(b.data()))
            .collect::<Vec<_>>()
            .join("\n  ")
    }

    /// Decodes THOP CREATE fragments emitted for backend `b`; returns
    /// (conn_id, last msg_seq, reassembled request) or panics with the trace.
    pub fn take_create(&mut self, b: u32) -> (u64, u64, Vec<u8>) {
        let keys = Keyring::new(Key::new(1, KEY));
        let mut req = Vec::new();
        let last;
        loop {
            let Some(f) = self.next_out() else {
                panic!("expected CREATE to backend {b}, nothing emitted");
            };
            let d = f.data();
            assert_eq!(
                &d[0..6],
                &backend_mac(b),
                "CREATE to backend {b}'s MAC: {}",
                describe(d)
            );
            let Ok(Frame::Udp(u)) = wire::parse(d, Verify::Full) else {
                panic!("not UDP: {}", describe(d))
            };
            assert_eq!(
                (u.dst, u.dst_port, u.src, u.src_port),
                (backend_ip(b), 9199, switch_ip(), 9199)
            );
            let payload = &d[u.payload.0..u.payload.0 + u.payload.1];
            let (frame, _) =
                handoff_proto::open(&keys, handoff_proto::node_id(backend_ip(b)), payload)
                    .expect("valid THOP");
            let Body::Create(c) = frame.body else {
                panic!("not CREATE: {:?}", frame.body)
            };
            if let Some(st) = c.state {
                assert_eq!(st.client(), SocketAddr::new(client_ip(), self.client_port));
                assert_eq!(st.vip(), SocketAddr::new(vip(), 80));
                assert_eq!(st.client_isn, self.client_isn);
                if let Some(iss) = self.iss {
                    assert_eq!(st.server_isn, iss);
                    assert_eq!(st.server_next, iss.wrapping_add(1));
                }
            }
            assert_eq!(c.offset as usize, req.len());
            req.extend_from_slice(c.data);
            if req.len() >= c.total_len as usize {
                last = (frame.header.conn_id, frame.header.msg_seq);
                break;
            }
        }
        self.creates.push((b, last.0, last.1, req.clone()));
        (last.0, last.1, req)
    }
}

/// One line per frame, for traces.
pub fn describe(f: &[u8]) -> String {
    match wire::parse(f, Verify::Header) {
        Ok(Frame::Tcp(s)) => {
            let mut fl = String::new();
            for (b, c) in [
                (flags::SYN, 'S'),
                (flags::FIN, 'F'),
                (flags::RST, 'R'),
                (flags::PSH, 'P'),
                (flags::ACK, '.'),
            ] {
                if s.flags & b != 0 {
                    fl.push(c);
                }
            }
            format!(
                "tcp {}:{} > {}:{} [{}] seq {} ack {} win {} len {} opts {:?} dst_mac {:02x?}",
                s.src,
                s.src_port,
                s.dst,
                s.dst_port,
                fl,
                s.seq,
                s.ack,
                s.window,
                s.len(),
                s.opts(f),
                &f[0..6]
            )
        }
        Ok(Frame::Udp(u)) => format!(
            "udp {}:{} > {}:{} len {}",
            u.src, u.src_port, u.dst, u.dst_port, u.payload.1
        ),
        Ok(Frame::Arp(a)) => format!("arp {:?}", a),
        Ok(other) => format!("{other:?}"),
        Err(e) => format!("unparsable ({e:?}) {} bytes", f.len()),
    }
}

// ---------------------------------------------------------------------------
// Script runner
// ---------------------------------------------------------------------------

#[derive(Debug, Default)]
struct TcpLine {
    flags: u8,
    seq: u32,
    end: u32,
    len: Option<usize>,
    ack: Option<u32>,
    win: Option<u16>,
    opts: Option<Vec<String>>,
    payload: Option<Vec<u8>>,
}

fn parse_flags(s: &str) -> u8 {
    let mut f = 0;
    for c in s.chars() {
        f |= match c {
            'S' => flags::SYN,
            'F' => flags::FIN,
            'R' => flags::RST,
            'P' => flags::PSH,
            '.' => flags::ACK,
            _ => panic!("bad flag {c}"),
        };
    }
    f
}

fn unescape(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c == '\\' {
            match it.next() {
                Some('r') => out.push(b'\r'),
                Some('n') => out.push(b'\n'),
                Some('t') => out.push(b'\t'),
                Some('"') => out.push(b'"'),
                Some('\\') => out.push(b'\\'),
                Some(o) => panic!("bad escape \\{o}"),
                None => {}
            }
        } else {
            let mut buf = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        }
    }
    out
}

/// Splits a line into tokens; a double-quoted string and an `<...>` option
/// list are one token each.
fn tokens(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                let mut s = String::from("\"");
                while let Some(d) = chars.next() {
                    if d == '\\' {
                        s.push(d);
                        if let Some(e) = chars.next() {
                            s.push(e);
                        }
                    } else if d == '"' {
                        break;
                    } else {
                        s.push(d);
                    }
                }
                out.push(s);
            }
            '<' if cur.is_empty() && chars.peek().is_some_and(|n| *n != ' ') => {
                let mut s = String::from("<");
                for d in chars.by_ref() {
                    if d == '>' {
                        break;
                    }
                    s.push(d);
                }
                out.push(s);
            }
            ' ' | '\t' => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            _ => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn parse_tcp(t: &[String]) -> TcpLine {
    let mut l = TcpLine {
        flags: parse_flags(&t[0]),
        ..Default::default()
    };
    // seq:end(len)
    let (range, len) = t[1].split_once('(').expect("seq:end(len)");
    let (a, b) = range.split_once(':').expect("seq:end");
    l.seq = a.parse().expect("seq");
    l.end = b.parse().expect("end");
    let len = len.trim_end_matches(')');
    l.len = if len == "*" {
        None
    } else {
        Some(len.parse().expect("len"))
    };
    let mut i = 2;
    while i < t.len() {
        match t[i].as_str() {
            "ack" => {
                l.ack = Some(t[i + 1].parse().expect("ack"));
                i += 2;
            }
            "win" => {
                l.win = if t[i + 1] == "*" {
                    None
                } else {
                    Some(t[i + 1].parse().expect("win"))
                };
                i += 2;
            }
            s if s.starts_with('<') => {
                l.opts = Some(s[1..].split(',').map(|x| x.trim().to_string()).collect());
                i += 1;
            }
            s if s.starts_with('"') => {
                l.payload = Some(unescape(&s[1..]));
                i += 1;
            }
            other => panic!("unknown token {other}"),
        }
    }
    l
}

/// Options from a script list; `None` fields of TS are wildcards.
fn parse_opts(list: &[String]) -> (TcpOpts, bool, bool) {
    let mut o = TcpOpts::default();
    let (mut val_any, mut ecr_any) = (false, false);
    for item in list {
        let w: Vec<&str> = item.split_whitespace().collect();
        match w.as_slice() {
            ["mss", n] => o.mss = Some(n.parse().unwrap()),
            ["sackOK"] => o.sack_permitted = true,
            ["nop"] | [] => {}
            ["wscale", n] => o.window_scale = Some(n.parse().unwrap()),
            ["TS", "val", v, "ecr", e] => {
                val_any = *v == "*";
                ecr_any = *e == "*";
                o.timestamp = Some((v.parse().unwrap_or(0), e.parse().unwrap_or(0)));
            }
            ["sack", ranges @ ..] => {
                for r in ranges {
                    let (a, b) = r.split_once(':').expect("sack L:R");
                    o.sack[o.sack_count as usize] = (a.parse().unwrap(), b.parse().unwrap());
                    o.sack_count += 1;
                }
            }
            _ => panic!("unknown option {item}"),
        }
    }
    (o, val_any, ecr_any)
}

impl Bed {
    fn fail(&self, line: &str, why: String) -> ! {
        panic!(
            "\nscript failed at: {line}\n  {why}\ntrace:\n  {}\nunmatched output:\n  {}\n",
            self.trace.join("\n  "),
            self.pending_desc()
        );
    }

    fn check_drained(&self, line: &str) {
        if !self.sink.out.is_empty() {
            self.fail(
                line,
                "the switch emitted frames the script does not expect".into(),
            );
        }
    }

    /// Runs a script; panics with a readable trace on the first mismatch.
    pub fn run_script(&mut self, script: &str) {
        let base = self.now;
        let mut last = 0.0f64;
        for raw in script.lines() {
            let line = raw.split(" #").next().unwrap_or("").trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut t = tokens(line);
            if t[0].parse::<f64>().is_err() && !t[0].starts_with('+') {
                t.insert(0, "+0".to_string());
            }
            let time: f64 = if let Some(r) = t[0].strip_prefix('+') {
                last + r.parse::<f64>().expect("time")
            } else {
                t[0].parse().expect("time")
            };
            last = time;
            let at = base + (time * 1e9).round() as u64;
            if at > self.now {
                self.advance_to(at);
            }
            self.trace.push(line.to_string());
            match (t[1].as_str(), t.get(2).map(String::as_str)) {
                ("<", Some("ack" | "nack" | "close")) => {
                    self.check_drained(line);
                    let b: u32 = t[3].parse().unwrap();
                    let Some(&(_, cid, seq, _)) = self.creates.iter().rev().find(|c| c.0 == b)
                    else {
                        self.fail(line, format!("no CREATE was sent to backend {b}"));
                    };
                    let body = match t[2].as_str() {
                        "ack" => Body::Ack(handoff_proto::Ack { echo_seq: seq }),
                        "nack" => Body::Nack(handoff_proto::Nack {
                            echo_seq: seq,
                            reason: handoff_proto::NackReason::from_u16(
                                t.get(4).map_or(1, |c| c.parse().unwrap()),
                            ),
                            versions: &[],
                        }),
                        _ => Body::Close(handoff_proto::Close {
                            reason: handoff_proto::CloseReason::ServerClose,
                            bytes_from_client: 0,
                            bytes_to_client: 0,
                        }),
                    };
                    let f = self.agent_frame(b, cid, body);
                    self.inject(&f);
                }
                ("<", Some("abortack")) => {
                    self.check_drained(line);
                    let b: u32 = t[3].parse().unwrap();
                    let Some(&(_, cid, seq)) = self.aborts.iter().rev().find(|a| a.0 == b) else {
                        self.fail(line, format!("no ABORT was sent to backend {b}"));
                    };
                    let f =
                        self.agent_frame(b, cid, Body::Ack(handoff_proto::Ack { echo_seq: seq }));
                    self.inject(&f);
                }
                ("<", _) => {
                    self.check_drained(line);
                    let l = parse_tcp(&t[2..]);
                    let (opts, _, _) = l.opts.as_deref().map(parse_opts).unwrap_or_default();
                    let len = l.len.unwrap_or(0);
                    let payload = match l.payload {
                        Some(p) => {
                            assert_eq!(p.len(), len, "payload length in `{line}`");
                            p
                        }
                        None => vec![b'x'; len],
                    };
                    let iss = self.iss.unwrap_or(0);
                    let seq = self.client_isn.wrapping_add(l.seq);
                    let ack = l.ack.map_or(0, |a| iss.wrapping_add(a));
                    let f = self.client_frame(
                        l.flags,
                        seq,
                        ack,
                        l.win.unwrap_or(65535),
                        opts,
                        &payload,
                    );
                    self.inject(&f);
                }
                (">", Some("none")) => self.check_drained(line),
                (">", Some("dispatch")) => {
                    if self.sink.requests.is_empty() {
                        self.fail(line, "no dispatch request".into());
                    }
                    let want = t.get(3).map(|s| unescape(&s[1..])).unwrap_or_default();
                    let r = &self.sink.requests[self.sink.requests.len() - 1];
                    if !r.header.starts_with(&want) {
                        self.fail(
                            line,
                            format!("header {:?}", String::from_utf8_lossy(&r.header)),
                        );
                    }
                    if let Some(x) = t.iter().position(|s| s == "exclude") {
                        let want: Vec<u32> =
                            t[x + 1..].iter().map(|s| s.parse().unwrap()).collect();
                        if r.exclude != want {
                            self.fail(line, format!("exclude {:?}", r.exclude));
                        }
                    }
                }
                (">", Some("create")) => {
                    let b: u32 = t[3].parse().unwrap();
                    if self.sink.out.is_empty() {
                        self.fail(line, "no CREATE emitted".into());
                    }
                    let (_, _, req) = self.take_create(b);
                    if let Some(x) = t.iter().position(|s| s == "len") {
                        let n: usize = t[x + 1].parse().unwrap();
                        if req.len() != n {
                            self.fail(line, format!("request of {} bytes", req.len()));
                        }
                    }
                }
                (">", Some("abort")) => {
                    let b: u32 = t[3].parse().unwrap();
                    let Some(f) = self.next_out() else {
                        self.fail(line, "nothing emitted".into())
                    };
                    let d = f.data().to_vec();
                    let Ok(Frame::Udp(u)) = wire::parse(&d, Verify::Full) else {
                        self.fail(line, describe(&d))
                    };
                    let keys = Keyring::new(Key::new(1, KEY));
                    let (fr, _) = handoff_proto::open(
                        &keys,
                        handoff_proto::node_id(backend_ip(b)),
                        &d[u.payload.0..u.payload.0 + u.payload.1],
                    )
                    .unwrap_or_else(|e| self.fail(line, format!("{e:?}")));
                    if !matches!(fr.body, Body::Abort(_)) {
                        self.fail(line, format!("{:?}", fr.body));
                    }
                    self.aborts.push((b, fr.header.conn_id, fr.header.msg_seq));
                }
                (">", Some("thopack")) => {
                    let b: u32 = t[3].parse().unwrap();
                    let Some(f) = self.next_out() else {
                        self.fail(line, "nothing emitted".into())
                    };
                    let d = f.data().to_vec();
                    let Ok(Frame::Udp(u)) = wire::parse(&d, Verify::Full) else {
                        self.fail(line, describe(&d))
                    };
                    let keys = Keyring::new(Key::new(1, KEY));
                    let (fr, _) = handoff_proto::open(
                        &keys,
                        handoff_proto::node_id(backend_ip(b)),
                        &d[u.payload.0..u.payload.0 + u.payload.1],
                    )
                    .unwrap_or_else(|e| self.fail(line, format!("{e:?}")));
                    if !matches!(fr.body, Body::Ack(_)) {
                        self.fail(line, format!("{:?}", fr.body));
                    }
                }
                (">", Some("fwd")) => {
                    let b: u32 = t[3].parse().unwrap();
                    let l = parse_tcp(&t[4..]);
                    let Some(f) = self.next_out() else {
                        self.fail(line, "nothing emitted".into())
                    };
                    let d = f.data().to_vec();
                    if d[0..6] != backend_mac(b) || d[6..12] != SWITCH_MAC {
                        self.fail(line, format!("MACs {:02x?} > {:02x?}", &d[6..12], &d[0..6]));
                    }
                    let Ok(Frame::Tcp(s)) = wire::parse(&d, Verify::Full) else {
                        self.fail(line, describe(&d))
                    };
                    let iss = self.iss.unwrap_or(0);
                    let ok = s.flags == l.flags
                        && s.src == client_ip()
                        && s.dst == vip()
                        && s.seq == self.client_isn.wrapping_add(l.seq)
                        && l.ack.is_none_or(|a| s.ack == iss.wrapping_add(a))
                        && l.len.is_none_or(|n| s.len() == n);
                    if !ok {
                        self.fail(line, format!("got {}", describe(&d)));
                    }
                }
                (">", _) => {
                    let l = parse_tcp(&t[2..]);
                    let Some(f) = self.next_out() else {
                        self.fail(line, "nothing emitted".into())
                    };
                    let d = f.data().to_vec();
                    self.match_out(line, &l, &d);
                }
                ("decide", _) => {
                    let b: u32 = t[2].parse().unwrap();
                    self.decide(line, Verdict::Backend(target(b)));
                }
                ("reject", _) => {
                    let s: u16 = t[2].parse().unwrap();
                    self.decide(line, Verdict::Reject(s));
                }
                ("counter", _) => {
                    let want: u64 = t[3].parse().unwrap();
                    let snap = self.counters.snapshot();
                    let got = if let Some(r) = t[2].strip_prefix("drop.") {
                        snap.drops.iter().find(|(n, _)| *n == r).map(|x| x.1)
                    } else if let Some(r) = t[2].strip_prefix("abort.") {
                        snap.aborts.iter().find(|(n, _)| *n == r).map(|x| x.1)
                    } else if let Some(r) = t[2].strip_prefix("close.") {
                        snap.closes.iter().find(|(n, _)| *n == r).map(|x| x.1)
                    } else {
                        snap.scalars.iter().find(|(n, _)| *n == t[2]).map(|x| x.1)
                    };
                    match got {
                        Some(v) if v == want => {}
                        other => self.fail(line, format!("counter is {other:?}")),
                    }
                }
                ("state", _) => {
                    let got = self
                        .engine
                        .state_of(client_ip(), self.client_port, 0)
                        .map_or("CLOSED", |s| s.name());
                    if got != t[2] {
                        self.fail(line, format!("state is {got}"));
                    }
                }
                ("event", _) => {
                    let want = t[2..].join(" ");
                    let found = self
                        .sink
                        .events
                        .iter()
                        .any(|e| format!("{e:?}").contains(&want));
                    if !found {
                        self.fail(line, format!("events: {:?}", self.sink.events));
                    }
                }
                ("drain", _) => self.engine.drain(),
                ("port", _) => {
                    self.client_port = t[2].parse().unwrap();
                    self.iss = None;
                }
                (cmd, _) => self.fail(line, format!("unknown command {cmd}")),
            }
        }
        self.check_drained("<end of script>");
    }

    fn decide(&mut self, line: &str, verdict: Verdict) {
        if self.sink.requests.is_empty() {
            self.fail(line, "no dispatch request to answer".into());
        }
        let r = self.sink.requests.remove(self.sink.requests.len() - 1);
        let d = Decision {
            token: r.token,
            verdict,
            pool: 0,
            header: r.header,
        };
        self.engine.handle_decision(self.now, d, &mut self.sink);
    }

    fn match_out(&mut self, line: &str, l: &TcpLine, d: &[u8]) {
        let Ok(Frame::Tcp(s)) = wire::parse(d, Verify::Full) else {
            self.fail(line, format!("not TCP: {}", describe(d)))
        };
        if d[0..6] != CLIENT_MAC || d[6..12] != SWITCH_MAC {
            self.fail(line, format!("MACs {:02x?} > {:02x?}", &d[6..12], &d[0..6]));
        }
        if s.src != vip()
            || s.dst != client_ip()
            || s.src_port != 80
            || s.dst_port != self.client_port
        {
            self.fail(line, format!("addresses: {}", describe(d)));
        }
        if s.flags != l.flags {
            self.fail(line, format!("flags: {}", describe(d)));
        }
        if s.has(flags::SYN) && self.iss.is_none() {
            self.iss = Some(s.seq.wrapping_sub(l.seq));
        }
        let iss = self.iss.unwrap_or(0);
        if s.seq != iss.wrapping_add(l.seq) {
            self.fail(
                line,
                format!(
                    "seq {} (relative {}): {}",
                    s.seq,
                    s.seq.wrapping_sub(iss),
                    describe(d)
                ),
            );
        }
        if let Some(a) = l.ack {
            if s.ack != self.client_isn.wrapping_add(a) {
                self.fail(
                    line,
                    format!(
                        "ack relative {}: {}",
                        s.ack.wrapping_sub(self.client_isn),
                        describe(d)
                    ),
                );
            }
        }
        if let Some(n) = l.len {
            if s.len() != n {
                self.fail(line, format!("len {}: {}", s.len(), describe(d)));
            }
        }
        if let Some(w) = l.win {
            if s.window != w {
                self.fail(line, format!("win {}: {}", s.window, describe(d)));
            }
        }
        let got = s.opts(d).unwrap();
        if let Some(list) = &l.opts {
            let (mut want, val_any, ecr_any) = parse_opts(list);
            // SACK edges are written relative to the client's ISN.
            for k in 0..want.sack_count as usize {
                want.sack[k].0 = want.sack[k].0.wrapping_add(self.client_isn);
                want.sack[k].1 = want.sack[k].1.wrapping_add(self.client_isn);
            }
            let mut g = got;
            if let (Some(gt), Some(wt)) = (g.timestamp.as_mut(), want.timestamp) {
                if val_any {
                    gt.0 = wt.0;
                }
                if ecr_any {
                    gt.1 = wt.1;
                }
            }
            if g != want {
                self.fail(line, format!("options {got:?}, want {want:?}"));
            }
        }
        if let Some(p) = &l.payload {
            if !s.payload(d).starts_with(p) {
                self.fail(
                    line,
                    format!("payload {:?}", String::from_utf8_lossy(s.payload(d))),
                );
            }
        }
    }
}

/// A client→VIP TCP frame from `port`.
#[allow(clippy::too_many_arguments)]
pub fn tcp_frame(
    port: u16,
    fl: u8,
    seq: u32,
    ack: u32,
    win: u16,
    opts: TcpOpts,
    payload: &[u8],
) -> Vec<u8> {
    let t = TcpOut {
        src_mac: CLIENT_MAC,
        dst_mac: SWITCH_MAC,
        src: client_ip(),
        dst: vip(),
        src_port: port,
        dst_port: 80,
        seq,
        ack,
        flags: fl,
        window: win,
        opts,
        payload,
    };
    let mut b = vec![0u8; wire::tcp_frame_len(&t)];
    wire::emit_tcp(&mut b, &t).unwrap();
    b
}

/// A THOP frame from agent `b` to the switch, sealed with the test key.
pub fn thop_frame(
    b: u32,
    conn_id: u64,
    msg_seq: u64,
    timestamp_ms: u64,
    body: Body<'_>,
) -> Vec<u8> {
    let hdr = Header {
        flags: 0,
        sender: handoff_proto::node_id(backend_ip(b)),
        receiver: handoff_proto::node_id(switch_ip()),
        boot: 0,
        conn_id,
        msg_seq,
        timestamp_ms,
    };
    let key = Key::new(1, KEY);
    let flen = handoff_proto::frame_len(&body);
    let mut f = vec![0u8; wire::udp_payload_offset_to(switch_ip()) + flen];
    handoff_proto::seal(
        &hdr,
        &body,
        &key,
        &mut f[wire::udp_payload_offset_to(switch_ip())..],
    );
    wire::emit_udp(
        &mut f,
        backend_mac(b),
        SWITCH_MAC,
        backend_ip(b),
        switch_ip(),
        9199,
        9199,
        flen,
    )
    .unwrap();
    f
}
