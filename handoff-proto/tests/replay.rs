//! Replay protection (spec §7.4): timestamp window and sliding sequence
//! bitmap, per sender.

mod common;

use common::*;
use handoff_proto::*;

#[test]
fn replayed_frame_is_rejected() {
    let f = seal_vec(
        &header(5, 100),
        &Body::Abort(Abort {
            reason: AbortReason::ClientReset,
        }),
        &key(),
    );
    let mut guards = ReplayGuards::default();
    let (frame, _) = open(&keyring(), AGENT, &f).unwrap();
    assert_eq!(guards.accept(&frame.header, NOW_MS), Ok(()));
    // The very same datagram again, a moment later.
    let (frame, _) = open(&keyring(), AGENT, &f).unwrap();
    assert_eq!(
        guards.accept(&frame.header, NOW_MS + 5),
        Err(ReplayError::Duplicate(100))
    );
}

#[test]
fn timestamp_window_is_enforced_both_ways() {
    let g = ReplayGuard::new(30_000);
    assert_eq!(g.check(1, NOW_MS - 30_000, NOW_MS), Ok(()));
    assert_eq!(g.check(1, NOW_MS + 30_000, NOW_MS), Ok(()));
    assert_eq!(
        g.check(1, NOW_MS - 30_001, NOW_MS),
        Err(ReplayError::TooOld { behind_ms: 30_001 })
    );
    assert_eq!(
        g.check(1, NOW_MS + 30_001, NOW_MS),
        Err(ReplayError::TooNew { ahead_ms: 30_001 })
    );
    assert_eq!(
        g.check(1, 0, NOW_MS).unwrap_err().label(),
        "timestamp_too_old"
    );
    assert_eq!(
        g.check(1, u64::MAX, NOW_MS).unwrap_err().label(),
        "timestamp_too_new"
    );
}

#[test]
fn sliding_window_accepts_reordering_and_rejects_duplicates() {
    let mut g = ReplayGuard::default();
    for s in [10, 12, 11, 15, 13, 14] {
        assert_eq!(g.accept(s, NOW_MS, NOW_MS), Ok(()), "seq {s}");
    }
    for s in 10..=15 {
        assert_eq!(g.accept(s, NOW_MS, NOW_MS), Err(ReplayError::Duplicate(s)));
    }
    assert_eq!(g.highest(), Some(15));
    // Far ahead: the window slides; the old ones fall behind it.
    let far = 15 + REPLAY_WINDOW + 3;
    assert_eq!(g.accept(far, NOW_MS, NOW_MS), Ok(()));
    assert_eq!(
        g.accept(15, NOW_MS, NOW_MS),
        Err(ReplayError::BehindWindow(15))
    );
    // Just inside the window and unseen: accepted once.
    let inside = far - REPLAY_WINDOW + 1;
    assert_eq!(g.accept(inside, NOW_MS, NOW_MS), Ok(()));
    assert_eq!(
        g.accept(inside, NOW_MS, NOW_MS),
        Err(ReplayError::Duplicate(inside))
    );
    assert_eq!(
        g.accept(far - REPLAY_WINDOW, NOW_MS, NOW_MS),
        Err(ReplayError::BehindWindow(far - REPLAY_WINDOW))
    );
}

#[test]
fn sliding_by_less_than_the_window_clears_reused_slots() {
    let mut g = ReplayGuard::default();
    for s in 0..REPLAY_WINDOW {
        g.accept(s, NOW_MS, NOW_MS).unwrap();
    }
    // s + WINDOW reuses s's bit; it must be treated as new.
    for s in REPLAY_WINDOW..REPLAY_WINDOW + 100 {
        assert_eq!(g.accept(s, NOW_MS, NOW_MS), Ok(()), "seq {s}");
    }
    for s in 100..REPLAY_WINDOW + 100 {
        assert_eq!(
            g.accept(s, NOW_MS, NOW_MS),
            Err(ReplayError::Duplicate(s)),
            "seq {s}"
        );
    }
}

#[test]
fn restarted_sender_is_accepted_by_clock_seeded_sequence() {
    let mut g = ReplayGuard::default();
    let before = SeqCounter::new(NOW_MS);
    for _ in 0..5000 {
        g.accept(before.next(), NOW_MS, NOW_MS).unwrap();
    }
    // The sender restarts one second later: its new sequence numbers are above
    // everything it sent before, so the receiver accepts them.
    let after = SeqCounter::new(NOW_MS + 1000);
    assert_eq!(g.accept(after.next(), NOW_MS + 1000, NOW_MS + 1000), Ok(()));
}

#[test]
fn retransmitted_create_with_fresh_seq_is_not_a_replay() {
    let split = CreateSplitter::new(
        tcp_state::v4(REQUEST.len() as u32),
        REQUEST,
        MAX_FRAME_LEN_V4,
    )
    .unwrap();
    let mut guards = ReplayGuards::default();
    let mut buf = [0u8; MAX_FRAME_LEN_V4];
    for (seq, flags) in [(1, 0), (2, flags::RETRANSMIT)] {
        let mut h = header(7, seq);
        h.flags = flags;
        let n = split.write(0, &h, &key(), &mut buf);
        let (frame, _) = open(&keyring(), AGENT, &buf[..n]).unwrap();
        assert_eq!(frame.header.flags, flags);
        assert_eq!(guards.accept(&frame.header, NOW_MS), Ok(()));
    }
}

#[test]
fn senders_are_tracked_separately_and_bounded() {
    let mut guards = ReplayGuards::new(30_000, 2);
    let mut h = header(1, 1);
    assert_eq!(guards.accept(&h, NOW_MS), Ok(()));
    h.sender = SWITCH + 1;
    assert_eq!(
        guards.accept(&h, NOW_MS),
        Ok(()),
        "same seq from another sender is fine"
    );
    h.sender = SWITCH + 2;
    assert_eq!(guards.accept(&h, NOW_MS), Err(ReplayError::TooManyPeers));
    guards.forget(SWITCH + 1);
    assert_eq!(guards.accept(&h, NOW_MS), Ok(()));
    assert_eq!(guards.len(), 2);
}

#[test]
fn rejected_frames_do_not_move_the_window() {
    let mut g = ReplayGuard::default();
    g.accept(10, NOW_MS, NOW_MS).unwrap();
    // A far-ahead sequence with a stale timestamp is refused and not recorded.
    assert!(g.accept(10_000, NOW_MS - 60_000, NOW_MS).is_err());
    assert_eq!(g.highest(), Some(10));
    assert_eq!(g.accept(9, NOW_MS, NOW_MS), Ok(()));
}

#[test]
fn restarted_receiver_refuses_frames_from_before_its_start() {
    // Started at NOW_MS (monotonic 0); a frame captured 5 s before the start
    // is refused, one stamped within the slack (clock difference) is not.
    let started = Now {
        wall_ms: NOW_MS,
        mono_ms: 0,
    };
    let mut guards = ReplayGuards::default().with_start(started, NOT_BEFORE_SLACK_MS);
    let now = Now {
        wall_ms: NOW_MS + 10,
        mono_ms: 10,
    };
    let mut h = header(1, 1);
    h.timestamp_ms = NOW_MS - 5_000;
    assert_eq!(
        guards.accept_at(&h, now),
        Err(ReplayError::BeforeStart { early_ms: 5_000 })
    );
    h.timestamp_ms = NOW_MS - NOT_BEFORE_SLACK_MS / 2;
    assert_eq!(guards.accept_at(&h, now), Ok(()));
}

#[test]
fn a_resumed_window_refuses_what_the_previous_process_accepted() {
    // The previous process accepted up to 5 000 from the switch a moment before
    // it died; a frame it accepted, stamped within the start slack, is
    // refused by the new process, and the sender's next frames are not.
    let started = Now {
        wall_ms: NOW_MS,
        mono_ms: 0,
    };
    let mut guards = ReplayGuards::default().with_start(started, NOT_BEFORE_SLACK_MS);
    guards.resume(SWITCH, 5_000);
    assert_eq!(guards.highest(SWITCH), Some(5_000));
    let now = Now {
        wall_ms: NOW_MS + 10,
        mono_ms: 10,
    };
    let mut h = header(1, 5_000);
    h.timestamp_ms = NOW_MS - NOT_BEFORE_SLACK_MS / 2;
    assert_eq!(
        guards.accept_at(&h, now),
        Err(ReplayError::Duplicate(5_000))
    );
    h.msg_seq = 17;
    assert_eq!(
        guards.accept_at(&h, now),
        Err(ReplayError::BehindWindow(17))
    );
    h.msg_seq = 5_001;
    h.timestamp_ms = NOW_MS + 5;
    assert_eq!(guards.accept_at(&h, now), Ok(()));
    assert_eq!(
        guards.accept_at(&h, now),
        Err(ReplayError::Duplicate(5_001))
    );
    // Resuming a sender heard from since the start changes nothing.
    guards.resume(SWITCH, 10_000);
    assert_eq!(guards.highest(SWITCH), Some(5_001));
    // A sender that was never resumed starts empty.
    let mut other = header(2, 3);
    other.sender = SWITCH + 1;
    other.timestamp_ms = NOW_MS;
    assert_eq!(guards.accept_at(&other, now), Ok(()));
}

#[test]
fn not_before_follows_a_wall_clock_step_of_the_receiver() {
    // The receiver's wall clock was an hour fast at its start and NTP
    // stepped it back 10 s later: a sender with a correct clock is accepted.
    let hour = 3_600_000;
    let started = Now {
        wall_ms: NOW_MS + hour,
        mono_ms: 0,
    };
    let mut guards = ReplayGuards::default().with_start(started, NOT_BEFORE_SLACK_MS);
    let now = Now {
        wall_ms: NOW_MS + 10_000,
        mono_ms: 10_000,
    };
    let mut h = header(1, 1);
    h.timestamp_ms = NOW_MS + 10_000;
    assert_eq!(guards.accept_at(&h, now), Ok(()));
}

#[test]
fn a_known_sender_survives_a_wall_clock_step_of_the_receiver() {
    let mut guards = ReplayGuards::default();
    let mut h = header(1, 100);
    h.timestamp_ms = NOW_MS;
    let t0 = Now {
        wall_ms: NOW_MS,
        mono_ms: 5_000,
    };
    assert_eq!(guards.accept_at(&h, t0), Ok(()));
    // The receiver's wall clock jumps an hour ahead (or back); the sender's
    // timestamps follow real time, which the monotonic clock measures.
    for step in [3_600_000i64, -3_600_000] {
        for k in 1..=3u64 {
            h.msg_seq += 1;
            h.timestamp_ms += 20_000;
            let now = Now {
                wall_ms: (h.timestamp_ms as i64 + step) as u64,
                mono_ms: t0.mono_ms + (h.timestamp_ms - NOW_MS),
            };
            assert_eq!(guards.accept_at(&h, now), Ok(()), "step {step}, frame {k}");
        }
    }
    // A replay is still a replay, and a frame far off the sender's timeline
    // is still refused.
    let now = Now {
        wall_ms: 0,
        mono_ms: t0.mono_ms + (h.timestamp_ms - NOW_MS),
    };
    assert_eq!(
        guards.accept_at(&h, now),
        Err(ReplayError::Duplicate(h.msg_seq))
    );
    let mut old = h;
    old.msg_seq += 1;
    old.timestamp_ms -= 60_000;
    assert_eq!(
        guards.accept_at(&old, now),
        Err(ReplayError::TooOld { behind_ms: 60_000 })
    );
}

#[test]
fn a_sender_whose_clock_was_corrected_is_accepted_again() {
    // The sender ran an hour slow and the receiver had anchored on that;
    // after NTP fixed the sender (and it restarted), its frames match the
    // receiver's wall clock and re-anchor the window.
    let hour = 3_600_000;
    let mut guards = ReplayGuards::default();
    let mut h = header(1, 100);
    h.timestamp_ms = NOW_MS - hour + 10_000;
    let t0 = Now {
        wall_ms: NOW_MS - hour + 10_000,
        mono_ms: 0,
    };
    assert_eq!(guards.accept_at(&h, t0), Ok(()));
    let t1 = Now {
        wall_ms: NOW_MS + 20_000,
        mono_ms: 20_000,
    };
    h.msg_seq = 1 << 40;
    h.timestamp_ms = NOW_MS + 20_000;
    assert_eq!(guards.accept_at(&h, t1), Ok(()));
    h.msg_seq += 1;
    h.timestamp_ms += 1_000;
    let t2 = Now {
        wall_ms: 0,
        mono_ms: 21_000,
    };
    assert_eq!(guards.accept_at(&h, t2), Ok(()));
}

mod model {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    proptest! {
        /// The bitmap ring agrees with a plain model (set of seen numbers and
        /// the highest) on every step of random traffic: bursts, gaps larger
        /// than the window, reordering, and replays.
        #[test]
        fn guard_matches_model(steps in proptest::collection::vec((0u8..4, 0u64..3000), 1..400)) {
            let mut g = ReplayGuard::default();
            let mut seen = HashSet::new();
            let mut highest: Option<u64> = None;
            let mut cursor = 5_000u64;
            for (kind, n) in steps {
                let seq = match kind {
                    0 => { cursor += 1; cursor }              // in order
                    1 => { cursor += n; cursor }              // jump, maybe past the window
                    2 => cursor.saturating_sub(n % 1500),     // late / reordered
                    _ => cursor.saturating_sub(n % 8),        // likely replay
                };
                let expect = match highest {
                    None => true,
                    Some(h) if seq > h => true,
                    Some(h) => h - seq < REPLAY_WINDOW && !seen.contains(&seq),
                };
                let got = g.accept(seq, NOW_MS, NOW_MS).is_ok();
                prop_assert_eq!(got, expect, "seq {} highest {:?}", seq, highest);
                if got {
                    seen.insert(seq);
                    highest = Some(highest.map_or(seq, |h| h.max(seq)));
                }
            }
        }
    }
}
