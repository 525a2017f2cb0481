//! Baton's control plane: YAML profiles, routing rules and dispatch policies,
//! the backend registry with health checks, the Prometheus exporter and admin
//! endpoint, and the process wiring of the `baton` binary (worker threads
//! pinned to cores, signals, reload).
//!
//! The control plane never sits on the packet path: workers send it complete
//! request headers over bounded queues and go on; it answers with a decision.
//! Requests for stateless policies are decided on the worker itself from an
//! immutable routing snapshot the control plane publishes ([`local`]).

pub mod admin;
pub mod announce;
pub mod cli;
pub mod compile;
pub mod config;
pub mod control;
pub mod health;
pub mod local;
pub mod logging;
pub mod metrics;
pub mod policy;
pub mod registry;
pub mod request;
pub mod routing;
pub mod run;
