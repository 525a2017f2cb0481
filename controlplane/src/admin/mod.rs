//! The management endpoint (kernel TCP/IP stack, management address):
//!
//! | method | path | what |
//! |---|---|---|
//! | GET | `/metrics` | Prometheus text format |
//! | GET | `/healthz` | 200 `{"status":"ok",...}` while serving, 503 while stopping |
//! | GET | `/backends` | backends with health, load and pools (JSON) |
//! | GET | `/status` | the live status page (HTML, see [`status`]) |
//! | GET | `/status.json` | what the page shows: workers, backends, rules, latency (JSON) |
//! | POST | `/capture` | a bounded packet capture of the data port, as pcapng (see [`capture`]) |
//! | POST | `/reload` | re-read the profile; 200 with the new generation, 400 with the errors |
//! | POST | `/backends/NAME/drain` | stop sending new requests to NAME |
//! | POST | `/backends/NAME/undrain` | resume |
//! | POST | `/drain` | withdraw this switch's VIPs from the routers (`cluster.announce`); it keeps serving what arrives |
//! | POST | `/undrain` | announce them again (while healthy) |
//!
//! It shares the process with the packet path, so it is served by
//! [`mgmt_http`], whose limits keep one client from exhausting memory,
//! threads or descriptors. Connections from outside `admin.allow` (loopback
//! by default) are closed before a byte is read. State-changing calls also
//! need the token of `admin.token_file` and no foreign `Origin` (see
//! [`token`]). Every refusal is counted in `baton_admin_refused_total`.

pub mod capture;
pub mod status;
pub mod token;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::Sender;
use mgmt_http::{Allow, Limits, Method, Refusal, Request, Response, Server};
use serde_json::json;

use crate::config::load_file_with;
use crate::config::types::Admin;
use crate::control::{AdminRequest, ControlPlane, ReloadOutcome};
use crate::metrics::Metrics;

/// How long an admin call waits for the control loop.
const LOOP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `/status.json` waits for the control loop's view of the backends.
const STATUS_VIEW_TIMEOUT: Duration = Duration::from_millis(500);

/// The control loop's view of the backends (`/backends`), if it answers in time.
fn backends_view(ctx: &AdminContext, wait: Duration) -> Option<serde_json::Value> {
    let (tx, rx) = crossbeam_channel::bounded(1);
    ctx.admin_tx
        .send(AdminRequest::Backends { reply: tx })
        .ok()
        .and_then(|_| rx.recv_timeout(wait).ok())
}

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
    pub profile_name: String,
    /// Set during a graceful stop: `/healthz` answers 503.
    pub stopping: Arc<AtomicBool>,
    /// The workers' shared state, for `POST /capture`.
    pub capture: Option<capture::CaptureSource>,
}

/// The running endpoint; stops when dropped.
pub struct AdminServer {
    server: Server,
}

/// The server limits an `admin` section asks for.
pub fn limits(admin: &Admin) -> Limits {
    Limits {
        header_timeout: admin.header_timeout.0,
        max_connections: admin.max_connections as usize,
        // A reload waits for the control loop at most this long.
        request_timeout: LOOP_TIMEOUT + Duration::from_secs(5),
        ..Limits::default()
    }
}

impl AdminServer {
    /// Reads the token file, binds `admin.listen` and serves from a background thread.
    pub fn start(admin: &Admin, ctx: AdminContext) -> Result<Self, String> {
        let token = match &admin.token_file {
            Some(f) => Some(
                token::read_token_file(f.as_ref()).map_err(|e| format!("admin.token_file: {e}"))?,
            ),
            None => None,
        };
        let listen = admin.listen;
        // Every reason at 0 from the start, so a dashboard sees the series.
        let reasons = Refusal::ALL.iter().map(|r| r.label()).chain(
            [
                token::Denied::WritesDisabled,
                token::Denied::Unauthorized,
                token::Denied::CrossSite,
            ]
            .iter()
            .map(|d| d.label()),
        );
        for r in reasons {
            ctx.metrics.admin_refused.with_label_values(&[r]);
        }
        let handler = Arc::new(Endpoint { ctx, token });
        let server = Server::start(
            "admin",
            listen,
            Allow::Only(admin.allow.clone()),
            limits(admin),
            handler,
        )
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
        Ok(Self { server })
    }

    /// The bound address (useful when listening on port 0).
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }
}

struct Endpoint {
    ctx: AdminContext,
    token: Option<String>,
}

impl mgmt_http::Handler for Endpoint {
    fn handle(&self, req: Request) -> Response {
        handle(&self.ctx, self.token.as_deref(), &req)
    }

    fn refused(&self, why: Refusal) {
        self.ctx
            .metrics
            .admin_refused
            .with_label_values(&[why.label()])
            .inc();
    }
}

fn json_response(status: u16, v: serde_json::Value) -> Response {
    let mut body = serde_json::to_vec_pretty(&v).unwrap_or_default();
    body.push(b'\n');
    Response::new(status, "application/json", body)
}

/// What a refused write is told.
fn denied(d: token::Denied) -> Response {
    match d {
        token::Denied::WritesDisabled => json_response(
            403,
            json!({"error": "state-changing calls are disabled: set admin.token_file to a file (mode 0600) holding a token of at least 32 characters, restart, and send it as `Authorization: Bearer TOKEN`"}),
        ),
        token::Denied::Unauthorized => json_response(
            401,
            json!({"error": "missing or wrong token: send `Authorization: Bearer TOKEN` (the token of admin.token_file)"}),
        )
        .with_header("WWW-Authenticate", "Bearer realm=\"baton-admin\""),
        token::Denied::CrossSite => json_response(
            403,
            json!({"error": "cross-site request refused (Origin or Sec-Fetch-Site names another site)"}),
        ),
    }
}

fn handle(ctx: &AdminContext, token: Option<&str>, req: &Request) -> Response {
    let method = &req.method;
    let segments: Vec<&str> = req.path.trim_matches('/').split('/').collect();
    let reading = *method == Method::GET || *method == Method::HEAD;
    if !reading {
        if let Err(d) = token::authorize_write(req, token) {
            ctx.metrics
                .admin_refused
                .with_label_values(&[d.label()])
                .inc();
            tracing::warn!(peer = %req.peer, path = %req.path, reason = d.label(), "admin write refused");
            return denied(d);
        }
    }
    match (method, segments.as_slice()) {
        (&Method::GET, ["metrics"]) => Response::new(
            200,
            "text/plain; version=0.0.4; charset=utf-8",
            ctx.metrics.render().into_bytes(),
        ),
        (&Method::GET, ["healthz"]) => {
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
        (&Method::GET, ["backends"]) => match backends_view(ctx, LOOP_TIMEOUT) {
            Some(v) => json_response(200, v),
            None => json_response(503, json!({"error": "control plane did not answer"})),
        },
        (&Method::GET, ["status"]) => Response::new(200, "text/html; charset=utf-8", status::PAGE)
            .with_header("Content-Security-Policy", status::PAGE_CSP)
            .with_header("X-Frame-Options", "DENY")
            .with_header("Cache-Control", "no-store"),
        (&Method::GET, ["status.json"]) => {
            // A busy control loop must not stall the page: its words about
            // the backends are left out after a short wait, the numbers are not.
            let view = backends_view(ctx, STATUS_VIEW_TIMEOUT);
            let stopping = ctx.stopping.load(Ordering::Relaxed);
            let switch = json!({
                "profile": ctx.profile_name,
                "generation": ctx.generation.load(Ordering::SeqCst),
                "version": env!("CARGO_PKG_VERSION"),
                "status": if stopping { "stopping" } else { "serving" },
                "control_plane_answered": view.is_some(),
            });
            json_response(
                200,
                status::status_json(&ctx.metrics.gather(), switch, view.as_ref()),
            )
            .with_header("Cache-Control", "no-store")
        }
        (&Method::POST, ["reload"]) => {
            tracing::info!(peer = %req.peer, "reload requested through the admin endpoint");
            match ctx.reloader.reload() {
                Ok(o) => json_response(
                    200,
                    json!({"generation": o.generation, "restart_required": o.restart_required}),
                ),
                Err(e) => json_response(400, json!({"error": e})),
            }
        }
        (&Method::POST, ["backends", name, action @ ("drain" | "undrain")]) => {
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
        (&Method::POST, ["capture"]) => match &ctx.capture {
            Some(src) => capture::capture(src, &req.body),
            None => json_response(503, json!({"error": "no data port to capture"})),
        },
        (&Method::POST, [action @ ("drain" | "undrain")]) => {
            let (tx, rx) = crossbeam_channel::bounded(1);
            let drain = *action == "drain";
            let sent = ctx
                .admin_tx
                .send(AdminRequest::SwitchDrain { drain, reply: tx })
                .is_ok();
            match sent.then(|| rx.recv_timeout(LOOP_TIMEOUT).ok()).flatten() {
                Some(Ok(())) => json_response(200, json!({"switch": {"draining": drain}})),
                Some(Err(e)) => json_response(409, json!({"error": e})),
                None => json_response(503, json!({"error": "control plane did not answer"})),
            }
        }
        (
            _,
            ["metrics" | "healthz" | "backends" | "status" | "status.json" | "reload" | "drain"
            | "undrain" | "capture"],
        )
        | (_, ["backends", _, "drain" | "undrain"]) => {
            json_response(405, json!({"error": "method not allowed"}))
        }
        _ => json_response(
            404,
            json!({"error": "not found", "endpoints": ["/metrics", "/healthz", "/backends", "/status", "/status.json", "POST /reload", "POST /capture", "POST /backends/NAME/drain", "POST /backends/NAME/undrain", "POST /drain", "POST /undrain"]}),
        ),
    }
}
