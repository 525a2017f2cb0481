//! Fuzzes profile loading: arbitrary text as a profile (YAML parsing,
//! `!include` resolved in `configs/`, `${NAME}` interpolation, then
//! validation). Every rejection must say where (a line or a field path) and
//! what; a profile that loads must also compile into the worker and routing
//! configuration without a panic.
#![no_main]

use std::collections::HashMap;
use std::path::Path;

use controlplane::config::load::load_str;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    // A file in the configs directory, so includes of the shipped profiles resolve.
    let path = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../configs/fuzzed.yaml"
    ));
    let props = HashMap::from([
        ("BATON_VIP".to_string(), "198.18.0.10".to_string()),
        ("BATON_WORKERS".to_string(), "2".to_string()),
    ]);
    match load_str(&text, path, &props) {
        Ok(loaded) => {
            let p = &loaded.profile;
            let _ = controlplane::compile::thop_keys(p);
            let _ = controlplane::compile::io_config(p);
            let _ = controlplane::compile::poll_mode(p);
            let _ = controlplane::compile::worker_config(p, [2, 0, 0, 0, 0, 1]);
            let _ = controlplane::routing::Router::new(p);
        }
        Err(errs) => {
            assert!(!errs.0.is_empty(), "an error without a problem");
            for e in &errs.0 {
                assert!(
                    !e.message.trim().is_empty(),
                    "an error without a message: {e:?}"
                );
                assert!(
                    e.line.is_some() || !e.path.is_empty(),
                    "an error naming neither a line nor a field: {e}"
                );
            }
        }
    }
});
