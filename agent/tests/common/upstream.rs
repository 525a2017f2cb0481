//! Local servers on the backend's 127.0.0.1:8080: a scriptable Rust server
//! (to observe exactly what the relay delivers) and a real nginx.

use super::bed::Bed;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc::{channel, Receiver};
use std::time::Duration;
use testkit::process::Proc;
use testkit::temp_dir::TempDir;

/// Accepted upstream connections, handed to the test.
pub struct Upstream {
    pub conns: Receiver<TcpStream>,
}

impl Upstream {
    /// Listens on 127.0.0.1:8080 in the backend namespace.
    pub fn start(bed: &Bed) -> Upstream {
        let l = bed.in_ns(&bed.backend, || {
            TcpListener::bind("127.0.0.1:8080").expect("bind upstream")
        });
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for s in l.incoming().map_while(Result::ok) {
                if tx.send(s).is_err() {
                    break;
                }
            }
        });
        Upstream { conns: rx }
    }

    pub fn accept(&self) -> TcpStream {
        let s = self
            .conns
            .recv_timeout(Duration::from_secs(10))
            .expect("no upstream connection from the relay");
        s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        s
    }
}

/// Reads one HTTP request head plus `Content-Length` body.
pub fn read_request(s: &mut TcpStream) -> Vec<u8> {
    let mut req = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        if let Some(end) = super::serve::find(&req, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&req[..end]).to_ascii_lowercase();
            let cl = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map(|v| v.trim().parse::<usize>().unwrap())
                .unwrap_or(0);
            if req.len() >= end + 4 + cl {
                return req;
            }
        }
        let n = s.read(&mut buf).expect("upstream read");
        assert!(
            n > 0,
            "EOF before the request was complete: {:?}",
            String::from_utf8_lossy(&req)
        );
        req.extend_from_slice(&buf[..n]);
    }
}

pub fn respond(s: &mut TcpStream, body: &[u8]) {
    write!(
        s,
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(body).unwrap();
}

/// A real nginx serving `files` from a generated root on 127.0.0.1:8080.
pub struct Nginx {
    proc: Proc,
    pub dir: TempDir,
}

impl Nginx {
    pub fn start(bed: &Bed, files: &[(&str, &[u8])]) -> Nginx {
        Nginx::start_with(bed, files, "127.0.0.1:8080", "")
    }

    /// A real nginx listening on `listen` (`127.0.0.1:8080`, `[::1]:8080`)
    /// with more `server` directives.
    pub fn start_with(
        bed: &Bed,
        files: &[(&str, &[u8])],
        listen: &str,
        server_extra: &str,
    ) -> Nginx {
        let dir = TempDir::new("nginx");
        let root = dir.0.join("root");
        std::fs::create_dir_all(&root).unwrap();
        for (name, data) in files {
            std::fs::write(root.join(name), data).unwrap();
        }
        let p = dir.0.display().to_string();
        let conf = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid {p}/nginx.pid;\nerror_log {p}/error.log info;\n\
             events {{ worker_connections 1024; }}\n\
             http {{\n  access_log {p}/access.log;\n  client_body_temp_path {p}/body;\n  proxy_temp_path {p}/proxy;\n\
               fastcgi_temp_path {p}/fastcgi;\n  uwsgi_temp_path {p}/uwsgi;\n  scgi_temp_path {p}/scgi;\n\
               default_type application/octet-stream;\n  sendfile on;\n\
               client_max_body_size 64m;\n\
               server {{\n    listen {listen};\n    root {p}/root;\n    add_header X-Backend nginx-test;\n{server_extra}  }}\n}}\n"
        );
        std::fs::write(dir.0.join("nginx.conf"), conf).unwrap();
        let mut proc = Proc::spawn(
            "nginx",
            &bed.backend,
            "nginx",
            &["-p", &p, "-c", &format!("{p}/nginx.conf")],
            &dir.join("stderr.log"),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        // Ready when it accepts on its address inside the namespace.
        if let Err(e) = proc.wait_tcp(listen.parse().unwrap(), Duration::from_secs(10)) {
            panic!(
                "nginx did not start: {e}\n{}",
                std::fs::read_to_string(dir.0.join("error.log")).unwrap_or_default()
            );
        }
        Nginx { proc, dir }
    }

    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("access.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.proc.kill_group_now();
    }
}

/// `tests/data/sha256_sink.py` on the backend's 127.0.0.1:`port`: answers a
/// POST with the SHA-256 and length of the body it received. nginx proxies
/// to it with [`SINK_LOCATION`]; killed on drop.
pub struct Sha256Sink {
    proc: Proc,
    _dir: TempDir,
}

/// The sink's port.
pub const SINK_PORT: u16 = 8082;

/// nginx `server` directives sending `POST /post` to the sink.
pub const SINK_LOCATION: &str = "    location = /post { proxy_pass http://127.0.0.1:8082; }\n";

impl Sha256Sink {
    pub fn start(bed: &Bed) -> Sha256Sink {
        let dir = TempDir::new("sink");
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/sha256_sink.py");
        let port = SINK_PORT.to_string();
        let mut proc = Proc::spawn(
            "sha256-sink",
            &bed.backend,
            "python3",
            &[script, &port],
            &dir.join("sink.log"),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        proc.wait_tcp(
            format!("127.0.0.1:{SINK_PORT}").parse().unwrap(),
            Duration::from_secs(10),
        )
        .unwrap_or_else(|e| panic!("sha256 sink did not start: {e}"));
        Sha256Sink { proc, _dir: dir }
    }
}

impl Drop for Sha256Sink {
    fn drop(&mut self) {
        self.proc.kill_group_now();
    }
}

/// The SHA-256 of `data` as hex (coreutils' `sha256sum`).
pub fn sha256_hex(data: &[u8]) -> String {
    use std::process::{Command, Stdio};
    let mut c = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("sha256sum");
    let mut stdin = c.stdin.take().unwrap();
    let data = data.to_vec();
    let w = std::thread::spawn(move || stdin.write_all(&data));
    let out = c.wait_with_output().unwrap();
    w.join().unwrap().unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}
