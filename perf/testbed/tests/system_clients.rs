//! Unmodified clients through Baton: curl, wrk, Python's `http.client`, and
//! headless Chromium loading a page with many objects.

use std::time::Duration;
use testbed::baton::BatonIo;
use testbed::content::{self, OBJ_100K, OBJ_1K, PAGE, PAGE_IMAGES};
use testbed::scenario::Running;
use testbed::wrk::WrkRun;
use testbed::{addr, curl, netns};

testbed::both_backends!(curl_wrk_python_and_chromium);

const PYTHON: &str = r#"
import hashlib, http.client, sys
c = http.client.HTTPConnection(sys.argv[1], 80, timeout=10)
for path in ["/static/1k.bin", "/static/100k.bin", "/index.html"]:
    c.request("GET", path)
    r = c.getresponse()
    body = r.read()
    print(r.status, r.getheader("X-Backend"), len(body), hashlib.sha256(body).hexdigest())
c.close()
"#;

fn curl_wrk_python_and_chromium(io: BatonIo) {
    let sys = Running::up(io).expect("system up");
    let vip = addr::vip_service();

    // curl: several URL classes, a new connection each.
    let urls: Vec<String> = ["/static/1k.bin", "/index.html", "/api/items", "/"]
        .iter()
        .map(|p| format!("http://{vip}{p}"))
        .collect();
    for t in curl::fetch_all(sys.client(1), &urls).unwrap() {
        assert!(t.ok(), "curl {}: {}", t.url, t.code);
    }

    // wrk: bounded load, no failures.
    let r = WrkRun::new(
        format!("http://{vip}{}", OBJ_1K.path),
        8,
        Duration::from_secs(2),
    )
    .run_in(sys.client(0))
    .expect("wrk");
    assert!(r.requests > 0);
    assert_eq!(r.failures(), 0, "{r:?}");

    // Python http.client: three requests on one keep-alive connection.
    let out = netns::run_stdout(
        Some(sys.client(0)),
        "python3",
        &["-c", PYTHON, &addr::VIP.to_string()],
    )
    .expect("python");
    let lines: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert_eq!(lines[0][0], "200");
    assert_eq!(lines[0][2], OBJ_1K.size.to_string());
    assert_eq!(lines[0][3], content::expected_sha256(OBJ_1K));
    assert_eq!(lines[1][3], content::expected_sha256(OBJ_100K));
    assert!(
        lines.iter().all(|l| l[1] == lines[0][1]),
        "one connection, one backend: {out}"
    );

    // Headless Chromium: the page and all its objects load.
    let profile = sys.bed.path("chromium");
    let dump =
        testbed::chromium::dump_dom(sys.client(1), &profile, &format!("http://{vip}{PAGE}"), &[])
            .expect("chromium");
    let want = format!("data-images-ok=\"{PAGE_IMAGES}\"");
    assert!(
        dump.contains(&want),
        "chromium did not load all {PAGE_IMAGES} images:\n{}",
        testbed::scenario::tail(&dump, 2000)
    );
}
