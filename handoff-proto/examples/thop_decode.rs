//! Decodes one THOP frame given in hex (e.g. the UDP payload from
//! `tcpdump -X udp port 9199`), for operators and for checking the spec.
//!
//! ```text
//! cargo run -p handoff-proto --example thop_decode -- [--key ID:HEX64] [--node ADDR] HEX...
//! ```
//! Without `--key` only the header is shown (unauthenticated). With it, the
//! tag is verified and the body decoded; `--node` (default: the frame's own
//! receiver) is the receiver address to check against.

use std::net::IpAddr;
use std::process::ExitCode;

use handoff_proto::*;

fn main() -> ExitCode {
    let mut key = None;
    let mut node = None;
    let mut hex_digits = String::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--key" => {
                let v = args.next().unwrap_or_default();
                let Some((id, hex)) = v.split_once(':') else {
                    eprintln!("--key wants ID:HEX64");
                    return ExitCode::from(2);
                };
                match id
                    .parse()
                    .map_err(|_| "bad key id".to_string())
                    .and_then(|id| Key::from_hex(id, hex).map_err(|e| e.to_string()))
                {
                    Ok(k) => key = Some(k),
                    Err(e) => {
                        eprintln!("--key: {e}");
                        return ExitCode::from(2);
                    }
                }
            }
            "--node" => match args.next().and_then(|v| v.parse::<IpAddr>().ok()) {
                Some(ip) => node = Some(node_id(ip)),
                None => {
                    eprintln!("--node wants an IP address");
                    return ExitCode::from(2);
                }
            },
            "-h" | "--help" => {
                println!("usage: thop_decode [--key ID:HEX64] [--node ADDR] HEX...");
                return ExitCode::SUCCESS;
            }
            // Hex may come split in words, with tcpdump offsets removed by the caller.
            _ => hex_digits.extend(a.chars().filter(|c| c.is_ascii_hexdigit())),
        }
    }
    let bytes = match hex::decode(&hex_digits) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("not hex: {e}");
            return ExitCode::from(2);
        }
    };
    let view = match FrameView::parse(&bytes) {
        Ok((v, rest)) => {
            if !rest.is_empty() {
                println!("({} bytes after the frame, ignored)", rest.len());
            }
            v
        }
        Err(e) => {
            println!("rejected [{}]: {e}", e.label());
            return ExitCode::FAILURE;
        }
    };
    let op = Opcode::from_u8(view.opcode_raw()).map_or_else(
        || format!("opcode {}", view.opcode_raw()),
        |o| o.to_string(),
    );
    println!(
        "header: {op} v{} flags={:#06x} body_len={} key_id={} sender={:#010x} receiver={:#010x} conn={:#x} seq={} ts_ms={}",
        view.version(),
        view.flags(),
        view.body().len(),
        view.key_id(),
        view.sender(),
        view.receiver(),
        view.conn_id(),
        view.msg_seq(),
        view.timestamp_ms()
    );
    let Some(key) = key else {
        println!("(no --key: tag not verified, body not decoded)");
        return ExitCode::SUCCESS;
    };
    let keys = Keyring::new(key);
    match open(&keys, node.unwrap_or(view.receiver()), &bytes) {
        Ok((frame, _)) => {
            println!("frame: {frame}");
            if let Body::Create(CreateFragment { state: Some(s), .. }) = frame.body {
                println!("state: {s:?}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("rejected [{}]: {e}", e.label());
            ExitCode::FAILURE
        }
    }
}
