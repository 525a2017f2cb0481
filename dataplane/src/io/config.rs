//! How workers poll their queue, whatever the backend.
//!
//! Each backend's own settings live in its folder (`afpacket/config.rs`,
//! `dpdk/config.rs`); [`crate::io::IoConfig`] chooses between them. Plain
//! structs, no YAML: the control plane builds them from the profile.

use std::time::Duration;

/// How a worker polls its queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PollMode {
    /// Spin on the queue forever (production: one dedicated core per worker).
    Busy,
    /// Spin for `spin_polls` empty polls in a row, then block in the backend's
    /// `wait()` for at most `max_wait` (or until the next timer), so an idle
    /// test bed does not burn a core.
    Adaptive {
        /// Empty polls in a row before the worker sleeps.
        spin_polls: u32,
        /// The longest single sleep; bounds the delay of a timer or command.
        max_wait: Duration,
    },
}

impl PollMode {
    /// Adaptive polling with the defaults: 2,000 empty polls (tens of
    /// microseconds of spinning), then sleeps of at most 10 ms.
    pub const ADAPTIVE: PollMode = PollMode::Adaptive {
        spin_polls: 2_000,
        max_wait: Duration::from_millis(10),
    };
}

impl Default for PollMode {
    fn default() -> Self {
        PollMode::ADAPTIVE
    }
}
