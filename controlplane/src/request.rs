//! The parts of a request header that routing rules and policies look at,
//! parsed from the raw bytes a worker sends with the switch's own head
//! parser (`dataplane::http::parse_request`, over httparse).
//!
//! The worker already parsed the header once to know it was complete and
//! well-formed; the control plane parses again rather than receive a parsed
//! structure, so the dispatch queue carries one plain buffer and the worker
//! allocates nothing per request.
//!
//! A worker that decides a request itself parses with [`Request::parse_in`]
//! into header storage on its stack, so that parse allocates nothing (only a
//! Host with upper-case letters is lower-cased into a new string).

use std::borrow::Cow;

use dataplane::http::HttpError;
use dataplane::tls::{self, ClientHello};

/// Most header fields considered (the dataplane rejects more with 431).
pub const MAX_HEADERS: usize = 128;

/// Why a header could not be used for routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("request header is incomplete")]
    Incomplete,
    #[error("request header is malformed: {0}")]
    Malformed(&'static str),
}

impl RequestError {
    /// Short label for the `reason` of a metric.
    pub fn as_str(&self) -> &'static str {
        match self {
            RequestError::Incomplete => "incomplete",
            RequestError::Malformed(_) => "malformed",
        }
    }
}

/// A parsed request header, borrowing from the raw bytes.
///
/// On a TLS service the "request" is the ClientHello: `host` and `target`
/// are its server name (SNI; empty when the client sent none), so every
/// policy that keys on the URL or the host (LARD, hashing) keys on the SNI;
/// `method` and `path` are empty and there are no header fields.
#[derive(Debug)]
pub struct Request<'a> {
    pub method: &'a str,
    /// Path without the query string (absolute-form URIs reduced to their path).
    pub path: &'a str,
    /// Path and query as sent (the URL that LARD and hashing use); the SNI
    /// of a ClientHello.
    pub target: Cow<'a, str>,
    /// Host header (or the authority of an absolute-form URI), lower-cased,
    /// port removed; the SNI of a ClientHello.
    pub host: Cow<'a, str>,
    /// What the ClientHello said, on a TLS service.
    pub tls: Option<ClientHello>,
    headers: Fields<'a>,
}

/// Header fields, owned by the request or in storage lent by the caller.
#[derive(Debug)]
enum Fields<'a> {
    Owned(Vec<(&'a str, &'a [u8])>),
    Lent(&'a [httparse::Header<'a>]),
}

impl<'a> Request<'a> {
    /// Parses `raw` (request line to the blank line, or a ClientHello's
    /// records: a header buffer tells its protocol by its first byte).
    pub fn parse(raw: &'a [u8]) -> Result<Self, RequestError> {
        if tls::looks_like_tls(raw) {
            return Self::parse_hello(raw);
        }
        let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let (method, target, fields) = parse_head(raw, &mut storage)?;
        let headers = fields.iter().map(|h| (h.name, h.value)).collect();
        Ok(Self::build(method, target, Fields::Owned(headers)))
    }

    /// Parses `raw` with its header fields kept in `storage` (no allocation;
    /// up to `storage.len()` fields).
    pub fn parse_in(
        raw: &'a [u8],
        storage: &'a mut [httparse::Header<'a>],
    ) -> Result<Self, RequestError> {
        if tls::looks_like_tls(raw) {
            return Self::parse_hello(raw);
        }
        let (method, target, fields) = parse_head(raw, storage)?;
        Ok(Self::build(method, target, Fields::Lent(fields)))
    }

    /// A ClientHello (the switch's own parser, as the workers use it).
    fn parse_hello(raw: &'a [u8]) -> Result<Self, RequestError> {
        let hello = tls::parse_client_hello(raw, usize::MAX).map_err(|e| match e {
            tls::TlsError::Malformed(why) => RequestError::Malformed(why),
            _ => RequestError::Malformed("not a ClientHello"),
        })?;
        let sni = hello.sni.clone().unwrap_or_default();
        Ok(Request {
            method: "",
            path: "",
            target: Cow::Owned(sni.clone()),
            host: Cow::Owned(sni),
            tls: Some(hello),
            headers: Fields::Owned(Vec::new()),
        })
    }

    /// The server name a ClientHello carried.
    pub fn sni(&self) -> Option<&str> {
        self.tls.as_ref().and_then(|t| t.sni.as_deref())
    }

    /// The ALPN protocols a ClientHello offered (empty for HTTP).
    pub fn alpn(&self) -> &[String] {
        self.tls.as_ref().map_or(&[], |t| t.alpn.as_slice())
    }

    fn fields(&self) -> impl Iterator<Item = (&'a str, &'a [u8])> + '_ {
        let (owned, lent) = match &self.headers {
            Fields::Owned(v) => (v.as_slice(), &[][..]),
            Fields::Lent(h) => (&[][..], *h),
        };
        owned
            .iter()
            .copied()
            .chain(lent.iter().map(|h| (h.name, h.value)))
    }

    fn build(method: &'a str, target: &'a str, headers: Fields<'a>) -> Self {
        let mut r = Request {
            method,
            path: "",
            target: Cow::Borrowed(target),
            host: Cow::Borrowed(""),
            tls: None,
            headers,
        };
        // Absolute-form (`GET http://host/path`) carries the authority in the URI.
        let (authority, origin) = match target.split_once("://") {
            Some((_, rest)) => match rest.find('/') {
                Some(i) => (Some(&rest[..i]), &rest[i..]),
                None => (Some(rest), "/"),
            },
            None => (None, target),
        };
        let path = origin.split(['?', '#']).next().unwrap_or(origin);
        let host_raw = authority.or_else(|| {
            r.fields()
                .find(|(n, _)| n.eq_ignore_ascii_case("host"))
                .and_then(|(_, v)| std::str::from_utf8(v).ok())
        });
        r.host = host_raw.map(normalize_host).unwrap_or(Cow::Borrowed(""));
        r.path = path;
        r.target = Cow::Borrowed(origin);
        r
    }

    /// First value of header `name` (case-insensitive), if it is valid UTF-8.
    pub fn header(&self, name: &str) -> Option<&'a str> {
        self.fields()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
            .map(str::trim)
    }

    /// Value of cookie `name` from any `Cookie` header (RFC 6265 `a=b; c=d`).
    pub fn cookie(&self, name: &str) -> Option<&'a str> {
        self.fields()
            .filter(|(n, _)| n.eq_ignore_ascii_case("cookie"))
            .filter_map(|(_, v)| std::str::from_utf8(v).ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.trim().trim_matches('"'))
    }

    /// Extension of the last path segment, without the dot (`/a/b.PNG` → `PNG`).
    pub fn extension(&self) -> Option<&'a str> {
        let last = self.path.rsplit('/').next()?;
        let (stem, ext) = last.rsplit_once('.')?;
        if stem.is_empty() || ext.is_empty() {
            return None;
        }
        Some(ext)
    }
}

/// The request line and header fields of `raw`, the fields in `storage`.
///
/// The switch's own head parser does the work, with its checks (one Host,
/// no Content-Length with Transfer-Encoding, HTTP/1.1 needs Host, a valid
/// target): a head the workers refuse is refused here too.
#[allow(clippy::type_complexity)]
fn parse_head<'a, 's>(
    raw: &'a [u8],
    storage: &'s mut [httparse::Header<'a>],
) -> Result<(&'a str, &'a str, &'s [httparse::Header<'a>]), RequestError> {
    match dataplane::http::parse_request(raw, storage) {
        Ok(head) => Ok((head.method, head.path, head.headers)),
        Err(HttpError::Incomplete) => Err(RequestError::Incomplete),
        Err(HttpError::TooLarge) => Err(RequestError::Malformed("too many headers")),
        Err(HttpError::Malformed(why)) => Err(RequestError::Malformed(why)),
    }
}

fn normalize_host(h: &str) -> Cow<'_, str> {
    let h = h.trim();
    // Strip a port, but not the colons of a bracketed IPv6 literal.
    let h = if let Some(rest) = h.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        h.rsplit_once(':').map(|(a, _)| a).unwrap_or(h)
    };
    let h = h.trim_end_matches('.');
    if h.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(h.to_ascii_lowercase())
    } else {
        Cow::Borrowed(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_origin_form_with_host_and_cookies() {
        let raw = b"GET /img/Logo.PNG?v=3 HTTP/1.1\r\nHost: WWW.Example.com:8080\r\nCookie: a=1; BATON_BACKEND=app-2\r\nX-Tier: gold\r\n\r\n";
        let r = Request::parse(raw).unwrap();
        assert_eq!(r.method, "GET");
        assert_eq!(r.path, "/img/Logo.PNG");
        assert_eq!(r.target, "/img/Logo.PNG?v=3");
        assert_eq!(r.host, "www.example.com");
        assert_eq!(r.extension(), Some("PNG"));
        assert_eq!(r.cookie("BATON_BACKEND"), Some("app-2"));
        assert_eq!(r.cookie("a"), Some("1"));
        assert_eq!(r.cookie("b"), None);
        assert_eq!(r.header("x-tier"), Some("gold"));
    }

    #[test]
    fn absolute_form_uses_the_uri_authority() {
        let r = Request::parse(b"GET http://Shop.example/api/x HTTP/1.1\r\nHost: other\r\n\r\n")
            .unwrap();
        assert_eq!(r.host, "shop.example");
        assert_eq!(r.path, "/api/x");
    }

    #[test]
    fn http10_without_host_and_ipv6_hosts() {
        let r = Request::parse(b"GET / HTTP/1.0\r\n\r\n").unwrap();
        assert_eq!(r.host, "");
        assert_eq!(r.extension(), None);
        let r = Request::parse(b"GET /.hidden HTTP/1.1\r\nHost: [2001:db8::1]:80\r\n\r\n").unwrap();
        assert_eq!(r.host, "2001:db8::1");
        assert_eq!(r.extension(), None);
    }

    #[test]
    fn refuses_what_the_workers_refuse() {
        for (raw, why) in [
            (&b"GET / HTTP/1.1\r\n\r\n"[..], "HTTP/1.1 without Host"),
            (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "more than one Host"),
            (
                b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
                "Content-Length with Transfer-Encoding",
            ),
        ] {
            assert_eq!(Request::parse(raw).unwrap_err(), RequestError::Malformed(why));
            let mut h = [httparse::EMPTY_HEADER; 8];
            assert!(dataplane::http::parse_request(raw, &mut h).is_err());
        }
    }

    #[test]
    fn garbage_is_a_typed_error() {
        assert_eq!(
            Request::parse(b"GET / HTTP/1.1\r\nHost: a\r\n").unwrap_err(),
            RequestError::Incomplete
        );
        assert!(matches!(
            Request::parse(b"\x00\x01\x02 nonsense\r\n\r\n"),
            Err(RequestError::Malformed(_))
        ));
    }

    proptest::proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            if let Ok(r) = Request::parse(&bytes) {
                let _ = (r.extension(), r.cookie("x"), r.header("host"));
            }
        }
    }
}
