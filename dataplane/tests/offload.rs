//! The engine's side of the in-kernel fast path: which flows it offers, when
//! it takes them back, and how what the fast path saw (last packet, client
//! sequence) decides idleness and FIN/RST windows.
//!
//! The fast path here is a table in memory standing in for the XDP
//! program's flow map (its kernel side is tested in `xdp_program.rs`, the
//! whole system over AF_XDP in the test bed's system suite). Its clock is
//! the test's: `idle` is what the test says the kernel saw.

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dataplane::offload::{
    FlowOffload, OffloadError, OffloadFlow, OffloadKey, OffloadSeen, Removal,
};
use dataplane::state::State;
use support::*;

#[derive(Default)]
struct Kernel {
    flows: HashMap<OffloadKey, (OffloadFlow, OffloadSeen)>,
    capacity: usize,
    inserts: u64,
    removes: u64,
}

#[derive(Clone, Default)]
struct FakeOffload(Arc<Mutex<Kernel>>);

impl FlowOffload for FakeOffload {
    fn insert(&mut self, key: &OffloadKey, flow: &OffloadFlow) -> Result<(), OffloadError> {
        let mut k = self.0.lock().unwrap();
        if k.flows.len() >= k.capacity {
            return Err(OffloadError::Full);
        }
        k.inserts += 1;
        let seen = OffloadSeen {
            idle: Duration::ZERO,
            rcv_nxt: flow.rcv_nxt,
            packets: 0,
            retired: false,
        };
        k.flows.insert(*key, (*flow, seen));
        Ok(())
    }
    fn remove(&mut self, key: &OffloadKey, owner: u32) -> Removal {
        let mut k = self.0.lock().unwrap();
        k.removes += 1;
        match k.flows.get(key) {
            None => Removal::Failed,
            Some((f, _)) if f.owner != owner => Removal::TakenOver,
            Some(_) => {
                k.flows.remove(key);
                Removal::Removed
            }
        }
    }
    fn read(&mut self, key: &OffloadKey, owner: u32) -> Option<OffloadSeen> {
        let k = self.0.lock().unwrap();
        k.flows
            .get(key)
            .filter(|(f, _)| f.owner == owner)
            .map(|f| f.1)
    }
}

impl FakeOffload {
    fn with_capacity(n: usize) -> FakeOffload {
        let f = FakeOffload::default();
        f.0.lock().unwrap().capacity = n;
        f
    }
    fn len(&self) -> usize {
        self.0.lock().unwrap().flows.len()
    }
    fn only(&self) -> (OffloadKey, OffloadFlow, OffloadSeen) {
        let k = self.0.lock().unwrap();
        assert_eq!(k.flows.len(), 1, "one flow offloaded");
        let (key, (f, s)) = k.flows.iter().next().unwrap();
        (*key, *f, *s)
    }
    /// What the kernel would have seen: relayed `packets`, the client at
    /// `rcv_nxt` (relative to its ISN), silent for `idle`.
    fn saw(&self, rcv_nxt: u32, idle: Duration) {
        let mut k = self.0.lock().unwrap();
        for (_, s) in k.flows.values_mut() {
            s.rcv_nxt = CLIENT_ISN.wrapping_add(rcv_nxt);
            s.idle = idle;
            s.packets += 1;
        }
    }
}

fn counter(bed: &Bed, name: &str) -> u64 {
    bed.counters.snapshot().get(name)
}

/// A connection handed to backend 1, now FORWARDING.
const TO_FORWARDING: &str = "
0.000 < S 0:0(0) win 65535 <mss 1460,nop,wscale 7>
0.000 > S. 0:0(0) ack 1 win 4096 <mss 1460,nop,wscale 7>
0.010 < . 1:1(0) ack 1 win 502
0.020 < P. 1:28(27) ack 1 win 502 \"GET / HTTP/1.1\\r\\nHost: h\\r\\n\\r\\n\"
0.020 > . 1:1(0) ack 28 win 31
0.020 > dispatch \"GET /\"
0.020 decide 1
0.020 > create 1 len 27
0.021 < ack 1
0.021 state FORWARDING
";

fn forwarding(offload: &FakeOffload) -> Bed {
    let mut bed = Bed::new(test_config());
    bed.engine.set_offload(Box::new(offload.clone()));
    bed.run_script(TO_FORWARDING);
    bed
}

#[test]
fn a_flow_entering_forwarding_is_offered_with_its_backend_and_sequence() {
    let k = FakeOffload::with_capacity(16);
    let bed = forwarding(&k);
    let (key, flow, _) = k.only();
    assert_eq!(
        key,
        OffloadKey {
            client: match client_ip() {
                std::net::IpAddr::V4(a) => a.octets(),
                _ => unreachable!(),
            },
            vip: match vip() {
                std::net::IpAddr::V4(a) => a.octets(),
                _ => unreachable!(),
            },
            client_port: bed.client_port,
            port: 80,
        }
    );
    assert_eq!(flow.backend_mac, backend_mac(1));
    assert_eq!(
        flow.rcv_nxt,
        CLIENT_ISN.wrapping_add(28),
        "after the request"
    );
    assert_eq!(flow.wshift, bed.cfg.tcp.window_scale);
    assert_eq!(counter(&bed, "offload_inserted"), 1);
}

#[test]
fn a_client_reset_takes_the_flow_back() {
    let k = FakeOffload::with_capacity(16);
    let mut bed = forwarding(&k);
    bed.run_script(
        "
0.030 < R. 28:28(0) ack 1 win 0
0.030 > fwd 1 R. 28:28(0) ack 1
0.030 state CLOSED
",
    );
    assert_eq!(k.len(), 0);
    assert_eq!(counter(&bed, "offload_removed"), 1);
}

/// The client reused the 4-tuple and another worker answered the SYN: the
/// kernel's entry belongs to the new connection now. When the old
/// connection's entry ends, its worker leaves that flow in place, and what
/// the new connection's flow saw does not count as the old one's.
#[test]
fn a_flow_taken_over_by_a_newer_connection_is_left_alone() {
    let k = FakeOffload::with_capacity(16);
    let mut bed = forwarding(&k);
    let (key, mut flow, _) = k.only();
    flow.owner ^= 0x0100_0000; // another worker's connection
    k.0.lock().unwrap().flows.get_mut(&key).unwrap().0 = flow;
    // Far ahead and recent: were it read as the old flow's, the RST below
    // would be out of its window.
    k.saw(5_000_000, std::time::Duration::ZERO);
    bed.run_script(
        "
0.030 < R. 28:28(0) ack 1 win 0
0.030 > fwd 1 R. 28:28(0) ack 1
0.030 state CLOSED
",
    );
    assert_eq!(k.len(), 1, "the newer connection's flow stays");
    assert_eq!(counter(&bed, "offload_taken_over"), 1);
    assert_eq!(counter(&bed, "offload_removed"), 0);
    assert_eq!(counter(&bed, "offload_errors"), 0);
}

#[test]
fn a_thop_close_takes_the_flow_back() {
    let k = FakeOffload::with_capacity(16);
    let mut bed = forwarding(&k);
    // The backend closed first: the fast path keeps relaying the client's
    // ACKs until its FIN, which the worker relays and then frees the flow.
    bed.run_script("0.100 < close 1\n0.100 > thopack 1\n0.100 state FORWARDING_CLOSED\n");
    assert_eq!(k.len(), 1);
    bed.run_script(
        "0.110 < F. 28:28(0) ack 1 win 65535
0.110 > fwd 1 F. 28:28(0) ack 1
0.110 state CLOSED
",
    );
    assert_eq!(k.len(), 0);
}

/// The client sent 1 MB the worker never saw (the kernel relayed it): its
/// RST at the real sequence number is exact, not merely in the window, once
/// the engine has read how far the fast path got.
#[test]
fn a_reset_is_judged_against_the_sequence_the_fast_path_saw() {
    let k = FakeOffload::with_capacity(16);
    let mut bed = forwarding(&k);
    k.saw(28 + 1_000_000, Duration::from_millis(1));
    bed.run_script(
        "
0.030 < R. 1000028:1000028(0) ack 1 win 0
0.030 > fwd 1 R. 1000028:1000028(0) ack 1
0.030 state CLOSED
0.030 counter close.client_reset 1
",
    );
    assert_eq!(k.len(), 0);
    assert_eq!(counter(&bed, "rst_relayed_in_window"), 0);
}

/// The same for a FIN after data relayed in the kernel: without the read it
/// would lie outside the window and be dropped.
#[test]
fn a_fin_after_data_the_fast_path_relayed_is_in_order() {
    let k = FakeOffload::with_capacity(16);
    let mut bed = forwarding(&k);
    k.saw(28 + 10_000_000, Duration::from_millis(1));
    bed.run_script(
        "
0.030 < F. 10000028:10000028(0) ack 1 win 502
0.030 > fwd 1 F. 10000028:10000028(0) ack 1
0.030 state FORWARDING_FIN
",
    );
    assert_eq!(k.len(), 1, "the fast path keeps relaying the late ACKs");
}

/// A client busy in the kernel is not idle: the idle timer reads the fast
/// path's last-seen time and re-arms; once the fast path saw nothing for
/// the whole timeout, the entry goes and the flow with it.
#[test]
fn idle_expiry_uses_the_fast_paths_last_seen_time() {
    let k = FakeOffload::with_capacity(16);
    let mut bed = forwarding(&k);
    let idle = bed.cfg.idle_timeout;
    let start = bed.now;
    // Just before the timeout the kernel saw a packet 10 ms ago.
    bed.advance_to(start + idle.as_nanos() as u64 - 20_000_000);
    k.saw(28, Duration::from_millis(10));
    bed.advance_to(start + idle.as_nanos() as u64 + 100_000_000);
    assert_eq!(
        bed.engine.state_of(client_ip(), bed.client_port, 0),
        Some(State::Forwarding),
        "busy in the kernel"
    );
    // Silence in the kernel too: the fast path's clock runs on.
    k.saw(28, idle);
    bed.advance_to(start + 2 * idle.as_nanos() as u64 + 1_000_000_000);
    assert_eq!(bed.engine.state_of(client_ip(), bed.client_port, 0), None);
    assert_eq!(k.len(), 0);
    let closes = bed.counters.snapshot().closes;
    assert_eq!(
        closes
            .iter()
            .find(|(n, _)| *n == "idle_timeout")
            .map(|x| x.1),
        Some(1)
    );
}

/// A full fast-path table costs speed, not correctness: the flow stays with
/// the worker, which relays it as before; the refusal is counted and
/// nothing is removed later.
#[test]
fn a_full_fast_path_leaves_the_flow_with_the_worker() {
    let k = FakeOffload::with_capacity(0);
    let mut bed = forwarding(&k);
    assert_eq!(counter(&bed, "offload_full"), 1);
    assert_eq!(counter(&bed, "offload_inserted"), 0);
    bed.run_script(
        "
0.030 < P. 28:38(10) ack 1 win 502
0.030 > fwd 1 P. 28:38(10) ack 1
0.040 < R. 38:38(0) ack 1 win 0
0.040 > fwd 1 R. 38:38(0) ack 1
0.040 state CLOSED
",
    );
    assert_eq!(
        k.0.lock().unwrap().removes,
        0,
        "never offered, never removed"
    );
}

/// Without a fast path nothing changes (the AF_PACKET and DPDK backends).
#[test]
fn without_a_fast_path_the_engine_counts_nothing() {
    let mut bed = Bed::new(test_config());
    assert!(!bed.engine.has_offload());
    bed.run_script(TO_FORWARDING);
    assert_eq!(counter(&bed, "offload_inserted"), 0);
    assert_eq!(counter(&bed, "offload_full"), 0);
}
