//! Packet capture of the data port through the admin endpoint: a capture
//! filtered by client sees that client's handshakes with the VIP (the SYNs
//! the workers received, the SYN-ACKs they sent) and nothing else, in a
//! pcapng file that `tcpdump -r` reads; it stops at its packet bound; bad filters,
//! bad bounds, a missing token and a second capture at once are refused with
//! a clear answer, and the switch serves on throughout.

use std::io::Write as _;
use std::time::Duration;

use testbed::baton::{self, BatonIo};
use testbed::scenario::Running;
use testbed::{addr, client, netns};

testbed::both_backends!(a_filtered_capture_reads_in_tcpdump_and_bad_requests_are_refused);

/// POST /capture with `body` (and the bed's token unless `token` is false).
fn capture(sys: &Running, body: &str, token: bool) -> client::Response {
    let tf = baton::admin_token_path(&sys.bed);
    let t = std::fs::read_to_string(&tf).unwrap().trim().to_string();
    let body = body.to_string();
    netns::in_ns(sys.bed.hub(), move || -> std::io::Result<client::Response> {
        let a = addr::switch_metrics();
        let mut s = client::connect(a, Duration::from_secs(20))?;
        s.set_read_timeout(Some(Duration::from_secs(20)))?;
        let auth = if token {
            format!("Authorization: Bearer {t}\r\n")
        } else {
            String::new()
        };
        write!(
            s,
            "POST /capture HTTP/1.1\r\nHost: {a}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )?;
        client::read_response(&mut s, &mut Vec::new())
    })
    .unwrap()
    .expect("POST /capture")
}

/// `tcpdump -r` of `file` (numeric, with direction where it shows it).
fn tcpdump(file: &std::path::Path) -> String {
    let out = std::process::Command::new("tcpdump")
        .args(["-nn", "-r"])
        .arg(file)
        .output()
        .expect("tcpdump is installed (scripts/install-deps.sh)");
    assert!(
        out.status.success(),
        "tcpdump could not read {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn a_filtered_capture_reads_in_tcpdump_and_bad_requests_are_refused(io: BatonIo) {
    let sys = Running::up(io).expect("system up");
    let client = addr::client_data(0);

    // A capture of client 0's frames while it makes five requests.
    let body = format!(r#"{{"filter": "client {client}", "packets": 10000, "seconds": 4}}"#);
    let cap = std::thread::scope(|s| {
        let c = s.spawn(|| capture(&sys, &body, true));
        std::thread::sleep(Duration::from_millis(500));
        for _ in 0..5 {
            assert_eq!(sys.get("/static/1k.bin").expect("GET").status, 200);
        }
        c.join().unwrap()
    });
    assert_eq!(cap.status, 200, "{}", String::from_utf8_lossy(&cap.body));
    assert_eq!(cap.header("content-type"), Some("application/x-pcapng"));
    let n: u64 = cap
        .header("x-baton-capture-packets")
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert_eq!(cap.header("x-baton-capture-lost"), Some("0"));
    let file = sys.bed.path("capture.pcapng");
    std::fs::write(&file, &cap.body).unwrap();
    let text = tcpdump(&file);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len() as u64, n, "tcpdump read every packet:\n{text}");
    let vip = format!("{}.80", addr::VIP);
    let syns = lines
        .iter()
        .filter(|l| l.contains(&format!("> {vip}:")) && l.contains("Flags [S]"))
        .count();
    let synacks = lines
        .iter()
        .filter(|l| l.contains(&format!("{vip} > ")) && l.contains("Flags [S.]"))
        .count();
    assert!(syns >= 5, "{syns} SYNs to the VIP in:\n{text}");
    assert!(
        synacks >= 5,
        "{synacks} SYN-ACKs from the switch in:\n{text}"
    );
    // Only client 0's frames (its address is in every IP line).
    let c = client.to_string();
    for l in &lines {
        assert!(l.contains(&c), "a frame not of client {c}: {l}");
    }

    // The packet bound: exactly that many, even with traffic going on.
    let body = r#"{"filter": "tcp and port 80", "packets": 3, "seconds": 5}"#;
    let cap = std::thread::scope(|s| {
        let c = s.spawn(|| capture(&sys, body, true));
        std::thread::sleep(Duration::from_millis(300));
        for _ in 0..3 {
            let _ = sys.get("/static/1k.bin");
        }
        c.join().unwrap()
    });
    assert_eq!(cap.status, 200);
    assert_eq!(cap.header("x-baton-capture-packets"), Some("3"));
    let bounded = sys.bed.path("bounded.pcapng");
    std::fs::write(&bounded, &cap.body).unwrap();
    assert_eq!(tcpdump(&bounded).lines().count(), 3);

    // Bad input: a clear answer, nothing started.
    for (body, says) in [
        (r#"{"filter": "hots 1.2.3.4"}"#, "unknown term `hots`"),
        (r#"{"filter": "port 99999"}"#, "is not a port number"),
        (r#"{"seconds": 600}"#, "capture seconds"),
        (r#"{"packets": 0}"#, "capture packets"),
        (r#"{"snaplen": 10}"#, "capture snaplen"),
        (r#"{"filter": "tcp", "colour": "red"}"#, "unknown field"),
        ("not json", "capture request"),
    ] {
        let r = capture(&sys, body, true);
        let text = String::from_utf8_lossy(&r.body).into_owned();
        assert_eq!(r.status, 400, "{body}: {text}");
        assert!(text.contains(says), "{body}: {text}");
    }
    let r = capture(&sys, "{}", false);
    assert_eq!(r.status, 401, "no token");
    // One capture at a time.
    let busy = std::thread::scope(|s| {
        let first =
            s.spawn(|| capture(&sys, r#"{"filter": "udp and port 1", "seconds": 2}"#, true));
        std::thread::sleep(Duration::from_millis(500));
        let second = capture(&sys, "{}", true);
        assert_eq!(first.join().unwrap().status, 200);
        second
    });
    assert_eq!(busy.status, 409, "{}", String::from_utf8_lossy(&busy.body));
    // The switch served on.
    assert_eq!(sys.get("/static/1k.bin").expect("GET").status, 200);
}
