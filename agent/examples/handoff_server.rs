//! A small static-file server that takes its connections from the Baton
//! switch instead of `listen(2)`: the listener mode of the agent, on tokio.
//!
//! ```text
//! handoff_server --config agent-listener.yaml --root /srv/www --name backend-1
//! ```
//!
//! The configuration is the agent's (`docs/agent.md`) with a `mode: listener`
//! service. Each adopted socket arrives as a `std::net::TcpStream` with the
//! request already in its receive queue; `tokio::net::TcpStream::from_std`
//! makes it async. Readiness of the [`HandoffListener`] comes from its file
//! descriptor, wrapped in tokio's `AsyncFd`: no thread blocks in `accept`.
//!
//! Every response names the server (`X-Served-By`), so tests and operators can
//! see which backend answered. HTTP/1.1 keep-alive, GET and HEAD only.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use agent::config::{Config, Mode};
use agent::{Adopted, HandoffListener};
use clap::Parser;
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Parser)]
struct Args {
    /// Agent configuration with `mode: listener` services (all are served,
    /// e.g. the IPv4 and the IPv6 VIP of a dual-stack service).
    #[arg(long)]
    config: PathBuf,
    /// Directory to serve.
    #[arg(long)]
    root: PathBuf,
    /// Name sent in `X-Served-By`.
    #[arg(long, default_value = "baton-handoff-example")]
    name: String,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter("info")
        .init();
    let cfg = match Config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("handoff_server: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let vips: Vec<_> = cfg
        .services
        .iter()
        .filter(|s| s.mode == Mode::Listener)
        .map(|s| s.vip)
        .collect();
    if vips.is_empty() {
        eprintln!("handoff_server: the configuration has no `mode: listener` service");
        return std::process::ExitCode::from(2);
    }
    if let Err(e) = agent::checks::run(&cfg) {
        eprintln!("handoff_server: {e}");
        return std::process::ExitCode::from(2);
    }
    let metrics = Arc::new(agent::metrics::Metrics::new());
    let _metrics = cfg
        .metrics
        .listen
        .and_then(|a| metrics.serve(a, &cfg.metrics).ok());
    let agent = match agent::Agent::new(cfg, metrics) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("handoff_server: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let listeners: Vec<_> = vips
        .iter()
        .map(|vip| {
            agent
                .listener(*vip)
                .expect("listener service was found above")
        })
        .collect();
    let handle = agent.handle();
    let agent_thread = agent.spawn().expect("spawn agent loop");

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let root = Arc::new(args.root);
    let name = Arc::new(args.name);
    rt.block_on(async move {
        let stop = handle.clone();
        tokio::spawn(async move {
            let _ = tokio::signal::ctrl_c().await;
            stop.stop();
        });
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM");
        let stop = handle.clone();
        tokio::spawn(async move {
            term.recv().await;
            stop.stop();
        });
        tracing::info!(?vips, "handoff_server ready");
        let loops: Vec<_> = listeners
            .into_iter()
            .map(|l| tokio::spawn(accept_loop(l, root.clone(), name.clone())))
            .collect();
        for l in loops {
            let _ = l.await;
        }
    });
    let _ = agent_thread.join();
    std::process::ExitCode::SUCCESS
}

/// Accepts adopted connections as they arrive, one task each.
async fn accept_loop(listener: HandoffListener, root: Arc<PathBuf>, name: Arc<String>) {
    // SAFETY: the listener owns its readiness pipe (behind an Arc) for its
    // whole life, and `as_raw_fd` always returns that same descriptor.
    let fd =
        match unsafe { AsyncFd::register_with_interest(listener, tokio::io::Interest::READABLE) } {
            Ok(fd) => fd,
            Err(e) => {
                tracing::error!(error = %e, "cannot register the listener's readiness fd");
                return;
            }
        };
    loop {
        let mut guard = match fd.readable().await {
            Ok(g) => g,
            Err(e) => {
                tracing::error!(error = %e, "listener readiness failed");
                return;
            }
        };
        loop {
            match fd.get_ref().try_accept() {
                Ok(conn) => {
                    let (root, name) = (Arc::clone(&root), Arc::clone(&name));
                    tokio::spawn(async move {
                        if let Err(e) = serve(conn, &root, &name).await {
                            tracing::debug!(error = %e, "connection ended with an error");
                        }
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    guard.clear_ready();
                    break;
                }
                Err(_) => return, // the agent stopped
            }
        }
    }
}

/// Serves one connection until the client closes it.
async fn serve(conn: Adopted, root: &Path, name: &str) -> std::io::Result<()> {
    let Adopted {
        stream,
        peer,
        ticket,
        ..
    } = conn;
    stream.set_nonblocking(true)?;
    let mut s = tokio::net::TcpStream::from_std(stream)?;
    let mut buf = Vec::with_capacity(4096);
    loop {
        let (head_len, method, path, close) = loop {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut req = httparse::Request::new(&mut headers);
            match req.parse(&buf) {
                Ok(httparse::Status::Complete(n)) => {
                    let close = req.version == Some(0)
                        || req.headers.iter().any(|h| {
                            h.name.eq_ignore_ascii_case("connection")
                                && h.value.eq_ignore_ascii_case(b"close")
                        });
                    break (
                        n,
                        req.method.unwrap_or("").to_string(),
                        req.path.unwrap_or("/").to_string(),
                        close,
                    );
                }
                Ok(httparse::Status::Partial) => {}
                Err(_) => {
                    s.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").await?;
                    return Ok(());
                }
            }
            if buf.len() > 64 * 1024 {
                s.write_all(b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").await?;
                return Ok(());
            }
            let mut chunk = [0u8; 4096];
            let n = s.read(&mut chunk).await?;
            if n == 0 {
                drop(ticket);
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        buf.drain(..head_len);
        let (status, body) = match (method.as_str(), resolve(root, &path)) {
            ("GET" | "HEAD", Some(file)) => match tokio::fs::read(&file).await {
                Ok(b) => ("200 OK", b),
                Err(_) => ("404 Not Found", b"not found\n".to_vec()),
            },
            ("GET" | "HEAD", None) => ("404 Not Found", b"not found\n".to_vec()),
            _ => ("405 Method Not Allowed", Vec::new()),
        };
        tracing::info!(%peer, %method, %path, status, "request");
        let head = format!(
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nX-Served-By: {name}\r\nServer: baton-handoff-example\r\n{}\r\n",
            body.len(),
            if close { "Connection: close\r\n" } else { "" }
        );
        s.write_all(head.as_bytes()).await?;
        if method != "HEAD" {
            s.write_all(&body).await?;
        }
        if close {
            s.shutdown().await?;
            return Ok(());
        }
    }
}

/// Maps a URL path to a file under `root`, refusing `..` and absolute escapes.
fn resolve(root: &Path, url: &str) -> Option<PathBuf> {
    let path = url.split(['?', '#']).next().unwrap_or("/");
    let rel = Path::new(path.trim_start_matches('/'));
    if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
        return None;
    }
    let mut p = root.join(rel);
    if path.ends_with('/') || path.is_empty() {
        p = p.join("index.html");
    }
    Some(p)
}
