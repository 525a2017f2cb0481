//! Baton's test kit: the helpers every test suite, bench and the namespace
//! test bed share, written once.
//!
//! Dev-only: other crates take it as a `[dev-dependencies]` entry (only
//! `perf/testbed`, itself dev tooling, depends on it normally), so nothing
//! here reaches a release binary.
//!
//! * [`root`]: tests that need root fail loudly without it.
//! * [`netns`]: network namespaces, veths, bridges, running code and
//!   commands inside them, cleanup on drop.
//! * [`raw_socket`]: an AF_PACKET socket and numbered test frames for the
//!   far end of a veth.
//! * [`process`]: child processes in a namespace, stopped on drop, waited on
//!   for a port or a log line; this process's memory.
//! * [`fake_agent`]: a THOP-speaking backend agent over UDP.
//! * [`http`]: requests to admin and metrics endpoints, metric samples.
//! * [`dpdk`]: one process per DPDK test (the EAL starts once per process).
//! * [`sink`], [`worker`]: the recording engine sink and the worker
//!   configuration of the dataplane's engine tests and benches.
//! * [`tcp_state`]: `handoff_proto::TcpState` fixtures.
//! * [`temp_dir`]: a scratch directory removed on drop.

pub mod caps;
pub mod dpdk;
pub mod fake_agent;
pub mod http;
pub mod netns;
pub mod process;
pub mod raw_socket;
pub mod root;
pub mod sink;
pub mod tcp_state;
pub mod temp_dir;
pub mod worker;

pub use root::require_root;
