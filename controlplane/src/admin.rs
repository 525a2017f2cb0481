//! The management endpoint (kernel TCP/IP stack, management address):
//!
//! | method | path | what |
//! |---|---|---|
//! | GET | `/metrics` | Prometheus text format |
//! | GET | `/healthz` | 200 `{"status":"ok",...}` while serving, 503 while stopping |
//! | GET | `/backends` | backends with health, load and pools (JSON) |
//! | POST | `/reload` | re-read the profile; 200 with the new generation, 400 with the errors |
//! | POST | `/backends/NAME/drain` | stop sending new requests to NAME |
//! | POST | `/backends/NAME/undrain` | resume |
//!
//! State-changing calls are refused (403) from addresses outside
//! `admin.allow` when that list is set.

use std::collections::HashMap;
use std::io::Cursor;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::Sender;
use serde_json::json;
use tiny_http::{Header, Method, Response, Server};

use crate::config::load_file_with;
use crate::control::{AdminRequest, ControlPlane, ReloadOutcome};
use crate::metrics::Metrics;

/// How long an admin call waits for the control loop.
const LOOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Re-reads the profile and hands it to the control loop (SIGHUP and `/reload`).
pub struct Reloader {
    pub path: PathBuf,
    pub props: HashMap<String, String>,
    pub admin_tx: Sender<AdminRequest>,
    pub metrics: Arc<Metrics>,
}

impl Reloader {
    /// Loads and validates the profile file, then swaps it in.
    pub fn reload(&self) -> Result<ReloadOutcome, String> {
        let loaded = match load_file_with(&self.path, &self.props) {
            Ok(l) => l,
            Err(e) => {
                ControlPlane::count_failed_reload(&self.metrics);
                tracing::error!(errors = %e, "reload rejected: the running profile stays");
                return Err(e.to_string());
            }
        };
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.admin_tx
            .send(AdminRequest::Reload {
                profile: Box::new(loaded.profile),
                reply: tx,
            })
            .map_err(|_| "control plane is not running".to_string())?;
        rx.recv_timeout(LOOP_TIMEOUT)
            .map_err(|_| "control plane did not answer".to_string())?
    }
}

/// What the endpoint needs.
pub struct AdminContext {
    pub metrics: Arc<Metrics>,
    pub admin_tx: Sender<AdminRequest>,
    pub generation: Arc<AtomicU64>,
    pub reloader: Arc<Reloader>,
    pub allow: Vec<IpAddr>,
    pub profile_name: String,
    /// Set during a graceful stop: `/healthz` answers 503.
    pub stopping: Arc<AtomicBool>,
}

/// The running endpoint; stops when dropped.
pub struct AdminServer {
    server: Arc<Server>,
    thread: Option<JoinHandle<()>>,
    addr: SocketAddr,
}

impl AdminServer {
    /// Binds `listen` and serves from a background thread.
    pub fn start(listen: SocketAddr, ctx: AdminContext) -> Result<Self, String> {
        let server =
            Arc::new(Server::http(listen).map_err(|e| format!("cannot listen on {listen}: {e}"))?);
        let addr = server.server_addr().to_ip().unwrap_or(listen);
        let s = server.clone();
        let thread = std::thread::Builder::new()
            .name("admin".into())
            .spawn(move || {
                for req in s.incoming_requests() {
                    handle(&ctx, req);
                }
            })
            .map_err(|e| e.to_string())?;
        Ok(Self {
            server,
            thread: Some(thread),
            addr,
        })
    }

    /// The bound address (useful when listening on port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for AdminServer {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn header(name: &str, value: &str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("static header is valid")
}

fn json_response(status: u16, v: serde_json::Value) -> Response<Cursor<Vec<u8>>> {
    let mut body = serde_json::to_vec_pretty(&v).unwrap_or_default();
    body.push(b'\n');
    Response::from_data(body)
        .with_status_code(status)
        .with_header(header("Content-Type", "application/json"))
}

fn handle(ctx: &AdminContext, req: tiny_http::Request) {
    let method = req.method().clone();
    let url = req.url().split('?').next().unwrap_or("").to_string();
    let peer = req.remote_addr().map(|a| a.ip());
    let segments: Vec<&str> = url.trim_matches('/').split('/').collect();
    let mutating = method == Method::Post;
    if mutating && !ctx.allow.is_empty() && !peer.is_some_and(|p| ctx.allow.contains(&p)) {
        let _ = req.respond(json_response(
            403,
            json!({"error": "not allowed from this address"}),
        ));
        return;
    }
    let resp = match (&method, segments.as_slice()) {
        (Method::Get, ["metrics"]) => Response::from_data(ctx.metrics.render().into_bytes())
            .with_header(header(
                "Content-Type",
                "text/plain; version=0.0.4; charset=utf-8",
            )),
        (Method::Get, ["healthz"]) => {
            let stopping = ctx.stopping.load(Ordering::Relaxed);
            json_response(
                if stopping { 503 } else { 200 },
                json!({
                    "status": if stopping { "stopping" } else { "ok" },
                    "profile": ctx.profile_name,
                    "generation": ctx.generation.load(Ordering::SeqCst),
                    "version": env!("CARGO_PKG_VERSION"),
                }),
            )
        }
        (Method::Get, ["backends"]) => {
            let (tx, rx) = crossbeam_channel::bounded(1);
            match ctx
                .admin_tx
                .send(AdminRequest::Backends { reply: tx })
                .ok()
                .and_then(|_| rx.recv_timeout(LOOP_TIMEOUT).ok())
            {
                Some(v) => json_response(200, v),
                None => json_response(503, json!({"error": "control plane did not answer"})),
            }
        }
        (Method::Post, ["reload"]) => match ctx.reloader.reload() {
            Ok(o) => json_response(
                200,
                json!({"generation": o.generation, "restart_required": o.restart_required}),
            ),
            Err(e) => json_response(400, json!({"error": e})),
        },
        (Method::Post, ["backends", name, action @ ("drain" | "undrain")]) => {
            let (tx, rx) = crossbeam_channel::bounded(1);
            let drain = *action == "drain";
            let sent = ctx
                .admin_tx
                .send(AdminRequest::Drain {
                    backend: name.to_string(),
                    drain,
                    reply: tx,
                })
                .is_ok();
            match sent.then(|| rx.recv_timeout(LOOP_TIMEOUT).ok()).flatten() {
                Some(Ok(())) => json_response(200, json!({"backend": name, "draining": drain})),
                Some(Err(e)) => json_response(404, json!({"error": e})),
                None => json_response(503, json!({"error": "control plane did not answer"})),
            }
        }
        (_, ["metrics" | "healthz" | "backends" | "reload"])
        | (_, ["backends", _, "drain" | "undrain"]) => {
            json_response(405, json!({"error": "method not allowed"}))
        }
        _ => json_response(
            404,
            json!({"error": "not found", "endpoints": ["/metrics", "/healthz", "/backends", "POST /reload", "POST /backends/NAME/drain", "POST /backends/NAME/undrain"]}),
        ),
    };
    let _ = req.respond(resp);
}
