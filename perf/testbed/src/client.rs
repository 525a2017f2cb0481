//! A small blocking HTTP/1.1 client over std `TcpStream`, for the cases the
//! ready-made clients cannot express: many requests on one connection,
//! a request dribbled out in tiny segments, thousands of concurrent
//! connections, scraping `/metrics`. Call it inside [`crate::netns::in_ns`].

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// A parsed response.
#[derive(Debug, Clone, Default)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Header fields (names lower-cased).
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of a header (name case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let n = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == n)
            .map(|(_, v)| v.as_str())
    }

    /// Who served it: `X-Backend` (nginx in the bed) or `X-Served-By` (the
    /// agent's listener example).
    pub fn backend(&self) -> Option<&str> {
        self.header("x-backend")
            .or_else(|| self.header("x-served-by"))
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// Connects with a timeout and sets read/write timeouts.
pub fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    Ok(s)
}

/// The `Host` field for a request to `addr`: the address alone, an IPv6
/// one in brackets (`[2001:2::10]`).
pub fn host_of(addr: SocketAddr) -> String {
    crate::addr::url_host(addr.ip())
}

/// A GET request's bytes.
pub fn get_request(host: &str, path: &str, keep_alive: bool, extra: &[(&str, &str)]) -> Vec<u8> {
    let mut r = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: baton-testbed\r\n");
    if !keep_alive {
        r.push_str("Connection: close\r\n");
    }
    for (k, v) in extra {
        r.push_str(&format!("{k}: {v}\r\n"));
    }
    r.push_str("\r\n");
    r.into_bytes()
}

/// Reads one response from a stream (Content-Length, chunked, or until EOF),
/// keeping any bytes beyond it in `buf` for the next call.
pub fn read_response(s: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<Response> {
    let mut chunk = [0u8; 65536];
    let head_end = loop {
        if let Some(p) = find(buf, b"\r\n\r\n") {
            break p + 4;
        }
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "closed before a response header",
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| invalid(format!("bad status line `{status_line}`")))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    buf.drain(..head_end);
    let mut resp = Response {
        status,
        headers,
        body: Vec::new(),
    };
    let chunked = resp
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
    if let Some(len) = resp.header("content-length") {
        let len: usize = len.parse().map_err(|_| invalid("bad content-length"))?;
        while buf.len() < len {
            let n = s.read(&mut chunk)?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("body cut at {} of {len}", buf.len()),
                ));
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        resp.body = buf.drain(..len).collect();
    } else if chunked {
        loop {
            let line_end = loop {
                if let Some(p) = find(buf, b"\r\n") {
                    break p;
                }
                let n = s.read(&mut chunk)?;
                if n == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "chunked body cut",
                    ));
                }
                buf.extend_from_slice(&chunk[..n]);
            };
            let size_txt = String::from_utf8_lossy(&buf[..line_end]).into_owned();
            let size = usize::from_str_radix(size_txt.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| invalid(format!("bad chunk size `{size_txt}`")))?;
            while buf.len() < line_end + 2 + size + 2 {
                let n = s.read(&mut chunk)?;
                if n == 0 {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "chunk cut"));
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            resp.body
                .extend_from_slice(&buf[line_end + 2..line_end + 2 + size]);
            buf.drain(..line_end + 2 + size + 2);
            if size == 0 {
                break;
            }
        }
    } else if status >= 200 && status != 204 && status != 304 {
        s.read_to_end(buf)?;
        resp.body = std::mem::take(buf);
    }
    Ok(resp)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// One GET on a new connection (`Connection: close`).
pub fn get(
    addr: SocketAddr,
    path: &str,
    extra: &[(&str, &str)],
    timeout: Duration,
) -> io::Result<Response> {
    let mut s = connect(addr, timeout)?;
    s.write_all(&get_request(&host_of(addr), path, false, extra))?;
    read_response(&mut s, &mut Vec::new())
}

/// `n` GETs of `path` on one keep-alive connection; every response.
pub fn keep_alive(
    addr: SocketAddr,
    path: &str,
    n: usize,
    timeout: Duration,
) -> io::Result<Vec<Response>> {
    let mut s = connect(addr, timeout)?;
    let mut buf = Vec::new();
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        s.write_all(&get_request(&host_of(addr), path, true, &[]))?;
        out.push(read_response(&mut s, &mut buf)?);
    }
    Ok(out)
}

/// Sends `request` in segments of `seg` bytes (TCP_NODELAY, a pause between
/// them so each leaves as its own segment), then reads the response.
pub fn dribble(
    addr: SocketAddr,
    request: &[u8],
    seg: usize,
    pause: Duration,
    timeout: Duration,
) -> io::Result<Response> {
    let mut s = connect(addr, timeout)?;
    s.set_nodelay(true)?;
    for part in request.chunks(seg.max(1)) {
        s.write_all(part)?;
        std::thread::sleep(pause);
    }
    read_response(&mut s, &mut Vec::new())
}

/// Sends `request` to `addr` from namespace `ns` in two segments that
/// arrive out of order: the client's own kernel sends `request[..cut]`
/// and at once `request[cut..]`, and a firewall rule in `ns` (iptables or
/// ip6tables by `addr`'s family) drops the first transmission of the first
/// segment, which the kernel then retransmits. The receiver gets the second
/// part before the first. Returns the response and how many segments the
/// rule dropped (1 when the request really was reordered). `cut` must
/// leave at least 16 bytes in the first part (they name it to the rule);
/// one such request runs at a time per namespace.
pub fn out_of_order(
    ns: &str,
    addr: SocketAddr,
    request: &[u8],
    cut: usize,
    timeout: Duration,
) -> crate::Result<(Response, u64)> {
    use crate::error::BedError;
    if cut < 16 || cut >= request.len() {
        return Err(BedError::Setup(format!(
            "cut {cut} of a {}-byte request",
            request.len()
        )));
    }
    let first = &request[..cut];
    // The first segment's marker: its first 16 bytes, in hex for the rule.
    let marker: String = first[..16].iter().map(|b| format!("{b:02x}")).collect();
    let tool = if addr.is_ipv6() {
        "ip6tables"
    } else {
        "iptables"
    };
    let (dst, port) = (addr.ip().to_string(), addr.port().to_string());
    let hex = format!("|{marker}|");
    // `nth` counting from the first match: that one is dropped, the next
    // million pass.
    let rule = [
        "OUTPUT",
        "-p",
        "tcp",
        "-d",
        &dst,
        "--dport",
        &port,
        "-m",
        "string",
        "--hex-string",
        &hex,
        "--algo",
        "bm",
        "-m",
        "statistic",
        "--mode",
        "nth",
        "--every",
        "1000000",
        "--packet",
        "0",
        "-j",
        "DROP",
    ];
    let mut add = vec!["-I"];
    add.extend_from_slice(&rule);
    crate::netns::run(Some(ns), tool, &add)?;
    let (a, b) = (first.to_vec(), request[cut..].to_vec());
    let r = crate::netns::in_ns(ns, move || -> io::Result<Response> {
        let mut s = connect(addr, timeout)?;
        s.set_nodelay(true)?;
        s.write_all(&a)?;
        s.write_all(&b)?;
        read_response(&mut s, &mut Vec::new())
    });
    let listed = crate::netns::run_stdout(Some(ns), tool, &["-L", "OUTPUT", "-v", "-n", "-x"]);
    let mut del = vec!["-D"];
    del.extend_from_slice(&rule);
    let _ = crate::netns::run(Some(ns), tool, &del);
    let dropped = listed?
        .lines()
        .find(|l| l.contains("DROP") && l.contains("STRING"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let resp = r?.map_err(|e| BedError::io(format!("out-of-order request to {addr}"), e))?;
    Ok((resp, dropped))
}

/// Sums the samples of a Prometheus text exposition whose name is `name`
/// and whose labels include every `k="v"` in `labels`.
pub fn metric_sum(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut found = false;
    let mut sum = 0.0;
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let (series, value) = match line.rsplit_once(' ') {
            Some(x) => x,
            None => continue,
        };
        let (n, lbl) = match series.split_once('{') {
            Some((n, l)) => (n, l.trim_end_matches('}')),
            None => (series, ""),
        };
        if n != name {
            continue;
        }
        if !labels
            .iter()
            .all(|(k, v)| lbl.split(',').any(|p| p == format!("{k}=\"{v}\"")))
        {
            continue;
        }
        if let Ok(v) = value.parse::<f64>() {
            sum += v;
            found = true;
        }
    }
    found.then_some(sum)
}

/// A GET read slowly: a receive buffer of `rcvbuf` bytes (set before the
/// handshake, so the window the client announces stays small) and at most
/// `chunk` bytes read every `pause`. The download then lasts about
/// `length / chunk × pause`, whatever the path's speed: what a test needs
/// to keep connections in FORWARDING across an event. `timeout` bounds each
/// read.
pub fn slow_get(
    addr: SocketAddr,
    path: &str,
    rcvbuf: usize,
    chunk: usize,
    pause: Duration,
    timeout: Duration,
) -> io::Result<Response> {
    slow_get_stalls(addr, path, rcvbuf, chunk, pause, timeout).map(|(r, _)| r)
}

/// [`slow_get`], also returning every stall: each wait for a read longer
/// than twice `pause` beyond the pause itself (the time the transfer stood
/// still, e.g. while the switch restarted).
pub fn slow_get_stalls(
    addr: SocketAddr,
    path: &str,
    rcvbuf: usize,
    chunk: usize,
    pause: Duration,
    timeout: Duration,
) -> io::Result<(Response, Vec<Duration>)> {
    let mut stalls = Vec::new();
    let mut s = connect_small_window(addr, rcvbuf, timeout)?;
    s.write_all(&get_request(&host_of(addr), path, false, &[]))?;
    let mut buf = Vec::new();
    let mut piece = vec![0u8; chunk.max(1)];
    loop {
        let t = std::time::Instant::now();
        let n = s.read(&mut piece)?;
        if n == 0 {
            break;
        }
        let waited = t.elapsed();
        if waited > pause * 2 {
            stalls.push(waited);
        }
        buf.extend_from_slice(&piece[..n]);
        if find(&buf, b"\r\n\r\n").is_some_and(|h| {
            let head = String::from_utf8_lossy(&buf[..h]).to_ascii_lowercase();
            head.split("\r\n")
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .is_some_and(|len| buf.len() >= h + 4 + len)
        }) {
            break;
        }
        std::thread::sleep(pause);
    }
    parse_whole(&buf).map(|r| (r, stalls))
}

/// Parses one whole response held in memory.
fn parse_whole(data: &[u8]) -> io::Result<Response> {
    let h = find(data, b"\r\n\r\n").ok_or_else(|| invalid("no response header"))?;
    let head = String::from_utf8_lossy(&data[..h]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| invalid("bad status line"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut resp = Response {
        status,
        headers,
        body: data[h + 4..].to_vec(),
    };
    if let Some(len) = resp.header("content-length").and_then(|v| v.parse().ok()) {
        if resp.body.len() < len {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("body cut at {} of {len}", resp.body.len()),
            ));
        }
        resp.body.truncate(len);
    }
    Ok(resp)
}

/// A connected stream whose receive buffer was set to `rcvbuf` before the
/// handshake (the window scale is chosen then).
pub fn connect_small_window(
    addr: SocketAddr,
    rcvbuf: usize,
    timeout: Duration,
) -> io::Result<TcpStream> {
    let s = socket_with(addr, |fd| {
        let size = rcvbuf.min(i32::MAX as usize) as libc::c_int;
        // SAFETY: setsockopt with a c_int of the right size.
        unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                (&size as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        }
    })?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    Ok(s)
}

/// A stream connected to `addr` (either family) from a socket `before`
/// was called on first, with the raw descriptor: socket options that
/// must hold before the handshake (`TCP_MAXSEG`, `SO_RCVBUF`). `before`
/// returns setsockopt's result (non-zero: the error in `errno`). The
/// connect blocks; the kernel's SYN retries bound it.
pub fn socket_with(
    addr: SocketAddr,
    before: impl FnOnce(libc::c_int) -> libc::c_int,
) -> io::Result<TcpStream> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let family = match addr {
        SocketAddr::V4(_) => libc::AF_INET,
        SocketAddr::V6(_) => libc::AF_INET6,
    };
    // SAFETY: plain socket(2); the descriptor is owned at once.
    let fd = unsafe { libc::socket(family, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a new descriptor nobody else owns.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    if before(owned.as_raw_fd()) != 0 {
        return Err(io::Error::last_os_error());
    }
    let rc = match addr {
        SocketAddr::V4(v4) => {
            let sin = sockaddr_in(v4);
            // SAFETY: connect(2) with a sockaddr_in of its own size.
            unsafe {
                libc::connect(
                    owned.as_raw_fd(),
                    (&sin as *const libc::sockaddr_in).cast(),
                    std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
                )
            }
        }
        SocketAddr::V6(v6) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: v6.port().to_be(),
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr {
                    s6_addr: v6.ip().octets(),
                },
                sin6_scope_id: 0,
            };
            // SAFETY: connect(2) with a sockaddr_in6 of its own size.
            unsafe {
                libc::connect(
                    owned.as_raw_fd(),
                    (&sin6 as *const libc::sockaddr_in6).cast(),
                    std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
                )
            }
        }
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(TcpStream::from(owned))
}

/// `addr` as the C library's `sockaddr_in`.
pub fn sockaddr_in(addr: std::net::SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: addr.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(addr.ip().octets()),
        },
        sin_zero: [0; 8],
    }
}

/// GETs `path` back to back (with `pause` between) on one keep-alive
/// connection to `addr` until `stop` is set: (answered 200, failures). The
/// first error ends the loop (the connection is gone).
pub fn keep_alive_until(
    addr: SocketAddr,
    path: &str,
    stop: &std::sync::atomic::AtomicBool,
    pause: Duration,
) -> (usize, Vec<String>) {
    let mut ok = 0;
    let mut failed = Vec::new();
    let mut s = match connect(addr, Duration::from_secs(30)) {
        Ok(s) => s,
        Err(e) => return (0, vec![format!("connect: {e}")]),
    };
    let mut buf = Vec::new();
    let host = host_of(addr);
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let r = s
            .write_all(&get_request(&host, path, true, &[]))
            .and_then(|_| read_response(&mut s, &mut buf));
        match r {
            Ok(r) if r.status == 200 => ok += 1,
            Ok(r) => failed.push(format!("status {}", r.status)),
            Err(e) => {
                failed.push(e.to_string());
                break;
            }
        }
        std::thread::sleep(pause);
    }
    (ok, failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_metrics_by_label() {
        let t = "# HELP x y\nbaton_handoffs_total{outcome=\"acked\",worker=\"0\"} 5\nbaton_handoffs_total{outcome=\"acked\",worker=\"1\"} 7\nbaton_handoffs_total{outcome=\"nacked\",worker=\"0\"} 1\nbaton_up 1\n";
        assert_eq!(
            metric_sum(t, "baton_handoffs_total", &[("outcome", "acked")]),
            Some(12.0)
        );
        assert_eq!(metric_sum(t, "baton_handoffs_total", &[]), Some(13.0));
        assert_eq!(metric_sum(t, "baton_up", &[]), Some(1.0));
        assert_eq!(metric_sum(t, "baton_missing", &[]), None);
    }

    #[test]
    fn request_bytes() {
        let r = String::from_utf8(get_request("h", "/p", false, &[("X-A", "1")])).unwrap();
        assert_eq!(r, "GET /p HTTP/1.1\r\nHost: h\r\nUser-Agent: baton-testbed\r\nConnection: close\r\nX-A: 1\r\n\r\n");
    }
}
