//! Baton backend agent: receives THOP from the switch, adopts handed-off TCP
//! connections with Linux `TCP_REPAIR`, and hands them to the application,
//! by giving the socket to an unmodified web server process (handover: its
//! `accept` returns it, through a preload library), by relaying to a local
//! server (splice), or through the [`HandoffListener`] API.
//!
//! Module map:
//! - [`repair`]: rebuilds an ESTABLISHED socket from a connection's state;
//! - [`handoff`]: the sans-IO THOP core (authentication, replay, duplicates,
//!   the connection table, NACK decisions, ABORT, CLOSE retries, LOAD): no
//!   socket, no clock, driven by calls that take `now`;
//! - [`engine`]: the event loop around it (THOP socket, adoption, relay,
//!   listener and handover plumbing);
//! - [`relay`]: splice(2) relay to the local server on one mio loop;
//! - [`listener`]: adopted sockets for Rust applications;
//! - [`handover`], [`sockdiag`]: adopted sockets given to an unmodified
//!   server process (preload library, `SCM_RIGHTS`), and the kernel's
//!   socket-destroy notifications that tell when they end;
//! - [`replay_state`]: the THOP replay windows, kept across restarts;
//! - [`config`], [`metrics`], [`checks`], [`cli`]: operations.
//!
//! Embedding in a Rust server (listener mode):
//! ```no_run
//! let cfg = agent::config::Config::load("agent.yaml".as_ref()).unwrap();
//! let vip = cfg.services[0].vip;
//! let metrics = std::sync::Arc::new(agent::metrics::Metrics::new());
//! let a = agent::Agent::new(cfg, metrics).unwrap();
//! let listener = a.listener(vip).unwrap();
//! let _loop = a.spawn().unwrap();
//! for conn in listener {
//!     let conn = conn.unwrap();
//!     // serve conn.stream (request bytes are already readable); drop it with conn.ticket
//! }
//! ```

pub mod checks;
pub mod cli;
pub mod config;
pub mod engine;
#[cfg(feature = "testing")]
pub mod fuzzing;
pub mod handoff;
pub mod handover;
pub mod listener;
pub mod metrics;
pub mod relay;
pub mod repair;
pub mod replay_state;
pub mod sockdiag;

pub use engine::{Agent, AgentHandle, StartError};
pub use listener::{Adopted, CloseTicket, HandoffListener};
