//! FORWARDING: relaying client packets to the backend that adopted the
//! connection.
//!
//! The default step is L2 direct routing, as in the paper's cluster: the
//! backend holds the VIP on `lo`, so the switch only rewrites the Ethernet
//! source (itself) and destination (the backend) and transmits the very
//! buffer it received (zero copy; IP and TCP are untouched, so no checksum
//! changes). The step sits behind [`Forwarder`] so an encapsulating mode
//! (IP-in-IP, GUE) can be added without touching the state machine.
//!
//! Connection end is tracked from the client side only (responses never pass
//! the switch): a client RST is forwarded and frees the entry; a client FIN
//! starts `fin_timeout`; THOP_CLOSE frees after the client's FIN, and before
//! it leaves the entry relaying for `fin_timeout` until that FIN (the
//! backend usually closes first, and its TIME_WAIT must see the client's
//! FIN); `idle_timeout` is the backstop.
//!
//! RST and FIN are believed only inside the client's sequence space (RFC 5961),
//! because anyone who can guess a client's address and port could otherwise
//! end its connection with one spoofed segment. The entry keeps the client's
//! next sequence number (`rcv_nxt`, the highest end of data relayed, moved
//! forward by the fast path at no extra lookup) and the backend's window
//! scale. A RST exactly at `rcv_nxt` frees the entry; one elsewhere in the
//! backend's possible window is relayed without freeing it (the backend's
//! kernel answers with a challenge ACK, which the switch cannot send for it,
//! and a real client then resets at the exact number); anything further is
//! dropped. A FIN acts only when it continues the data relayed. Both need a
//! correct TCP checksum first (the fast path, which never sees them, does not
//! check it: the backend's kernel does).
//!
//! `fin_timeout` measures idleness, not time since the FIN: a half-closed
//! client still acknowledges the response it is reading, and each of its
//! packets moves `last_seen`.

use crate::counters::{bump, CloseReason, DropReason};
use crate::dispatch::WorkerEvent;
use crate::engine::{dur_ms, Engine, Sink};
use crate::io::PacketBuf;
use crate::state::{Event, State};
use crate::table::{ms_le, Slot};
use crate::wire::{self, flags::*, Mac, TcpSeg};

/// The forwarding step: turn a received client frame into the frame the
/// backend must get, in place. False drops it.
pub trait Forwarder {
    /// Rewrites `pkt` for the backend whose data MAC is `backend`.
    fn forward<B: PacketBuf>(&self, pkt: &mut B, backend: Mac) -> bool;
}

/// L2 direct routing (MAC rewrite).
#[derive(Debug, Clone, Copy)]
pub struct DirectRouting {
    mac: Mac,
}

impl DirectRouting {
    /// Direct routing from the switch's data MAC.
    pub fn new(mac: Mac) -> Self {
        DirectRouting { mac }
    }
}

impl Forwarder for DirectRouting {
    #[inline]
    fn forward<B: PacketBuf>(&self, pkt: &mut B, backend: Mac) -> bool {
        wire::rewrite_macs(pkt.data_mut(), self.mac, backend)
    }
}

impl<B: PacketBuf, F: Forwarder> Engine<B, F> {
    /// The fastest path: an IPv4 TCP segment without IP options (or an IPv6
    /// one without extension headers) and without SYN, FIN or RST, for a
    /// FORWARDING entry. Reads fixed offsets after one length check,
    /// verifies the IPv4 header checksum (IPv6 has none), looks the flow up and
    /// relays it; returns false (frame untouched) for anything else, which
    /// then takes the general path. Same decisions as `on_forwarding` for the
    /// frames it takes.
    #[inline(always)]
    pub(crate) fn forward_fast<S: Sink<B>>(&mut self, mut pkt: B, out: &mut S) -> Result<(), B> {
        let Some(mac) = self.fast_lookup(pkt.data()) else {
            return Err(pkt);
        };
        if !self.fwd.forward(&mut pkt, mac) {
            return Err(pkt);
        }
        bump(&self.counters.forwarded, 1);
        self.transmit(out, pkt);
        Ok(())
    }

    /// The backend MAC for a frame [`Self::forward_fast`] may relay.
    #[inline(always)]
    fn fast_lookup(&mut self, d: &[u8]) -> Option<Mac> {
        let key = self.fast_key(d)?;
        if !fast_header_ok(d) {
            return None;
        }
        let h = self.table.hash(&key);
        let i = self.table.lookup(&key, h)?;
        let now = self.now_ms;
        let e = self.table.get_mut(i);
        let Slot::Forwarding {
            mac,
            ref mut rcv_nxt,
            wshift,
            ..
        } = e.slot
        else {
            return None;
        };
        *rcv_nxt = advance(*rcv_nxt, fast_seq_end(d), wshift);
        e.last_seen = now;
        Some(mac)
    }

    /// The connection key of a frame the fast path may take (IPv4 without
    /// options or IPv6 without extension headers, TCP without SYN/FIN/RST,
    /// to a service), checksum unchecked.
    #[inline(always)]
    fn fast_key(&self, d: &[u8]) -> Option<crate::table::FlowKey> {
        if d.len() >= 74 && d[12] == 0x86 && d[13] == 0xdd {
            return self.fast_key6(d);
        }
        if d.len() < 54 || d[12] != 0x08 || d[13] != 0x00 || d[14] != 0x45 || d[23] != 6 {
            return None;
        }
        let total = u16::from_be_bytes([d[16], d[17]]) as usize;
        if total + 14 > d.len() || total < 40 || u16::from_be_bytes([d[20], d[21]]) & 0x3fff != 0 {
            return None;
        }
        let tcp_hl = ((d[46] >> 4) as usize) * 4;
        if tcp_hl < 20 || tcp_hl + 20 > total || d[47] & (SYN | RST | FIN) != 0 {
            return None;
        }
        let dst = u32::from_ne_bytes([d[30], d[31], d[32], d[33]]);
        let dport = u16::from_be_bytes([d[36], d[37]]);
        let svc = self
            .svcs
            .iter()
            .position(|s| s.vip4_be == dst && s.port == dport)?;
        let mut client = [0u8; 16];
        client[10] = 0xff;
        client[11] = 0xff;
        client[12..16].copy_from_slice(&d[26..30]);
        Some(crate::table::FlowKey {
            client,
            client_port: u16::from_be_bytes([d[34], d[35]]),
            service: svc as u16,
        })
    }

    /// [`Self::fast_key`] for an IPv6 frame: version 6, TCP as the first
    /// next header, the payload length within the frame.
    #[inline(always)]
    fn fast_key6(&self, d: &[u8]) -> Option<crate::table::FlowKey> {
        if d[14] >> 4 != 6 || d[20] != 6 {
            return None;
        }
        let plen = u16::from_be_bytes([d[18], d[19]]) as usize;
        if plen < 20 || 54 + plen > d.len() {
            return None;
        }
        let tcp_hl = ((d[66] >> 4) as usize) * 4;
        if tcp_hl < 20 || tcp_hl > plen || d[67] & (SYN | RST | FIN) != 0 {
            return None;
        }
        let dport = u16::from_be_bytes([d[56], d[57]]);
        let svc = self
            .svcs
            .iter()
            .position(|s| s.port == dport && s.vip.is_ipv6() && s.vip16[..] == d[38..54])?;
        let mut client = [0u8; 16];
        client.copy_from_slice(&d[22..38]);
        Some(crate::table::FlowKey {
            client,
            client_port: u16::from_be_bytes([d[54], d[55]]),
            service: svc as u16,
        })
    }

    /// A burst of received frames. With a million entries the table is far
    /// larger than the caches, so each lookup costs two dependent misses
    /// (bucket, entry); the burst is walked three times so those misses
    /// overlap: prefetch every bucket, then every chain head, then process
    /// (the way VPP and DPDK pipelines hide them).
    pub fn handle_burst<S: Sink<B>>(&mut self, now: u64, pkts: &mut Vec<B>, out: &mut S) {
        const MAX: usize = 64;
        let mut keys = [crate::table::FlowKey::default(); MAX];
        let mut hashes = [u64::MAX; MAX];
        for (k, p) in pkts.iter().take(MAX).enumerate() {
            if let Some(key) = self.fast_key(p.data()) {
                let h = self.table.hash(&key);
                self.table.prefetch_bucket(h);
                keys[k] = key;
                hashes[k] = h;
            }
        }
        for &h in hashes.iter().take(pkts.len().min(MAX)) {
            if h != u64::MAX {
                self.table.prefetch_head(h);
            }
        }
        for (k, p) in pkts.drain(..).enumerate() {
            if k < MAX && hashes[k] != u64::MAX {
                self.handle_prehashed(now, p, &keys[k], hashes[k], out);
            } else {
                self.handle_packet(now, p, out);
            }
        }
    }

    /// `handle_packet` for a frame whose fast-path key and hash are known.
    #[inline(always)]
    fn handle_prehashed<S: Sink<B>>(
        &mut self,
        now: u64,
        mut pkt: B,
        key: &crate::table::FlowKey,
        h: u64,
        out: &mut S,
    ) {
        let mac = match self.table.lookup(key, h) {
            Some(i) if fast_header_ok(pkt.data()) => match self.table.get(i).slot {
                Slot::Forwarding { mac, .. } => Some((i, mac)),
                _ => None,
            },
            _ => None,
        };
        let Some((i, mac)) = mac else {
            return self.handle_packet(now, pkt, out);
        };
        self.set_now(now);
        bump(&self.counters.rx_packets, 1);
        bump(&self.counters.rx_bytes, pkt.data().len() as u64);
        let end = fast_seq_end(pkt.data());
        let e = self.table.get_mut(i);
        if let Slot::Forwarding {
            ref mut rcv_nxt,
            wshift,
            ..
        } = e.slot
        {
            *rcv_nxt = advance(*rcv_nxt, end, wshift);
        }
        e.last_seen = self.now_ms;
        if !self.fwd.forward(&mut pkt, mac) {
            return self.counters.count_drop(DropReason::Malformed);
        }
        bump(&self.counters.forwarded, 1);
        self.transmit(out, pkt);
    }

    /// The hot path: one client packet of a FORWARDING connection.
    #[inline]
    pub(crate) fn on_forwarding<S: Sink<B>>(
        &mut self,
        i: u32,
        mut pkt: B,
        seg: TcpSeg,
        out: &mut S,
    ) {
        let now = self.now_ms;
        if seg.flags & (SYN | RST | FIN) != 0 {
            // Judged against how far the client got, which only the fast
            // path knows for an offloaded flow.
            self.offload_sync(i);
        }
        let (mac, backend, fin, closed, rcv_nxt, wshift) = match self.table.get(i).slot {
            Slot::Forwarding {
                mac,
                backend,
                fin,
                closed,
                rcv_nxt,
                wshift,
                ..
            } => (mac, backend, fin, closed, rcv_nxt, wshift),
            _ => return,
        };
        let mut last = false;
        let end = seg.seq.wrapping_add(seg.len() as u32);
        let mut next = advance(rcv_nxt, end, wshift);
        if seg.flags & (SYN | RST | FIN) != 0 {
            // Rare segments that may end the connection: check them in full.
            if !wire::tcp_seg_checksum_ok(pkt.data(), &seg) {
                return self.counters.count_drop(DropReason::BadChecksum);
            }
            let off = seg.seq.wrapping_sub(rcv_nxt);
            let in_window = (off as i32).unsigned_abs() <= max_window(wshift);
            if seg.has(SYN) && !seg.has(ACK) && (fin || closed) && (off as i32) > 0 {
                // The client reuses the 4-tuple after closing: a new
                // connection (its ISN lies beyond the old sequence space).
                if self.free_entry(i, Event::Reuse) {
                    if !closed {
                        bump(&self.counters.closes[CloseReason::Reused as usize], 1);
                        if !out.event(WorkerEvent::Closed { backend }) {
                            self.counters.count_drop(DropReason::QueueFull);
                        }
                    }
                    self.reopen(pkt, seg, out);
                }
                return;
            }
            if seg.has(RST) {
                if !in_window {
                    return self.counters.count_drop(DropReason::OutOfWindow);
                }
                if self.fwd.forward(&mut pkt, mac) {
                    bump(&self.counters.forwarded, 1);
                    self.transmit(out, pkt);
                }
                if off != 0 {
                    // In the window but not exact: the backend judges it
                    // (RFC 5961 §3.2 challenge ACK); the entry stays.
                    bump(&self.counters.rst_relayed_in_window, 1);
                    self.table.get_mut(i).last_seen = now;
                    return;
                }
                if !self.free_entry(i, Event::ClientRst) || closed {
                    // Closed already: counted and reported at THOP_CLOSE.
                    return;
                }
                bump(&self.counters.closes[CloseReason::ClientReset as usize], 1);
                if !out.event(WorkerEvent::Closed { backend }) {
                    self.counters.count_drop(DropReason::QueueFull);
                }
                return;
            }
            if seg.has(FIN) {
                if !in_window {
                    return self.counters.count_drop(DropReason::OutOfWindow);
                }
                // The FIN continues what was relayed: it covers `rcv_nxt`.
                let in_order = (off as i32) <= 0 && (end.wrapping_sub(rcv_nxt) as i32) >= 0;
                if in_order {
                    next = end.wrapping_add(1);
                    if closed {
                        // The backend closed first: this FIN is the
                        // client's last segment. Relayed below, then freed.
                        last = true;
                    } else if !fin {
                        self.mark_fin(i);
                    }
                } else {
                    // After a gap (or forged): relayed, believed only when
                    // it comes again in order.
                    next = rcv_nxt;
                }
            }
        }
        let e = self.table.get_mut(i);
        if let Slot::Forwarding {
            ref mut rcv_nxt, ..
        } = e.slot
        {
            *rcv_nxt = next;
        }
        e.last_seen = now;
        if self.fwd.forward(&mut pkt, mac) {
            bump(&self.counters.forwarded, 1);
            self.transmit(out, pkt);
        } else {
            self.counters.count_drop(DropReason::Malformed);
        }
        if last && self.free_entry(i, Event::ClientFin) {
            bump(&self.counters.fins_after_close, 1);
        }
    }

    /// FORWARDING → FORWARDING_CLOSED on the agent's THOP_CLOSE: the
    /// backend's socket is gone, but when it closed first the client's FIN
    /// is still on its way, and only the backend's TIME_WAIT acknowledges
    /// it. Freeing the entry now would drop that FIN as an unknown flow and
    /// leave the client in LAST_ACK, retransmitting it. The close is
    /// counted and reported now; the entry lives on until the client's FIN
    /// or RST, or `fin_timeout` without a client packet. False when the
    /// table refused (nothing changed).
    pub(crate) fn linger_closed(&mut self, i: u32) -> bool {
        let Slot::Forwarding {
            mac,
            backend,
            fin: false,
            closed: false,
            rcv_nxt,
            wshift,
            offloaded,
        } = self.table.get(i).slot
        else {
            return false;
        };
        let Some(to) = self.apply(i, State::Forwarding, Event::ThopClose) else {
            return false;
        };
        let e = self.table.get_mut(i);
        e.slot = Slot::Forwarding {
            mac,
            backend,
            fin: false,
            closed: true,
            rcv_nxt,
            wshift,
            offloaded,
        };
        self.stored(i, to);
        let due = self.now_ms.wrapping_add(dur_ms(self.fin_timeout()));
        let earlier = self.table.deadline(i).is_none_or(|d| !ms_le(d, due));
        if earlier {
            self.table.arm(i, due);
        }
        true
    }

    /// FORWARDING → FORWARDING_FIN: from now on the entry is freed after
    /// `fin_timeout` without a client packet.
    pub(crate) fn mark_fin(&mut self, i: u32) {
        if let Slot::Forwarding {
            mac,
            backend,
            fin: false,
            closed: false,
            rcv_nxt,
            wshift,
            offloaded,
        } = self.table.get(i).slot
        {
            let Some(to) = self.apply(i, State::Forwarding, Event::ClientFin) else {
                return;
            };
            let e = self.table.get_mut(i);
            e.slot = Slot::Forwarding {
                mac,
                backend,
                fin: true,
                closed: false,
                rcv_nxt,
                wshift,
                offloaded,
            };
            e.last_seen = self.now_ms;
            self.stored(i, to);
            let due = self.now_ms.wrapping_add(dur_ms(self.fin_timeout()));
            let earlier = self.table.deadline(i).is_none_or(|d| !ms_le(d, due));
            if earlier {
                self.table.arm(i, due);
            }
        }
    }

    /// How long a FORWARDING entry lives without client packets after the
    /// client's FIN.
    pub(crate) fn fin_timeout(&self) -> std::time::Duration {
        self.hold_for(self.cfg.fin_timeout, self.cfg.pressure_fin_timeout)
    }

    fn reopen<S: Sink<B>>(&mut self, pkt: B, seg: TcpSeg, out: &mut S) {
        let Some(svc) = self.service_index(seg.dst, seg.dst_port) else {
            return;
        };
        let key = crate::table::FlowKey::new(seg.src, seg.src_port, svc);
        let h = self.table.hash(&key);
        self.on_listen(0, key, h, pkt, seg, out);
    }
}

/// The largest receive window a backend with window scale `wshift` can
/// advertise (RFC 7323 §2.3: the shift is at most 14).
#[inline(always)]
pub(crate) fn max_window(wshift: u8) -> u32 {
    65535u32 << wshift.min(14)
}

/// Moves the client's next sequence number to `end` when `end` lies ahead of
/// it within the backend's window (retransmissions and reordered segments
/// leave it; a spoofed number far away cannot drag it).
#[inline(always)]
pub(crate) fn advance(rcv_nxt: u32, end: u32, wshift: u8) -> u32 {
    let ahead = end.wrapping_sub(rcv_nxt);
    if ahead != 0 && ahead <= max_window(wshift) {
        end
    } else {
        rcv_nxt
    }
}

/// The IP header check of a frame that passed `fast_key`: the IPv4 header
/// checksum; IPv6 has no header checksum.
#[inline(always)]
fn fast_header_ok(d: &[u8]) -> bool {
    d[12] == 0x86 || wire::ipv4_header_ok(&d[14..34])
}

/// Sequence number after a fast-path frame's payload (the frame passed
/// `fast_key`: IPv4 without options or IPv6 without extension headers,
/// lengths consistent).
#[inline(always)]
fn fast_seq_end(d: &[u8]) -> u32 {
    if d[12] == 0x86 {
        let seq = u32::from_be_bytes([d[58], d[59], d[60], d[61]]);
        let plen = u16::from_be_bytes([d[18], d[19]]) as u32;
        let tcp_hl = ((d[66] >> 4) as u32) * 4;
        return seq.wrapping_add(plen.wrapping_sub(tcp_hl));
    }
    let seq = u32::from_be_bytes([d[38], d[39], d[40], d[41]]);
    let total = u16::from_be_bytes([d[16], d[17]]) as u32;
    let tcp_hl = ((d[46] >> 4) as u32) * 4;
    seq.wrapping_add(total.wrapping_sub(20).wrapping_sub(tcp_hl))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advance_moves_forward_within_the_window_only() {
        assert_eq!(advance(1000, 1100, 0), 1100);
        assert_eq!(advance(1100, 1000, 0), 1100, "retransmission");
        assert_eq!(advance(1000, 1000 + 65535, 0), 1000 + 65535);
        assert_eq!(advance(1000, 1000 + 65536, 0), 1000, "beyond the window");
        assert_eq!(advance(u32::MAX - 10, 20, 7), 20, "wraps");
        assert_eq!(advance(0, 1 << 30, 14), 0);
    }
}
