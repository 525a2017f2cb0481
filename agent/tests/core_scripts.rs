//! The agent's sans-IO handoff core driven by scripts (`tests/scripts/*.pkt`;
//! the format is documented in `core_bed`). No root, no namespace, no
//! socket: each script runs on a virtual clock in microseconds.

mod core_bed;

macro_rules! scripts {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                let file = concat!(stringify!($name), ".pkt");
                core_bed::run_script(file, include_str!(concat!("scripts/", stringify!($name), ".pkt")));
            }
        )*

        /// Every script in the directory is run by a test above.
        #[test]
        fn every_script_is_listed() {
            let listed = [$(concat!(stringify!($name), ".pkt")),*];
            let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/scripts");
            for e in std::fs::read_dir(dir).expect("scripts directory").flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.ends_with(".pkt") {
                    assert!(listed.contains(&name.as_str()), "{name} is not listed in core_scripts.rs");
                }
            }
        }
    };
}

scripts!(
    create_ack,
    duplicate_create,
    duplicate_other_client,
    recent_ids,
    abort,
    close_retry,
    adopt_failure,
    replay_and_forgery,
    refusals,
    load,
    drain,
    drain_close_grace,
    drain_now,
);

/// A script that expects something the core does not emit fails.
#[test]
#[should_panic(expected = "expected NACK")]
fn a_wrong_expectation_fails() {
    core_bed::run_script(
        "inline",
        "0 < CREATE id=1\n+0 > NACK id=1 reason=bad_state\n",
    );
}

/// Output left unmatched fails the script.
#[test]
#[should_panic(expected = "not matched")]
fn unmatched_output_fails() {
    core_bed::run_script("inline", "0 < CREATE id=1\n+0.1 counter aborts=0\n");
}
