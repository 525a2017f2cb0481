//! HTTP/1.x request heads: finding the end, parsing (httparse), and the
//! switch's own responses.
//!
//! The worker only needs to know where the header ends and whether it is well
//! formed; routing rules (control plane, and workers deciding locally) need
//! method, path, Host and every field. Both go through [`parse_request`] —
//! the control plane's `Request::parse` is a view over it — so the two planes
//! never disagree on what a request is (one Host, no Content-Length with
//! Transfer-Encoding, HTTP/1.1 carries Host). The end search is incremental ([`HeaderScanner`]) so a client
//! sending a header one byte per segment costs O(n), not O(n²).

/// Why a request head is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    /// Not a valid HTTP/1.0 or HTTP/1.1 request head (400).
    #[error("malformed request head: {0}")]
    Malformed(&'static str),
    /// More bytes or more fields than allowed (431).
    #[error("request head too large")]
    TooLarge,
    /// The head does not end within the bytes given (the switch only parses
    /// a head its scanner found complete, so it answers 400 if it ever sees this).
    #[error("request head is incomplete")]
    Incomplete,
}

impl HttpError {
    /// The status the switch answers with.
    pub fn status(self) -> u16 {
        match self {
            HttpError::Malformed(_) | HttpError::Incomplete => 400,
            HttpError::TooLarge => 431,
        }
    }
}

/// A parsed request head; borrows the header bytes.
#[derive(Debug)]
pub struct RequestHead<'h, 'b> {
    pub method: &'b str,
    pub path: &'b str,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version: u8,
    /// The Host field (without surrounding whitespace), when present.
    pub host: Option<&'b str>,
    /// Every header field, in order.
    pub headers: &'h [httparse::Header<'b>],
    /// Bytes of the head, request line to the blank line inclusive.
    pub len: usize,
}

impl<'h, 'b> RequestHead<'h, 'b> {
    /// The first field named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&'b [u8]> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    }
}

/// Parses a complete request head (request line to blank line) from `buf`.
/// Bytes after the head are ignored. `headers` bounds the field count.
pub fn parse_request<'h, 'b>(
    buf: &'b [u8],
    headers: &'h mut [httparse::Header<'b>],
) -> Result<RequestHead<'h, 'b>, HttpError> {
    let mut req = httparse::Request::new(headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Err(HttpError::Incomplete),
        Err(httparse::Error::TooManyHeaders) => return Err(HttpError::TooLarge),
        Err(e) => return Err(HttpError::Malformed(httparse_reason(e))),
    };
    let method = req.method.ok_or(HttpError::Malformed("no method"))?;
    let path = req.path.ok_or(HttpError::Malformed("no target"))?;
    let version = req.version.ok_or(HttpError::Malformed("no version"))?;
    let headers: &'h [httparse::Header<'b>] = req.headers;
    let mut host = None;
    let (mut cl, mut te) = (false, false);
    for h in headers.iter() {
        if h.name.eq_ignore_ascii_case("host") {
            if host.is_some() {
                return Err(HttpError::Malformed("more than one Host"));
            }
            let v =
                std::str::from_utf8(h.value).map_err(|_| HttpError::Malformed("Host not text"))?;
            host = Some(v.trim());
        } else if h.name.eq_ignore_ascii_case("content-length") {
            cl = true;
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            te = true;
        }
    }
    if version == 1 && host.is_none() {
        // RFC 9112 §3.2: a server MUST respond 400 to an HTTP/1.1 request without Host.
        return Err(HttpError::Malformed("HTTP/1.1 without Host"));
    }
    if cl && te {
        // RFC 9112 §6.1: both framings at once is a smuggling vector; refuse.
        return Err(HttpError::Malformed(
            "Content-Length with Transfer-Encoding",
        ));
    }
    if !path.starts_with('/') && path != "*" && !path.contains("://") {
        return Err(HttpError::Malformed("bad request target"));
    }
    Ok(RequestHead {
        method,
        path,
        version,
        host,
        headers,
        len,
    })
}

fn httparse_reason(e: httparse::Error) -> &'static str {
    match e {
        httparse::Error::HeaderName => "bad header name",
        httparse::Error::HeaderValue => "bad header value",
        httparse::Error::NewLine => "bad line ending",
        httparse::Error::Status => "bad status",
        httparse::Error::Token => "bad token",
        httparse::Error::TooManyHeaders => "too many headers",
        httparse::Error::Version => "bad version",
    }
}

/// Incremental search for the end of a request head: an empty line after
/// the request line, where a line may end in `\r\n` or a bare `\n` (as
/// httparse accepts), so `\r\n\r\n`, `\n\n`, `\n\r\n` and `\r\n\n` all
/// end it. Empty lines before the request line are skipped, as httparse
/// skips them, so the scanner and the parser always agree on where a head
/// ends. Keeps the scan position between calls.
#[derive(Debug, Clone, Copy, Default)]
pub struct HeaderScanner {
    pos: usize,
    /// A byte other than CR or LF has been seen (the request line began).
    started: bool,
}

impl HeaderScanner {
    /// Starts a new scan.
    pub fn new() -> Self {
        HeaderScanner {
            pos: 0,
            started: false,
        }
    }

    /// Looks at `buf` (the contiguous bytes received so far, a prefix that
    /// only grows); returns the head length when its end is in it.
    pub fn find_end(&mut self, buf: &[u8]) -> Option<usize> {
        let mut i = self.pos;
        while i < buf.len() {
            match buf[i] {
                b'\n' if self.started => {
                    // The line before this LF is empty: LF LF or LF CR LF.
                    if i >= 1 && buf[i - 1] == b'\n' {
                        return Some(i + 1);
                    }
                    if i >= 2 && buf[i - 1] == b'\r' && buf[i - 2] == b'\n' {
                        return Some(i + 1);
                    }
                }
                b'\r' | b'\n' => {}
                _ => self.started = true,
            }
            i += 1;
        }
        self.pos = buf.len();
        None
    }
}

/// The complete response the switch sends for `status`, with
/// `Connection: close` (the switch closes after it).
pub fn response(status: u16) -> &'static [u8] {
    match status {
        400 => b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 16\r\nConnection: close\r\n\r\n400 Bad Request\n",
        408 => b"HTTP/1.1 408 Request Timeout\r\nContent-Type: text/plain\r\nContent-Length: 20\r\nConnection: close\r\n\r\n408 Request Timeout\n",
        431 => b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: text/plain\r\nContent-Length: 36\r\nConnection: close\r\n\r\n431 Request Header Fields Too Large\n",
        502 => b"HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain\r\nContent-Length: 16\r\nConnection: close\r\n\r\n502 Bad Gateway\n",
        504 => b"HTTP/1.1 504 Gateway Timeout\r\nContent-Type: text/plain\r\nContent-Length: 20\r\nConnection: close\r\n\r\n504 Gateway Timeout\n",
        403 => b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: 14\r\nConnection: close\r\n\r\n403 Forbidden\n",
        404 => b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 14\r\nConnection: close\r\n\r\n404 Not Found\n",
        _ => b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 24\r\nRetry-After: 1\r\nConnection: close\r\n\r\n503 Service Unavailable\n",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(b: &[u8]) -> Result<(String, String, Option<String>), HttpError> {
        let mut h = [httparse::EMPTY_HEADER; 16];
        parse_request(b, &mut h).map(|r| {
            (
                r.method.to_string(),
                r.path.to_string(),
                r.host.map(str::to_string),
            )
        })
    }

    #[test]
    fn parses_11_and_10() {
        let r =
            parse(b"GET /img/a.png HTTP/1.1\r\nHost: example.com \r\nX: y\r\n\r\nBODY").unwrap();
        assert_eq!(
            r,
            (
                "GET".into(),
                "/img/a.png".into(),
                Some("example.com".into())
            )
        );
        let r = parse(b"GET / HTTP/1.0\r\n\r\n").unwrap();
        assert_eq!(r.2, None);
    }

    #[test]
    fn refuses_bad_heads() {
        assert_eq!(parse(b"GET / HTTP/1.1\r\n\r\n").unwrap_err().status(), 400);
        assert_eq!(
            parse(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
                .unwrap_err()
                .status(),
            400
        );
        assert_eq!(
            parse(b"\x01GET / HTTP/1.1\r\n\r\n").unwrap_err().status(),
            400
        );
        assert_eq!(
            parse(b"GET / HTTP/2.0\r\nHost: a\r\n\r\n")
                .unwrap_err()
                .status(),
            400
        );
        assert_eq!(
            parse(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n")
                .unwrap_err()
                .status(),
            400
        );
        let mut many = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
        for i in 0..20 {
            many.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(parse(&many).unwrap_err().status(), 431);
    }

    #[test]
    fn scanner_finds_end_across_calls() {
        let full = b"GET / HTTP/1.1\r\nHost: a\r\n\r\nrest";
        let mut s = HeaderScanner::new();
        for n in 0..full.len() {
            let got = s.find_end(&full[..n]);
            if n < 27 {
                assert_eq!(got, None, "n={n}");
            } else {
                assert_eq!(got, Some(27));
                return;
            }
        }
        panic!("end not found");
    }

    /// Every way httparse lets a head end (and begin) is found by the
    /// scanner at the same length, whether the bytes come at once or one
    /// by one.
    #[test]
    fn scanner_agrees_with_httparse_on_line_endings() {
        let eols: [&[u8]; 2] = [b"\r\n", b"\n"];
        for pre in [&b""[..], b"\r\n", b"\n", b"\r\n\n"] {
            for a in eols {
                for b in eols {
                    for c in eols {
                        let mut req = pre.to_vec();
                        req.extend_from_slice(b"GET / HTTP/1.1");
                        req.extend_from_slice(a);
                        req.extend_from_slice(b"Host: h");
                        req.extend_from_slice(b);
                        req.extend_from_slice(c);
                        let want = {
                            let mut h = [httparse::EMPTY_HEADER; 4];
                            match httparse::Request::new(&mut h).parse(&req) {
                                Ok(httparse::Status::Complete(n)) => n,
                                other => panic!("{req:?}: {other:?}"),
                            }
                        };
                        assert_eq!(HeaderScanner::new().find_end(&req), Some(want), "{req:?}");
                        let mut s = HeaderScanner::new();
                        let got = (1..=req.len()).find_map(|n| s.find_end(&req[..n]));
                        assert_eq!(got, Some(want), "{req:?} byte by byte");
                        req.extend_from_slice(b"BODY\n\n");
                        assert_eq!(HeaderScanner::new().find_end(&req), Some(want));
                    }
                }
            }
        }
    }

    #[test]
    fn responses_have_right_length() {
        for s in [400, 403, 404, 408, 431, 502, 503, 504] {
            let r = std::str::from_utf8(response(s)).unwrap();
            let (head, body) = r.split_once("\r\n\r\n").unwrap();
            let cl: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .unwrap()
                .parse()
                .unwrap();
            assert_eq!(cl, body.len(), "{s}");
            assert!(head.starts_with(&format!("HTTP/1.1 {s} ")));
        }
    }
}
