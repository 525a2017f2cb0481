//! State recovery (spec §5.7–§5.9): HELLO, FLOWS and LOOKUP.
//!
//! A switch that restarts has lost its FORWARDING table, but every handed-off
//! connection still lives on exactly one agent, which holds its socket. So
//! the agents give the switch its state back:
//!
//! - the switch sends HELLO to every agent at start and every interval; the
//!   header's `boot` field tells the agent whether this is the process it
//!   knew;
//! - an agent that sees a switch boot it does not know answers with FLOWS:
//!   the 4-tuples and connection ids of its live connections from that switch;
//! - a switch that gets a segment for a flow it does not know asks every
//!   agent with LOOKUP; the agent that holds the flow answers with FLOWS
//!   (flag ANSWER) and from then on also sends that switch the flow's CLOSE.
//!
//! FLOWS and LOOKUP carry [`FlowRecord`]s of a fixed 48 bytes (IPv4
//! addresses in their IPv4-mapped IPv6 form), so a body is a short fixed part
//! and a whole number of records, decoded without allocation.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use crate::error::DecodeError;
use crate::wire::{Reader, Writer};

/// HELLO body: the switch's announcement of itself (its boot is in the header).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Hello {
    /// How often the switch sends HELLO, in ms.
    pub interval_ms: u32,
    /// HELLO flag bits ([`Hello::DRAINING`]).
    pub flags: u32,
}

impl Hello {
    /// Body length on the wire.
    pub const LEN: usize = 8;
    /// The switch takes no new connections (informational).
    pub const DRAINING: u32 = 0x0000_0001;

    /// Decodes a HELLO body.
    pub fn decode(body: &[u8]) -> Result<Hello, DecodeError> {
        let mut r = Reader::new(body);
        Ok(Hello {
            interval_ms: r.u32("hello: interval_ms")?,
            flags: r.u32("hello: flags")?,
        })
    }

    pub(crate) fn encode(&self, w: &mut Writer<'_>) {
        w.u32(self.interval_ms);
        w.u32(self.flags);
    }
}

/// One flow in FLOWS or LOOKUP: a connection's 4-tuple and, in FLOWS, the
/// id the switch that handed it off gave it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowRecord {
    /// The connection id (spec §4.2); 0 in LOOKUP.
    pub conn_id: u64,
    /// The boot of the switch process that handed the connection off, as
    /// the agent saw it in the CREATE (0: unknown, and in LOOKUP): a switch
    /// recognises a flow it handed off itself.
    pub origin_boot: u32,
    /// The client's address and port.
    pub client: SocketAddr,
    /// The virtual address and port the client connected to.
    pub vip: SocketAddr,
}

impl FlowRecord {
    /// Bytes per record on the wire.
    pub const LEN: usize = 48;

    fn decode(r: &mut Reader<'_>, lookup: bool) -> Result<FlowRecord, DecodeError> {
        let conn_id = r.u64("flow: conn_id")?;
        let client_port = r.u16("flow: client_port")?;
        let vip_port = r.u16("flow: vip_port")?;
        let origin_boot = r.u32("flow: origin_boot")?;
        let client = addr(r.array::<16>("flow: client address")?);
        let vip = addr(r.array::<16>("flow: vip address")?);
        if client_port == 0 || vip_port == 0 {
            return Err(DecodeError::Invalid("flow: port 0"));
        }
        if lookup != (conn_id == 0) {
            return Err(DecodeError::Invalid(if lookup {
                "lookup: conn_id not 0"
            } else {
                "flows: conn_id 0"
            }));
        }
        if client.is_ipv4() != vip.is_ipv4() {
            return Err(DecodeError::Invalid("flow: mixed address families"));
        }
        for a in [client, vip] {
            if a.is_unspecified() || a.is_multicast() {
                return Err(DecodeError::Invalid("flow: unusable address"));
            }
        }
        Ok(FlowRecord {
            conn_id,
            origin_boot,
            client: SocketAddr::new(client, client_port),
            vip: SocketAddr::new(vip, vip_port),
        })
    }

    fn encode(&self, w: &mut Writer<'_>) {
        w.u64(self.conn_id);
        w.u16(self.client.port());
        w.u16(self.vip.port());
        w.u32(self.origin_boot);
        w.bytes(&mapped(self.client.ip()));
        w.bytes(&mapped(self.vip.ip()));
    }
}

/// An address as 16 bytes: IPv6 as is, IPv4 IPv4-mapped (`::ffff:a.b.c.d`).
fn mapped(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
        IpAddr::V6(a) => a.octets(),
    }
}

fn addr(b: [u8; 16]) -> IpAddr {
    let v6 = Ipv6Addr::from(b);
    match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(v6),
    }
}

/// The records of a FLOWS or LOOKUP body: as received (bytes already
/// validated) or as the sender lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Records<'a> {
    /// Received: `count` records of [`FlowRecord::LEN`] bytes, all valid.
    Wire(&'a [u8]),
    /// To send.
    List(&'a [FlowRecord]),
}

impl<'a> Records<'a> {
    /// Number of records.
    pub fn len(&self) -> usize {
        match self {
            Records::Wire(b) => b.len() / FlowRecord::LEN,
            Records::List(l) => l.len(),
        }
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The records, in order.
    pub fn iter(&self) -> impl Iterator<Item = FlowRecord> + 'a {
        let (wire, list): (&'a [u8], &'a [FlowRecord]) = match *self {
            Records::Wire(b) => (b, &[]),
            Records::List(l) => (&[], l),
        };
        let lookup_ok = |r: &mut Reader<'_>| {
            // Validated at decode; the flag only picks the conn_id rule.
            let conn_id_zero = r.rest().get(..8).is_some_and(|b| b == [0; 8]);
            FlowRecord::decode(r, conn_id_zero).ok()
        };
        wire.chunks_exact(FlowRecord::LEN)
            .filter_map(move |c| lookup_ok(&mut Reader::new(c)))
            .chain(list.iter().copied())
    }

    fn decode(
        r: &mut Reader<'a>,
        count: u16,
        lookup: bool,
        what: &'static str,
    ) -> Result<Records<'a>, DecodeError> {
        let bytes = r.bytes(count as usize * FlowRecord::LEN, what)?;
        for c in bytes.chunks_exact(FlowRecord::LEN) {
            FlowRecord::decode(&mut Reader::new(c), lookup)?;
        }
        Ok(Records::Wire(bytes))
    }

    fn encode(&self, w: &mut Writer<'_>) {
        match self {
            Records::Wire(b) => w.bytes(&b[..self.len() * FlowRecord::LEN]),
            Records::List(l) => l.iter().for_each(|f| f.encode(w)),
        }
    }
}

/// FLOWS body: live connections an agent holds, for one switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flows<'a> {
    /// FLOWS flag bits ([`Flows::LAST`], [`Flows::ANSWER`]).
    pub flags: u16,
    /// The connections.
    pub records: Records<'a>,
}

impl<'a> Flows<'a> {
    /// Length of the part before the records.
    pub const FIXED_LEN: usize = 8;
    /// The last frame of a resynchronisation (informational: the switch
    /// need not wait for more from this agent).
    pub const LAST: u16 = 0x0001;
    /// Answers a LOOKUP rather than a new boot.
    pub const ANSWER: u16 = 0x0002;

    /// The most records one frame of `max_frame_len` bytes carries.
    pub fn capacity(max_frame_len: usize) -> usize {
        max_frame_len.saturating_sub(crate::HEADER_LEN + Self::FIXED_LEN) / FlowRecord::LEN
    }

    /// Body length on the wire.
    pub fn encoded_len(&self) -> usize {
        Self::FIXED_LEN + self.records.len().min(u16::MAX as usize) * FlowRecord::LEN
    }

    /// Decodes a FLOWS body.
    pub fn decode(body: &'a [u8]) -> Result<Flows<'a>, DecodeError> {
        let mut r = Reader::new(body);
        let count = r.u16("flows: count")?;
        let flags = r.u16("flows: flags")?;
        let _reserved = r.u32("flows: reserved")?;
        let records = Records::decode(&mut r, count, false, "flows: records")?;
        Ok(Flows { flags, records })
    }

    pub(crate) fn encode(&self, w: &mut Writer<'_>) {
        w.u16(self.records.len().min(u16::MAX as usize) as u16);
        w.u16(self.flags);
        w.u32(0);
        self.records.encode(w);
    }
}

/// LOOKUP body: flows a switch does not know, asked of every agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lookup<'a> {
    /// The flows (`conn_id` 0).
    pub records: Records<'a>,
}

impl<'a> Lookup<'a> {
    /// Length of the part before the records.
    pub const FIXED_LEN: usize = 8;

    /// Body length on the wire.
    pub fn encoded_len(&self) -> usize {
        Self::FIXED_LEN + self.records.len().min(u16::MAX as usize) * FlowRecord::LEN
    }

    /// Decodes a LOOKUP body.
    pub fn decode(body: &'a [u8]) -> Result<Lookup<'a>, DecodeError> {
        let mut r = Reader::new(body);
        let count = r.u16("lookup: count")?;
        let _reserved = r.u16("lookup: reserved")?;
        let _reserved = r.u32("lookup: reserved")?;
        let records = Records::decode(&mut r, count, true, "lookup: records")?;
        Ok(Lookup { records })
    }

    pub(crate) fn encode(&self, w: &mut Writer<'_>) {
        w.u16(self.records.len().min(u16::MAX as usize) as u16);
        w.u16(0);
        w.u32(0);
        self.records.encode(w);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(conn_id: u64, c: &str, v: &str) -> FlowRecord {
        FlowRecord {
            conn_id,
            origin_boot: 0,
            client: c.parse().unwrap(),
            vip: v.parse().unwrap(),
        }
    }

    #[test]
    fn records_round_trip_in_both_families() {
        let list = [
            rec(7, "198.18.0.101:40000", "198.18.0.10:80"),
            rec(8, "[2001:2::101]:40001", "[2001:2::10]:443"),
        ];
        let f = Flows {
            flags: Flows::LAST,
            records: Records::List(&list),
        };
        let mut buf = vec![0u8; f.encoded_len()];
        f.encode(&mut Writer::new(&mut buf));
        let back = Flows::decode(&buf).unwrap();
        assert_eq!(back.flags, Flows::LAST);
        assert_eq!(back.records.iter().collect::<Vec<_>>(), list);
        // IPv4 travels IPv4-mapped.
        assert_eq!(
            &buf[8 + 16..8 + 28],
            &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]
        );
    }

    #[test]
    fn bad_records_name_the_problem() {
        let list = [rec(0, "198.18.0.101:40000", "198.18.0.10:80")];
        let l = Lookup {
            records: Records::List(&list),
        };
        let mut buf = vec![0u8; l.encoded_len()];
        l.encode(&mut Writer::new(&mut buf));
        assert!(Lookup::decode(&buf).is_ok());
        // The same record as FLOWS has conn_id 0.
        assert_eq!(
            Flows::decode(&buf),
            Err(DecodeError::Invalid("flows: conn_id 0"))
        );
        // One record announced, none present.
        assert_eq!(
            Lookup::decode(&buf[..8]),
            Err(DecodeError::Truncated("lookup: records"))
        );
        let mut zero_port = buf.clone();
        zero_port[16..18].copy_from_slice(&[0, 0]);
        assert_eq!(
            Lookup::decode(&zero_port),
            Err(DecodeError::Invalid("flow: port 0"))
        );
        let mut mixed = buf.clone();
        mixed[8 + 32..8 + 48].copy_from_slice(&Ipv6Addr::LOCALHOST.octets());
        assert_eq!(
            Lookup::decode(&mixed),
            Err(DecodeError::Invalid("flow: mixed address families"))
        );
        // Bytes after the records are a later revision's: ignored.
        let mut longer = buf.clone();
        longer.extend_from_slice(&[1, 2, 3]);
        assert_eq!(Lookup::decode(&longer).unwrap().records.len(), 1);
    }

    #[test]
    fn capacity_fits_the_frame() {
        assert_eq!(Flows::capacity(crate::MAX_FRAME_LEN_V4), 29);
        assert_eq!(Flows::capacity(crate::MIN_FRAME_LEN), 3);
    }
}
