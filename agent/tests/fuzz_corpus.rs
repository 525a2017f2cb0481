//! Replays the committed fuzz seeds of the agent's receive path
//! (`fuzz/corpus/agent_datagram`) and a bounded number of random programs
//! through `agent::fuzzing`, so every test run re-checks them without
//! cargo-fuzz, and checks the seeds reach past authentication.

use agent::fuzzing::{run, Reached};

#[test]
fn committed_seeds_replay_and_reach_dispatch() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz/corpus/agent_datagram");
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{dir}: {e}"));
    let mut total = Reached::default();
    let mut n = 0;
    for e in entries.flatten() {
        let r = run(&std::fs::read(e.path()).unwrap());
        total.accepted += r.accepted;
        total.dropped += r.dropped;
        total.refused += r.refused;
        total.duplicates += r.duplicates;
        n += 1;
    }
    eprintln!("{n} seeds: {total:?}");
    assert!(n >= 10, "{n} seeds");
    assert!(
        total.accepted > 0,
        "no seed passed authentication: {total:?}"
    );
    assert!(total.dropped > 0, "no seed was dropped: {total:?}");
    assert!(
        total.refused > 0,
        "no CREATE was completed and refused: {total:?}"
    );
}

#[test]
fn random_programs_do_not_panic() {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for len in (0..400).map(|i| (i * 37) % 2048) {
        let data: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        run(&data);
    }
}
