//! Agent-side reassembly (spec §6.4): limits, expiry, restarts and aborts.

mod common;

use common::*;
use handoff_proto::*;

fn request(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

#[test]
fn out_of_order_fragments_reassemble() {
    let req = request(10_000);
    let split = CreateSplitter::new(tcp_state::v6(10_000), &req, MAX_FRAME_LEN_V6).unwrap();
    let mut r = Reassembler::new(ReassemblyConfig::default());
    let n = split.fragment_count();
    for i in (1..n).rev() {
        assert_eq!(r.push(SWITCH, 1, &split.fragment(i), 0), Ok(None));
    }
    assert_eq!(r.pending(), 1);
    assert_eq!(r.memory(), 10_000);
    let (got, total) = r.progress(SWITCH, 1).unwrap();
    assert_eq!(total, 10_000);
    assert_eq!(got as usize, 10_000 - split.fragment(0).data.len());
    let a = r.push(SWITCH, 1, &split.fragment(0), 0).unwrap().unwrap();
    assert_eq!(a.request, req);
    assert_eq!(a.state, tcp_state::v6(10_000));
    assert_eq!((r.pending(), r.memory()), (0, 0));
}

#[test]
fn empty_request_completes_at_once() {
    let split = CreateSplitter::new(tcp_state::v4(0), b"", MAX_FRAME_LEN_V4).unwrap();
    assert_eq!(split.fragment_count(), 1);
    let mut r = Reassembler::new(ReassemblyConfig::default());
    let a = r.push(SWITCH, 1, &split.fragment(0), 0).unwrap().unwrap();
    assert!(a.request.is_empty());
}

#[test]
fn limits_are_enforced() {
    let cfg = ReassemblyConfig {
        max_request_len: 70_000,
        max_pending: 2,
        memory_limit: 100_000,
        timeout_ms: 1000,
    };
    let mut r = Reassembler::new(cfg);
    let big = request(80_000);
    let split = CreateSplitter::new(tcp_state::v4(80_000), &big, MAX_FRAME_LEN_V4).unwrap();
    let err = r.push(SWITCH, 1, &split.fragment(1), 0).unwrap_err();
    assert_eq!(
        err,
        ReassemblyError::TooLarge {
            total_len: 80_000,
            limit: 70_000
        }
    );
    assert_eq!(err.nack_reason(), NackReason::RequestTooLarge);

    let req = request(60_000);
    let split = CreateSplitter::new(tcp_state::v4(60_000), &req, MAX_FRAME_LEN_V4).unwrap();
    assert_eq!(r.push(SWITCH, 1, &split.fragment(1), 0), Ok(None));
    // A second 60 KB request would pass the 100 KB memory limit.
    assert_eq!(
        r.push(SWITCH, 2, &split.fragment(1), 10),
        Err(ReassemblyError::NoMemory)
    );
    let small = request(5000);
    let s2 = CreateSplitter::new(tcp_state::v4(5000), &small, MAX_FRAME_LEN_V4).unwrap();
    assert_eq!(r.push(SWITCH, 2, &s2.fragment(1), 10), Ok(None));
    assert_eq!(
        r.push(SWITCH, 3, &s2.fragment(1), 10),
        Err(ReassemblyError::TooManyPending)
    );
    assert_eq!(
        ReassemblyError::TooManyPending.nack_reason(),
        NackReason::BacklogFull
    );
    // Once the first partial expires, room is made automatically.
    assert_eq!(r.poll_timeout(), Some(1000));
    assert_eq!(r.push(SWITCH, 3, &s2.fragment(1), 1005), Ok(None));
    assert_eq!(r.progress(SWITCH, 1), None, "stale partial dropped");
    assert_eq!(r.pending(), 2);
}

#[test]
fn expire_drops_stale_partials_only() {
    let req = request(5000);
    let split = CreateSplitter::new(tcp_state::v4(5000), &req, MAX_FRAME_LEN_V4).unwrap();
    let mut r = Reassembler::new(ReassemblyConfig {
        timeout_ms: 100,
        ..Default::default()
    });
    r.push(SWITCH, 1, &split.fragment(1), 0).unwrap();
    r.push(SWITCH, 2, &split.fragment(1), 50).unwrap();
    assert_eq!(r.expire(99), 0);
    assert_eq!(r.expire(100), 1);
    assert_eq!(r.progress(SWITCH, 1), None);
    assert!(r.progress(SWITCH, 2).is_some());
    assert_eq!(r.memory(), 5000);
    assert_eq!(r.poll_timeout(), Some(150));
    assert_eq!(r.expire(1000), 1);
    assert_eq!((r.pending(), r.memory(), r.poll_timeout()), (0, 0, None));
}

#[test]
fn abort_removes_partial_state() {
    let req = request(5000);
    let split = CreateSplitter::new(tcp_state::v4(5000), &req, MAX_FRAME_LEN_V4).unwrap();
    let mut r = Reassembler::new(ReassemblyConfig::default());
    r.push(SWITCH, 1, &split.fragment(0), 0).unwrap();
    assert!(r.remove(SWITCH, 1));
    assert!(!r.remove(SWITCH, 1));
    assert_eq!(r.memory(), 0);
}

#[test]
fn same_conn_id_from_two_switches_is_kept_apart() {
    let req = request(5000);
    let split = CreateSplitter::new(tcp_state::v4(5000), &req, MAX_FRAME_LEN_V4).unwrap();
    let mut r = Reassembler::new(ReassemblyConfig::default());
    for i in 0..split.fragment_count() - 1 {
        r.push(SWITCH, 1, &split.fragment(i), 0).unwrap();
        r.push(SWITCH + 1, 1, &split.fragment(i), 0).unwrap();
    }
    assert_eq!(r.pending(), 2);
    let last = split.fragment(split.fragment_count() - 1);
    assert_eq!(
        r.push(SWITCH + 1, 1, &last, 0).unwrap().unwrap().sender,
        SWITCH + 1
    );
    assert_eq!(r.push(SWITCH, 1, &last, 0).unwrap().unwrap().request, req);
}

#[test]
fn larger_total_restarts_smaller_is_stale() {
    let old = request(3000);
    let new = request(4000);
    let s_old = CreateSplitter::new(tcp_state::v4(3000), &old, MAX_FRAME_LEN_V4).unwrap();
    let s_new = CreateSplitter::new(tcp_state::v4(4000), &new, MAX_FRAME_LEN_V4).unwrap();
    let mut r = Reassembler::new(ReassemblyConfig::default());
    r.push(SWITCH, 1, &s_old.fragment(0), 0).unwrap();
    r.push(SWITCH, 1, &s_new.fragment(1), 0).unwrap();
    assert_eq!(r.progress(SWITCH, 1).unwrap().1, 4000);
    // A late fragment of the older, shorter CREATE is ignored.
    assert_eq!(r.push(SWITCH, 1, &s_old.fragment(1), 0), Ok(None));
    let mut done = None;
    for i in 0..s_new.fragment_count() {
        if let Some(a) = r.push(SWITCH, 1, &s_new.fragment(i), 0).unwrap() {
            done = Some(a);
        }
    }
    assert_eq!(done.unwrap().request, new);
}

#[test]
fn overlapping_fragments_keep_first_bytes() {
    let req = request(3000);
    let split = CreateSplitter::new(tcp_state::v4(3000), &req, MAX_FRAME_LEN_V4).unwrap();
    let mut r = Reassembler::new(ReassemblyConfig::default());
    r.push(SWITCH, 1, &split.fragment(1), 0).unwrap();
    // An overlapping fragment whose bytes differ where they overlap.
    let f1 = split.fragment(1);
    let junk = vec![0xaa; 200];
    let overlap = CreateFragment {
        total_len: 3000,
        offset: f1.offset + f1.data.len() as u32 - 100,
        state: None,
        data: &junk,
    };
    r.push(SWITCH, 1, &overlap, 0).unwrap();
    let mut done = None;
    for i in 0..split.fragment_count() {
        if let Some(a) = r.push(SWITCH, 1, &split.fragment(i), 0).unwrap() {
            done = Some(a);
        }
    }
    let got = done.unwrap().request;
    let end1 = (f1.offset as usize) + f1.data.len();
    assert_eq!(&got[..end1], &req[..end1], "first bytes win in the overlap");
    assert!(
        got[end1..end1 + 100].iter().all(|&b| b == 0xaa),
        "the hole after was filled by the overlap"
    );
}

#[test]
fn hand_built_fragment_beyond_total_is_ignored() {
    let mut r = Reassembler::new(ReassemblyConfig::default());
    let bad = CreateFragment {
        total_len: 10,
        offset: 8,
        state: None,
        data: b"12345",
    };
    assert_eq!(r.push(SWITCH, 1, &bad, 0), Ok(None));
    let bad = CreateFragment {
        total_len: 10,
        offset: u32::MAX,
        state: None,
        data: b"1",
    };
    assert_eq!(r.push(SWITCH, 1, &bad, 0), Ok(None));
    assert_eq!(r.progress(SWITCH, 1), Some((0, 10)));
}
