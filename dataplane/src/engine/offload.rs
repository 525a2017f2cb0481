//! FORWARDING flows relayed by an in-kernel fast path as well as by the
//! worker (see [`crate::offload`]).
//!
//! The engine stays the owner of every connection: it offers a flow to the
//! fast path when the entry enters FORWARDING, takes it back whenever the
//! entry is freed (client RST, THOP_CLOSE, idle or FIN timeout, eviction,
//! reuse of the 4-tuple), and before it judges what the fast path may have
//! changed — how long the client has been silent, how far its sequence
//! numbers went — it reads them back. Both calls name the connection (its
//! owner tag): a newer connection on the same 4-tuple, answered by another
//! worker, may have taken the key over, and is left alone. Only IPv4 flows
//! are offered (the fast path parses IPv4 only); a refusal leaves the flow
//! with the worker.

use crate::counters::bump;
use crate::engine::Engine;
use crate::engine::Forwarder;
use crate::io::PacketBuf;
use crate::offload::{owner_tag, FlowOffload, OffloadError, OffloadFlow, OffloadKey, Removal};
use crate::table::Slot;

impl<B: PacketBuf, F: Forwarder> Engine<B, F> {
    /// Relays FORWARDING flows through `o` as well from now on.
    pub fn set_offload(&mut self, o: Box<dyn FlowOffload>) {
        self.offload = Some(o);
    }

    /// True when a fast path relays this engine's FORWARDING flows.
    pub fn has_offload(&self) -> bool {
        self.offload.is_some()
    }

    /// The fast path's key of table slot `i` (IPv4 flows only).
    fn offload_key(&self, i: u32) -> Option<OffloadKey> {
        let k = &self.table.get(i).key;
        let svc = self.svcs.get(k.service as usize)?;
        if svc.vip4_be == 0 || k.client[..12] != [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff] {
            return None;
        }
        Some(OffloadKey {
            client: [k.client[12], k.client[13], k.client[14], k.client[15]],
            vip: svc.vip4_be.to_ne_bytes(),
            client_port: k.client_port,
            port: svc.port,
        })
    }

    /// Offers the FORWARDING entry `i` to the fast path (no-op without one).
    pub(crate) fn offload_insert(&mut self, i: u32) {
        if self.offload.is_none() {
            return;
        }
        let Some(key) = self.offload_key(i) else {
            return;
        };
        let Slot::Forwarding {
            mac,
            rcv_nxt,
            wshift,
            ..
        } = self.table.get(i).slot
        else {
            return;
        };
        let flow = OffloadFlow {
            backend_mac: mac,
            rcv_nxt,
            wshift,
            owner: self.owner_of(i),
        };
        let Some(o) = self.offload.as_mut() else {
            return;
        };
        match o.insert(&key, &flow) {
            Ok(()) => {
                bump(&self.counters.offload_inserted, 1);
                if let Slot::Forwarding {
                    ref mut offloaded, ..
                } = self.table.get_mut(i).slot
                {
                    *offloaded = true;
                }
            }
            Err(OffloadError::Full) => bump(&self.counters.offload_full, 1),
            Err(OffloadError::Os(_)) => bump(&self.counters.offload_errors, 1),
        }
    }

    /// Takes entry `i`'s flow back from the fast path, if it was offered
    /// (called by `forget_entry` before the slot is freed).
    pub(crate) fn offload_remove(&mut self, i: u32) {
        let Some(key) = self.offloaded_key(i) else {
            return;
        };
        let owner = self.owner_of(i);
        if let Some(o) = self.offload.as_mut() {
            match o.remove(&key, owner) {
                Removal::Removed => bump(&self.counters.offload_removed, 1),
                Removal::TakenOver => bump(&self.counters.offload_taken_over, 1),
                Removal::Failed => bump(&self.counters.offload_errors, 1),
            }
        }
    }

    /// The fast path's owner tag of entry `i`'s connection.
    fn owner_of(&self, i: u32) -> u32 {
        owner_tag(self.index, self.table.get(i).generation())
    }

    /// The fast path's key of entry `i` when its flow was offered to it.
    fn offloaded_key(&self, i: u32) -> Option<OffloadKey> {
        match self.table.get(i).slot {
            Slot::Forwarding {
                offloaded: true, ..
            } => self.offload_key(i),
            _ => None,
        }
    }

    /// Brings entry `i`'s `last_seen` and `rcv_nxt` up to what the fast path
    /// saw (no-op unless the flow is offloaded).
    pub(crate) fn offload_sync(&mut self, i: u32) {
        let Some(key) = self.offloaded_key(i) else {
            return;
        };
        let owner = self.owner_of(i);
        let Some(seen) = self.offload.as_mut().and_then(|o| o.read(&key, owner)) else {
            return;
        };
        let idle = seen.idle.as_millis().min(u128::from(i32::MAX as u32 / 2)) as u32;
        let heard = self.now_ms.wrapping_sub(idle);
        let e = self.table.get_mut(i);
        // Later of the two: the worker may have relayed a packet itself since.
        if (heard.wrapping_sub(e.last_seen) as i32) > 0 {
            e.last_seen = heard;
        }
        if let Slot::Forwarding {
            ref mut rcv_nxt, ..
        } = e.slot
        {
            // Both only move forward from the value at insert: keep the one
            // further ahead.
            if (seen.rcv_nxt.wrapping_sub(*rcv_nxt) as i32) > 0 {
                *rcv_nxt = seen.rcv_nxt;
            }
        }
    }
}
