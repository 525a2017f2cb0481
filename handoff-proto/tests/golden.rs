//! Golden byte fixtures (spec Appendix A and the worked example of §10): the
//! frames are built here from the documented field values and must equal,
//! byte for byte, the hex blocks in `docs/thop.md`; each fixture must also
//! decode back to those values. `THOP_PRINT_FIXTURES=1 cargo test -p
//! handoff-proto --test golden -- --nocapture` prints them for the spec.

mod common;

use common::*;
use handoff_proto::*;

const SPEC: &str = include_str!("../../docs/thop.md");

/// The worked example's request (spec §10).
const EXAMPLE_CONN: u64 = 0x0001_0000_0000_002a;

/// (name, frame) for every fixture, built from the values the spec lists.
fn fixtures() -> Vec<(&'static str, Vec<u8>)> {
    let mut out = Vec::new();
    let seq0 = initial_msg_seq(NOW_MS);

    // §10 worked example: one-fragment CREATE, IPv4, every option.
    let split = CreateSplitter::new(
        tcp_state::v4(REQUEST.len() as u32),
        REQUEST,
        MAX_FRAME_LEN_V4,
    )
    .unwrap();
    assert_eq!(split.fragment_count(), 1);
    let mut h = header(EXAMPLE_CONN, seq0);
    let mut buf = vec![0u8; split.frame_len(0)];
    split.write(0, &h, &key(), &mut buf);
    out.push(("worked-example", buf));

    // A.1: CREATE over IPv6 without options, 300-byte request, 256-byte frames.
    let req: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
    let split = CreateSplitter::new(tcp_state::v6(300), &req, MIN_FRAME_LEN).unwrap();
    assert_eq!(split.fragment_count(), 3);
    for (i, name) in [
        (0, "create-v6-fragment-0"),
        (1, "create-v6-fragment-1"),
        (2, "create-v6-fragment-2"),
    ] {
        h = header(EXAMPLE_CONN + 1, seq0 + 1 + i as u64);
        h.flags = flags::RETRANSMIT;
        let mut buf = vec![0u8; split.frame_len(i)];
        split.write(i, &h, &key(), &mut buf);
        out.push((name, buf));
    }

    // A.2 – A.7: the control frames.
    let mut r = reply_header(EXAMPLE_CONN, 0x0000_1a2b_3c4d_5e6f);
    r.flags = flags::DUPLICATE;
    out.push((
        "ack",
        seal_vec(&r, &Body::Ack(Ack { echo_seq: seq0 }), &key()),
    ));
    let r = reply_header(EXAMPLE_CONN, 0x0000_1a2b_3c4d_5e70);
    out.push((
        "nack-backlog-full",
        seal_vec(
            &r,
            &Body::Nack(Nack {
                echo_seq: seq0,
                reason: NackReason::BacklogFull,
                versions: &[],
            }),
            &key(),
        ),
    ));
    out.push((
        "nack-unsupported-version",
        seal_vec(
            &r,
            &Body::Nack(Nack {
                echo_seq: seq0,
                reason: NackReason::UnsupportedVersion,
                versions: SUPPORTED_VERSIONS,
            }),
            &key(),
        ),
    ));
    let r = reply_header(EXAMPLE_CONN, 0x0000_1a2b_3c4d_5e71);
    out.push((
        "close",
        seal_vec(
            &r,
            &Body::Close(Close {
                reason: CloseReason::ClientFin,
                bytes_from_client: 51,
                bytes_to_client: 1_048_832,
            }),
            &key(),
        ),
    ));
    out.push((
        "abort",
        seal_vec(
            &header(EXAMPLE_CONN, seq0 + 9),
            &Body::Abort(Abort {
                reason: AbortReason::ClientReset,
            }),
            &key(),
        ),
    ));
    let r = reply_header(0, 0x0000_1a2b_3c4d_5e72);
    out.push((
        "load",
        seal_vec(
            &r,
            &Body::Load(Load {
                active_conns: 1200,
                adopted_per_sec: 350,
                capacity_hint: 8800,
                interval_ms: 1000,
            }),
            &key(),
        ),
    ));

    // A.8 – A.10: state recovery. The switch's boot is 0x5eed0001, the agent's
    // 0xa9e70001.
    let mut h = header(0, seq0 + 10);
    h.boot = SWITCH_BOOT;
    out.push((
        "hello",
        seal_vec(
            &h,
            &Body::Hello(Hello {
                interval_ms: 1000,
                flags: 0,
            }),
            &key(),
        ),
    ));
    let mut r = reply_header(0, 0x0000_1a2b_3c4d_5e73);
    r.boot = AGENT_BOOT;
    out.push((
        "flows",
        seal_vec(
            &r,
            &Body::Flows(Flows {
                flags: Flows::LAST,
                records: Records::List(&recovery_records()),
            }),
            &key(),
        ),
    ));
    let mut h = header(0, seq0 + 11);
    h.boot = SWITCH_BOOT;
    let mut asked = recovery_records();
    asked.iter_mut().for_each(|r| {
        r.conn_id = 0;
        r.origin_boot = 0;
    });
    out.push((
        "lookup",
        seal_vec(
            &h,
            &Body::Lookup(Lookup {
                records: Records::List(&asked[..1]),
            }),
            &key(),
        ),
    ));
    out
}

const SWITCH_BOOT: u32 = 0x5eed_0001;
const AGENT_BOOT: u32 = 0xa9e7_0001;

/// The connections of §10 and A.1, as FLOWS lists them.
fn recovery_records() -> [FlowRecord; 2] {
    [
        FlowRecord {
            conn_id: EXAMPLE_CONN,
            origin_boot: SWITCH_BOOT,
            client: "198.18.0.101:40000".parse().unwrap(),
            vip: "198.18.0.10:80".parse().unwrap(),
        },
        FlowRecord {
            conn_id: EXAMPLE_CONN + 1,
            origin_boot: 0,
            client: "[2001:db8::101]:40000".parse().unwrap(),
            vip: "[2001:db8::10]:443".parse().unwrap(),
        },
    ]
}

/// Extracts the bytes of the spec's ```` ```hex fixture=NAME ```` block:
/// hex digits of each line, comments after `#` removed.
fn spec_fixture(name: &str) -> Option<Vec<u8>> {
    let open = format!("```hex fixture={name}\n");
    let start = SPEC.find(&open)? + open.len();
    let end = start + SPEC[start..].find("```")?;
    let digits: String = SPEC[start..end]
        .lines()
        .map(|l| l.split('#').next().unwrap_or(""))
        .flat_map(|l| l.chars())
        .filter(|c| c.is_ascii_hexdigit())
        .collect();
    hex::decode(digits).ok()
}

/// Field boundaries of the worked example, for the annotated dump.
const EXAMPLE_FIELDS: &[(usize, &str)] = &[
    (2, "magic \"TH\""),
    (1, "version 1"),
    (1, "opcode 1 = CREATE"),
    (2, "flags: none"),
    (2, "body_len = 115"),
    (4, "key_id = 1"),
    (4, "sender = 198.18.0.2"),
    (4, "receiver = 198.18.0.11"),
    (4, "reserved"),
    (8, "conn_id"),
    (8, "msg_seq = timestamp_ms << 20"),
    (8, "timestamp_ms = 1800000000000"),
    (16, "tag = BLAKE3-keyed(key, bytes 0..48 || body)[0..16]"),
    (4, "CREATE total_len = 51"),
    (4, "offset = 0"),
    (2, "state_len = 52"),
    (2, "reserved"),
    (1, "family = 4"),
    (1, "options = WSCALE | SACK_PERMITTED | TIMESTAMPS"),
    (1, "client_wscale = 7"),
    (1, "server_wscale = 7"),
    (2, "mss = 1460"),
    (2, "reserved"),
    (4, "client_isn"),
    (4, "client_next = client_isn + 1 + 51"),
    (4, "server_isn"),
    (4, "server_next = server_isn + 1"),
    (4, "client_window = 8222720 (64240 << 7)"),
    (4, "server_window = 65535"),
    (4, "ts_recent"),
    (4, "ts_val"),
    (2, "client_port = 40000"),
    (2, "vip_port = 80"),
    (4, "client address 198.18.0.101"),
    (4, "vip address 198.18.0.10"),
];

fn dump(name: &str, f: &[u8]) {
    println!("```hex fixture={name}");
    if name == "worked-example" {
        let mut at = 0;
        for (len, what) in EXAMPLE_FIELDS {
            let words: Vec<String> = f[at..at + len].chunks(8).map(hex::encode).collect();
            println!("{:<40}# {at:3}: {what}", words.join(" "));
            at += len;
        }
        for row in f[at..].chunks(16) {
            let text: String = row
                .iter()
                .map(|&b| {
                    if b.is_ascii_graphic() || b == b' ' {
                        b as char
                    } else {
                        '.'
                    }
                })
                .collect();
            println!("{:<40}# {at:3}: request \"{text}\"", hex::encode(row));
            at += row.len();
        }
    } else {
        for (i, row) in f.chunks(16).enumerate() {
            let words: Vec<String> = row.chunks(2).map(hex::encode).collect();
            println!("{:<40}# {:3}", words.join(" "), i * 16);
        }
    }
    println!("```");
}

#[test]
fn spec_fixtures_match_the_code_byte_for_byte() {
    let print = std::env::var_os("THOP_PRINT_FIXTURES").is_some();
    for (name, frame) in fixtures() {
        if print {
            dump(name, &frame);
            continue;
        }
        let doc =
            spec_fixture(name).unwrap_or_else(|| panic!("docs/thop.md has no fixture {name}"));
        assert_eq!(
            hex::encode(&doc),
            hex::encode(&frame),
            "fixture {name} differs from the code"
        );
    }
}

#[test]
fn worked_example_decodes_to_the_documented_values() {
    let bytes = spec_fixture("worked-example").expect("worked example in the spec");
    assert_eq!(bytes.len(), 179);
    let (frame, rest) = open(&keyring(), AGENT, &bytes).unwrap();
    assert!(rest.is_empty());
    assert_eq!(frame.version, 1);
    assert_eq!(frame.key_id, 1);
    assert_eq!(frame.header, header(EXAMPLE_CONN, initial_msg_seq(NOW_MS)));
    let Body::Create(frag) = frame.body else {
        panic!("not a CREATE")
    };
    assert_eq!(frag.state, Some(tcp_state::v4(REQUEST.len() as u32)));
    assert_eq!(frag.data, REQUEST);
    assert!(frag.is_whole());
    let client = frag.state.unwrap().client();
    assert_eq!(client.to_string(), "198.18.0.101:40000");
    assert_eq!(node_id("198.18.0.11".parse().unwrap()), AGENT);
    assert_eq!(node_id("198.18.0.2".parse().unwrap()), SWITCH);
    // IPv6: first 4 bytes of BLAKE3 of the 16 address bytes (spec §4.2).
    let v6: std::net::Ipv6Addr = "2001:db8::11".parse().unwrap();
    let h = blake3::hash(&v6.octets());
    let expect = u32::from_be_bytes(h.as_bytes()[..4].try_into().unwrap());
    assert_eq!(node_id(v6.into()), expect);
}

#[test]
fn every_fixture_opens_and_every_opcode_is_covered() {
    let mut opcodes = std::collections::HashSet::new();
    for (name, frame) in fixtures() {
        let local = FrameView::parse(&frame).unwrap().0.receiver();
        let (f, _) = open(&keyring(), local, &frame).unwrap_or_else(|e| panic!("{name}: {e}"));
        opcodes.insert(f.body.opcode());
    }
    assert_eq!(opcodes.len(), Opcode::ALL.len());
}

/// Writes the fixtures as the fuzz seed corpus (run once when fixtures change:
/// `THOP_WRITE_CORPUS=1 cargo test -p handoff-proto --test golden`).
#[test]
fn write_fuzz_corpus_on_request() {
    let Some(_) = std::env::var_os("THOP_WRITE_CORPUS") else {
        return;
    };
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz/corpus/thop_decode");
    std::fs::create_dir_all(dir).unwrap();
    for (name, frame) in fixtures() {
        std::fs::write(format!("{dir}/{name}"), frame).unwrap();
    }
}

/// The tag of every fixture is the spec's formula (§7.1) computed directly
/// with the blake3 crate, independently of `Key::tag`.
#[test]
fn fixture_tags_follow_the_spec_formula() {
    let mut key_bytes = [0u8; 32];
    for (i, x) in key_bytes.iter_mut().enumerate() {
        *x = i as u8;
    }
    for (name, frame) in fixtures() {
        let mut input = frame[..48].to_vec();
        input.extend_from_slice(&frame[64..]);
        let full = blake3::keyed_hash(&key_bytes, &input);
        assert_eq!(&frame[48..64], &full.as_bytes()[..16], "fixture {name}");
    }
}

/// Appendix C's table states the crate's constants.
#[test]
fn spec_constants_table_matches_the_crate() {
    let table = &SPEC[SPEC.find("## Appendix C").expect("Appendix C")..];
    let row = |name: &str| -> String {
        let line = table
            .lines()
            .find(|l| l.starts_with(&format!("| {name} |")))
            .unwrap_or_else(|| panic!("row {name}"));
        line.split('|').nth(2).unwrap().trim().to_string()
    };
    assert_eq!(row("UDP port"), DEFAULT_PORT.to_string());
    assert_eq!(row("magic"), format!("`{MAGIC:#06x}`"));
    assert_eq!(row("header length"), HEADER_LEN.to_string());
    assert_eq!(
        row("tag length, offset"),
        format!("{TAG_LEN}, {TAG_OFFSET}")
    );
    assert_eq!(row("key length"), KEY_LEN.to_string());
    assert_eq!(
        row("max frame, IPv4 / IPv6 at MTU 1500"),
        format!("{MAX_FRAME_LEN_V4} / {MAX_FRAME_LEN_V6}")
    );
    assert_eq!(row("min `max_frame_len`"), MIN_FRAME_LEN.to_string());
    assert_eq!(row("max `max_frame_len`"), MAX_UDP_FRAME_LEN.to_string());
    assert_eq!(row("CREATE fixed part"), CREATE_FIXED_LEN.to_string());
    assert_eq!(
        row("state block, IPv4 / IPv6"),
        format!("{STATE_LEN_V4} / {STATE_LEN_V6}")
    );
    assert_eq!(row("max request"), format!("{} MiB", MAX_REQUEST_LEN >> 20));
    assert_eq!(
        row("min MSS, max window shift"),
        format!("{MIN_MSS}, {MAX_WSCALE}")
    );
    assert_eq!(
        row("replay window"),
        format!("{REPLAY_WINDOW} sequence numbers")
    );
    assert_eq!(row("default timestamp skew"), "±30 000 ms");
    assert_eq!(DEFAULT_MAX_SKEW_MS, 30_000);
    assert_eq!(initial_msg_seq(3), 3 << 20);
}
