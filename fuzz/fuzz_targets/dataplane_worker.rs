//! Arbitrary packet sequences (and decisions, THOP replies, time jumps) into
//! one dataplane worker: no panic, memory bounded. The program interpreter
//! lives in `dataplane::fuzzing` so the test suite runs it too.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = dataplane::fuzzing::run(data);
});
