//! TLS in the bed: a throw-away certificate authority and server
//! certificate generated when the bed comes up (nothing secret is
//! committed), a session-ticket key every backend's nginx shares (so a
//! resumed session can land on any backend), and the clients that speak
//! HTTPS to the VIP or to a backend: curl and a Python `ssl` client that
//! can resume a session.
//!
//! Files in the bed's directory, made by [`generate`] with the `openssl`
//! command-line tool (EC P-256, valid for 30 days):
//!
//! | file | what |
//! |---|---|
//! | `ca.pem` ([`ca_file`]) | the bed's CA: what clients trust (`--cacert`) |
//! | `server.pem` ([`cert_file`]) | the servers' certificate, SANs [`NAMES`] and the VIP's address |
//! | `server.key` ([`key_file`], 0600) | its key |
//! | `ticket.key` ([`ticket_key_file`], 0600) | 80 random bytes: every backend's `ssl_session_ticket_key` |
//!
//! The CA's key is deleted once the server certificate is signed.

use crate::addr;
use crate::error::{BedError, Result};
use crate::netns;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The site's main name.
pub const WWW: &str = "www.baton.test";
/// The name of the static content (the benchmark's SNI).
pub const STATIC: &str = "static.baton.test";
/// The name of the application.
pub const APP: &str = "app.baton.test";
/// The DNS names of the server certificate (its subject alternative
/// names, with the VIP's address).
pub const NAMES: [&str; 4] = [WWW, STATIC, APP, "*.baton.test"];

/// The bed's CA certificate (what clients trust).
pub fn ca_file(bed: &impl AsRef<Path>) -> PathBuf {
    bed.as_ref().join(CA)
}

/// The servers' certificate.
pub fn cert_file(bed: &impl AsRef<Path>) -> PathBuf {
    bed.as_ref().join(CERT)
}

/// The servers' private key (mode 0600).
pub fn key_file(bed: &impl AsRef<Path>) -> PathBuf {
    bed.as_ref().join(KEY)
}

/// The session-ticket key every backend's nginx uses (80 bytes, mode 0600).
pub fn ticket_key_file(bed: &impl AsRef<Path>) -> PathBuf {
    bed.as_ref().join(TICKET_KEY)
}

const CA: &str = "ca.pem";
const CERT: &str = "server.pem";
const KEY: &str = "server.key";
const TICKET_KEY: &str = "ticket.key";

/// The certificate files a TLS server of the bed is configured with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerFiles {
    /// The certificate ([`cert_file`]).
    pub cert: PathBuf,
    /// Its key ([`key_file`]).
    pub key: PathBuf,
    /// The shared session-ticket key ([`ticket_key_file`]).
    pub ticket_key: PathBuf,
}

impl ServerFiles {
    /// The files of `bed`.
    pub fn of(bed: &impl AsRef<Path>) -> ServerFiles {
        ServerFiles {
            cert: cert_file(bed),
            key: key_file(bed),
            ticket_key: ticket_key_file(bed),
        }
    }
}

/// The server certificate's extensions (an `-extfile` of `openssl x509`).
pub fn server_extensions() -> String {
    let dns: Vec<String> = NAMES.iter().map(|n| format!("DNS:{n}")).collect();
    format!(
        "basicConstraints=critical,CA:FALSE\n\
         keyUsage=critical,digitalSignature\n\
         extendedKeyUsage=serverAuth\n\
         subjectAltName={},IP:{},IP:{}\n\
         subjectKeyIdentifier=hash\n\
         authorityKeyIdentifier=keyid,issuer\n",
        dns.join(","),
        addr::VIP,
        addr::VIP6
    )
}

fn openssl(args: &[&str]) -> Result<()> {
    netns::run(None, "openssl", args).map(|_| ()).map_err(|e| {
        BedError::Setup(format!(
            "openssl {}: {e} (is `openssl` installed? run scripts/install-deps.sh)",
            args.first().unwrap_or(&"")
        ))
    })
}

/// Makes the CA, the server certificate and key, and the ticket key in
/// `dir` (the bed's directory), replacing any there.
pub fn generate(dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let work = dir.join("tls-work");
    std::fs::create_dir_all(&work).map_err(|e| BedError::file(&work, e))?;
    let p = |d: &Path, f: &str| d.join(f).display().to_string();
    let (ca_key, csr, ext, serial) = (
        p(&work, "ca.key"),
        p(&work, "server.csr"),
        p(&work, "server.ext"),
        p(&work, "ca.srl"),
    );
    let (ca, cert, key, ticket) = (p(dir, CA), p(dir, CERT), p(dir, KEY), p(dir, TICKET_KEY));
    let ec = ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"];
    let run = || -> Result<()> {
        openssl(&[&["genpkey"][..], &ec, &["-out", &ca_key]].concat())?;
        openssl(&[
            "req",
            "-x509",
            "-new",
            "-key",
            &ca_key,
            "-sha256",
            "-days",
            "30",
            "-subj",
            "/O=Baton test bed/CN=Baton test bed CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-out",
            &ca,
        ])?;
        openssl(&[&["genpkey"][..], &ec, &["-out", &key]].concat())?;
        openssl(&[
            "req",
            "-new",
            "-key",
            &key,
            "-subj",
            &format!("/O=Baton test bed/CN={WWW}"),
            "-out",
            &csr,
        ])?;
        std::fs::write(&ext, server_extensions()).map_err(|e| BedError::file(&ext, e))?;
        openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca,
            "-CAkey",
            &ca_key,
            "-CAserial",
            &serial,
            "-CAcreateserial",
            "-days",
            "30",
            "-sha256",
            "-extfile",
            &ext,
            "-out",
            &cert,
        ])?;
        openssl(&["rand", "-out", &ticket, "80"])?;
        for f in [&key, &ticket] {
            std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| BedError::file(f, e))?;
        }
        Ok(())
    };
    let r = run();
    // The CA's key goes whatever happened: nothing else is ever signed.
    let _ = std::fs::remove_dir_all(&work);
    r
}

/// The TLS versions a client allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub enum TlsVersion {
    /// TLS 1.2 or 1.3, as negotiated.
    #[default]
    Any,
    /// TLS 1.2 only.
    V12,
    /// TLS 1.3 only.
    V13,
}

impl TlsVersion {
    /// As the clients report it (`TLSv1.2`, `TLSv1.3`); `None` for [`TlsVersion::Any`].
    pub fn name(self) -> Option<&'static str> {
        match self {
            TlsVersion::Any => None,
            TlsVersion::V12 => Some("TLSv1.2"),
            TlsVersion::V13 => Some("TLSv1.3"),
        }
    }
}

/// The HTTP version curl asks for (its ALPN offer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HttpVersion {
    /// `--http2`: ALPN offers `h2` and `http/1.1` (curl's default).
    #[default]
    H2,
    /// `--http1.1`: ALPN offers only `http/1.1`.
    Http11,
}

/// One HTTPS GET with curl (builder: [`HttpsGet::new`] and its setters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpsGet {
    /// The URL's host, sent as SNI; `None`: the URL is
    /// `https://198.18.0.10/…`, no SNI is sent, and the certificate is
    /// checked against its IP address SAN.
    pub sni: Option<String>,
    /// The URL path.
    pub path: String,
    /// Where the TCP connection goes (the VIP's :443 unless set otherwise):
    /// the URL stays `https://<sni>/…` on port 443 wherever it goes.
    pub connect: SocketAddr,
    /// TLS versions allowed.
    pub tls: TlsVersion,
    /// HTTP version (ALPN offer).
    pub http: HttpVersion,
}

impl HttpsGet {
    /// `https://<sni><path>` through the VIP, any TLS version, HTTP/2 offered.
    pub fn new(sni: &str, path: &str) -> Self {
        HttpsGet {
            sni: Some(sni.to_string()),
            path: path.to_string(),
            connect: addr::vip_tls_service(),
            tls: TlsVersion::Any,
            http: HttpVersion::H2,
        }
    }

    /// `https://198.18.0.10<path>`: no SNI.
    pub fn no_sni(path: &str) -> Self {
        HttpsGet {
            sni: None,
            ..HttpsGet::new(WWW, path)
        }
    }

    /// Connects to `to` instead of the VIP (a backend's
    /// [`addr::backend_tls`], a proxy).
    pub fn to(mut self, to: SocketAddr) -> Self {
        self.connect = to;
        self
    }

    /// Allows only TLS version `v`.
    pub fn tls(mut self, v: TlsVersion) -> Self {
        self.tls = v;
        self
    }

    /// Asks for HTTP version `h`.
    pub fn http(mut self, h: HttpVersion) -> Self {
        self.http = h;
        self
    }

    /// The URL's host: the SNI name or the VIP's address.
    pub fn host(&self) -> String {
        self.sni.clone().unwrap_or_else(|| addr::VIP.to_string())
    }

    /// curl's arguments (the body goes to stdout; the figures, after
    /// [`WRITE_OUT_MARK`], and the verbose trace go to stderr).
    pub fn curl_args(&self, ca: &Path) -> Vec<String> {
        let host = self.host();
        let mut a: Vec<String> = vec![
            "-sS".into(),
            "-v".into(),
            "--noproxy".into(),
            "*".into(),
            "--max-time".into(),
            "20".into(),
            "--cacert".into(),
            ca.display().to_string(),
        ];
        let port = addr::VIP_TLS_PORT;
        match (self.sni.is_some(), self.connect.port() == port) {
            // A name and the usual port: only the address changes.
            (true, true) => a.extend([
                "--resolve".into(),
                format!("{host}:{port}:{}", self.connect.ip()),
            ]),
            _ => a.extend([
                "--connect-to".into(),
                format!(
                    "{host}:{port}:{}:{}",
                    self.connect.ip(),
                    self.connect.port()
                ),
            ]),
        }
        match self.tls {
            TlsVersion::Any => {}
            TlsVersion::V12 => a.extend(["--tlsv1.2".into(), "--tls-max".into(), "1.2".into()]),
            TlsVersion::V13 => a.push("--tlsv1.3".into()),
        }
        a.push(
            match self.http {
                HttpVersion::H2 => "--http2",
                HttpVersion::Http11 => "--http1.1",
            }
            .into(),
        );
        a.extend([
            "-w".into(),
            format!(
                "%{{stderr}}{WRITE_OUT_MARK} %{{http_code}} %{{http_version}} [%header{{x-backend}}]\\n"
            ),
            format!("https://{host}{}", self.path),
        ]);
        a
    }
}

/// The start of the line curl writes its figures on (stderr).
pub const WRITE_OUT_MARK: &str = "BATON-CURL";

/// What an HTTPS GET got.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpsResponse {
    /// HTTP status (0: none).
    pub code: u16,
    /// The body.
    pub body: Vec<u8>,
    /// `X-Backend` ("" when absent).
    pub backend: String,
    /// The HTTP version used (`1.1`, `2`).
    pub http_version: String,
    /// The TLS version negotiated (`TLSv1.2`, `TLSv1.3`; "" when unknown).
    pub tls_version: String,
    /// The cipher suite negotiated ("" when unknown).
    pub cipher: String,
    /// The protocol the server chose by ALPN (`h2`, `http/1.1`), if any.
    pub alpn: Option<String>,
    /// curl's exit status and the end of its trace, when it failed.
    pub error: Option<String>,
}

impl HttpsResponse {
    /// A 2xx response arrived.
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// Hex SHA-256 of the body.
    pub fn sha256(&self) -> String {
        crate::content::sha256_hex(&self.body)
    }
}

/// Reads curl's verbose trace and write-out line (see [`HttpsGet::curl_args`]).
pub fn parse_curl_stderr(stderr: &str) -> HttpsResponse {
    let mut r = HttpsResponse::default();
    for line in stderr.lines() {
        let l = line.trim();
        if let Some(rest) = l.strip_prefix(WRITE_OUT_MARK) {
            let mut it = rest.trim().splitn(3, ' ');
            r.code = it.next().and_then(|c| c.parse().ok()).unwrap_or(0);
            r.http_version = it.next().unwrap_or("").to_string();
            r.backend = it
                .next()
                .unwrap_or("[]")
                .trim_matches(|c| c == '[' || c == ']')
                .to_string();
        } else if let Some(rest) = l.strip_prefix("* SSL connection using ") {
            // `TLSv1.3 / TLS_AES_256_GCM_SHA384`
            let mut it = rest.split(" / ");
            r.tls_version = it.next().unwrap_or("").trim().to_string();
            r.cipher = it.next().unwrap_or("").trim().to_string();
        } else if let Some(p) = l
            .strip_prefix("* ALPN: server accepted ")
            .or_else(|| l.strip_prefix("* ALPN, server accepted to use "))
        {
            r.alpn = Some(p.trim().to_string());
        }
    }
    r
}

/// One HTTPS GET with curl from namespace `ns`, trusting the bed's CA.
pub fn curl(bed: &impl AsRef<Path>, ns: &str, req: &HttpsGet) -> Result<HttpsResponse> {
    let args = req.curl_args(&ca_file(bed));
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = netns::command(Some(ns), "curl", &argv)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|source| BedError::Spawn {
            cmd: "curl".into(),
            source,
        })?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let mut r = parse_curl_stderr(&stderr);
    r.body = out.stdout;
    if !out.status.success() {
        r.error = Some(format!(
            "curl {}: {}",
            out.status,
            crate::text::tail(&stderr, 1500)
        ));
    }
    Ok(r)
}

/// Connections made by the Python `ssl` client ([`python`]): one per
/// target, in order, each offering the session of the one before.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PyTls {
    /// Where each connection goes.
    pub targets: Vec<SocketAddr>,
    /// SNI and certificate name; `None`: no SNI, the certificate checked
    /// against the VIP's address.
    pub sni: Option<String>,
    /// The path GET asks for (HTTP/1.1, `Connection: close`).
    pub path: String,
    /// TLS versions allowed.
    pub tls: TlsVersion,
    /// ALPN offer (empty: none). A connection whose server chose `h2`
    /// sends no request.
    pub alpn: Vec<String>,
}

impl PyTls {
    /// Connections to `targets` with SNI [`WWW`], any TLS version,
    /// ALPN `http/1.1`, for `path`.
    pub fn new(targets: &[SocketAddr], path: &str) -> Self {
        PyTls {
            targets: targets.to_vec(),
            sni: Some(WWW.to_string()),
            path: path.to_string(),
            tls: TlsVersion::Any,
            alpn: vec!["http/1.1".into()],
        }
    }
}

/// One connection of the Python client.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct PyConn {
    /// `ip:port` it went to.
    pub target: String,
    /// HTTP status (0: no request or no response).
    #[serde(default)]
    pub status: u16,
    /// `TLSv1.2`, `TLSv1.3`.
    #[serde(default)]
    pub version: String,
    /// The cipher suite.
    #[serde(default)]
    pub cipher: String,
    /// The protocol chosen by ALPN.
    #[serde(default)]
    pub alpn: Option<String>,
    /// Whether the handshake resumed the session offered.
    #[serde(default)]
    pub reused: bool,
    /// Whether a session was offered.
    #[serde(default)]
    pub offered: bool,
    /// `X-Backend`.
    #[serde(default)]
    pub backend: String,
    /// Body length.
    #[serde(default)]
    pub len: usize,
    /// Hex SHA-256 of the body.
    #[serde(default)]
    pub sha256: String,
    /// What went wrong, if anything.
    #[serde(default)]
    pub error: Option<String>,
}

/// The Python client's program: `python3 -c PY_TLS '<PyTls as JSON>' CA`;
/// one JSON object per connection on stdout.
pub const PY_TLS: &str = r#"
import hashlib, json, socket, ssl, sys
cfg = json.loads(sys.argv[1])
ctx = ssl.create_default_context(cafile=sys.argv[2])
v = {"V12": ssl.TLSVersion.TLSv1_2, "V13": ssl.TLSVersion.TLSv1_3}.get(cfg["tls"])
if v is not None:
    ctx.minimum_version = v
    ctx.maximum_version = v
if cfg["alpn"]:
    ctx.set_alpn_protocols(cfg["alpn"])
name = cfg["sni"] or sys.argv[3]
session = None
for target in cfg["targets"]:
    host, port = target.rsplit(":", 1)
    out = {"target": target, "offered": session is not None}
    try:
        with socket.create_connection((host, int(port)), timeout=10) as raw:
            with ctx.wrap_socket(raw, server_hostname=name, session=session) as s:
                out["version"] = s.version()
                out["cipher"] = s.cipher()[0]
                out["alpn"] = s.selected_alpn_protocol()
                out["reused"] = s.session_reused
                if out["alpn"] in (None, "http/1.1"):
                    s.sendall(("GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n"
                               % (cfg["path"], name)).encode())
                    data = b""
                    while True:
                        try:
                            chunk = s.recv(65536)
                        except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                            break
                        if not chunk:
                            break
                        data += chunk
                    head, _, body = data.partition(b"\r\n\r\n")
                    lines = head.decode("latin-1").split("\r\n")
                    out["status"] = int(lines[0].split()[1])
                    hdr = {k.strip().lower(): v.strip() for k, _, v in
                           (l.partition(":") for l in lines[1:])}
                    if "content-length" in hdr:
                        body = body[: int(hdr["content-length"])]
                    out["backend"] = hdr.get("x-backend", "")
                    out["len"] = len(body)
                    out["sha256"] = hashlib.sha256(body).hexdigest()
                # After the response: a TLS 1.3 server's tickets have arrived.
                session = s.session
    except Exception as e:
        out["error"] = "%s: %s" % (type(e).__name__, e)
    print(json.dumps(out), flush=True)
"#;

/// Runs the Python `ssl` client ([`PY_TLS`]) in namespace `ns`, trusting
/// the bed's CA: one [`PyConn`] per target.
pub fn python(bed: &impl AsRef<Path>, ns: &str, req: &PyTls) -> Result<Vec<PyConn>> {
    let cfg = serde_json::to_string(req).map_err(|e| BedError::Parse {
        what: "Python TLS client request",
        detail: e.to_string(),
    })?;
    let ca = ca_file(bed).display().to_string();
    let vip = addr::VIP.to_string();
    let out = netns::run_stdout(Some(ns), "python3", &["-c", PY_TLS, &cfg, &ca, &vip])?;
    out.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l).map_err(|e| BedError::Parse {
                what: "Python TLS client output",
                detail: format!("{e}: {l}"),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extensions_name_every_host_and_the_vip() {
        let e = server_extensions();
        assert!(e.contains(
            "subjectAltName=DNS:www.baton.test,DNS:static.baton.test,DNS:app.baton.test,DNS:*.baton.test,IP:198.18.0.10,IP:2001:2::10"
        ));
        assert!(e.contains("CA:FALSE") && e.contains("serverAuth"));
    }

    #[test]
    fn curl_goes_where_it_is_told_with_the_url_unchanged() {
        let ca = Path::new("/bed/ca.pem");
        let a = HttpsGet::new(STATIC, "/static/1k.bin")
            .tls(TlsVersion::V12)
            .curl_args(ca);
        let has = |a: &[String], x: &str, y: &str| a.windows(2).any(|w| w[0] == x && w[1] == y);
        assert!(has(&a, "--resolve", "static.baton.test:443:198.18.0.10"));
        assert!(has(&a, "--tls-max", "1.2") && a.contains(&"--tlsv1.2".to_string()));
        assert_eq!(a.last().unwrap(), "https://static.baton.test/static/1k.bin");
        let b = HttpsGet::no_sni("/")
            .to(addr::backend_tls(0))
            .http(HttpVersion::Http11)
            .curl_args(ca);
        assert!(has(&b, "--connect-to", "198.18.0.10:443:198.18.0.11:443"));
        assert!(b.contains(&"--http1.1".to_string()));
        assert_eq!(b.last().unwrap(), "https://198.18.0.10/");
        let c = HttpsGet::new(WWW, "/")
            .to("127.0.0.1:8443".parse().unwrap())
            .curl_args(ca);
        assert!(has(&c, "--connect-to", "www.baton.test:443:127.0.0.1:8443"));
    }

    #[test]
    fn curl_trace_is_read() {
        let t = "* Connected to www.baton.test (198.18.0.11) port 443 (#0)\n\
                 * ALPN: offers h2,http/1.1\n\
                 * SSL connection using TLSv1.3 / TLS_AES_256_GCM_SHA384\n\
                 * ALPN: server accepted h2\n\
                 BATON-CURL 200 2 [b1]\n";
        let r = parse_curl_stderr(t);
        assert_eq!(
            (r.code, r.http_version.as_str(), r.backend.as_str()),
            (200, "2", "b1")
        );
        assert_eq!(r.tls_version, "TLSv1.3");
        assert_eq!(r.cipher, "TLS_AES_256_GCM_SHA384");
        assert_eq!(r.alpn.as_deref(), Some("h2"));
        let old = parse_curl_stderr("* ALPN, server accepted to use http/1.1\n");
        assert_eq!(old.alpn.as_deref(), Some("http/1.1"));
    }

    #[test]
    fn python_request_is_json() {
        let r = PyTls::new(&[addr::backend_tls(0), addr::backend_tls(1)], "/x");
        let v: serde_json::Value = serde_json::to_value(&r).unwrap();
        assert_eq!(v["targets"][1], "198.18.0.12:443");
        assert_eq!(v["tls"], "Any");
        assert_eq!(v["sni"], "www.baton.test");
    }
}

/// How [`cut_hello_get`] sends its ClientHello.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HelloCut {
    /// In one write.
    Whole,
    /// One byte per TCP segment (`TCP_NODELAY`, 2 ms apart).
    OneByteSegments,
    /// The handshake message re-cut into two TLS records, sent as two writes.
    TwoRecords,
}

impl HelloCut {
    fn arg(self) -> &'static str {
        match self {
            HelloCut::Whole => "whole",
            HelloCut::OneByteSegments => "bytes1",
            HelloCut::TwoRecords => "records2",
        }
    }
}

/// What [`cut_hello_get`] got.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CutHelloResponse {
    pub status: u16,
    /// `X-Backend` (`-` when absent).
    pub backend: String,
    /// `TLSv1.3`, …
    pub version: String,
    /// The ALPN protocol chosen (`-` when none).
    pub alpn: String,
}

/// The Python client of [`cut_hello_get`]: it makes its own ClientHello
/// (`ssl.MemoryBIO`, ALPN `http/1.1`), sends it cut as told, finishes the
/// handshake and one GET; prints `status backend version alpn`.
pub const PY_CUT_HELLO: &str = r#"
import socket, ssl, sys, time
host, sni, mode, ca, path = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
ctx = ssl.create_default_context(cafile=ca)
ctx.set_alpn_protocols(["http/1.1"])
inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
obj = ctx.wrap_bio(inc, out, server_hostname=sni)
try:
    obj.do_handshake()
except ssl.SSLWantReadError:
    pass
hello = out.read()
assert hello[0] == 22, hello[:5]
if mode == "records2":
    body = hello[5:]
    cut = len(body) // 2
    hdr = hello[:3]
    hello = (hdr + cut.to_bytes(2, "big") + body[:cut]
             + hdr + (len(body) - cut).to_bytes(2, "big") + body[cut:])
s = socket.create_connection((host, 443), timeout=10)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
if mode == "bytes1":
    for b in hello:
        s.send(bytes([b]))
        time.sleep(0.002)
elif mode == "records2":
    half = len(hello) // 2
    s.send(hello[:half])
    time.sleep(0.05)
    s.send(hello[half:])
else:
    s.sendall(hello)
def pump():
    d = out.read()
    if d:
        s.sendall(d)
while True:
    try:
        obj.do_handshake()
        pump()
        break
    except ssl.SSLWantReadError:
        pump()
        data = s.recv(65536)
        if not data:
            raise SystemExit("closed during the handshake")
        inc.write(data)
obj.write(("GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % (path, sni)).encode())
pump()
resp = b""
while True:
    try:
        chunk = obj.read(65536)
        if not chunk:
            break
        resp += chunk
    except ssl.SSLWantReadError:
        data = s.recv(65536)
        if not data:
            break
        inc.write(data)
    except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
        break
head = resp.split(b"\r\n\r\n", 1)[0].decode("latin-1")
lines = head.split("\r\n")
backend = "-"
for line in lines[1:]:
    k, _, v = line.partition(":")
    if k.strip().lower() == "x-backend":
        backend = v.strip()
print(lines[0].split()[1], backend, obj.version(), obj.selected_alpn_protocol() or "-")
"#;

/// One HTTPS GET to the VIP from namespace `ns` whose ClientHello arrives
/// cut as `cut` says; the certificate is checked against the bed's CA.
pub fn cut_hello_get(
    bed: &impl AsRef<Path>,
    ns: &str,
    sni: &str,
    cut: HelloCut,
    path: &str,
) -> Result<CutHelloResponse> {
    let ca = ca_file(bed).display().to_string();
    let vip = addr::VIP.to_string();
    let out = netns::run_stdout(
        Some(ns),
        "python3",
        &["-c", PY_CUT_HELLO, &vip, sni, cut.arg(), &ca, path],
    )?;
    let f: Vec<&str> = out.split_whitespace().collect();
    Ok(CutHelloResponse {
        status: f.first().and_then(|s| s.parse().ok()).unwrap_or(0),
        backend: f.get(1).unwrap_or(&"-").to_string(),
        version: f.get(2).unwrap_or(&"").to_string(),
        alpn: f.get(3).unwrap_or(&"-").to_string(),
    })
}
