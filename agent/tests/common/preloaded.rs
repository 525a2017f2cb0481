//! Unmodified web servers started with the handover library preloaded, in the
//! backend namespace, listening on the VIP: stock Debian nginx (any number of
//! workers) and lighttpd.

use super::bed::{Bed, VIP};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};
use testkit::process::Proc;
use testkit::temp_dir::TempDir;

/// `libbaton_handover.so` next to the test's `baton-agent`; built on demand
/// when a lone `cargo test -p agent` did not build the workspace's cdylib.
pub fn library() -> PathBuf {
    let bin = PathBuf::from(super::agent_proc::bin());
    let dir = bin.parent().expect("binary directory").to_path_buf();
    let lib = dir.join("libbaton_handover.so");
    if !lib.is_file() {
        let mut cmd = Command::new(env!("CARGO"));
        cmd.args(["build", "-p", "baton-handover"]);
        if dir.ends_with("release") {
            cmd.arg("--release");
        }
        let st = cmd
            .status()
            .expect("run cargo to build the handover library");
        assert!(st.success(), "building baton-handover failed");
    }
    assert!(lib.is_file(), "{} missing", lib.display());
    lib
}

/// The agent configuration for a handover service on VIP:80.
pub fn handover_config(socket: &std::path::Path, library: &std::path::Path, extra: &str) -> String {
    handover_config_with(false, &[&format!("{VIP}:80")], socket, library, extra)
}

/// The agent configuration for handover services on `vips` (`ip:port`,
/// `[v6]:port`), THOP over IPv6 when `thop_v6`.
pub fn handover_config_with(
    thop_v6: bool,
    vips: &[&str],
    socket: &std::path::Path,
    library: &std::path::Path,
    extra: &str,
) -> String {
    let services: String = vips
        .iter()
        .map(|v| format!("  - vip: \"{v}\"\n    mode: handover\n"))
        .collect();
    format!(
        "name: test-backend\n{}services:\n{services}\
         handover:\n  socket: {}\n  library: {}\n  accept_timeout_ms: 300\n\
         load:\n  period_ms: 200\nmetrics:\n  listen: 127.0.0.1:9101\nlog:\n  level: debug\n{extra}",
        super::agent_proc::thop_yaml(thop_v6),
        socket.display(),
        library.display()
    )
}

/// Where a preloaded server listens.
#[derive(Clone, Debug)]
pub struct Listen {
    /// nginx `listen` parameters, one directive each (`198.18.0.10:80`,
    /// `[::]:80 ipv6only=on`); lighttpd takes the first as `server.bind`.
    pub lines: Vec<String>,
    /// `BATON_HANDOVER_LISTEN`.
    pub env: String,
    /// More nginx `server` directives.
    pub server_extra: String,
}

impl Listen {
    /// The IPv4 VIP's :80.
    pub fn vip() -> Listen {
        Listen {
            lines: vec![format!("{VIP}:80")],
            env: format!("{VIP}:80"),
            server_extra: String::new(),
        }
    }
}

/// Which server.
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    /// nginx with this many worker processes.
    Nginx(u32),
    /// lighttpd (one process, its own event loop).
    Lighttpd,
}

/// A preloaded server (its whole process group); killed on drop.
pub struct Preloaded {
    pub proc: Proc,
    pub dir: TempDir,
    pub kind: Kind,
}

impl Preloaded {
    /// Starts `kind` serving `files`, converted listener VIP:80, agent socket `socket`.
    pub fn start(
        bed: &Bed,
        kind: Kind,
        socket: &std::path::Path,
        files: &[(&str, &[u8])],
    ) -> Preloaded {
        Preloaded::start_with(bed, kind, socket, files, &Listen::vip())
    }

    /// [`Preloaded::start`] with the listeners of `listen`.
    pub fn start_with(
        bed: &Bed,
        kind: Kind,
        socket: &std::path::Path,
        files: &[(&str, &[u8])],
        listen: &Listen,
    ) -> Preloaded {
        let dir = TempDir::new("preloaded");
        let root = dir.0.join("root");
        std::fs::create_dir_all(&root).unwrap();
        for (name, data) in files {
            std::fs::write(root.join(name), data).unwrap();
        }
        let p = dir.0.display().to_string();
        let (prog, args, conf) = match kind {
            Kind::Nginx(workers) => (
                "nginx",
                vec!["-p".to_string(), p.clone(), "-c".into(), format!("{p}/server.conf")],
                format!(
                    "daemon off;\nworker_processes {workers};\nuser root;\npid {p}/nginx.pid;\nerror_log {p}/error.log info;\n\
                     events {{ worker_connections 4096; }}\n\
                     http {{\n  log_format withpid '$remote_addr $pid \"$request\" $status $body_bytes_sent';\n\
                       access_log {p}/access.log withpid;\n  client_body_temp_path {p}/body;\n  proxy_temp_path {p}/proxy;\n\
                       fastcgi_temp_path {p}/fastcgi;\n  uwsgi_temp_path {p}/uwsgi;\n  scgi_temp_path {p}/scgi;\n\
                       default_type application/octet-stream;\n  sendfile on;\n  client_max_body_size 64m;\n\
                       server {{\n{}    root {p}/root;\n    add_header X-Backend nginx-handover;\n{}  }}\n}}\n",
                    listen
                        .lines
                        .iter()
                        .map(|l| format!("    listen {l};\n"))
                        .collect::<String>(),
                    listen.server_extra
                ),
            ),
            Kind::Lighttpd => (
                "lighttpd",
                vec!["-D".to_string(), "-f".into(), format!("{p}/server.conf")],
                format!(
                    "server.document-root = \"{p}/root\"\nserver.bind = \"{}\"\nserver.port = 80\n\
                     server.errorlog = \"{p}/error.log\"\nserver.pid-file = \"{p}/lighttpd.pid\"\n\
                     server.modules = (\"mod_accesslog\")\naccesslog.filename = \"{p}/access.log\"\n\
                     mimetype.assign = (\".bin\" => \"application/octet-stream\", \".html\" => \"text/html\")\n",
                    listen.lines[0].strip_suffix(":80").unwrap_or(&listen.lines[0])
                ),
            ),
        };
        std::fs::write(dir.0.join("server.conf"), conf).unwrap();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (lib, listen) = (library(), listen.env.clone());
        let env = [
            ("LD_PRELOAD", lib.to_str().unwrap()),
            (handoff_proto::handover::ENV_LISTEN, listen.as_str()),
            (
                handoff_proto::handover::ENV_SOCKET,
                socket.to_str().unwrap(),
            ),
        ];
        let proc = Proc::spawn_env(
            prog,
            &bed.backend,
            prog,
            &args,
            &env,
            &dir.join("stderr.log"),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let s = Preloaded { proc, dir, kind };
        s.wait_converted(bed);
        s
    }

    /// Waits until the server's converted listener shows up in the namespace.
    fn wait_converted(&self, bed: &Bed) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let out = bed.exec(&bed.backend, &["cat", "/proc/net/unix"]);
            if String::from_utf8_lossy(&out.stdout).contains("@baton-handover/") {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "server did not convert its listener: {}",
                self.error_log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("error.log")).unwrap_or_default()
    }

    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("access.log")).unwrap_or_default()
    }

    /// The access log once it has `n` lines (lighttpd writes it in batches), or after 5 s.
    pub fn access_log_lines(&self, n: usize) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let log = self.access_log();
            if log.lines().count() >= n || Instant::now() > deadline {
                return log;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn pid_file(&self) -> Option<i32> {
        let f = match self.kind {
            Kind::Nginx(_) => "nginx.pid",
            Kind::Lighttpd => "lighttpd.pid",
        };
        std::fs::read_to_string(self.dir.0.join(f))
            .ok()
            .and_then(|s| s.trim().parse().ok())
    }

    /// The master's pid (nginx) or the server's pid.
    pub fn pid(&self) -> i32 {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(p) = self.pid_file() {
                return p;
            }
            assert!(Instant::now() < deadline, "no pid file");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `nginx -s reload` (re-reads the configuration, new workers, same listeners).
    pub fn reload(&self) {
        // SAFETY: kill(2) with SIGHUP to the server we started.
        unsafe { libc::kill(self.pid(), libc::SIGHUP) };
    }

    /// Stops (SIGSTOP) or resumes (SIGCONT) every process of the server.
    pub fn freeze(&self, on: bool) {
        let Some(pid) = self.pid_file() else {
            return;
        };
        let sig = if on { libc::SIGSTOP } else { libc::SIGCONT };
        let _ = Command::new("pkill")
            .args([if on { "-STOP" } else { "-CONT" }, "-P", &pid.to_string()])
            .status();
        // SAFETY: kill(2) to the server we started.
        unsafe { libc::kill(pid, sig) };
    }
}

impl Drop for Preloaded {
    fn drop(&mut self) {
        self.freeze(false);
        if let Some(pid) = self.pid_file() {
            // SAFETY: kill(2) to the server we started.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        self.proc.kill_group_now();
    }
}
