//! Baton's dataplane: the packet path of the content-aware switch.
//!
//! Poll-mode workers each own a shard of the connection table and run the
//! modified TCP state machine (LISTEN → SYN_RCVD → WAITHEADER → DISPATCH →
//! HANDOFF → FORWARDING; the whole table is `state::TABLE`). The dataplane knows nothing of YAML or Prometheus: it takes
//! plain config structs and exposes counters that an exporter reads.

pub mod arp;
pub mod capture;
pub mod clients;
pub mod config;
pub mod connid;
pub mod counters;
pub mod dispatch;
pub mod doorbell;
pub mod engine;
pub mod entropy;
/// The worker fuzz program (feature `testing`: fuzzing and tests only).
#[cfg(feature = "testing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod hugemem;
pub mod io;
pub mod offload;
pub mod peer;
pub mod reassembly;
pub mod recovery;
pub mod shared;
pub mod state;
pub mod steer;
pub mod syncookie;
pub mod table;
pub mod tls;
pub mod wire;
pub mod worker;

pub use config::WorkerConfig;
pub use counters::Counters;
pub use engine::{Engine, Sink};
pub use worker::Worker;
