//! Logs through `tracing`: human-readable lines or one JSON object per line,
//! filtered by the profile's `logging.level` unless `RUST_LOG` is set. The
//! access log is the target `baton::access` (sampled by the control plane).
//! The level can change on reload; the format is fixed at start-up.

use std::sync::OnceLock;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Layer, Registry};

use crate::config::{LogFormat, Logging};

/// Handle to swap the filter of the installed subscriber (absent when
/// `RUST_LOG` rules or no subscriber was installed by us).
static FILTER: OnceLock<reload::Handle<EnvFilter, Registry>> = OnceLock::new();

/// Installs the global subscriber (once; later calls are no-ops).
pub fn init(cfg: &Logging) {
    let from_env = EnvFilter::try_from_default_env().ok();
    let env_rules = from_env.is_some();
    let filter = from_env
        .or_else(|| EnvFilter::try_new(&cfg.level).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let (filter, handle) = reload::Layer::new(filter);
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(true);
    let fmt: Box<dyn Layer<_> + Send + Sync> = match cfg.format {
        LogFormat::Human => Box::new(fmt),
        LogFormat::Json => Box::new(fmt.json().flatten_event(true).with_current_span(false)),
    };
    if tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .try_init()
        .is_ok()
        && !env_rules
    {
        let _ = FILTER.set(handle);
    }
}

/// Applies a reloaded `logging.level`; false when it cannot (set by `RUST_LOG`,
/// or an invalid filter, which validation rejects first).
pub fn set_level(level: &str) -> bool {
    let (Some(h), Ok(f)) = (FILTER.get(), EnvFilter::try_new(level)) else {
        return false;
    };
    h.reload(f).is_ok()
}
