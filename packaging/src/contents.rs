//! What goes into which package, and where: the one place to change when a
//! file is added to a package. Paths follow the documentation
//! (docs/deployment.md, "Installing from the Debian packages"):
//!
//! - `baton`: `/usr/bin/baton`; `/etc/baton/baton.yaml` (the appliance
//!   profile, `configs/appliance-dpdk.yaml`, the documented starting point)
//!   and the `base.yaml` it includes, as conffiles; the unit `baton.service`;
//!   the Prometheus rules and Grafana dashboard of `ops/` in
//!   `/usr/share/baton/`; the switch's example profiles and documentation.
//! - `baton-agent`: `/usr/bin/baton-agent`; the preload library at
//!   `/usr/lib/baton/libbaton_handover.so`, the path the agent's
//!   `handover.library` defaults to; `/etc/baton/agent.yaml`; the units
//!   `baton-agent.service` and the backend's others (`baton-backend-*`); the
//!   ARP sysctls in `/usr/lib/sysctl.d/`.
//!
//! The units and sysctl files are taken from `packaging/systemd/` and
//! `packaging/sysctl/` as they are; `baton.service` and
//! `baton-agent.service` must be there.

use std::path::{Path, PathBuf};

use crate::cargo::{Binaries, Crate};
use crate::deb::{Entry, Kind, Package, Source};
use crate::man;
use crate::util::{self, Result};

/// Everything the package contents are made from.
pub struct Inputs<'a> {
    pub workspace: &'a Path,
    /// Holds `systemd/` and `sysctl/`.
    pub packaging: &'a Path,
    pub bins: &'a Binaries,
    /// The Debian version.
    pub version: &'a str,
    pub maintainer: &'a str,
    /// The source date, `YYYY-MM-DD` and RFC 2822.
    pub date: &'a str,
    pub date_rfc2822: &'a str,
    /// `2024-2026`, for the copyright notice.
    pub years: &'a str,
    /// The source tree's commit, when it is a git checkout.
    pub commit: Option<&'a str>,
    /// The packet I/O backends `baton` is built with.
    pub features: &'a [&'static str],
}

const SWITCH_DOCS: [&str; 9] = [
    "configuration.md",
    "deployment.md",
    "metrics.md",
    "operations.md",
    "packet-io.md",
    "security.md",
    "thop.md",
    "troubleshooting.md",
    "config.schema.json",
];
const AGENT_DOCS: [&str; 5] = [
    "agent.md",
    "deployment.md",
    "security.md",
    "thop.md",
    "troubleshooting.md",
];

/// The package of the switch.
pub fn baton(i: &Inputs, crates: &[Crate]) -> Result<Package> {
    let mut e = vec![program("/usr/bin/baton", &i.bins.baton)];
    let configs = i.workspace.join("configs");
    e.push(conffile(
        "/etc/baton/baton.yaml",
        &configs.join("appliance-dpdk.yaml"),
        "# /etc/baton/baton.yaml: the profile baton.service runs, installed from\n\
         # configs/appliance-dpdk.yaml (a DPDK appliance; AF_XDP and AF_PACKET\n\
         # profiles are in /usr/share/doc/baton/examples/). Its includes\n\
         # (base.yaml) live beside it. Set the BATON_* values (here or in\n\
         # /etc/default/baton), the backends and the admin hosts, then run\n\
         # `baton check-config /etc/baton/baton.yaml`. thop.key and admin.token\n\
         # were created at installation (mode 0600); every backend's agent needs\n\
         # the same thop.key. Procedure: /usr/share/doc/baton/deployment.md.\n",
    )?);
    e.push(data("/etc/baton/base.yaml", &configs.join("base.yaml")));
    e.extend(units(i.packaging, Owner::Switch)?);
    for f in util::files_in(&i.workspace.join("ops/prometheus"), ".yml")? {
        e.push(data(
            &format!("/usr/share/baton/prometheus/{}", name(&f)),
            &f,
        ));
    }
    for f in util::files_in(&i.workspace.join("ops/grafana"), ".json")? {
        e.push(data(&format!("/usr/share/baton/grafana/{}", name(&f)), &f));
    }
    let examples = util::files_in(&configs, ".yaml")?
        .into_iter()
        .filter(|f| !name(f).starts_with("agent"));
    e.extend(docs(i, "baton", &SWITCH_DOCS, examples, crates)?);
    e.extend(man_pages(
        controlplane::cli::command(),
        &[
            (
                "/etc/baton/baton.yaml",
                "The profile baton.service runs; its includes beside it.",
            ),
            (
                "/etc/baton/thop.key",
                "The THOP key (32 bytes as hex, mode 0600), created at installation.",
            ),
            (
                "/etc/baton/admin.token",
                "The admin endpoint's bearer token (mode 0600), created at installation.",
            ),
            (
                "/usr/share/doc/baton/examples/",
                "Example profiles: DPDK, AF_XDP, AF_PACKET, every policy, a cluster member.",
            ),
        ],
        "/usr/share/doc/baton/",
        i.date,
    )?);

    let io: Vec<&str> = i
        .features
        .iter()
        .map(|f| match *f {
            "dpdk" => "DPDK",
            "af_xdp" => "AF_XDP",
            other => other,
        })
        .chain(["AF_PACKET"])
        .collect();
    Ok(Package {
        name: "baton",
        section: "net",
        summary: "content-aware Web switch with TCP handoff",
        description: vec![
            "Baton completes each client's TCP handshake on a virtual IP, reads the HTTP \
             request head (or the TLS ClientHello), chooses a backend by URL, host, headers \
             or server name, and hands the live connection off to that backend's baton-agent, \
             which rebuilds it with TCP_REPAIR. Responses go from the backend straight to the \
             client; the switch only relays the client's packets by MAC rewrite."
                .into(),
            format!(
                "This package holds the switch (packet I/O: {}), its profile, example \
                 profiles, Prometheus alert rules, a Grafana dashboard and the systemd unit. \
                 Nothing is started or enabled at installation: edit /etc/baton/baton.yaml, \
                 check it with `baton check-config`, then enable baton.service.",
                io.join(", ")
            ),
        ],
        // DPDK's mempool and NIC drivers are plugins the binary does not
        // link (dpkg-shlibdeps cannot see them); the `dpdk` package brings
        // them and the binding tools the deployment uses.
        recommends: if i.features.contains(&"dpdk") {
            vec!["dpdk".into()]
        } else {
            Vec::new()
        },
        entries: e,
        secrets: vec![("thop.key", 32), ("admin.token", 16)],
    })
}

/// The package of the backend agent and its preload library.
pub fn agent(i: &Inputs, crates: &[Crate]) -> Result<Package> {
    let mut e = vec![
        program("/usr/bin/baton-agent", &i.bins.agent),
        // Where the agent looks for it when `handover.library` is not set.
        Entry {
            dest: agent::config::HandoverConfig::default()
                .library
                .display()
                .to_string(),
            source: Source::File(i.bins.preload.clone()),
            kind: Kind::Library,
        },
    ];
    let configs = i.workspace.join("configs");
    e.push(conffile(
        "/etc/baton/agent.yaml",
        &configs.join("agent.yaml"),
        "# /etc/baton/agent.yaml: the profile baton-agent.service runs, installed\n\
         # from configs/agent.yaml, which describes a backend of the test bed: set\n\
         # this backend's addresses, the switches, the services, and the switch's\n\
         # THOP key (its /etc/baton/thop.key, copied here with mode 0600), then run\n\
         # `baton-agent check-config /etc/baton/agent.yaml`. Procedure:\n\
         # /usr/share/doc/baton-agent/deployment.md, \"A backend\".\n",
    )?);
    e.extend(units(i.packaging, Owner::Agent)?);
    for f in util::files_in(&i.packaging.join("sysctl"), ".conf")? {
        e.push(data(&format!("/usr/lib/sysctl.d/{}", name(&f)), &f));
    }
    let examples = util::files_in(&configs, ".yaml")?
        .into_iter()
        .filter(|f| name(f).starts_with("agent"));
    e.extend(docs(i, "baton-agent", &AGENT_DOCS, examples, crates)?);
    e.extend(man_pages(
        agent::cli::command(),
        &[
            ("/etc/baton/agent.yaml", "The profile baton-agent.service runs."),
            ("/etc/baton/thop.key", "The THOP key shared with the switch (mode 0600)."),
            (
                "/usr/lib/baton/libbaton_handover.so",
                "The preload library an unmodified web server is started with (LD_PRELOAD) so that its accept returns the adopted connections.",
            ),
            ("/run/baton-agent/", "The handover socket and the THOP replay state."),
        ],
        "/usr/share/doc/baton-agent/",
        i.date,
    )?);
    Ok(Package {
        name: "baton-agent",
        section: "net",
        summary: "Baton backend agent: adopts handed-off TCP connections",
        description: vec![
            "baton-agent runs on every backend behind a Baton switch. It receives the \
             switch's THOP frames, rebuilds each handed-off TCP connection as an established \
             socket with TCP_REPAIR, and gives it to the unmodified web server (nginx started \
             with the preload library in /usr/lib/baton, whose own accept then returns it) or \
             relays it to a local server."
                .into(),
            "This package holds the agent, the preload library, its profile, the systemd \
             units (the agent, and the VIP on lo) and the backend's ARP sysctl settings. \
             Nothing is started or enabled at installation."
                .into(),
        ],
        // The VIP unit runs ip(8) and sysctl(8).
        recommends: vec!["iproute2".into(), "procps".into()],
        entries: e,
        secrets: Vec::new(),
    })
}

fn name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn program(dest: &str, src: &Path) -> Entry {
    Entry {
        dest: dest.into(),
        source: Source::File(src.to_path_buf()),
        kind: Kind::Program,
    }
}

fn data(dest: &str, src: &Path) -> Entry {
    Entry {
        dest: dest.into(),
        source: Source::File(src.to_path_buf()),
        kind: Kind::Data,
    }
}

/// A profile from `configs/` under a header that says what it is now.
fn conffile(dest: &str, src: &Path, header: &str) -> Result<Entry> {
    let mut bytes = header.as_bytes().to_vec();
    bytes.extend(util::read(src)?);
    Ok(Entry {
        dest: dest.into(),
        source: Source::Bytes(bytes),
        kind: Kind::Data,
    })
}

#[derive(PartialEq, Eq, Clone, Copy)]
enum Owner {
    Switch,
    Agent,
}

/// The units of `packaging/systemd/` that belong to `owner`. A unit whose
/// name says neither is an error, so a new one is placed on purpose.
fn units(packaging: &Path, owner: Owner) -> Result<Vec<Entry>> {
    let dir = packaging.join("systemd");
    let required = match owner {
        Owner::Switch => "baton.service",
        Owner::Agent => "baton-agent.service",
    };
    if !dir.join(required).is_file() {
        return Err(format!("{} is missing", dir.join(required).display()));
    }
    let mut out = Vec::new();
    for f in util::files_in(&dir, "")? {
        let n = name(&f);
        let of = if n.starts_with("baton.") || n.starts_with("baton@") {
            Owner::Switch
        } else if n.starts_with("baton-agent") || n.starts_with("baton-backend") {
            Owner::Agent
        } else {
            return Err(format!(
                "{}: neither the switch's (baton.*) nor the backend's (baton-agent*, baton-backend*); \
                 place it in packaging/src/contents.rs",
                f.display()
            ));
        };
        if of == owner {
            out.push(data(&format!("/usr/lib/systemd/system/{n}"), &f));
        }
    }
    Ok(out)
}

/// README, the documents the package's users need, the example profiles,
/// the copyright file and the changelog, in `/usr/share/doc/<package>/`.
fn docs(
    i: &Inputs,
    package: &str,
    names: &[&str],
    examples: impl Iterator<Item = PathBuf>,
    crates: &[Crate],
) -> Result<Vec<Entry>> {
    let dir = format!("/usr/share/doc/{package}");
    let mut e = vec![data(
        &format!("{dir}/README.md"),
        &i.workspace.join("README.md"),
    )];
    for n in names {
        e.push(data(
            &format!("{dir}/{n}"),
            &i.workspace.join("docs").join(n),
        ));
    }
    for f in examples {
        e.push(data(&format!("{dir}/examples/{}", name(&f)), &f));
    }
    e.push(Entry {
        dest: format!("{dir}/copyright"),
        source: Source::Bytes(copyright(i.years, crates)?.into_bytes()),
        kind: Kind::Data,
    });
    let commit = i
        .commit
        .map(|c| format!(" at commit {c}"))
        .unwrap_or_default();
    let changelog = format!(
        "{package} ({}) unstable; urgency=medium\n\n  * Built from the Baton source tree{commit}.\n\n -- {}  {}\n",
        i.version, i.maintainer, i.date_rfc2822
    );
    e.push(Entry {
        dest: format!("{dir}/changelog"),
        source: Source::Bytes(changelog.into_bytes()),
        kind: Kind::Compressed,
    });
    Ok(e)
}

fn man_pages(
    cmd: clap::Command,
    files: &[(&str, &str)],
    docs: &str,
    date: &str,
) -> Result<Vec<Entry>> {
    let extra = man::Extra { files, docs, date };
    Ok(man::pages(cmd, &extra)?
        .into_iter()
        .map(|p| Entry {
            dest: format!("/usr/share/man/man1/{}", p.file),
            source: Source::Bytes(p.roff),
            kind: Kind::Compressed,
        })
        .collect())
}

/// The machine-readable copyright file: Baton's own licence, and the crates
/// the binaries link in with theirs.
fn copyright(years: &str, crates: &[Crate]) -> Result<String> {
    let licence = env!("CARGO_PKG_LICENSE");
    if licence != "Apache-2.0" {
        return Err(format!(
            "the workspace licence is {licence}: update copyright() in packaging/src/contents.rs"
        ));
    }
    let mut s = String::from(
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\
         Upstream-Name: Baton\n\
         Comment: Built from the Baton source tree. The binaries link in these Rust\n \
         crates from crates.io, each under its own licence (its source has the text):\n .\n",
    );
    for c in crates {
        s.push_str(&format!(" {} {}: {}\n", c.name, c.version, c.license));
    }
    s.push_str(&format!(
        "\nFiles: *\nCopyright: {years} The Baton developers\nLicense: Apache-2.0\n"
    ));
    s.push_str(
        "\nLicense: Apache-2.0\n \
         Licensed under the Apache License, Version 2.0 (the \"License\"); you may not\n \
         use this software except in compliance with the License.\n \
         .\n \
         Unless required by applicable law or agreed to in writing, software\n \
         distributed under the License is distributed on an \"AS IS\" BASIS, WITHOUT\n \
         WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.\n \
         .\n \
         On Debian systems, the complete text of the Apache License, Version 2.0,\n \
         is in /usr/share/common-licenses/Apache-2.0.\n",
    );
    Ok(s)
}
