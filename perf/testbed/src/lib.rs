//! The namespace test bed.
//!
//! Baton is only real when unmodified clients and unmodified web servers, on
//! real Linux TCP stacks, talk through it. This crate builds that world on one
//! machine out of network namespaces (see [`topology`] for the picture), starts
//! the real programs in it (nginx, HAProxy, `baton`, `baton-agent`), drives
//! bounded load (curl, wrk, Python, Chromium) and measures it. It serves three
//! users: the system tests in `tests/`, `make demo` (`baton-demo`) and
//! `make bench` (`baton-bench`); `baton-testbed` brings a bed up by hand.
//!
//! Everything it creates is removed on drop, on panic, on Ctrl-C/SIGTERM, and
//! (for a run that was SIGKILLed) by a sweep before the next bed comes up.

pub mod addr;
pub mod attack;
pub mod baton;
pub mod bench;
pub mod bins;
pub mod bird;
pub mod chromium;
pub mod cleanup;
pub mod client;
pub mod cluster;
pub mod content;
pub mod cpu;
pub mod curl;
pub mod demo;
pub mod error;
pub mod histo;
pub mod ledger;
pub mod lighttpd;
pub mod netns;
pub mod nginx;
pub mod peers;
pub mod probe;
pub mod process;
pub mod prometheus;
pub mod promtext;
pub mod report;
pub mod scenario;
pub mod text;
pub mod timefmt;
pub mod tls;
pub mod topology;
pub mod wrk;
pub mod xdp;

pub use error::{BedError, Result};
pub use process::Proc;
pub use topology::{Bed, BedSpec, Host};
