//! THOP codec throughput on one core: encode+authenticate and
//! verify+decode of a CREATE carrying a 1 KiB request (one 1152-byte frame),
//! plus the whole agent receive path and a 64 KiB CREATE (47 frames).
//!
//! Run: `cargo bench -p handoff-proto --bench thop_codec`
//! (prints frames/s per core: single-threaded, measured in the thread's CPU
//! time; `THOP_BENCH_MS` sets the CPU time per case, default 1500).

use std::hint::black_box;
use std::time::Duration;

use handoff_proto::*;

const NOW_MS: u64 = 1_800_000_000_000;
const SWITCH: u32 = 0xc612_0002;
const AGENT: u32 = 0xc612_000b;

/// The spec's worked example with a request of `len` bytes.
fn state(len: usize) -> TcpState {
    testkit::tcp_state::v4(len as u32)
}

fn header(conn_id: u64, msg_seq: u64) -> Header {
    Header {
        flags: 0,
        sender: SWITCH,
        receiver: AGENT,
        boot: 0,
        conn_id,
        msg_seq,
        timestamp_ms: NOW_MS,
    }
}

/// CPU time of the calling thread: "per core" figures stay honest when other
/// processes share the machine (wall time would count their slices too).
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant
    // Linux supports for every thread.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Runs `f` in batches until `budget` of this thread's CPU time has passed;
/// returns calls per CPU second.
fn rate(budget: Duration, mut f: impl FnMut(u64)) -> f64 {
    // Warm up.
    for i in 0..1000 {
        f(i);
    }
    let start = thread_cpu();
    let mut n = 0u64;
    while thread_cpu() - start < budget {
        for _ in 0..1000 {
            f(n);
            n += 1;
        }
    }
    n as f64 / (thread_cpu() - start).as_secs_f64()
}

fn report(name: &str, frames_per_call: f64, bytes_per_call: f64, calls_per_sec: f64) {
    let fps = calls_per_sec * frames_per_call;
    println!(
        "{name:<56} {:>12.0} frames/s  {:>8.1} ns/frame  {:>8.1} MB/s",
        fps,
        1e9 / fps,
        calls_per_sec * bytes_per_call / 1e6
    );
}

fn main() {
    let budget = Duration::from_millis(
        std::env::var("THOP_BENCH_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1500),
    );
    let key = Key::new(1, [0x42; 32]);
    let keys = Keyring::new(key.clone());
    let request = vec![b'a'; 1024];
    let mut buf = [0u8; MAX_FRAME_LEN_V4];

    // 1. Switch: split + encode + tag one CREATE (1 KiB request, one frame).
    let frame_len = CreateSplitter::new(state(1024), &request, MAX_FRAME_LEN_V4)
        .unwrap()
        .frame_len(0);
    let r = rate(budget, |i| {
        let split =
            CreateSplitter::new(state(1024), black_box(&request), MAX_FRAME_LEN_V4).unwrap();
        black_box(split.write(0, &header(i + 1, i), &key, &mut buf));
    });
    println!("THOP codec, one core; CREATE with a 1 KiB request = one {frame_len}-byte frame");
    report(
        "encode+authenticate CREATE (1 KiB)",
        1.0,
        frame_len as f64,
        r,
    );

    // 2. Agent: verify + decode the same frame.
    let split = CreateSplitter::new(state(1024), &request, MAX_FRAME_LEN_V4).unwrap();
    let n = split.write(0, &header(7, 7), &key, &mut buf);
    let frame = buf[..n].to_vec();
    let r = rate(budget, |_| {
        let (f, _) = open(&keys, AGENT, black_box(&frame)).unwrap();
        black_box(f);
    });
    report("verify+decode CREATE (1 KiB)", 1.0, n as f64, r);

    // 3. Agent: the whole receive path (verify, replay check, decode, reassemble).
    let mut frames = Vec::new();
    for i in 0..1024u64 {
        let n = split.write(0, &header(i + 1, i), &key, &mut buf);
        frames.push(buf[..n].to_vec());
    }
    let mut reasm = Reassembler::new(ReassemblyConfig::default());
    let mut seq = 0u64;
    let r = rate(budget, |i| {
        // Fresh sequence numbers so the replay guard accepts every frame.
        let f = &frames[(i % 1024) as usize];
        let (frame, _) = open(&keys, AGENT, f).unwrap();
        let mut guard = ReplayGuard::default();
        seq += 1;
        guard
            .accept(seq, frame.header.timestamp_ms, NOW_MS)
            .unwrap();
        if let Body::Create(frag) = frame.body {
            black_box(reasm.push(SWITCH, frame.header.conn_id, &frag, 0).unwrap());
        }
    });
    report("verify+replay+decode+reassemble (1 KiB)", 1.0, n as f64, r);

    // 4. A 64 KiB request: 47 frames each way.
    let big = vec![b'b'; 64 * 1024];
    let split = CreateSplitter::new(state(big.len()), &big, MAX_FRAME_LEN_V4).unwrap();
    let count = split.fragment_count();
    let total: usize = (0..count).map(|i| split.frame_len(i)).sum();
    let r = rate(budget, |c| {
        for i in 0..count {
            black_box(split.write(i, &header(c + 1, c * 64 + i as u64), &key, &mut buf));
        }
    });
    report(
        &format!("encode+authenticate CREATE (64 KiB, {count} frames)"),
        count as f64,
        total as f64,
        r,
    );
    let big_frames: Vec<Vec<u8>> = (0..count)
        .map(|i| {
            let n = split.write(i, &header(9, i as u64), &key, &mut buf);
            buf[..n].to_vec()
        })
        .collect();
    let mut reasm = Reassembler::new(ReassemblyConfig::default());
    let r = rate(budget, |c| {
        for f in &big_frames {
            let (frame, _) = open(&keys, AGENT, f).unwrap();
            if let Body::Create(frag) = frame.body {
                black_box(reasm.push(SWITCH, c, &frag, 0).unwrap());
            }
        }
    });
    report(
        &format!("verify+decode+reassemble CREATE (64 KiB, {count} frames)"),
        count as f64,
        total as f64,
        r,
    );
}
