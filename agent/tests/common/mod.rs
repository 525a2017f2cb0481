//! Shared test support: namespaces, the switch's freeze and THOP sides, the
//! agent process, local upstream servers and clients.
#![allow(dead_code)]

pub mod agent_proc;
pub mod bed;
pub mod freeze;
pub mod handoff;
pub mod preloaded;
pub mod serve;
pub mod thop;
pub mod upstream;
