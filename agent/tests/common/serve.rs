//! Client-side helpers: unmodified curl / Python http.client in the client
//! namespace, and the switch's accept-read-freeze step.

use super::bed::{Bed, VIP, VIP6};
use super::freeze::freeze;
use handoff_proto::TcpState;
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A deterministic body of `len` bytes.
pub fn body(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| b"abcdefghijklmnopqrstuvwxyz0123456789\n"[i % 37])
        .collect()
}

/// Starts curl in the client namespace; its stdout is the body.
pub fn curl(bed: &Bed, path: &str, extra: &[&str]) -> Child {
    curl_to(bed, VIP, path, extra)
}

/// Starts curl to the IPv6 VIP.
pub fn curl6(bed: &Bed, path: &str, extra: &[&str]) -> Child {
    curl_to(bed, &format!("[{VIP6}]"), path, extra)
}

/// Starts curl to `host` (an IPv4 address or a bracketed IPv6 one).
pub fn curl_to(bed: &Bed, host: &str, path: &str, extra: &[&str]) -> Child {
    let url = format!("http://{host}{path}");
    let mut args = vec![
        "netns",
        "exec",
        &bed.client,
        "curl",
        "-sS",
        "--fail",
        "--max-time",
        "20",
    ];
    args.extend_from_slice(extra);
    args.push(&url);
    Command::new("ip")
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Starts a Python `http.client` request in the client namespace.
///
/// With `rcvbuf`, the socket's receive buffer is fixed before connecting,
/// which bounds the window scale Linux announces (small buffer → shift 0).
pub fn python_get(bed: &Bed, path: &str, rcvbuf: Option<u32>) -> Child {
    python_get_to(bed, VIP, path, rcvbuf)
}

/// [`python_get`] to `vip` (either family, unbracketed).
pub fn python_get_to(bed: &Bed, vip: &str, path: &str, rcvbuf: Option<u32>) -> Child {
    let fam = if vip.contains(':') {
        "socket.AF_INET6"
    } else {
        "socket.AF_INET"
    };
    let sock = match rcvbuf {
        Some(n) => format!("s=socket.socket({fam})\ns.setsockopt(socket.SOL_SOCKET,socket.SO_RCVBUF,{n})\ns.settimeout(20)\ns.connect(('{vip}',80))\nc.sock=s\n"),
        None => String::new(),
    };
    let script = format!(
        "import http.client,sys,socket\nc=http.client.HTTPConnection('{vip}',80,timeout=20)\n{sock}c.request('GET','{path}')\nr=c.getresponse()\nsys.stdout.buffer.write(r.read())\nsys.exit(0 if r.status==200 else 3)\n"
    );
    Command::new("ip")
        .args(["netns", "exec", &bed.client, "python3", "-c", &script])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits for a client and returns its stdout, asserting success.
pub fn finish(child: Child) -> Vec<u8> {
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Binds the switch's listener on VIP:80 inside the switch namespace.
pub fn switch_listener(bed: &Bed, rcvbuf: Option<u32>) -> TcpListener {
    switch_listener_on(bed, VIP, rcvbuf)
}

/// The switch's listener on `vip`:80 (either family).
pub fn switch_listener_on(bed: &Bed, vip: &'static str, rcvbuf: Option<u32>) -> TcpListener {
    let l = bed.in_ns(&bed.switch, move || {
        TcpListener::bind((vip, 80)).expect("bind VIP:80 in switch ns")
    });
    if let Some(n) = rcvbuf {
        let v = n as libc::c_int;
        // SAFETY: v is a live c_int; accepted sockets inherit the buffer lock.
        let rc = unsafe {
            libc::setsockopt(
                l.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                &v as *const _ as *const _,
                4,
            )
        };
        assert_eq!(rc, 0);
    }
    l
}

/// Accepts one connection, reads until the header is complete (plus
/// `extra_body` bytes), holds the flow and freezes the socket; returns the
/// state and the request bytes.
pub fn accept_and_freeze(bed: &Bed, l: &TcpListener, extra_body: usize) -> (TcpState, Vec<u8>) {
    l.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let s: TcpStream = loop {
        match l.accept() {
            Ok((s, _)) => break s,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(Instant::now() < deadline, "no client connected");
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("accept: {e}"),
        }
    };
    s.set_nonblocking(false).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let mut req = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        if let Some(end) = find(&req, b"\r\n\r\n") {
            if req.len() >= end + 4 + extra_body {
                break;
            }
        }
        let n = (&s).read(&mut buf).expect("read request");
        assert!(n > 0, "client closed before the request was complete");
        req.extend_from_slice(&buf[..n]);
    }
    // Hold the flow first (no more packets reach this socket), then take
    // whatever else already arrived: all of it is part of the request the
    // switch acknowledged.
    bed.hold_flow(s.peer_addr().unwrap());
    s.set_nonblocking(true).unwrap();
    while let Ok(n) = (&s).read(&mut buf) {
        if n == 0 {
            break;
        }
        req.extend_from_slice(&buf[..n]);
    }
    let st = freeze(s, &req);
    (st, req)
}

/// Position of `needle` in `hay`.
pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Starts `tests/data/raw_client.py` in the client namespace.
pub fn raw_client(
    bed: &Bed,
    mode: &str,
    go: &std::path::Path,
    pad: usize,
    body_len: usize,
) -> Child {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/raw_client.py");
    Command::new("ip")
        .args(["netns", "exec", &bed.client, "python3", script, VIP, mode])
        .arg(go)
        .args([pad.to_string(), body_len.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// The body `raw_client.py` sends.
pub fn raw_body(len: usize) -> Vec<u8> {
    (0..len).map(|i| ((i * 7 + 3) % 251) as u8).collect()
}
