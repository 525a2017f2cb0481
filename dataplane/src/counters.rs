//! Per-worker counters, readable by the exporter without stopping workers.
//!
//! Each worker owns one [`Counters`] behind an `Arc`. The worker is the only
//! writer, so an increment is a relaxed load plus store (a plain `add` on x86,
//! no locked instruction on the packet path); readers see each counter
//! atomically, and a [`Counters::snapshot`] is a consistent-enough copy for
//! Prometheus. Every drop and every abort has a named reason.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

macro_rules! reasons {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $v:ident => $s:literal,)* }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vm])* $v,)* }
        impl $name {
            /// Every variant, in counter order.
            pub const ALL: &'static [$name] = &[$($name::$v,)*];
            /// Number of variants.
            pub const COUNT: usize = Self::ALL.len();
            /// The label value used by the exporter.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$v => $s,)* }
            }
        }
    };
}

reasons! {
    /// Why a received frame was dropped.
    DropReason {
        /// Truncated or inconsistent Ethernet/IPv4/TCP/UDP/ARP header.
        Malformed => "malformed",
        /// IPv4 header or TCP/UDP/ICMP checksum wrong.
        BadChecksum => "bad_checksum",
        /// Not addressed to a VIP, the data address or a service port.
        NotForUs => "not_for_us",
        /// EtherType or IP protocol the switch does not serve.
        Unsupported => "unsupported",
        /// IPv4 fragments and IPv6 Fragment headers: the switch
        /// reassembles nothing.
        Fragment => "fragment",
        /// An IPv6 extension-header chain outside the switch's rule
        /// (Hop-by-Hop not first, more than 8 headers or 512 bytes).
        Ipv6ExtChain => "ipv6_ext_chain",
        /// A neighbour-discovery message RFC 4861 §7.1 says to discard
        /// (hop limit not 255, non-zero code, multicast target, a zero-length
        /// option, a duplicate-address probe with a link-layer option).
        NdInvalid => "nd_invalid",
        /// Non-SYN TCP segment for no known connection.
        NoFlow => "no_flow",
        /// Connection table full: a new SYN was refused.
        TableFull => "table_full",
        /// The client address already has `client_max_connections` entries
        /// (SYN dropped) or `client_max_pending` sessions (handshake reset).
        ClientLimit => "client_limit",
        /// No request buffer free: a completed handshake was refused.
        PendingFull => "pending_full",
        /// SYN_RCVD budget full and SYN cookies off.
        SynBacklog => "syn_backlog",
        /// Segment outside the receive window or with an unacceptable ACK.
        OutOfWindow => "out_of_window",
        /// Client data after the request was frozen for dispatch, beyond the hold budget.
        HoldFull => "hold_full",
        /// Client data while a handoff is pending, beyond the worker's `held_capacity`.
        HoldWorkerFull => "hold_worker_full",
        /// Segment during DISPATCH/HANDOFF with nothing new for the backend
        /// (a pure ACK of the switch's own bytes, an ACK older than the one
        /// kept, a retransmission of acknowledged or held bytes): not held.
        NotHeld => "not_held",
        /// New connection refused while draining.
        Draining => "draining",
        /// ACK carrying an invalid or expired SYN cookie.
        BadCookie => "bad_cookie",
        /// THOP frame that did not decode or authenticate.
        ThopInvalid => "thop_invalid",
        /// THOP reply for a connection that no longer exists (or another generation).
        ThopStale => "thop_stale",
        /// Authentic THOP frame refused by the replay check (seen before,
        /// stamped before the switch started, or off the sender's clock).
        ThopReplay => "thop_replay",
        /// THOP frame tagged with a key bound to other agents than its sender.
        ThopKeyNotForSender => "thop_key_not_for_sender",
        /// Authentic THOP frame about a connection handed to another agent.
        ThopNotOwner => "thop_not_owner",
        /// Frame the backend transmit queue would not take.
        TxFull => "tx_full",
        /// No buffer to build a frame the switch originates.
        NoBuffer => "no_buffer",
        /// No MAC known for a backend or client yet.
        ArpUnresolved => "arp_unresolved",
        /// A queue to the control plane or another worker was full.
        QueueFull => "queue_full",
        /// Decision for a connection that is gone or in another state.
        StaleDecision => "stale_decision",
        /// Segment arriving in a state that takes no such segment (a SYN on
        /// an established connection, a segment without ACK). Not a
        /// transition: those the table refuses are `illegal_transitions`.
        BadState => "bad_state",
        /// ARP or ICMP message the switch does not answer.
        Ignored => "ignored",
        /// ARP naming a different MAC for a backend without the switch
        /// having asked (gratuitous, unsolicited or late reply): not taken.
        ArpUnsolicited => "arp_unsolicited",
        /// Segment of an unknown flow whose lookup is running, not held
        /// (one is held per flow; the worker's `held_capacity` is spent).
        Recovering => "recovering",
        /// Segment of an unknown flow not looked up: the worker's lookup
        /// rate or outstanding-lookup limit was reached.
        LookupLimited => "lookup_limited",
        /// Segment of an unknown flow that no agent claimed after every
        /// LOOKUP (its held segment, when it had one).
        Unresolved => "unresolved",
        /// Segment of a connection this switch process handed off but the
        /// worker does not hold: another worker does (the flow's receive
        /// queue changed). Not recovered twice.
        OtherWorker => "other_worker",
    }
}

reasons! {
    /// Why the switch ended a connection itself.
    AbortReason {
        /// No ACK to the SYN/ACK after all retransmissions.
        SynAckTimeout => "synack_timeout",
        /// Malformed request header: 400.
        BadRequest => "bad_request_400",
        /// Header beyond the limit: 431.
        HeaderTooLarge => "header_too_large_431",
        /// Header not complete in time (slowloris): 408.
        HeaderTimeout => "header_timeout_408",
        /// TLS service: the first bytes were not a TLS handshake record
        /// (plaintext, garbage); closed without an alert.
        TlsNotTls => "tls_not_tls",
        /// TLS service: an SSL 2.0-style hello; closed without an alert.
        TlsSslv2 => "tls_sslv2",
        /// TLS service: a malformed record or ClientHello, or a first
        /// handshake message that is not one: a fatal alert.
        TlsMalformed => "tls_malformed",
        /// TLS service: a record over 2^14 bytes or a ClientHello over
        /// `limits.max_client_hello_bytes`: a fatal alert.
        TlsTooLarge => "tls_too_large",
        /// TLS service: the ClientHello was not complete in time; closed.
        TlsHelloTimeout => "tls_hello_timeout",
        /// The control plane found no backend: 503.
        NoBackend => "no_backend_503",
        /// No decision in time: 503.
        DecisionTimeout => "decision_timeout_503",
        /// Every dispatch attempt refused or timed out: 503.
        HandoffFailed => "handoff_failed_503",
        /// Client RST before FORWARDING.
        ClientReset => "client_reset",
        /// Client FIN before a complete header.
        ClientClosed => "client_closed",
        /// Our response was never acknowledged.
        ResponseTimeout => "response_timeout",
        /// The worker stopped while the connection was being set up (SYN_RCVD,
        /// WAITHEADER, DISPATCH, HANDOFF) or answered (CLOSING): counted once
        /// when the worker's loop ends. FORWARDING connections are not
        /// counted: their sockets live on the agents.
        Stopped => "stopped",
    }
}

reasons! {
    /// How a FORWARDING entry ended.
    CloseReason {
        /// THOP_CLOSE from the agent.
        ThopClose => "thop_close",
        /// Client RST forwarded.
        ClientReset => "client_reset",
        /// Timer after the client's FIN.
        Fin => "fin_timeout",
        /// No client packet for `idle_timeout`.
        Idle => "idle_timeout",
        /// Freed, idle for `evict_idle_after`, to make room in a full table.
        Evicted => "evicted",
        /// The client opened a new connection on the same 4-tuple after its FIN.
        Reused => "reused",
    }
}

reasons! {
    /// Connection states, as named in the seed paper (plus the switch's own closing states).
    StateGauge {
        SynRcvd => "SYN_RCVD",
        WaitHeader => "WAITHEADER",
        Dispatch => "DISPATCH",
        Handoff => "HANDOFF",
        Forwarding => "FORWARDING",
        ForwardingFin => "FORWARDING_FIN",
        ForwardingClosed => "FORWARDING_CLOSED",
        Closing => "CLOSING",
        TimeWait => "TIME_WAIT",
    }
}

/// One worker's counters. All fields are monotonic except `state`, a gauge.
#[derive(Debug, Default)]
pub struct Counters {
    pub rx_packets: AtomicU64,
    pub rx_bytes: AtomicU64,
    pub tx_packets: AtomicU64,
    pub tx_bytes: AtomicU64,
    /// Client packets relayed to a backend (FORWARDING).
    pub forwarded: AtomicU64,
    pub syn_received: AtomicU64,
    pub synack_sent: AtomicU64,
    pub synack_retransmits: AtomicU64,
    /// Handshakes completed (entries entering WAITHEADER).
    pub new_connections: AtomicU64,
    pub syncookies_sent: AtomicU64,
    pub syncookies_validated: AtomicU64,
    pub syncookies_failed: AtomicU64,
    pub requests_dispatched: AtomicU64,
    pub decisions: AtomicU64,
    /// First dispatches decided on the worker itself (no queue hop).
    pub local_decisions: AtomicU64,
    pub thop_create_sent: AtomicU64,
    pub thop_retransmits: AtomicU64,
    pub handoff_acked: AtomicU64,
    pub handoff_nacked: AtomicU64,
    pub handoff_timed_out: AtomicU64,
    pub handoff_aborted: AtomicU64,
    /// ABORTs sent again because the agent had not acknowledged them.
    pub thop_abort_retransmits: AtomicU64,
    /// ABORTs given up without an acknowledgement (last try, or no room).
    pub thop_aborts_unacknowledged: AtomicU64,
    pub redispatches: AtomicU64,
    pub held_packets: AtomicU64,
    pub responses_4xx: AtomicU64,
    pub responses_5xx: AtomicU64,
    pub arp_replies_sent: AtomicU64,
    pub arp_requests_sent: AtomicU64,
    /// Backend MACs changed by a reply to the switch's own ARP request.
    pub arp_mac_changes: AtomicU64,
    pub icmp_echo_replies: AtomicU64,
    /// IPv6 neighbour solicitations sent (backends' and agents' MACs).
    pub nd_solicits_sent: AtomicU64,
    /// IPv6 neighbour advertisements sent (solicited and at start).
    pub nd_adverts_sent: AtomicU64,
    /// MLDv2 reports sent (the solicited-node groups of the switch's IPv6
    /// addresses, at start and on queries).
    pub mld_reports_sent: AtomicU64,
    /// ICMPv6 Packet Too Big messages about the switch's own segments that
    /// lowered a connection's segment size.
    pub icmp6_too_big: AtomicU64,
    pub thop_peer_relayed: AtomicU64,
    pub load_reports: AtomicU64,
    /// Challenge ACKs sent for a RST inside the window but not at the
    /// expected sequence number (RFC 5961 §3.2).
    pub challenge_acks: AtomicU64,
    /// FORWARDING: client RSTs inside the window but not exact, relayed to
    /// the backend without freeing the entry.
    pub rst_relayed_in_window: AtomicU64,
    /// FORWARDING_CLOSED: client FINs relayed after the backend had closed
    /// first (the entry is then freed).
    pub fins_after_close: AtomicU64,
    /// HANDOFF: a held pure ACK left out on entering FORWARDING because a
    /// held segment carried the same or a later acknowledgment.
    pub held_acks_superseded: AtomicU64,
    /// State changes the transition table does not list, refused (the
    /// connection stays as it was). Any is a bug in the engine; debug
    /// builds stop at the first.
    pub illegal_transitions: AtomicU64,
    /// Flows handed to the in-kernel fast path on entering FORWARDING.
    pub offload_inserted: AtomicU64,
    /// Flows taken back from the in-kernel fast path when their entry ended.
    pub offload_removed: AtomicU64,
    /// Flows kept in user space because the fast path's table was full.
    pub offload_full: AtomicU64,
    /// Fast-path table updates the kernel refused for another reason.
    pub offload_errors: AtomicU64,
    /// Flows left in the fast path when their entry ended because a newer
    /// connection on the same 4-tuple, answered by another worker, owns
    /// the key now.
    pub offload_taken_over: AtomicU64,
    /// Gauge, set once at start: entries the connection table holds.
    pub table_capacity: AtomicU64,
    /// Gauge, set once at start: connections that may hold a request
    /// buffer at once (the session pool).
    pub pending_capacity: AtomicU64,
    /// Times the worker blocked in adaptive polling.
    pub idle_sleeps: AtomicU64,
    /// Of those, the sleeps another thread ended through the worker's
    /// doorbell (a decision, a command or a relayed THOP reply).
    pub doorbell_wakeups: AtomicU64,
    /// HELLOs sent to agents (worker 0 only).
    pub recovery_hellos_sent: AtomicU64,
    /// LOOKUP frames sent (one per agent per flow asked).
    pub recovery_lookups_sent: AtomicU64,
    /// Flow records from agents' FLOWS stored in the directory.
    pub recovery_records: AtomicU64,
    /// Flow records refused because the directory was full.
    pub recovery_records_refused: AtomicU64,
    /// FORWARDING entries installed from a record that a resync brought.
    pub recovered_resync: AtomicU64,
    /// FORWARDING entries installed after this worker's LOOKUP.
    pub recovered_lookup: AtomicU64,
    /// Agent restarts (a new boot) this worker noticed first.
    pub agent_restarts: AtomicU64,
    /// Complete ClientHellos parsed on TLS services, by the ALPN protocol
    /// the client prefers: `h2`, `http/1.1`, another, none offered.
    pub tls_hellos_h2: AtomicU64,
    pub tls_hellos_http11: AtomicU64,
    pub tls_hellos_other_alpn: AtomicU64,
    pub tls_hellos_no_alpn: AtomicU64,
    /// ClientHellos offering TLS 1.3 (the rest offer 1.2 or older).
    pub tls_hellos_tls13: AtomicU64,
    /// Fatal TLS alerts the switch sent (refused hellos, no backend).
    pub tls_alerts: AtomicU64,
    pub drops: PerReason<{ DropReason::COUNT }>,
    pub aborts: [AtomicU64; AbortReason::COUNT],
    pub closes: [AtomicU64; CloseReason::COUNT],
    /// Gauge: connections per state now.
    pub state: [AtomicU64; StateGauge::COUNT],
}

/// One counter per reason: an array that has a `Default` at any length
/// (the standard library's stops at 32).
#[derive(Debug)]
pub struct PerReason<const N: usize>(pub [AtomicU64; N]);

impl<const N: usize> Default for PerReason<N> {
    fn default() -> Self {
        PerReason(std::array::from_fn(|_| AtomicU64::new(0)))
    }
}

impl<const N: usize> std::ops::Deref for PerReason<N> {
    type Target = [AtomicU64; N];
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

/// Single-writer increment: a relaxed load and store (no locked add).
#[inline]
pub(crate) fn bump(c: &AtomicU64, n: u64) {
    c.store(c.load(Relaxed).wrapping_add(n), Relaxed);
}

impl Counters {
    /// Counts a dropped frame.
    #[inline]
    pub fn count_drop(&self, r: DropReason) {
        bump(&self.drops[r as usize], 1);
    }
    /// Counts an abort.
    #[inline]
    pub fn abort(&self, r: AbortReason) {
        bump(&self.aborts[r as usize], 1);
    }
    /// Counts `n` aborts for one reason.
    pub fn abort_n(&self, r: AbortReason, n: u64) {
        bump(&self.aborts[r as usize], n);
    }
    /// Reads one drop counter.
    pub fn dropped(&self, r: DropReason) -> u64 {
        self.drops[r as usize].load(Relaxed)
    }
    /// Reads one abort counter.
    pub fn aborted(&self, r: AbortReason) -> u64 {
        self.aborts[r as usize].load(Relaxed)
    }
    /// Reads one state gauge.
    pub fn in_state(&self, s: StateGauge) -> u64 {
        self.state[s as usize].load(Relaxed)
    }
    /// Moves one connection between state gauges.
    #[inline]
    pub(crate) fn transition(&self, from: Option<StateGauge>, to: Option<StateGauge>) {
        if let Some(f) = from {
            let c = &self.state[f as usize];
            c.store(c.load(Relaxed).saturating_sub(1), Relaxed);
        }
        if let Some(t) = to {
            bump(&self.state[t as usize], 1);
        }
    }

    /// A copy of every counter as (name, value) pairs, labelled ones as
    /// `drops{reason}` etc. Cheap enough for every scrape.
    pub fn snapshot(&self) -> Snapshot {
        let l = |a: &AtomicU64| a.load(Relaxed);
        let mut scalars = vec![
            ("rx_packets", l(&self.rx_packets)),
            ("rx_bytes", l(&self.rx_bytes)),
            ("tx_packets", l(&self.tx_packets)),
            ("tx_bytes", l(&self.tx_bytes)),
            ("forwarded", l(&self.forwarded)),
            ("syn_received", l(&self.syn_received)),
            ("synack_sent", l(&self.synack_sent)),
            ("synack_retransmits", l(&self.synack_retransmits)),
            ("new_connections", l(&self.new_connections)),
            ("syncookies_sent", l(&self.syncookies_sent)),
            ("syncookies_validated", l(&self.syncookies_validated)),
            ("syncookies_failed", l(&self.syncookies_failed)),
            ("requests_dispatched", l(&self.requests_dispatched)),
            ("decisions", l(&self.decisions)),
            ("local_decisions", l(&self.local_decisions)),
            ("thop_create_sent", l(&self.thop_create_sent)),
            ("thop_retransmits", l(&self.thop_retransmits)),
            ("handoff_acked", l(&self.handoff_acked)),
            ("handoff_nacked", l(&self.handoff_nacked)),
            ("handoff_timed_out", l(&self.handoff_timed_out)),
            ("handoff_aborted", l(&self.handoff_aborted)),
            ("thop_abort_retransmits", l(&self.thop_abort_retransmits)),
            (
                "thop_aborts_unacknowledged",
                l(&self.thop_aborts_unacknowledged),
            ),
            ("redispatches", l(&self.redispatches)),
            ("held_packets", l(&self.held_packets)),
            ("responses_4xx", l(&self.responses_4xx)),
            ("responses_5xx", l(&self.responses_5xx)),
            ("arp_replies_sent", l(&self.arp_replies_sent)),
            ("arp_requests_sent", l(&self.arp_requests_sent)),
            ("arp_mac_changes", l(&self.arp_mac_changes)),
            ("icmp_echo_replies", l(&self.icmp_echo_replies)),
            ("nd_solicits_sent", l(&self.nd_solicits_sent)),
            ("nd_adverts_sent", l(&self.nd_adverts_sent)),
            ("icmp6_too_big", l(&self.icmp6_too_big)),
            ("mld_reports_sent", l(&self.mld_reports_sent)),
            ("thop_peer_relayed", l(&self.thop_peer_relayed)),
            ("load_reports", l(&self.load_reports)),
            ("challenge_acks", l(&self.challenge_acks)),
            ("rst_relayed_in_window", l(&self.rst_relayed_in_window)),
            ("fins_after_close", l(&self.fins_after_close)),
            ("held_acks_superseded", l(&self.held_acks_superseded)),
            ("illegal_transitions", l(&self.illegal_transitions)),
            ("offload_inserted", l(&self.offload_inserted)),
            ("offload_removed", l(&self.offload_removed)),
            ("offload_full", l(&self.offload_full)),
            ("offload_errors", l(&self.offload_errors)),
            ("offload_taken_over", l(&self.offload_taken_over)),
            ("idle_sleeps", l(&self.idle_sleeps)),
            ("doorbell_wakeups", l(&self.doorbell_wakeups)),
            ("recovery_hellos_sent", l(&self.recovery_hellos_sent)),
            ("recovery_lookups_sent", l(&self.recovery_lookups_sent)),
            ("recovery_records", l(&self.recovery_records)),
            (
                "recovery_records_refused",
                l(&self.recovery_records_refused),
            ),
            ("recovered_resync", l(&self.recovered_resync)),
            ("recovered_lookup", l(&self.recovered_lookup)),
            ("agent_restarts", l(&self.agent_restarts)),
            ("tls_hellos_h2", l(&self.tls_hellos_h2)),
            ("tls_hellos_http11", l(&self.tls_hellos_http11)),
            ("tls_hellos_other_alpn", l(&self.tls_hellos_other_alpn)),
            ("tls_hellos_no_alpn", l(&self.tls_hellos_no_alpn)),
            ("tls_hellos_tls13", l(&self.tls_hellos_tls13)),
            ("tls_alerts", l(&self.tls_alerts)),
        ];
        scalars.shrink_to_fit();
        Snapshot {
            scalars,
            drops: DropReason::ALL
                .iter()
                .map(|r| (r.as_str(), self.dropped(*r)))
                .collect(),
            aborts: AbortReason::ALL
                .iter()
                .map(|r| (r.as_str(), self.aborted(*r)))
                .collect(),
            closes: CloseReason::ALL
                .iter()
                .map(|r| (r.as_str(), l(&self.closes[*r as usize])))
                .collect(),
            states: StateGauge::ALL
                .iter()
                .map(|s| (s.as_str(), self.in_state(*s)))
                .collect(),
            capacity: vec![
                ("table", l(&self.table_capacity)),
                ("pending", l(&self.pending_capacity)),
            ],
        }
    }
}

/// A point-in-time copy of a worker's [`Counters`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Monotonic counters by name.
    pub scalars: Vec<(&'static str, u64)>,
    /// Drops by [`DropReason::as_str`].
    pub drops: Vec<(&'static str, u64)>,
    /// Aborts by [`AbortReason::as_str`].
    pub aborts: Vec<(&'static str, u64)>,
    /// FORWARDING ends by [`CloseReason::as_str`].
    pub closes: Vec<(&'static str, u64)>,
    /// Gauge: connections by [`StateGauge::as_str`].
    pub states: Vec<(&'static str, u64)>,
    /// Gauge: the worker's fixed sizes, `table` (connection-table entries)
    /// and `pending` (connections that may hold a request buffer at once).
    pub capacity: Vec<(&'static str, u64)>,
}

impl Snapshot {
    /// One scalar by name (0 when unknown).
    pub fn get(&self, name: &str) -> u64 {
        self.scalars
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(0, |(_, v)| *v)
    }
    /// Adds another worker's snapshot into this one (switch-wide totals).
    pub fn add(&mut self, other: &Snapshot) {
        if self.scalars.is_empty() {
            *self = other.clone();
            return;
        }
        for (a, b) in [
            (&mut self.scalars, &other.scalars),
            (&mut self.drops, &other.drops),
            (&mut self.aborts, &other.aborts),
            (&mut self.closes, &other.closes),
            (&mut self.states, &other.states),
            (&mut self.capacity, &other.capacity),
        ] {
            for (x, y) in a.iter_mut().zip(b.iter()) {
                x.1 += y.1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_snapshot_sees_bumps() {
        let c = Counters::default();
        c.count_drop(DropReason::NoFlow);
        c.count_drop(DropReason::NoFlow);
        c.abort(AbortReason::BadRequest);
        bump(&c.forwarded, 5);
        let s = c.snapshot();
        assert_eq!(s.get("forwarded"), 5);
        assert!(s.drops.contains(&("no_flow", 2)));
        assert!(s.aborts.contains(&("bad_request_400", 1)));
        let mut names: Vec<_> = DropReason::ALL.iter().map(|r| r.as_str()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), DropReason::COUNT);
    }
}
