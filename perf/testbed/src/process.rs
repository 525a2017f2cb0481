//! Long-running processes of the bed (nginx, HAProxy, `baton`,
//! `baton-agent`): `testkit::process` (shared with every test suite), whose
//! errors convert into [`crate::BedError`].

pub use testkit::process::{log_tail, tcp_ready, Proc, ProcError};
