//! Fuzzes a TLS service's first bytes as the switch reads them: the
//! worker's incremental ClientHello search and parser (`dataplane::tls`),
//! then the control plane's request view (`controlplane::request`) of the
//! same bytes. Must never panic; a hello the worker accepts must be one the
//! control plane routes, with the same server name and ALPN; the
//! incremental search must agree with a single pass over the whole buffer.
#![no_main]

use controlplane::logging::escape_untrusted;
use controlplane::request::Request;
use dataplane::tls::{parse_client_hello, HelloScanner};
use libfuzzer_sys::fuzz_target;

const MAX: usize = 16 * 1024;

fuzz_target!(|data: &[u8]| {
    let Some((&step, buf)) = data.split_first() else {
        return;
    };
    // The bytes arrive in segments of `step + 1` bytes.
    let step = usize::from(step) + 1;
    let mut scanner = HelloScanner::new();
    let mut end = Ok(None);
    let mut seen = 0;
    while seen < buf.len() {
        seen = (seen + step).min(buf.len());
        end = scanner.find_end(&buf[..seen], MAX);
        if !matches!(end, Ok(None)) {
            break;
        }
    }
    // The last incremental call saw the whole buffer: same answer as one pass.
    assert_eq!(end, HelloScanner::new().find_end(buf, MAX), "incremental search");
    let Ok(Some(n)) = end else {
        return;
    };
    if let Ok(h) = parse_client_hello(&buf[..n], MAX) {
        let r = Request::parse(&buf[..n]).expect("the control plane parses a hello the worker accepted");
        assert_eq!(r.sni(), h.sni.as_deref());
        assert_eq!(r.alpn(), h.alpn.as_slice());
        assert_eq!(&*r.target, h.sni.as_deref().unwrap_or(""));
        for a in &h.alpn {
            let e = escape_untrusted(a);
            assert!(!e.chars().any(char::is_control), "escaped {a:?} as {e:?}");
        }
    }
});
