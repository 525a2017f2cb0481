//! Forged and replayed THOP. Anyone on the data network can send UDP to an
//! agent's or the switch's THOP port with any source address; a CREATE an
//! agent believes makes it adopt a TCP connection, a LOAD or ACK the switch
//! believes steers its decisions. Frames are therefore authenticated (keyed
//! BLAKE3 tag) and checked against replay (timestamp window, per-sender
//! sequence window).
//!
//! The attack captures real frames on the first static backend's data
//! interface (the CREATEs the switch sends it, the LOADs and ACKs it sends
//! the switch), then sends, spoofed from the real peer:
//!
//! - forged frames: real frames with a fresh sequence number and timestamp,
//!   tagged with a wrong key of the right id, or with the right key and one
//!   tag byte flipped;
//! - replays of the captured CREATEs at the agent, before and after the
//!   agent restarts (its replay window starts empty);
//! - replays of the captured LOADs and ACKs at the switch from changing UDP
//!   source ports, so they reach every worker (each has its own window).
//!
//! Nothing may be accepted: the agent's `baton_agent_thop_rx_total` and
//! `baton_agent_adopted_total` must not move, the switch's LOAD count may
//! grow only by the agents' own reports, and every rejection is counted.
//! The legitimate client uses the app pool, so the attacked agent sees no
//! legitimate CREATE during the attack.

use super::packet::{parse_ipv4, parse_udp, Capture, Direction, Pacer, RawSender};
use super::{metric_sum_where, Legit, LegitSpec, Outcome, Rng, Size, ATTACKER, LEGIT};
use crate::baton::{self, AgentRole, THOP_KEY_ID};
use crate::error::{BedError, Result};
use crate::scenario::Running;
use crate::topology::DATA_IF;
use crate::{addr, client, netns};
use handoff_proto::Key;
use std::net::SocketAddrV4;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Parameters of the attack.
#[derive(Debug, Clone, Copy)]
pub struct ThopForgery {
    /// Forged frames at the agent and at the switch (half each).
    pub forged: u64,
    /// Replayed frames per target (agent before restart, after, switch).
    pub replayed: u64,
    /// Frames per second.
    pub rate: u64,
}

impl ThopForgery {
    /// The size's parameters.
    pub fn new(size: Size) -> ThopForgery {
        match size {
            Size::Short => ThopForgery {
                forged: 10_000,
                replayed: 2_000,
                rate: 20_000,
            },
            Size::Full => ThopForgery {
                forged: 1_000_000,
                replayed: 100_000,
                rate: 50_000,
            },
        }
    }
}

/// The backend whose agent is attacked (static-1, `b1`).
const TARGET: usize = 0;

/// Frames captured on the target backend.
#[derive(Debug, Default, Clone)]
pub struct Captured {
    /// CREATE fragments the switch sent the agent.
    pub creates: Vec<Vec<u8>>,
    /// LOADs and ACKs the agent sent the switch.
    pub to_switch: Vec<Vec<u8>>,
}

const MAGIC: [u8; 2] = [0x54, 0x48];
const OP_CREATE: u8 = 1;
const OP_ACK: u8 = 2;
const OP_LOAD: u8 = 6;

/// Captures THOP on backend `i`'s data interface for `dur` while `load`
/// (run in the attacker's namespace) makes the switch hand connections to it.
pub fn capture(sys: &Running, i: usize, dur: Duration) -> Result<Captured> {
    let ns = sys.bed.backends[i].ns.clone();
    let cap = std::thread::spawn(move || {
        netns::in_ns(&ns, move || -> std::io::Result<Captured> {
            let c = Capture::open(DATA_IF, Duration::from_millis(50))?;
            let mut out = Captured::default();
            let end = Instant::now() + dur;
            while Instant::now() < end {
                let Some((dir, pkt)) = c.next() else { continue };
                let Some(ip) = parse_ipv4(&pkt) else { continue };
                if ip.proto != 17 {
                    continue;
                }
                let Some((sp, dp, payload)) = parse_udp(ip.payload) else {
                    continue;
                };
                if payload.len() < handoff_proto::HEADER_LEN || payload[..2] != MAGIC {
                    continue;
                }
                let op = payload[3];
                match dir {
                    Direction::In
                        if dp == addr::THOP_PORT
                            && ip.src == addr::SWITCH_DATA
                            && op == OP_CREATE =>
                    {
                        out.creates.push(payload.to_vec())
                    }
                    Direction::Out
                        if sp == addr::THOP_PORT
                            && ip.dst == addr::SWITCH_DATA
                            && (op == OP_LOAD || op == OP_ACK) =>
                    {
                        out.to_switch.push(payload.to_vec())
                    }
                    _ => {}
                }
            }
            Ok(out)
        })
    });
    // Static requests from the attacker: half of them go to the target
    // (once the capture is surely open).
    std::thread::sleep(Duration::from_millis(600));
    let _ = sys.in_client(ATTACKER, || {
        for _ in 0..20 {
            let _ = client::get(
                addr::vip_service(),
                crate::content::OBJ_1K.path,
                &[],
                Duration::from_secs(5),
            );
        }
    });
    match cap.join() {
        Ok(Ok(Ok(c))) => Ok(c),
        Ok(Ok(Err(e))) => Err(BedError::io("THOP capture", e)),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(BedError::Setup("THOP capture panicked".into())),
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A forgery of captured frame `f`: fresh sequence and timestamp, then
/// tagged with `bad_key`, or with the real key and a flipped tag byte.
pub fn forge(f: &[u8], rng: &mut Rng, bad_key: &Key, real: &Key) -> Vec<u8> {
    let mut v = f.to_vec();
    v[32..40].copy_from_slice(&rng.next_u64().to_be_bytes());
    v[40..48].copy_from_slice(&now_ms().to_be_bytes());
    if rng.next_u32().is_multiple_of(2) {
        bad_key.sign_in_place(&mut v);
    } else {
        real.sign_in_place(&mut v);
        let at = handoff_proto::TAG_OFFSET + (rng.next_u32() as usize % handoff_proto::TAG_LEN);
        v[at] ^= 1 << (rng.next_u32() % 8);
    }
    v
}

/// Sends `n` datagrams cycling through `frames` from `src` (source port
/// `src.port()`, or a new one per datagram when `vary_port`) to `dst`.
fn blast(
    frames: Vec<Vec<u8>>,
    n: u64,
    src: SocketAddrV4,
    dst: SocketAddrV4,
    vary_port: bool,
    rate: u64,
) -> std::io::Result<u64> {
    if frames.is_empty() {
        return Ok(0);
    }
    let mut tx = RawSender::open()?;
    let mut pace = Pacer::new(rate);
    let mut sent = 0;
    for k in 0..n {
        pace.tick();
        let f = &frames[k as usize % frames.len()];
        let port = if vary_port {
            1024 + (k % 60000) as u16
        } else {
            src.port()
        };
        let pkt = super::packet::udp(SocketAddrV4::new(*src.ip(), port), dst, f);
        if tx.send(&pkt) {
            sent += 1;
        }
    }
    Ok(sent)
}

/// Forged frames from captured ones.
fn forgeries(real: &Key, frames: &[Vec<u8>], n: u64, seed: u64) -> Vec<Vec<u8>> {
    let mut rng = Rng::new(seed);
    let mut bytes = [0u8; handoff_proto::KEY_LEN];
    for b in bytes.iter_mut() {
        *b = rng.next_u32() as u8;
    }
    let bad = Key::new(THOP_KEY_ID, bytes);
    // A bounded set of distinct forgeries, cycled.
    (0..n.min(4096))
        .map(|k| forge(&frames[k as usize % frames.len()], &mut rng, &bad, real))
        .collect()
}

/// UDP datagrams the backend's kernel dropped for a full socket buffer.
fn udp_rcvbuf_errors(sys: &Running, i: usize) -> u64 {
    let t = sys.bed.backends[i]
        .run("cat", &["/proc/net/snmp"])
        .unwrap_or_default();
    let lines: Vec<&str> = t.lines().filter(|l| l.starts_with("Udp:")).collect();
    let (Some(names), Some(vals)) = (lines.first(), lines.get(1)) else {
        return 0;
    };
    names
        .split_whitespace()
        .zip(vals.split_whitespace())
        .find(|(n, _)| *n == "RcvbufErrors")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

struct AgentView {
    rx_create: f64,
    adopted: f64,
    dropped: f64,
}

fn agent_view(sys: &Running) -> AgentView {
    let hub = sys.bed.hub();
    let text = super::agent_metrics(hub, TARGET).unwrap_or_default();
    AgentView {
        rx_create: client::metric_sum(&text, "baton_agent_thop_rx_total", &[("opcode", "CREATE")])
            .unwrap_or(0.0),
        adopted: client::metric_sum(&text, "baton_agent_adopted_total", &[]).unwrap_or(0.0),
        dropped: client::metric_sum(&text, "baton_agent_thop_dropped_total", &[]).unwrap_or(0.0),
    }
}

fn switch_rejected(m: &str) -> f64 {
    metric_sum_where(m, "baton_worker_dropped_packets_total", "reason", |r| {
        r.starts_with("thop")
    })
}

/// Runs the attack (restarts the target's agent once).
pub fn run(sys: &mut Running, p: ThopForgery) -> Result<Outcome> {
    let mut o = Outcome::new("thop_forge_replay", super::synflood::sys_io(sys));
    let cap = capture(sys, TARGET, Duration::from_secs(4))?;
    o.figure("captured_creates", cap.creates.len());
    o.figure("captured_to_switch", cap.to_switch.len());
    if cap.creates.is_empty() || cap.to_switch.is_empty() {
        return Err(BedError::Setup(format!(
            "captured {} CREATEs and {} LOAD/ACKs on b1: nothing to replay",
            cap.creates.len(),
            cap.to_switch.len()
        )));
    }
    let legit = Legit::start(sys.client(LEGIT), LegitSpec::api());
    std::thread::sleep(Duration::from_millis(300));
    let t0 = Instant::now();
    let agent = SocketAddrV4::new(addr::backend_data(TARGET), addr::THOP_PORT);
    let switch = SocketAddrV4::new(addr::SWITCH_DATA, addr::THOP_PORT);
    let rate = p.rate;

    // 1. Forged and replayed at the agent.
    let a0 = agent_view(sys);
    let k0 = udp_rcvbuf_errors(sys, TARGET);
    // The bed's own key (a fresh one per bed), for tag-flipped forgeries.
    let key_path = baton::thop_key_file(&sys.bed)?;
    let key_hex = std::fs::read_to_string(&key_path)
        .map_err(|e| crate::error::BedError::file(&key_path, e))?;
    let real = Key::from_hex(THOP_KEY_ID, key_hex.trim())
        .map_err(|e| crate::error::BedError::Setup(format!("{}: {e}", key_path.display())))?;
    let forged_a = forgeries(&real, &cap.creates, p.forged / 2, 0xf0);
    let creates = cap.creates.clone();
    let half = p.forged / 2;
    let (fa, ra) = sys.in_client(ATTACKER, move || {
        let f = blast(forged_a, half, switch, agent, false, rate);
        let r = blast(creates, p.replayed, switch, agent, false, rate);
        (f.unwrap_or(0), r.unwrap_or(0))
    })?;
    std::thread::sleep(Duration::from_millis(300));
    let a1 = agent_view(sys);
    let lost_a = udp_rcvbuf_errors(sys, TARGET) - k0;
    o.check(
        "agent accepts no forged or replayed CREATE",
        a1.rx_create - a0.rx_create == 0.0 && a1.adopted - a0.adopted == 0.0,
        format!(
            "{fa} forged + {ra} replayed sent; CREATEs accepted {}, connections adopted {}",
            a1.rx_create - a0.rx_create,
            a1.adopted - a0.adopted
        ),
    );
    let counted = a1.dropped - a0.dropped + lost_a as f64;
    o.check(
        "agent counts every rejected frame",
        counted >= 0.99 * (fa + ra) as f64,
        format!(
            "{} counted in baton_agent_thop_dropped_total, {lost_a} dropped by the kernel, of {}",
            a1.dropped - a0.dropped,
            fa + ra
        ),
    );

    // 2. The agent restarts; the captured CREATEs are replayed at once.
    sys.stack.kill_agent(TARGET);
    let bin = baton::find_bin("baton-agent")?;
    let fresh = baton::start_agent(&sys.bed, TARGET, AgentRole::Handover, &bin)?;
    sys.stack.agents[TARGET] = Some(fresh);
    let creates = cap.creates.clone();
    let rr = sys.in_client(ATTACKER, move || {
        blast(creates, p.replayed, switch, agent, false, rate).unwrap_or(0)
    })?;
    std::thread::sleep(Duration::from_millis(300));
    let a2 = agent_view(sys);
    o.check(
        "restarted agent accepts no replayed CREATE",
        a2.rx_create == 0.0 && a2.adopted == 0.0,
        format!(
            "{rr} replayed after the restart; CREATEs accepted {}, connections adopted {}",
            a2.rx_create, a2.adopted
        ),
    );

    // 3. Forged and replayed at the switch, across its workers. The LOADs
    // the agents really sent meanwhile (their own tx counters, read around
    // the switch's) bound what the switch may have accepted.
    let own_loads = |sys: &Running| -> f64 {
        (0..sys.bed.backends.len())
            .filter_map(|i| super::agent_metrics(sys.bed.hub(), i))
            .map(|t| {
                client::metric_sum(&t, "baton_agent_thop_tx_total", &[("opcode", "LOAD")])
                    .unwrap_or(0.0)
            })
            .sum()
    };
    let l0 = own_loads(sys);
    let m0 = sys.stack.metrics()?;
    let forged_s = forgeries(&real, &cap.to_switch, p.forged - half, 0xf1);
    let to_switch = cap.to_switch.clone();
    let (fs, rs) = sys.in_client(ATTACKER, move || {
        let f = blast(forged_s, p.forged - half, agent, switch, true, rate);
        let r = blast(to_switch, p.replayed, agent, switch, true, rate);
        (f.unwrap_or(0), r.unwrap_or(0))
    })?;
    std::thread::sleep(Duration::from_millis(300));
    let m1 = sys.stack.metrics()?;
    let own = own_loads(sys) - l0;
    let loads =
        |m: &str| client::metric_sum(m, "baton_worker_load_reports_total", &[]).unwrap_or(0.0);
    let d_loads = loads(&m1) - loads(&m0);
    o.check(
        "switch accepts no forged or replayed LOAD/ACK on any worker",
        d_loads <= own,
        format!("{fs} forged + {rs} replayed sent; LOADs accepted {d_loads}, of which the agents sent {own}"),
    );
    let rejected = switch_rejected(&m1) - switch_rejected(&m0);
    o.check(
        "switch counts every rejected frame",
        rejected >= 0.99 * (fs + rs) as f64,
        format!(
            "{rejected} counted (dropped_packets{{reason=~\"thop.*\"}}) of {}",
            fs + rs
        ),
    );
    o.seconds = t0.elapsed().as_secs_f64();
    o.sent = fa + ra + rr + fs + rs;
    o.figure("agent_dropped_by_reason", agent_reasons(sys));
    o.legit(legit.stop());
    Ok(o)
}

fn agent_reasons(sys: &Running) -> String {
    let text = super::agent_metrics(sys.bed.hub(), TARGET).unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with("baton_agent_thop_dropped_total{"))
        .map(|l| {
            l.trim_start_matches("baton_agent_thop_dropped_total")
                .to_string()
        })
        .collect::<Vec<_>>()
        .join(" ")
}
