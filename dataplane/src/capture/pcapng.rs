//! The pcapng file format (draft-ietf-opsawg-pcapng), as much of it as a
//! capture needs: a section header, one Ethernet interface with nanosecond
//! timestamps, and an enhanced packet block per frame with its direction
//! (`epb_flags`: inbound, outbound) and a comment naming the worker.
//! tcpdump, tshark and Wireshark read it. Written by hand: four block
//! layouts, where a crate would bring a reader, a parser and their
//! dependencies into the switch.

use super::{Direction, Record};

const SHB: u32 = 0x0A0D_0D0A;
const IDB: u32 = 0x0000_0001;
const EPB: u32 = 0x0000_0006;
const BYTE_ORDER_MAGIC: u32 = 0x1A2B_3C4D;
const LINKTYPE_ETHERNET: u16 = 1;
const OPT_END: u16 = 0;
const OPT_COMMENT: u16 = 1;
const SHB_USERAPPL: u16 = 4;
const IF_NAME: u16 = 2;
const IF_TSRESOL: u16 = 9;
const EPB_FLAGS: u16 = 2;

fn pad4(n: usize) -> usize {
    (n + 3) & !3
}

fn option(body: &mut Vec<u8>, code: u16, value: &[u8]) {
    body.extend_from_slice(&code.to_le_bytes());
    body.extend_from_slice(&(value.len() as u16).to_le_bytes());
    body.extend_from_slice(value);
    body.resize(pad4(body.len()), 0);
}

fn block(out: &mut Vec<u8>, kind: u32, mut body: Vec<u8>) {
    option(&mut body, OPT_END, &[]);
    let total = (12 + body.len()) as u32;
    out.extend_from_slice(&kind.to_le_bytes());
    out.extend_from_slice(&total.to_le_bytes());
    out.extend_from_slice(&body);
    out.extend_from_slice(&total.to_le_bytes());
}

/// The section header and the interface description: the start of a file.
pub fn header(interface: &str, snaplen: u32) -> Vec<u8> {
    let mut out = Vec::new();
    let mut shb = Vec::new();
    shb.extend_from_slice(&BYTE_ORDER_MAGIC.to_le_bytes());
    shb.extend_from_slice(&1u16.to_le_bytes());
    shb.extend_from_slice(&0u16.to_le_bytes());
    shb.extend_from_slice(&u64::MAX.to_le_bytes()); // section length unknown
    option(
        &mut shb,
        SHB_USERAPPL,
        concat!("baton ", env!("CARGO_PKG_VERSION")).as_bytes(),
    );
    block(&mut out, SHB, shb);
    let mut idb = Vec::new();
    idb.extend_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
    idb.extend_from_slice(&0u16.to_le_bytes());
    idb.extend_from_slice(&snaplen.to_le_bytes());
    option(&mut idb, IF_NAME, interface.as_bytes());
    option(&mut idb, IF_TSRESOL, &[9]); // 10^-9 s
    block(&mut out, IDB, idb);
    out
}

/// Appends one frame.
pub fn packet(out: &mut Vec<u8>, r: &Record) {
    let mut epb = Vec::with_capacity(32 + r.data.len());
    epb.extend_from_slice(&0u32.to_le_bytes()); // interface 0
    epb.extend_from_slice(&((r.unix_ns >> 32) as u32).to_le_bytes());
    epb.extend_from_slice(&(r.unix_ns as u32).to_le_bytes());
    epb.extend_from_slice(&(r.data.len() as u32).to_le_bytes());
    epb.extend_from_slice(&r.orig_len.to_le_bytes());
    epb.extend_from_slice(&r.data);
    epb.resize(pad4(epb.len()), 0);
    let dir: u32 = match r.dir {
        Direction::In => 1,
        Direction::Out => 2,
    };
    option(&mut epb, EPB_FLAGS, &dir.to_le_bytes());
    option(
        &mut epb,
        OPT_COMMENT,
        format!("worker {}", r.worker).as_bytes(),
    );
    block(out, EPB, epb);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_framed_and_aligned() {
        let mut f = header("eth0", 65535);
        let start = f.len();
        packet(
            &mut f,
            &Record {
                unix_ns: 1_700_000_000_123_456_789,
                worker: 1,
                dir: Direction::Out,
                orig_len: 61,
                data: vec![0xab; 61],
            },
        );
        assert_eq!(f.len() % 4, 0);
        // Every block: type, length, body, the same length again.
        let mut off = 0;
        let mut kinds = Vec::new();
        while off < f.len() {
            let kind = u32::from_le_bytes(f[off..off + 4].try_into().unwrap());
            let len = u32::from_le_bytes(f[off + 4..off + 8].try_into().unwrap()) as usize;
            let tail = u32::from_le_bytes(f[off + len - 4..off + len].try_into().unwrap());
            assert_eq!(len, tail as usize);
            kinds.push(kind);
            off += len;
        }
        assert_eq!(kinds, vec![SHB, IDB, EPB]);
        assert_eq!(&f[start + 20..start + 24], &61u32.to_le_bytes());
    }
}
