//! Scenario tests: packetdrill-style scripts of packets and virtual time
//! (see `support/mod.rs` for the syntax), one engine each.

mod support;

use dataplane::config::{SynCookieMode, WorkerConfig};
use support::{test_config, Bed};

fn run(script: &str, cfg: WorkerConfig) -> Bed {
    let mut bed = Bed::new(cfg);
    bed.run_script(script);
    bed
}

macro_rules! script {
    ($name:ident, $file:literal) => {
        script!($name, $file, |_c: &mut WorkerConfig| {});
    };
    ($name:ident, $file:literal, $tweak:expr) => {
        #[test]
        fn $name() {
            let mut cfg = test_config();
            let tweak: fn(&mut WorkerConfig) = $tweak;
            tweak(&mut cfg);
            run(include_str!(concat!("scripts/", $file)), cfg);
        }
    };
}

script!(full_flow, "full_flow.pkt");
script!(handshake_options, "handshake_options.pkt");
script!(synack_backoff, "synack_backoff.pkt");
script!(request_segments_out_of_order, "request_segments.pkt");
script!(duplicate_request_then_503, "duplicate_then_complete.pkt");
script!(malformed_400_and_clean_close, "malformed_400.pkt");
script!(response_retransmitted_then_reset, "response_retransmit.pkt");
script!(oversized_header_431, "oversized_431.pkt");
script!(slow_header_408, "slow_header_408.pkt");
script!(handoff_nack_redispatch, "nack_redispatch.pkt");
script!(handoff_timeout_redispatch, "handoff_timeout.pkt");
script!(handoff_exhausted_503, "handoff_exhausted_503.pkt");
script!(decision_timeout_503, "decision_timeout.pkt");
script!(
    forwarding_rst_and_thop_close,
    "forwarding_rst_and_close.pkt"
);
script!(forwarding_idle_timeout, "idle_timeout.pkt");
script!(
    client_reset_and_fin_in_waitheader,
    "client_reset_and_fin_in_waitheader.pkt"
);
script!(syncookies_valid, "syncookies.pkt", |c| c.syncookie_mode =
    SynCookieMode::Always);
script!(syncookies_forged_and_expired, "syncookie_forged.pkt", |c| {
    c.syncookie_mode = SynCookieMode::Always
});
script!(
    syncookie_valid_within_lifetime,
    "syncookie_valid_late.pkt",
    |c| c.syncookie_mode = SynCookieMode::Always
);
script!(table_full_refuses, "table_full.pkt", |c| {
    c.table_capacity = 2;
    c.syncookie_mode = SynCookieMode::Off;
});
script!(
    table_full_falls_back_to_cookies,
    "table_full_cookies.pkt",
    |c| c.table_capacity = 2
);
script!(drain_refuses_new_connections, "drain.pkt");
