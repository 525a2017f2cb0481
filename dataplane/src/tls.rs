//! TLS ClientHellos: finding the end of one across TCP segments and TLS
//! records, parsing it (tls-parser) for what routing needs, and the alerts
//! the switch sends when it refuses one.
//!
//! The switch never terminates TLS. On a `protocol: tls` service WAITHEADER
//! waits for the complete ClientHello instead of an HTTP head; the bytes are
//! handed off unchanged, so the backend's TLS server reads the very
//! handshake the client sent. Only the plaintext ClientHello is looked at:
//! server name (SNI), ALPN protocols and offered versions. With Encrypted
//! ClientHello the outer hello is the one parsed, so its public name routes.
//!
//! Both planes use [`parse_client_hello`] (the control plane's request view
//! is built on it), so a worker and the control plane never disagree on what
//! a ClientHello says. [`HelloScanner`] is incremental: a hello arriving one
//! byte per segment costs O(n) to find, not O(n²).

use tls_parser::{
    parse_tls_client_hello_extensions, parse_tls_handshake_client_hello, SNIType, TlsExtension,
};

/// TLS record content type of handshake records.
pub const CONTENT_HANDSHAKE: u8 = 22;
/// Handshake message type of a ClientHello.
pub const HANDSHAKE_CLIENT_HELLO: u8 = 1;
/// Largest plaintext record fragment (RFC 8446 §5.1: 2^14).
pub const MAX_RECORD: usize = 1 << 14;
/// Bytes of a record header: type, version, length.
pub const RECORD_HEADER: usize = 5;
/// The protocol version number of TLS 1.3 (in `supported_versions`).
pub const TLS13: u16 = 0x0304;

/// Why a ClientHello is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TlsError {
    /// The first bytes are not a TLS handshake record (plaintext HTTP,
    /// garbage): closed without an alert, since the peer does not speak TLS.
    #[error("not TLS")]
    NotTls,
    /// An SSL 2.0-style ClientHello: such a client cannot read a TLS alert.
    #[error("SSL 2.0 ClientHello")]
    Sslv2,
    /// A record or handshake message that breaks the format.
    #[error("malformed ClientHello: {0}")]
    Malformed(&'static str),
    /// The first handshake message is not a ClientHello.
    #[error("first handshake message is not a ClientHello")]
    Unexpected,
    /// A record longer than 2^14 bytes.
    #[error("record longer than 2^14 bytes")]
    RecordOverflow,
    /// A ClientHello larger than the configured limit.
    #[error("ClientHello larger than the limit")]
    TooLarge,
}

impl TlsError {
    /// The fatal alert the switch answers with, or `None` to close without one.
    pub fn alert(self) -> Option<Alert> {
        match self {
            TlsError::NotTls | TlsError::Sslv2 => None,
            TlsError::Malformed(_) => Some(Alert::DecodeError),
            TlsError::Unexpected => Some(Alert::UnexpectedMessage),
            TlsError::RecordOverflow => Some(Alert::RecordOverflow),
            // What OpenSSL and BoringSSL send for an excessive message size.
            TlsError::TooLarge => Some(Alert::IllegalParameter),
        }
    }
}

/// Fatal alerts the switch sends (RFC 8446 §6.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alert {
    UnexpectedMessage = 10,
    RecordOverflow = 22,
    HandshakeFailure = 40,
    IllegalParameter = 47,
    AccessDenied = 49,
    DecodeError = 50,
    InternalError = 80,
    UnrecognizedName = 112,
}

impl Alert {
    /// The whole alert record (plaintext: no keys exist yet). The record
    /// version is TLS 1.2's, which TLS 1.3 also uses on the wire.
    pub fn record(self) -> &'static [u8] {
        macro_rules! rec {
            ($d:literal) => {
                &[21, 3, 3, 0, 2, 2, $d]
            };
        }
        match self {
            Alert::UnexpectedMessage => rec!(10),
            Alert::RecordOverflow => rec!(22),
            Alert::HandshakeFailure => rec!(40),
            Alert::IllegalParameter => rec!(47),
            Alert::AccessDenied => rec!(49),
            Alert::DecodeError => rec!(50),
            Alert::InternalError => rec!(80),
            Alert::UnrecognizedName => rec!(112),
        }
    }

    /// The alert for a refusal the switch would answer on HTTP with
    /// `status`; `None`: close without one (a timeout has no alert).
    pub fn for_status(status: u16) -> Option<Alert> {
        match status {
            0 | 408 => None,
            400 => Some(Alert::DecodeError),
            403 => Some(Alert::AccessDenied),
            404 => Some(Alert::UnrecognizedName),
            431 => Some(Alert::IllegalParameter),
            _ => Some(Alert::InternalError),
        }
    }
}

/// Whether `buf` (at least one byte) starts like a TLS handshake record.
/// HTTP request heads never do (a method is a token), so a header buffer
/// tells its protocol by its first byte.
pub fn looks_like_tls(buf: &[u8]) -> bool {
    buf.first() == Some(&CONTENT_HANDSHAKE)
}

/// Incremental search for the end of a ClientHello in the contiguous bytes
/// of a connection (a prefix that only grows). Walks record headers and
/// counts handshake bytes; keeps its place between calls.
#[derive(Debug, Clone, Copy, Default)]
pub struct HelloScanner {
    /// Offset of the next record header not yet walked.
    pos: usize,
    /// Handshake bytes seen in complete records before `pos`.
    have: usize,
    /// The 4-byte handshake header, as far as seen.
    hs: [u8; 4],
}

impl HelloScanner {
    /// Starts a new scan.
    pub fn new() -> Self {
        Self::default()
    }

    /// Looks at `buf`; `Ok(Some(n))` when the ClientHello ends in the record
    /// that ends at `n` (the bytes to parse and route on), `Ok(None)` while
    /// it is incomplete. `max` bounds the handshake message's length.
    pub fn find_end(&mut self, buf: &[u8], max: usize) -> Result<Option<usize>, TlsError> {
        if self.pos == 0 {
            check_first_bytes(buf)?;
        }
        loop {
            let Some(h) = buf.get(self.pos..self.pos + RECORD_HEADER) else {
                return Ok(None);
            };
            if h[0] != CONTENT_HANDSHAKE {
                // RFC 8446 §5.1: handshake messages are not interleaved with
                // other record types.
                return Err(TlsError::Malformed(
                    "non-handshake record inside the ClientHello",
                ));
            }
            if h[1] != 3 {
                return Err(TlsError::Malformed("record version is not 3.x"));
            }
            let len = u16::from_be_bytes([h[3], h[4]]) as usize;
            if len == 0 {
                // RFC 8446 §5.1: no zero-length handshake fragments.
                return Err(TlsError::Malformed("empty handshake record"));
            }
            if len > MAX_RECORD {
                return Err(TlsError::RecordOverflow);
            }
            let body = self.pos + RECORD_HEADER;
            // The handshake header may itself be split over records.
            for k in 0..len.min(4usize.saturating_sub(self.have)) {
                let Some(&b) = buf.get(body + k) else {
                    break;
                };
                self.hs[self.have + k] = b;
            }
            let seen = self.have + len.min(buf.len().saturating_sub(body));
            if seen >= 1 && self.hs[0] != HANDSHAKE_CLIENT_HELLO {
                return Err(TlsError::Unexpected);
            }
            if seen >= 4 {
                let need = u32::from_be_bytes([0, self.hs[1], self.hs[2], self.hs[3]]) as usize;
                if need > max {
                    return Err(TlsError::TooLarge);
                }
                if self.have + len >= 4 + need && buf.len() >= body + len {
                    return Ok(Some(body + len));
                }
            }
            if buf.len() < body + len {
                return Ok(None);
            }
            self.have += len;
            self.pos = body + len;
        }
    }
}

/// Refuses what is not a TLS handshake record from its first bytes.
fn check_first_bytes(buf: &[u8]) -> Result<(), TlsError> {
    let Some(&first) = buf.first() else {
        return Ok(());
    };
    if first == CONTENT_HANDSHAKE {
        return match buf.get(1) {
            Some(&3) | None => Ok(()),
            Some(_) => Err(TlsError::NotTls),
        };
    }
    // SSL 2.0 CLIENT-HELLO: a 2-byte length with the top bit set, then
    // message type 1 and version 3.x (or 2.0).
    if first & 0x80 != 0 && buf.get(2) == Some(&1) {
        return Err(TlsError::Sslv2);
    }
    Err(TlsError::NotTls)
}

/// What routing needs from a ClientHello.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientHello {
    /// The host name of the server_name extension, lower-cased, without a
    /// trailing dot; `None` when the client sent none.
    pub sni: Option<String>,
    /// ALPN protocols offered, in the client's order.
    pub alpn: Vec<String>,
    /// Highest version offered (`supported_versions`, else the legacy
    /// version field), GREASE values ignored.
    pub version: u16,
    /// An Encrypted ClientHello extension is present (the SNI is then the
    /// outer, public name).
    pub ech: bool,
}

impl ClientHello {
    /// `tls1.2`, `tls1.3`, … for logs and metrics.
    pub fn version_str(&self) -> &'static str {
        version_name(self.version)
    }
}

/// A version number's name (`tls1.3`); `unknown` when not one.
pub fn version_name(v: u16) -> &'static str {
    match v {
        0x0300 => "ssl3",
        0x0301 => "tls1.0",
        0x0302 => "tls1.1",
        0x0303 => "tls1.2",
        0x0304 => "tls1.3",
        _ => "unknown",
    }
}

/// The Encrypted ClientHello extension type (draft-ietf-tls-esni).
const EXT_ECH: u16 = 0xfe0d;

/// GREASE values (RFC 8701): `0x?a?a` with equal bytes.
fn is_grease(v: u16) -> bool {
    v & 0x0f0f == 0x0a0a && v >> 8 == v & 0xff
}

/// Parses the ClientHello in `buf` (records from the first, as
/// [`HelloScanner`] found them complete). `max` bounds the message.
pub fn parse_client_hello(buf: &[u8], max: usize) -> Result<ClientHello, TlsError> {
    check_first_bytes(buf)?;
    let mut scanner = HelloScanner::new();
    let end = scanner
        .find_end(buf, max)?
        .ok_or(TlsError::Malformed("ClientHello incomplete"))?;
    // The handshake message, copied only when it spans records.
    let first_len = u16::from_be_bytes([buf[3], buf[4]]) as usize;
    let owned;
    let msg: &[u8] = if RECORD_HEADER + first_len == end {
        &buf[RECORD_HEADER..end]
    } else {
        let mut v = Vec::with_capacity(end);
        let mut p = 0;
        while p < end {
            let len = u16::from_be_bytes([buf[p + 3], buf[p + 4]]) as usize;
            v.extend_from_slice(&buf[p + RECORD_HEADER..p + RECORD_HEADER + len]);
            p += RECORD_HEADER + len;
        }
        owned = v;
        &owned
    };
    let need = u32::from_be_bytes([0, msg[1], msg[2], msg[3]]) as usize;
    let body = &msg[4..4 + need];
    let (rest, ch) = parse_tls_handshake_client_hello(body)
        .map_err(|_| TlsError::Malformed("ClientHello body"))?;
    if !rest.is_empty() {
        return Err(TlsError::Malformed("bytes after the extensions"));
    }
    let mut out = ClientHello {
        version: ch.version.0,
        ..ClientHello::default()
    };
    let Some(ext) = ch.ext else {
        return Ok(out);
    };
    // Walk the extension list by hand first: the ECH type and duplicates.
    let mut seen: Vec<u16> = Vec::new();
    let mut e = ext;
    while !e.is_empty() {
        if e.len() < 4 {
            return Err(TlsError::Malformed("extension header"));
        }
        let ty = u16::from_be_bytes([e[0], e[1]]);
        let len = u16::from_be_bytes([e[2], e[3]]) as usize;
        if e.len() < 4 + len {
            return Err(TlsError::Malformed("extension length"));
        }
        if !is_grease(ty) {
            if seen.contains(&ty) {
                // RFC 8446 §4.2: at most one extension of each type.
                return Err(TlsError::Malformed("duplicate extension"));
            }
            seen.push(ty);
        }
        out.ech |= ty == EXT_ECH;
        e = &e[4 + len..];
    }
    let (_, exts) =
        parse_tls_client_hello_extensions(ext).map_err(|_| TlsError::Malformed("extensions"))?;
    for x in exts {
        match x {
            TlsExtension::SNI(names) => {
                for (ty, name) in names {
                    if ty != SNIType::HostName {
                        continue;
                    }
                    out.sni = Some(host_name(name)?);
                    break;
                }
            }
            TlsExtension::ALPN(protos) => {
                for p in protos {
                    if p.is_empty() {
                        return Err(TlsError::Malformed("empty ALPN protocol"));
                    }
                    out.alpn.push(String::from_utf8_lossy(p).into_owned());
                }
            }
            TlsExtension::SupportedVersions(vs) => {
                if let Some(v) = vs.iter().map(|v| v.0).filter(|v| !is_grease(*v)).max() {
                    out.version = v;
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

/// A server name as routing compares it: RFC 6066 §3 host names are
/// ASCII (A-labels), without a trailing dot; compared lower-cased.
fn host_name(raw: &[u8]) -> Result<String, TlsError> {
    let raw = raw.strip_suffix(b".").unwrap_or(raw);
    if raw.is_empty() || raw.len() > 253 {
        return Err(TlsError::Malformed("server name length"));
    }
    if !raw
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
    {
        return Err(TlsError::Malformed("server name is not a host name"));
    }
    Ok(String::from_utf8_lossy(raw).to_ascii_lowercase())
}

/// Builds ClientHello records for tests and tools: `sni`, `alpn`, the
/// versions offered, `extra` extensions (type, body) appended, and the
/// handshake message cut into records of at most `record` bytes.
pub fn build_client_hello(
    sni: Option<&str>,
    alpn: &[&str],
    versions: &[u16],
    extra: &[(u16, &[u8])],
    record: usize,
) -> Vec<u8> {
    fn ext(out: &mut Vec<u8>, ty: u16, body: &[u8]) {
        out.extend_from_slice(&ty.to_be_bytes());
        out.extend_from_slice(&(body.len() as u16).to_be_bytes());
        out.extend_from_slice(body);
    }
    let mut exts = Vec::new();
    if let Some(name) = sni {
        let mut b = Vec::new();
        b.extend_from_slice(&((name.len() + 3) as u16).to_be_bytes());
        b.push(0);
        b.extend_from_slice(&(name.len() as u16).to_be_bytes());
        b.extend_from_slice(name.as_bytes());
        ext(&mut exts, 0, &b);
    }
    if !alpn.is_empty() {
        let mut list = Vec::new();
        for p in alpn {
            list.push(p.len() as u8);
            list.extend_from_slice(p.as_bytes());
        }
        let mut b = (list.len() as u16).to_be_bytes().to_vec();
        b.extend_from_slice(&list);
        ext(&mut exts, 16, &b);
    }
    if !versions.is_empty() {
        let mut b = vec![(versions.len() * 2) as u8];
        for v in versions {
            b.extend_from_slice(&v.to_be_bytes());
        }
        ext(&mut exts, 43, &b);
    }
    for (ty, body) in extra {
        ext(&mut exts, *ty, body);
    }
    let mut body = vec![3, 3];
    body.extend_from_slice(&[0x42; 32]);
    body.push(0);
    body.extend_from_slice(&[0, 4, 0x13, 0x01, 0xc0, 0x2f]);
    body.extend_from_slice(&[1, 0]);
    body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
    body.extend_from_slice(&exts);
    let mut msg = vec![HANDSHAKE_CLIENT_HELLO];
    msg.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    msg.extend_from_slice(&body);
    let mut out = Vec::new();
    for chunk in msg.chunks(record.max(1)) {
        out.extend_from_slice(&[CONTENT_HANDSHAKE, 3, 1]);
        out.extend_from_slice(&(chunk.len() as u16).to_be_bytes());
        out.extend_from_slice(chunk);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 16 * 1024;

    fn hello(record: usize) -> Vec<u8> {
        build_client_hello(
            Some("WWW.Baton.Test."),
            &["h2", "http/1.1"],
            &[0x1a1a, TLS13, 0x0303],
            &[],
            record,
        )
    }

    #[test]
    fn parses_sni_alpn_and_versions() {
        let b = hello(MAX);
        let ch = parse_client_hello(&b, MAX).unwrap();
        assert_eq!(ch.sni.as_deref(), Some("www.baton.test"));
        assert_eq!(ch.alpn, ["h2", "http/1.1"]);
        assert_eq!(ch.version_str(), "tls1.3");
        assert!(!ch.ech);
    }

    #[test]
    fn a_hello_across_records_and_segments_is_found_once_whole() {
        for record in [1, 2, 3, 7, 100] {
            let b = hello(record);
            let mut sc = HelloScanner::new();
            for n in 1..b.len() {
                assert_eq!(sc.find_end(&b[..n], MAX), Ok(None), "record {record} n {n}");
            }
            assert_eq!(sc.find_end(&b, MAX), Ok(Some(b.len())));
            let ch = parse_client_hello(&b, MAX).unwrap();
            assert_eq!(ch.sni.as_deref(), Some("www.baton.test"), "record {record}");
        }
    }

    #[test]
    fn bytes_after_the_hello_are_not_part_of_it() {
        let mut b = hello(MAX);
        let n = b.len();
        b.extend_from_slice(&[20, 3, 3, 0, 1, 1]); // a ChangeCipherSpec
        assert_eq!(HelloScanner::new().find_end(&b, MAX), Ok(Some(n)));
    }

    #[test]
    fn refusals_have_their_alerts() {
        let sc = |b: &[u8]| HelloScanner::new().find_end(b, MAX);
        assert_eq!(sc(b"GET / HTTP/1.1\r\n"), Err(TlsError::NotTls));
        assert_eq!(sc(&[0x80, 0x2e, 0x01, 0x03, 0x01]), Err(TlsError::Sslv2));
        assert_eq!(sc(&[22, 9, 1, 0, 5]), Err(TlsError::NotTls));
        assert_eq!(sc(&[22, 3, 1, 0x40, 0x01]), Err(TlsError::RecordOverflow));
        assert_eq!(
            sc(&[22, 3, 1, 0, 0]),
            Err(TlsError::Malformed("empty handshake record"))
        );
        assert_eq!(sc(&[22, 3, 1, 0, 4, 2, 0, 0, 0]), Err(TlsError::Unexpected));
        assert_eq!(
            HelloScanner::new().find_end(&[22, 3, 1, 0, 4, 1, 0, 0x40, 1], 1000),
            Err(TlsError::TooLarge)
        );
        let mut b = hello(10);
        b[2 * 15] = 23; // the third record (15 bytes each) claims to be application data
        assert!(matches!(sc(&b), Err(TlsError::Malformed(_))));
        assert_eq!(TlsError::NotTls.alert(), None);
        assert_eq!(
            TlsError::TooLarge.alert().map(Alert::record),
            Some(&[21, 3, 3, 0, 2, 2, 47][..])
        );
    }

    #[test]
    fn no_sni_bad_names_and_ech() {
        let b = build_client_hello(None, &[], &[], &[], MAX);
        let ch = parse_client_hello(&b, MAX).unwrap();
        assert_eq!(ch.sni, None);
        assert_eq!(ch.version_str(), "tls1.2");
        let b = build_client_hello(Some("bad name"), &[], &[], &[], MAX);
        assert!(matches!(
            parse_client_hello(&b, MAX),
            Err(TlsError::Malformed(_))
        ));
        let b = build_client_hello(
            Some("public.baton.test"),
            &[],
            &[TLS13],
            &[(EXT_ECH, &[0, 1, 2, 3])],
            MAX,
        );
        let ch = parse_client_hello(&b, MAX).unwrap();
        assert!(ch.ech);
        assert_eq!(ch.sni.as_deref(), Some("public.baton.test"));
        let b = build_client_hello(
            Some("a.test"),
            &[],
            &[],
            &[(0, &[0, 4, 0, 0, 1, b'b'])],
            MAX,
        );
        assert_eq!(
            parse_client_hello(&b, MAX),
            Err(TlsError::Malformed("duplicate extension"))
        );
    }

    #[test]
    fn truncated_and_corrupt_hellos_never_panic() {
        let b = hello(40);
        for n in 0..b.len() {
            let _ = parse_client_hello(&b[..n], MAX);
            let _ = HelloScanner::new().find_end(&b[..n], MAX);
        }
        let mut x = 0x1234_5678u32;
        for _ in 0..2000 {
            let mut c = b.clone();
            for _ in 0..4 {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                let i = x as usize % c.len();
                c[i] = (x >> 8) as u8;
            }
            let _ = parse_client_hello(&c, MAX);
        }
    }

    #[test]
    fn hellos_with_other_extensions_parse() {
        // Extensions routing ignores (extended master secret, signature
        // algorithms) around the ones it reads.
        let b = build_client_hello(
            Some("static.baton.test"),
            &["h2", "http/1.1"],
            &[TLS13, 0x0303],
            &[(0x0017, &[]), (0x000d, &[0, 4, 4, 3, 8, 4])],
            MAX,
        );
        let ch = parse_client_hello(&b, MAX).unwrap();
        assert_eq!(ch.sni.as_deref(), Some("static.baton.test"));
    }
}
