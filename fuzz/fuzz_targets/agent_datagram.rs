//! Fuzzes the agent's THOP receive path: the agent's sans-IO handoff core
//! (its real configuration path, a virtual clock, no socket, no service)
//! receives the datagrams of a program read from the input: raw bytes,
//! frames sealed with its key for it, re-tagged raw frames, and datagrams
//! from a source it does not allow. Must never panic. The program
//! interpreter lives in `agent::fuzzing` (feature `testing`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    agent::fuzzing::run(data);
});
