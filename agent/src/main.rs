//! `baton-agent`: the Baton backend agent.
//!
//! ```text
//! baton-agent run --config /etc/baton/agent.yaml
//! baton-agent check-config /etc/baton/agent.yaml
//! baton-agent version
//! ```
//!
//! Exit codes: 0 clean stop, 1 runtime failure, 2 bad configuration or a
//! failed start-up check.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;

use agent::cli::{Cli, Cmd};
use agent::config::{Config, LogFormat, Mode};
use agent::metrics::Metrics;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Version => {
            println!(
                "baton-agent {} (THOP versions {:?})",
                env!("CARGO_PKG_VERSION"),
                handoff_proto::SUPPORTED_VERSIONS
            );
            ExitCode::SUCCESS
        }
        Cmd::CheckConfig { file } => match Config::load(&file) {
            Ok(cfg) => {
                println!(
                    "{}: ok ({} service(s), THOP on {}, {} switch(es))",
                    file.display(),
                    cfg.services.len(),
                    cfg.thop.listen,
                    cfg.thop.switches.len()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("baton-agent: {e}");
                ExitCode::from(2)
            }
        },
        Cmd::Run { config } => run(config),
    }
}

fn init_logging(cfg: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&cfg.log.level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cfg.log.format {
        LogFormat::Json => b.json().init(),
        LogFormat::Text => b.init(),
    }
}

/// Relayed connections hold six descriptors each: lift the soft limit.
fn raise_nofile() {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit on a live struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) == 0 && rl.rlim_cur < rl.rlim_max {
            rl.rlim_cur = rl.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &rl);
        }
    }
}

fn run(path: PathBuf) -> ExitCode {
    let cfg = match Config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("baton-agent: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(&cfg);
    if let Err(e) = agent::checks::run(&cfg) {
        eprintln!("baton-agent: {e}");
        tracing::error!(error = %e, "start-up check failed");
        return ExitCode::from(2);
    }
    for w in agent::checks::warnings(&cfg) {
        tracing::warn!("{w}");
    }
    if let Some(i) = cfg.services.iter().position(|s| s.mode == Mode::Listener) {
        eprintln!(
            "baton-agent: services[{i}].mode: listener mode is for applications that embed the agent \
             library (HandoffListener, see agent/examples/handoff_server.rs); baton-agent itself relays or hands over"
        );
        return ExitCode::from(2);
    }
    raise_nofile();
    let metrics = Arc::new(Metrics::new());
    let _metrics_server = match cfg.metrics.listen {
        Some(addr) => match metrics.serve(addr, &cfg.metrics) {
            Ok(s) => {
                tracing::info!(addr = %s.addr(), "metrics listening");
                Some(s)
            }
            Err(e) => {
                eprintln!("baton-agent: metrics.listen: {e}");
                return ExitCode::from(2);
            }
        },
        None => None,
    };
    let agent = match agent::Agent::new(cfg, Arc::clone(&metrics)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("baton-agent: {e}");
            return ExitCode::from(2);
        }
    };
    let handle = agent.handle();
    let signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
    ]);
    match signals {
        Ok(mut signals) => {
            std::thread::spawn(move || {
                let mut seen = 0;
                for sig in signals.forever() {
                    seen += 1;
                    if seen == 1 {
                        tracing::info!(signal = sig, "graceful stop requested");
                        handle.stop();
                    } else {
                        tracing::warn!(signal = sig, "second signal: stopping now");
                        handle.stop_now();
                    }
                }
            });
        }
        Err(e) => tracing::warn!(error = %e, "cannot install signal handlers"),
    }
    match agent.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "agent loop failed");
            ExitCode::from(1)
        }
    }
}
