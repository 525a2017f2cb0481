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
