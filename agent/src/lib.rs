//! Baton backend agent: receives THOP from the switch, adopts handed-off TCP
//! connections with Linux `TCP_REPAIR`, and hands them to the application,
//! either by relaying to an unmodified local web server or through the
//! [`listener::HandoffListener`] API.
//!
//! Module map: [`repair`] rebuilds a socket from a connection's state.

pub mod config;
pub mod relay;
pub mod repair;
