//! Fuzzes the client's request head as the switch reads it: the worker's
//! incremental end search and parser (`dataplane::http`), then the control
//! plane's parser (`controlplane::request`) on the same bytes, and the
//! access-log escaping of what a client controls. Must never panic; a head
//! the worker accepts must be one the control plane can route (else the
//! switch would answer 400 to a request it had already taken), with the
//! same method and target; the incremental search must agree with a
//! single pass over the whole buffer.
#![no_main]

use controlplane::logging::escape_untrusted;
use controlplane::request::{Request, MAX_HEADERS};
use dataplane::http::{parse_request, HeaderScanner};
use libfuzzer_sys::fuzz_target;

fn clean(s: &str) {
    let e = escape_untrusted(s);
    assert!(
        !e.chars()
            .any(|c| c.is_control() || controlplane::logging::is_bidi(c)),
        "escaped {s:?} as {e:?}"
    );
}

fuzz_target!(|data: &[u8]| {
    let Some((&step, buf)) = data.split_first() else {
        return;
    };
    // The head arrives in segments of `step + 1` bytes.
    let step = usize::from(step) + 1;
    let mut scanner = HeaderScanner::new();
    let mut end = None;
    let mut seen = 0;
    while seen < buf.len() {
        seen = (seen + step).min(buf.len());
        if let Some(e) = scanner.find_end(&buf[..seen]) {
            end = Some(e);
            break;
        }
    }
    assert_eq!(
        end,
        HeaderScanner::new().find_end(buf),
        "incremental search"
    );
    let head = &buf[..end.unwrap_or(buf.len())];

    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    if let Ok(h) = parse_request(head, &mut fields) {
        assert!(h.len <= head.len());
        let r = Request::parse(head).expect("the control plane parses a head the worker accepted");
        assert_eq!(r.method, h.method);
        let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let lent = Request::parse_in(head, &mut storage).expect("parse_in agrees with parse");
        assert_eq!(
            (lent.method, &*lent.target, &*lent.host),
            (r.method, &*r.target, &*r.host)
        );
        let _ = (
            r.extension(),
            r.cookie("BATON_BACKEND"),
            r.header("user-agent"),
        );
        clean(r.method);
        clean(&r.target);
        clean(&r.host);
        for f in h.headers {
            clean(&String::from_utf8_lossy(f.value));
        }
    }
    // The control plane's parser on whatever arrived, complete or not.
    if let Ok(r) = Request::parse(buf) {
        let _ = (r.extension(), r.cookie("a"), r.header("host"));
        clean(&r.target);
    }
});
