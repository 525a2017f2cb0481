//! Logs through `tracing`: human-readable lines or one JSON object per line,
//! filtered by the profile's `logging.level` unless `RUST_LOG` is set. The
//! access log is the target `baton::access` (sampled by the control plane).
//! The level can change on reload; the format is fixed at start-up.
//!
//! Field values can hold text from clients (the access log's URL and Host,
//! errors quoting a request), so the human format escapes control and bidi
//! characters in every value: a client cannot end a line early and forge
//! the next one, send terminal escapes to whoever reads the log, or make a
//! value display reordered. JSON stays exact (see [`escape_untrusted`]).

use std::borrow::Cow;
use std::fmt::{self, Write as _};
use std::io::{self, IsTerminal};
use std::net::SocketAddr;
use std::sync::OnceLock;

use tracing::field::{Field, Visit};
use tracing::Subscriber;
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FormatFields, MakeWriter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Layer, Registry};

use crate::config::{LogFormat, Logging};

/// Handle to swap the filter of the installed subscriber (absent when
/// `RUST_LOG` rules or no subscriber was installed by us).
static FILTER: OnceLock<reload::Handle<EnvFilter, Registry>> = OnceLock::new();

/// Installs the global subscriber (once; later calls are no-ops).
pub fn init(cfg: &Logging) {
    let from_env = EnvFilter::try_from_default_env().ok();
    let env_rules = from_env.is_some();
    let filter = from_env
        .or_else(|| EnvFilter::try_new(&cfg.level).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let (filter, handle) = reload::Layer::new(filter);
    let fmt = layer(cfg.format, std::io::stderr, std::io::stderr().is_terminal());
    if tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .try_init()
        .is_ok()
        && !env_rules
    {
        let _ = FILTER.set(handle);
    }
}

/// The formatting layer of `format`, writing each line to `writer`; `ansi`
/// colours the human format (only for a terminal).
pub fn layer<S, W>(format: LogFormat, writer: W, ansi: bool) -> Box<dyn Layer<S> + Send + Sync>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let fmt = tracing_subscriber::fmt::layer().with_target(true);
    match format {
        LogFormat::Human => Box::new(
            fmt.with_writer(writer)
                .with_ansi(ansi)
                .fmt_fields(EscapedFields),
        ),
        LogFormat::Json => Box::new(
            fmt.with_writer(JsonEscapes(writer))
                .with_ansi(false)
                .json()
                .flatten_event(true)
                .with_current_span(false),
        ),
    }
}

/// Applies a reloaded `logging.level`; false when it cannot (set by `RUST_LOG`,
/// or an invalid filter, which validation rejects first).
pub fn set_level(level: &str) -> bool {
    let (Some(h), Ok(f)) = (FILTER.get(), EnvFilter::try_new(level)) else {
        return false;
    };
    h.reload(f).is_ok()
}

/// One access-log line: a request and what the switch decided for it.
#[derive(Debug, Clone, Copy)]
pub struct Access<'a> {
    pub client: SocketAddr,
    /// From the client: method, Host (normalized) and request target.
    pub method: &'a str,
    pub host: &'a str,
    pub path: &'a str,
    /// On a TLS service, what the ClientHello said (method and path are
    /// then empty, host is the SNI).
    pub tls: Option<TlsAccess<'a>>,
    pub rule: &'a str,
    pub pool: &'a str,
    /// The backend's name, empty when refused.
    pub backend: &'a str,
    /// 0 when handed to a backend, else the status the switch answered.
    pub status: u16,
    pub decision_us: u64,
}

/// The ClientHello's part of an access-log line.
#[derive(Debug, Clone, Copy)]
pub struct TlsAccess<'a> {
    /// Server name (empty: none sent).
    pub sni: &'a str,
    /// ALPN protocols offered, comma-separated, in the client's order.
    pub alpn: &'a str,
    /// Highest version offered (`tls1.3`).
    pub version: &'a str,
}

/// Writes `a` to the access log (target `baton::access`, level info).
pub fn access(a: &Access<'_>) {
    if let Some(t) = &a.tls {
        return tracing::info!(
            target: "baton::access",
            client = %a.client,
            sni = %t.sni,
            alpn = %t.alpn,
            tls = %t.version,
            rule = %a.rule,
            pool = %a.pool,
            backend = %a.backend,
            status = a.status,
            decision_us = a.decision_us,
            "dispatch"
        );
    }
    tracing::info!(
        target: "baton::access",
        client = %a.client,
        method = %a.method,
        host = %a.host,
        path = %a.path,
        rule = %a.rule,
        pool = %a.pool,
        backend = %a.backend,
        status = a.status,
        decision_us = a.decision_us,
        "dispatch"
    );
}

/// Unicode's explicit bidirectional formatting characters (UAX #9): they
/// reorder the text shown after them, so a value can display as something
/// it is not.
pub fn is_bidi(c: char) -> bool {
    matches!(c, '\u{61c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `s` with every control character (C0, DEL, C1) and bidi formatting
/// character written as an escape: `\n`, `\r`, `\t`, `\x1b` below U+0080,
/// `\u{9b}` or `\u{202e}` above. Everything else, backslashes included, is
/// left as is, so a human line stays one line and shows what was sent in
/// the order it was sent; the JSON format is the exact record.
pub fn escape_untrusted(s: &str) -> Cow<'_, str> {
    if !s.chars().any(needs_escape) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        push_escaped(&mut out, c);
    }
    Cow::Owned(out)
}

fn needs_escape(c: char) -> bool {
    c.is_control() || is_bidi(c)
}

fn push_escaped(out: &mut String, c: char) {
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c if (c as u32) < 0x80 && needs_escape(c) => {
            let _ = write!(out, "\\x{:02x}", c as u32);
        }
        c if needs_escape(c) => {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        }
        c => out.push(c),
    }
}

/// Field formatting of the human format: like the default (`name=value`,
/// strings quoted, the message bare) with every value passed through
/// [`escape_untrusted`], since request fields come from clients.
struct EscapedFields;

impl<'w> FormatFields<'w> for EscapedFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'w>, fields: R) -> fmt::Result {
        let mut v = EscapingVisitor {
            writer,
            first: true,
            result: Ok(()),
        };
        fields.record(&mut v);
        v.result
    }
}

struct EscapingVisitor<'w> {
    writer: Writer<'w>,
    first: bool,
    result: fmt::Result,
}

impl EscapingVisitor<'_> {
    fn write(&mut self, field: &Field, value: &str, quoted: bool) {
        if self.result.is_err() || field.name().starts_with("log.") {
            return;
        }
        let sep = if self.first { "" } else { " " };
        self.first = false;
        let value = escape_untrusted(value);
        self.result = match (field.name(), quoted) {
            ("message", _) => write!(self.writer, "{sep}{value}"),
            (name, true) => {
                let name = name.strip_prefix("r#").unwrap_or(name);
                write!(self.writer, "{sep}{name}=\"{value}\"")
            }
            (name, false) => {
                let name = name.strip_prefix("r#").unwrap_or(name);
                write!(self.writer, "{sep}{name}={value}")
            }
        };
    }
}

impl Visit for EscapingVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.write(field, value, field.name() != "message");
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let text = format!("{value:?}");
        self.write(field, &text, false);
    }
}

/// Writes each JSON line with the characters [`escape_untrusted`] escapes
/// as `\uXXXX` JSON escapes: serde escapes only U+0000–U+001F, which leaves
/// DEL, the C1 controls (U+009B is a terminal's CSI) and bidi characters raw.
/// Outside strings a JSON line has none of them, so the line stays valid
/// JSON and decodes to the same strings, but is inert on a terminal.
struct JsonEscapes<M>(M);

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for JsonEscapes<M> {
    type Writer = JsonEscaper<M::Writer>;
    fn make_writer(&'a self) -> Self::Writer {
        JsonEscaper(self.0.make_writer())
    }
}

struct JsonEscaper<W>(W);

impl<W: io::Write> io::Write for JsonEscaper<W> {
    /// Takes the whole buffer: the formatter writes one complete line per
    /// call, so a character is never split between two calls.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let raw = |c: char| c != '\n' && needs_escape(c);
        let Ok(text) = std::str::from_utf8(buf) else {
            return self.0.write(buf);
        };
        if !text.chars().any(raw) {
            self.0.write_all(buf)?;
            return Ok(buf.len());
        }
        let mut out = String::with_capacity(text.len() + 32);
        for c in text.chars() {
            if raw(c) {
                let _ = write!(out, "\\u{:04x}", c as u32);
            } else {
                out.push(c);
            }
        }
        self.0.write_all(out.as_bytes())?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// Lines written by a real formatting layer into memory.
    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn logged(format: LogFormat, a: &Access<'_>) -> String {
        let out = Lines::default();
        let sink = out.clone();
        let sub = tracing_subscriber::registry().with(layer(format, move || sink.clone(), false));
        tracing::subscriber::with_default(sub, || access(a));
        let bytes = out.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    /// What a client controls, with a fake second line, a terminal escape,
    /// C1 CSI, and every bidi control.
    const HOSTILE_PATH: &str = "/a\n2026-12-01T00:00:00Z  INFO baton::access: dispatch client=6.6.6.6 \x1b[2J\x1b]0;pwned\x07\u{9b}31m\r\t\u{202e}gnp.exe\u{202c}\u{202a}\u{202b}\u{202d}\u{2066}\u{2067}\u{2068}\u{2069}\u{200e}\u{200f}\u{61c}";

    fn hostile() -> Access<'static> {
        Access {
            client: "198.18.1.1:40000".parse().unwrap(),
            method: "GET",
            host: "evil\u{202e}moc.example",
            path: HOSTILE_PATH,
            tls: None,
            rule: "default",
            pool: "web",
            backend: "web-1",
            status: 0,
            decision_us: 12,
        }
    }

    #[test]
    fn human_access_line_escapes_control_and_bidi_characters_from_the_client() {
        let line = logged(LogFormat::Human, &hostile());
        assert_eq!(
            line.matches('\n').count(),
            1,
            "one line, ended once: {line:?}"
        );
        assert!(line.ends_with('\n'));
        let bad: Vec<char> = line
            .trim_end_matches('\n')
            .chars()
            .filter(|&c| c.is_control() || is_bidi(c))
            .collect();
        assert!(bad.is_empty(), "raw {bad:?} in {line:?}");
        for shown in [
            r"/a\n2026",
            r"\x1b[2J",
            r"\x07",
            r"\u{9b}31m",
            r"\r\t",
            r"\u{202e}gnp.exe\u{202c}",
            r"\u{2069}\u{200e}\u{200f}\u{61c}",
            r"host=evil\u{202e}moc.example",
        ] {
            assert!(line.contains(shown), "{shown} missing from {line:?}");
        }
    }

    #[test]
    fn json_access_line_is_one_exact_object_with_controls_and_bidi_escaped() {
        let line = logged(LogFormat::Json, &hostile());
        assert_eq!(line.matches('\n').count(), 1, "{line:?}");
        assert!(
            !line
                .chars()
                .any(|c| c.is_control() && c != '\n' || is_bidi(c)),
            "raw control or bidi character in {line:?}"
        );
        for shown in [
            r"\n2026",
            r"\u001b[2J",
            r"\u009b31m",
            r"\u202egnp.exe\u202c",
        ] {
            assert!(line.contains(shown), "{shown} missing from {line:?}");
        }
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            v["path"], HOSTILE_PATH,
            "decodes to exactly what the client sent"
        );
        assert_eq!(v["host"], "evil\u{202e}moc.example");
    }

    #[test]
    fn plain_values_are_unchanged() {
        let a = Access {
            path: "/img/logo.png?v=3",
            tls: None,
            host: "www.example.com",
            ..hostile()
        };
        let line = logged(LogFormat::Human, &a);
        assert!(line.contains("path=/img/logo.png?v=3 "), "{line:?}");
        assert!(line.contains("host=www.example.com "), "{line:?}");
        assert!(line.contains("status=0 decision_us=12"), "{line:?}");
    }
}
