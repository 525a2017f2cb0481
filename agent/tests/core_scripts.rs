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
    resync,
    resync_empty,
    lookup,
    close_holders,
);

/// A resynchronisation longer than one burst is paced: 64 frames at once,
/// the next ones a millisecond later; a new boot meanwhile starts it over.
#[test]
fn large_resync_is_paced() {
    use std::fmt::Write;
    const CONNS: usize = 2000;
    const PER_FRAME: usize = 29;
    let mut s = String::new();
    for i in 1..=CONNS {
        let port = 10_000 + i;
        let _ = write!(
            s,
            "+0 < CREATE id={i} client=198.18.1.1:{port}\n+0 > ADOPT id={i}\n\
             +0 adopt ok\n+0 > ACK id={i}\n"
        );
    }
    // 2000 records: 68 full frames and one of 28.
    let burst = |s: &mut String, first: &str| {
        for n in 0..64 {
            let at = if n == 0 { first } else { "+0" };
            let _ = writeln!(s, "{at} > FLOWS count={PER_FRAME} switch=198.18.0.2:9199");
        }
    };
    s += "1 < HELLO boot=7\n";
    burst(&mut s, "+0");
    s += "+0.0009 counter resync_flows=1856\n";
    // Restarted before the rest went out: all over again.
    s += "+0 < HELLO boot=8\n";
    burst(&mut s, "+0");
    s += "+0.0009 counter resync_flows=3712\n";
    s += "+0.0001 > FLOWS count=29\n+0 > FLOWS count=29\n+0 > FLOWS count=29\n\
          +0 > FLOWS count=29\n+0 > FLOWS count=28 last\n";
    s += "+1 counter resyncs=2 switch_restarts=1 resync_flows=3856\n";
    core_bed::run_script("large_resync", &s);
}

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
