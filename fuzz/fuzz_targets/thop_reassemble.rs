//! Fuzzes the agent's reassembler with a sequence of CREATE bodies (each
//! decoded from the input), connection ids and clock steps, under small
//! limits. Must never panic, and its memory accounting must stay exact.
#![no_main]

use handoff_proto::*;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let cfg = ReassemblyConfig {
        max_request_len: 8192,
        max_pending: 4,
        memory_limit: 16384,
        timeout_ms: 50,
    };
    let mut r = Reassembler::new(cfg);
    let mut now = 0u64;
    // Records: [conn u8][clock step u8][len u16 BE][body bytes...].
    let mut rest = data;
    while rest.len() >= 4 {
        let conn = u64::from(rest[0] % 6) + 1;
        now += u64::from(rest[1]);
        let len = (usize::from(rest[2]) << 8 | usize::from(rest[3])).min(rest.len() - 4);
        let body = &rest[4..4 + len];
        rest = &rest[4 + len..];
        if let Ok(frag) = CreateFragment::decode(body) {
            if let Ok(Some(a)) = r.push(7, conn, &frag, now) {
                assert_eq!(a.request.len(), frag.total_len as usize);
            }
        }
        if rest.first().is_some_and(|b| b & 0x80 != 0) {
            r.expire(now);
        }
        assert!(r.memory() <= cfg.memory_limit);
        assert!(r.pending() <= cfg.max_pending);
    }
    r.expire(u64::MAX);
    assert_eq!((r.memory(), r.pending()), (0, 0));
});
