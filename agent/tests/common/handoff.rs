//! One whole handoff, as the switch does it: accept, read the request, hold
//! the flow, freeze, THOP_CREATE, wait for the answer, then forward the
//! client's packets to the backend.

use super::bed::Bed;
use super::serve::accept_and_freeze;
use super::thop::{Rx, SwitchThop};
use handoff_proto::TcpState;
use std::net::TcpListener;

/// Hands the next connection on `l` to the agent; returns the agent's
/// answer (ACK or NACK), the state and the request. The flow is forwarded to
/// the backend only on ACK.
pub fn handoff(
    bed: &Bed,
    l: &TcpListener,
    thop: &mut SwitchThop,
    conn_id: u64,
) -> (Rx, TcpState, Vec<u8>) {
    let max_frame = thop.max_frame;
    handoff_frames(bed, l, thop, conn_id, max_frame)
}

/// As [`handoff`], with CREATE fragments of at most `max_frame` bytes.
pub fn handoff_frames(
    bed: &Bed,
    l: &TcpListener,
    thop: &mut SwitchThop,
    conn_id: u64,
    max_frame: usize,
) -> (Rx, TcpState, Vec<u8>) {
    let (st, req) = accept_and_freeze(bed, l, 0);
    let key = thop.key.clone();
    thop.create_with(conn_id, &st, &req, max_frame, &key);
    let rx = thop.wait_ack(conn_id);
    if matches!(rx, Rx::Ack { .. }) {
        bed.forward_flow(st.client());
    }
    (rx, st, req)
}
