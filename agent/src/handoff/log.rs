//! Rate limiting of log lines about rejected input, by reason.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Rejected frames are logged at most once per reason in this period; the
/// next line says how many were not logged.
pub(crate) const LOG_PERIOD: Duration = Duration::from_secs(1);

/// Logs at most one line per reason per [`LOG_PERIOD`], with the number of
/// occurrences not logged since the previous line. Time is given, never read.
#[derive(Default)]
pub(crate) struct LogLimiter {
    last: HashMap<&'static str, (Instant, u64)>,
}

impl LogLimiter {
    /// `Some(suppressed)` when a line for `reason` may be written now.
    pub(crate) fn allow(&mut self, reason: &'static str, now: Instant) -> Option<u64> {
        match self.last.get_mut(reason) {
            Some((at, suppressed)) if now.saturating_duration_since(*at) < LOG_PERIOD => {
                *suppressed += 1;
                None
            }
            Some((at, suppressed)) => {
                let n = *suppressed;
                *at = now;
                *suppressed = 0;
                Some(n)
            }
            None => {
                self.last.insert(reason, (now, 0));
                Some(0)
            }
        }
    }
}
