//! A bounded HTTP/1.1 server for the management endpoints: the switch's
//! admin API and `/metrics`, and the agent's `/metrics`.
//!
//! These endpoints live in the same process as the packet path, so one
//! client must not be able to exhaust its memory, threads or descriptors.
//! The server therefore
//!
//! - checks the peer against the allow list at accept, before reading a byte;
//! - serves at most `max_connections` at once; a new connection beyond that
//!   closes the oldest one still waiting for a request head (slow, stalled
//!   or idle), so a flood of slow clients cannot keep a scrape out; when
//!   every connection is inside a request, the new one is closed at once;
//! - reads a request head of at most `max_header_bytes` (larger: 431 and
//!   close) and `max_headers` lines, within `header_timeout` (also the idle
//!   time allowed between keep-alive requests);
//! - reads a body of at most `max_body_bytes` (larger: 413) within
//!   `request_timeout`, and ends any connection older than `max_connection_age`
//!   (a client that stops reading its answer);
//! - runs on one thread (a tokio current-thread runtime) plus at most
//!   `handler_threads` threads for handlers, which may block.
//!
//! Every refusal is reported to [`Handler::refused`] with a [`Refusal`],
//! whose [`Refusal::label`] is the metric label.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::Notify;

pub use hyper::header::HeaderName;
pub use hyper::{HeaderMap, Method};

/// The server's limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest request line plus header lines, in bytes (hyper's floor is 8192).
    pub max_header_bytes: usize,
    /// Most header lines in one request.
    pub max_headers: usize,
    /// Time to receive a complete request head, and most idle time between
    /// keep-alive requests.
    pub header_timeout: Duration,
    /// Largest request body, in bytes.
    pub max_body_bytes: usize,
    /// Time to receive the body and run the handler.
    pub request_timeout: Duration,
    /// Longest life of one connection.
    pub max_connection_age: Duration,
    /// Connections served at once.
    pub max_connections: usize,
    /// Threads that run handlers (they may block).
    pub handler_threads: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_header_bytes: 8192,
            max_headers: 64,
            header_timeout: Duration::from_secs(5),
            max_body_bytes: 64 * 1024,
            request_timeout: Duration::from_secs(30),
            max_connection_age: Duration::from_secs(60),
            max_connections: 64,
            handler_threads: 2,
        }
    }
}

/// Why a connection or request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// The peer is not on the allow list (closed at accept).
    NotAllowed,
    /// `max_connections` were being served, none of them idle (closed at accept).
    TooManyConnections,
    /// Closed to make room for a new connection: the oldest connection that
    /// was waiting for a request head (slow, stalled or idle keep-alive).
    Evicted,
    /// The request head exceeded `max_header_bytes` or `max_headers` (431).
    HeaderTooLarge,
    /// No complete request head within `header_timeout` (closed).
    HeaderTimeout,
    /// The request head could not be parsed (400).
    Malformed,
    /// The body exceeded `max_body_bytes` (413).
    BodyTooLarge,
    /// The body or the handler took longer than `request_timeout` (408/503).
    RequestTimeout,
    /// The connection outlived `max_connection_age` (closed).
    ConnectionAge,
}

impl Refusal {
    /// Every reason, for pre-registering metric series.
    pub const ALL: [Refusal; 9] = [
        Refusal::NotAllowed,
        Refusal::TooManyConnections,
        Refusal::Evicted,
        Refusal::HeaderTooLarge,
        Refusal::HeaderTimeout,
        Refusal::Malformed,
        Refusal::BodyTooLarge,
        Refusal::RequestTimeout,
        Refusal::ConnectionAge,
    ];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::NotAllowed => "not_allowed",
            Refusal::TooManyConnections => "too_many_connections",
            Refusal::Evicted => "evicted_waiting",
            Refusal::HeaderTooLarge => "header_too_large",
            Refusal::HeaderTimeout => "header_timeout",
            Refusal::Malformed => "malformed",
            Refusal::BodyTooLarge => "body_too_large",
            Refusal::RequestTimeout => "request_timeout",
            Refusal::ConnectionAge => "connection_age",
        }
    }
}

/// One request, head and body read in full.
#[derive(Debug)]
pub struct Request {
    pub method: Method,
    /// The path without the query.
    pub path: String,
    pub headers: HeaderMap,
    /// The client's address.
    pub peer: SocketAddr,
    /// The address the client connected to (the endpoint's own).
    pub local: SocketAddr,
    pub body: Bytes,
}

impl Request {
    /// A header's value as text (None when absent or not visible ASCII).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// One answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    /// Further headers.
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// A response with a body and its type.
    pub fn new(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Self {
        Response {
            status,
            content_type,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// Adds a header.
    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    fn text(status: u16, body: &str) -> Self {
        Response::new(status, "text/plain; charset=utf-8", format!("{body}\n"))
    }
}

/// What the server calls.
pub trait Handler: Send + Sync + 'static {
    /// Answers one request (on a handler thread: it may block).
    fn handle(&self, req: Request) -> Response;
    /// Counts one refusal.
    fn refused(&self, why: Refusal);
}

/// Which peers may connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Allow {
    /// Any address.
    Any,
    /// Only these (IPv4-mapped IPv6 peers compare as IPv4).
    Only(Vec<IpAddr>),
}

impl Allow {
    /// Whether `ip` may connect.
    pub fn admits(&self, ip: IpAddr) -> bool {
        match self {
            Allow::Any => true,
            Allow::Only(list) => {
                let ip = ip.to_canonical();
                list.iter().any(|a| a.to_canonical() == ip)
            }
        }
    }
}

/// A running server; stops when dropped (open connections are cut).
pub struct Server {
    addr: SocketAddr,
    stop: Arc<Notify>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Binds `listen` and serves from a thread named `name`.
    pub fn start(
        name: &str,
        listen: SocketAddr,
        allow: Allow,
        limits: Limits,
        handler: Arc<dyn Handler>,
    ) -> std::io::Result<Server> {
        let listener = std::net::TcpListener::bind(listen)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .max_blocking_threads(limits.handler_threads.max(1))
            .thread_name(format!("{name}-handler"))
            .build()?;
        let stop = Arc::new(Notify::new());
        let s = stop.clone();
        let thread = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                rt.block_on(async move {
                    match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => accept_loop(l, allow, Arc::new(limits), handler, s).await,
                        Err(e) => eprintln!("management endpoint: {e}"),
                    }
                });
                // Handlers still blocked (e.g. on the control loop) are not waited for.
                rt.shutdown_timeout(Duration::from_secs(1));
            })?;
        Ok(Server {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    /// The bound address (useful when listening on port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The connections being served, oldest first: each one's task (to close
/// it) and whether it is inside a request (then it is never evicted).
#[derive(Default)]
struct Open {
    next: u64,
    conns: BTreeMap<u64, (tokio::task::AbortHandle, Arc<AtomicBool>)>,
}

impl Open {
    /// Closes the oldest connection that waits for a request head, if any.
    fn evict_waiting(&mut self) -> bool {
        let victim = self
            .conns
            .iter()
            .find(|(_, (_, busy))| !busy.load(Ordering::Relaxed))
            .map(|(id, _)| *id);
        match victim.and_then(|id| self.conns.remove(&id)) {
            Some((task, _)) => {
                task.abort();
                true
            }
            None => false,
        }
    }
}

/// Takes a connection off the open set when its task ends (or is aborted).
struct Slot(Arc<Mutex<Open>>, u64);

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut o) = self.0.lock() {
            o.conns.remove(&self.1);
        }
    }
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    allow: Allow,
    limits: Arc<Limits>,
    handler: Arc<dyn Handler>,
    stop: Arc<Notify>,
) {
    let open = Arc::new(Mutex::new(Open::default()));
    loop {
        let accepted = tokio::select! {
            _ = stop.notified() => return,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(_) => {
                // Out of descriptors or a connection reset before accept: back
                // off briefly rather than spin.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if !allow.admits(peer.ip()) {
            handler.refused(Refusal::NotAllowed);
            continue;
        }
        // At the limit, the oldest connection still waiting for a request
        // head makes room: slow or stalled clients cannot keep a scrape out
        // for a whole header timeout. Connections inside a request stay.
        let Ok(mut o) = open.lock() else { return };
        if o.conns.len() >= limits.max_connections {
            if !o.evict_waiting() {
                handler.refused(Refusal::TooManyConnections);
                continue;
            }
            handler.refused(Refusal::Evicted);
        }
        o.next += 1;
        let id = o.next;
        let busy = Arc::new(AtomicBool::new(false));
        let slot = Slot(open.clone(), id);
        let (limits, handler, b) = (limits.clone(), handler.clone(), busy.clone());
        let task = tokio::spawn(async move {
            let _slot = slot;
            serve(stream, peer, limits, handler, b).await;
        });
        // The runtime is single-threaded: the task cannot have run (and
        // removed itself) before it is listed here.
        o.conns.insert(id, (task.abort_handle(), busy));
    }
}

async fn serve(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    limits: Arc<Limits>,
    handler: Arc<dyn Handler>,
    busy: Arc<AtomicBool>,
) {
    let local = match stream.local_addr() {
        Ok(a) => a,
        Err(_) => return,
    };
    let h = handler.clone();
    let l = limits.clone();
    let svc = service_fn(move |req: hyper::Request<Incoming>| {
        let (h, l, busy) = (h.clone(), l.clone(), busy.clone());
        async move {
            busy.store(true, Ordering::Relaxed);
            let resp = answer(req, peer, local, &l, h).await;
            busy.store(false, Ordering::Relaxed);
            Ok::<_, Infallible>(into_hyper(resp))
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .max_header_size(limits.max_header_bytes)
        .max_headers(limits.max_headers)
        .keep_alive(true);
    let conn = builder.serve_connection(TokioIo::new(stream), svc);
    match tokio::time::timeout(limits.max_connection_age, conn).await {
        Err(_) => handler.refused(Refusal::ConnectionAge),
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            if e.is_parse_too_large() {
                handler.refused(Refusal::HeaderTooLarge)
            } else if e.is_timeout() {
                handler.refused(Refusal::HeaderTimeout)
            } else if e.is_parse() {
                handler.refused(Refusal::Malformed)
            }
            // Anything else is the client going away.
        }
    }
}

async fn answer(
    req: hyper::Request<Incoming>,
    peer: SocketAddr,
    local: SocketAddr,
    limits: &Limits,
    handler: Arc<dyn Handler>,
) -> Response {
    let (parts, body) = req.into_parts();
    let deadline = tokio::time::Instant::now() + limits.request_timeout;
    let body = Limited::new(body, limits.max_body_bytes).collect();
    let body = match tokio::time::timeout_at(deadline, body).await {
        Err(_) => {
            handler.refused(Refusal::RequestTimeout);
            return Response::text(408, "request body not received in time")
                .with_header("Connection", "close");
        }
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            handler.refused(Refusal::BodyTooLarge);
            return Response::text(
                413,
                &format!("request body larger than {} bytes", limits.max_body_bytes),
            )
            .with_header("Connection", "close");
        }
        Ok(Err(_)) => return Response::text(400, "request body cut short"),
        Ok(Ok(b)) => b.to_bytes(),
    };
    let req = Request {
        method: parts.method,
        path: parts.uri.path().to_string(),
        headers: parts.headers,
        peer,
        local,
        body,
    };
    let h = handler.clone();
    let job = tokio::task::spawn_blocking(move || h.handle(req));
    match tokio::time::timeout_at(deadline, job).await {
        Ok(Ok(r)) => r,
        Ok(Err(_)) => Response::text(500, "handler failed"),
        Err(_) => {
            handler.refused(Refusal::RequestTimeout);
            Response::text(503, "no answer in time")
        }
    }
}

fn into_hyper(r: Response) -> hyper::Response<Full<Bytes>> {
    let mut out = hyper::Response::new(Full::new(Bytes::from(r.body)));
    *out.status_mut() =
        hyper::StatusCode::from_u16(r.status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    out.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(r.content_type));
    for (k, v) in r.headers {
        if let (Ok(k), Ok(v)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(&v),
        ) {
            out.headers_mut().append(k, v);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_list_compares_mapped_addresses_as_ipv4() {
        let a = Allow::Only(vec!["127.0.0.1".parse().unwrap()]);
        assert!(a.admits("127.0.0.1".parse().unwrap()));
        assert!(a.admits("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!a.admits("127.0.0.2".parse().unwrap()));
        assert!(!a.admits("::1".parse().unwrap()));
        assert!(Allow::Any.admits("198.51.100.1".parse().unwrap()));
    }

    #[test]
    fn labels_are_distinct() {
        let mut l: Vec<_> = Refusal::ALL.iter().map(|r| r.label()).collect();
        l.sort();
        l.dedup();
        assert_eq!(l.len(), Refusal::ALL.len());
    }
}
