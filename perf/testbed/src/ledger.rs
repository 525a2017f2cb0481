//! The cost ledger: where a benchmark cell's CPU time went, per request.
//!
//! Requests per second alone hide the price: a system can win on rate by
//! burning more of the machine, or lose only because the load generator and
//! the backends share its cores. So every cell also splits the machine's busy
//! time into the parts a reader can act on: the client (wrk), the switch's
//! data-plane workers, its control thread and the rest of its threads, the
//! L7 proxy, the agents, the backends' web servers, the kernel's softirq
//! time, and whatever is left ("other": other work on the machine, the
//! harness, kernel threads).
//!
//! Attribution is by namespace and name, from `/proc`: a process belongs to
//! the bed host whose network namespace it is in (the inode of
//! `/proc/<pid>/ns/net` against that of `/run/netns/<name>`); within a host
//! its command name says what it is (`nginx` on a backend is the web server,
//! anything else there is the agent); the `baton` process is split by its
//! threads' names (`worker-<i>`, `control`). wrk exits before the cell's
//! second look, so the client's share is the harness's reaped children
//! (`getrusage(RUSAGE_CHILDREN)`) over the wrk run.
//!
//! On veth, a receiver's network stack often runs in the sender's context
//! (the softirq raised by a transmit is served before the sender returns),
//! so per-process figures move cost between components; the machine total
//! is the honest figure.

use crate::cpu::{self, MachineTicks};
use crate::topology::Bed;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// What a bed host is, for attribution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// A client host (wrk, the probe's thread lives in the harness).
    Client,
    /// The switch host (`baton`).
    Switch,
    /// The L7 proxy host (nginx or HAProxy).
    Proxy,
    /// A backend (nginx and `baton-agent`).
    Backend,
}

/// A component of the ledger that processes are charged to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Component {
    /// Processes living in a client namespace (wrk is counted separately).
    Client = 0,
    /// `baton` threads named `worker-<i>`.
    SwitchWorkers = 1,
    /// The `baton` thread named `control`.
    SwitchControl = 2,
    /// Every other thread of `baton` (main, admin, health checks, DPDK's
    /// service threads, threads that ended during the cell) and any other
    /// process in the switch host.
    SwitchOther = 3,
    /// Everything in the proxy host.
    Proxy = 4,
    /// Processes on a backend other than nginx.
    Agent = 5,
    /// nginx on a backend.
    Web = 6,
}

/// Number of [`Component`]s.
pub const COMPONENTS: usize = 7;

/// The component a whole process is charged to (the switch's own process is
/// split further by [`baton_split`]).
pub fn process_component(role: Role, comm: &str) -> Component {
    match role {
        Role::Client => Component::Client,
        Role::Switch => Component::SwitchOther,
        Role::Proxy => Component::Proxy,
        Role::Backend if comm == "nginx" => Component::Web,
        Role::Backend => Component::Agent,
    }
}

/// The component a thread of `baton` is charged to, by its name (set in the
/// control plane when it spawns them).
pub fn baton_thread_component(thread_comm: &str) -> Component {
    if thread_comm == "control" {
        Component::SwitchControl
    } else if thread_comm
        .strip_prefix("worker-")
        .is_some_and(|i| !i.is_empty() && i.bytes().all(|b| b.is_ascii_digit()))
    {
        Component::SwitchWorkers
    } else {
        Component::SwitchOther
    }
}

/// Splits `baton`'s process total over its live threads: what the named
/// threads do not account for (other threads, threads that have ended, the
/// rounding between per-thread and per-process figures) stays in
/// [`Component::SwitchOther`].
pub fn baton_split(process_ticks: u64, threads: &[(String, u64)]) -> [u64; COMPONENTS] {
    let mut out = [0u64; COMPONENTS];
    let mut named = 0u64;
    for (comm, t) in threads {
        let c = baton_thread_component(comm);
        if c != Component::SwitchOther {
            out[c as usize] += t;
            named += t;
        }
    }
    out[Component::SwitchOther as usize] = process_ticks.saturating_sub(named);
    out
}

/// The namespace inode in a `/proc/<pid>/ns/net` link (`net:[4026532281]`).
pub fn parse_netns_link(link: &str) -> Option<u64> {
    link.strip_prefix("net:[")?.strip_suffix(']')?.parse().ok()
}

/// The bed's hosts by network-namespace inode.
#[derive(Debug, Clone, Default)]
pub struct Hosts {
    by_inode: HashMap<u64, Role>,
}

impl Hosts {
    /// Adds a namespace inode.
    pub fn add(&mut self, inode: u64, role: Role) {
        self.by_inode.insert(inode, role);
    }

    /// The role of the host with this namespace inode.
    pub fn role(&self, inode: u64) -> Option<Role> {
        self.by_inode.get(&inode).copied()
    }

    /// Every host of `bed` (namespaces that cannot be read are left out).
    pub fn of_bed(bed: &Bed) -> Hosts {
        use std::os::unix::fs::MetadataExt;
        let mut h = Hosts::default();
        let mut add = |ns: &str, role| {
            if let Ok(m) = std::fs::metadata(format!("/run/netns/{ns}")) {
                h.add(m.ino(), role);
            }
        };
        for c in &bed.clients {
            add(&c.ns, Role::Client);
        }
        for s in &bed.switches {
            add(&s.ns, Role::Switch);
        }
        if let Some(p) = &bed.proxy {
            add(&p.ns, Role::Proxy);
        }
        for b in &bed.backends {
            add(&b.ns, Role::Backend);
        }
        h
    }
}

/// Per-component CPU ticks of the bed's processes at one moment, keyed by
/// (pid, start time) so a reused pid is a new process.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProcSnapshot {
    /// Ticks per component of each process.
    pub procs: HashMap<(i32, u64), [u64; COMPONENTS]>,
}

impl ProcSnapshot {
    /// Scans `/proc` for processes in the bed's namespaces.
    pub fn take(hosts: &Hosts) -> ProcSnapshot {
        let mut snap = ProcSnapshot::default();
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return snap;
        };
        for e in dir.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            let Some(role) = std::fs::read_link(format!("/proc/{pid}/ns/net"))
                .ok()
                .and_then(|l| parse_netns_link(&l.to_string_lossy()))
                .and_then(|i| hosts.role(i))
            else {
                continue;
            };
            let Some(t) = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| cpu::parse_task_stat(&s))
            else {
                continue;
            };
            let comm = read_comm(&format!("/proc/{pid}/comm"));
            let ticks = if role == Role::Switch && comm == "baton" {
                baton_split(t.cpu_ticks, &thread_ticks(pid))
            } else {
                let mut a = [0u64; COMPONENTS];
                a[process_component(role, &comm) as usize] = t.cpu_ticks;
                a
            };
            snap.procs.insert((pid, t.start_ticks), ticks);
        }
        snap
    }

    /// Ticks per component used from `before` to `self`; processes new since
    /// then count from zero, and a component never goes below zero.
    pub fn since(&self, before: &ProcSnapshot) -> [u64; COMPONENTS] {
        let mut out = [0u64; COMPONENTS];
        for (k, now) in &self.procs {
            let then = before.procs.get(k).copied().unwrap_or_default();
            for i in 0..COMPONENTS {
                out[i] += now[i].saturating_sub(then[i]);
            }
        }
        out
    }
}

fn read_comm(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim_end().to_string())
        .unwrap_or_default()
}

/// (thread name, utime + stime) of every live thread of `pid`.
fn thread_ticks(pid: i32) -> Vec<(String, u64)> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| {
            let p = e.path();
            let t = cpu::parse_task_stat(&std::fs::read_to_string(p.join("stat")).ok()?)?;
            Some((read_comm(&p.join("comm").to_string_lossy()), t.cpu_ticks))
        })
        .collect()
}

/// A cell's CPU seconds: per component, the reaped client processes, and
/// the machine's busy and softirq time.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    /// Seconds per [`Component`].
    pub components: [f64; COMPONENTS],
    /// Seconds of reaped children (wrk).
    pub children_s: f64,
    /// Busy seconds of the whole machine.
    pub machine_s: f64,
    /// Softirq seconds of the whole machine.
    pub softirq_s: f64,
}

impl Usage {
    /// From tick deltas (`tick_s` seconds per tick).
    pub fn from_ticks(
        procs: [u64; COMPONENTS],
        machine: MachineTicks,
        children_s: f64,
        tick_s: f64,
    ) -> Usage {
        Usage {
            components: procs.map(|t| t as f64 * tick_s),
            children_s,
            machine_s: machine.busy_ticks as f64 * tick_s,
            softirq_s: machine.softirq_ticks as f64 * tick_s,
        }
    }

    /// Seconds of one component.
    pub fn get(&self, c: Component) -> f64 {
        self.components[c as usize]
    }
}

/// Which components a system has (the others are reported as absent, not 0).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Shape {
    /// A `baton` switch and agents.
    pub switch: bool,
    /// An L7 proxy.
    pub proxy: bool,
}

/// CPU µs per request, per component, of one cell.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Ledger {
    /// The whole machine's busy time: the figure that does not depend on
    /// where the kernel ran what.
    pub machine_us: f64,
    /// The load generator (wrk) and anything else in the client host.
    pub client_us: f64,
    /// The switch's data-plane worker threads.
    pub switch_workers_us: Option<f64>,
    /// The switch's control thread.
    pub switch_control_us: Option<f64>,
    /// The switch's other threads.
    pub switch_other_us: Option<f64>,
    /// nginx or HAProxy in the proxy host.
    pub proxy_us: Option<f64>,
    /// `baton-agent` on the backends.
    pub agent_us: Option<f64>,
    /// The backends' nginx.
    pub web_us: f64,
    /// The machine's softirq time (`/proc/stat`), wherever it ran.
    pub softirq_us: f64,
    /// The machine's busy time not charged to any of the above: the harness,
    /// kernel threads, other work on the machine.
    pub other_us: f64,
    /// Whether the kernel also charged softirq time to the task it
    /// interrupted (no IRQ time accounting), so that `softirq_us` overlaps
    /// the per-process figures and is not subtracted again for `other_us`.
    /// `None` when the kernel's config could not be read (then it is
    /// subtracted).
    pub softirq_in_processes: Option<bool>,
}

impl Ledger {
    /// Divides a cell's usage by its completed requests.
    pub fn new(
        u: &Usage,
        requests: u64,
        shape: Shape,
        softirq_in_processes: Option<bool>,
    ) -> Ledger {
        let per = |s: f64| {
            if requests == 0 {
                0.0
            } else {
                s * 1e6 / requests as f64
            }
        };
        let client = u.get(Component::Client) + u.children_s;
        let processes: f64 = u.components.iter().sum::<f64>() + u.children_s;
        let softirq_apart = if softirq_in_processes == Some(true) {
            0.0
        } else {
            u.softirq_s
        };
        let other = u.machine_s - processes - softirq_apart;
        let when = |yes: bool, s: f64| yes.then(|| per(s));
        Ledger {
            machine_us: per(u.machine_s),
            client_us: per(client),
            switch_workers_us: when(shape.switch, u.get(Component::SwitchWorkers)),
            switch_control_us: when(shape.switch, u.get(Component::SwitchControl)),
            switch_other_us: when(shape.switch, u.get(Component::SwitchOther)),
            proxy_us: when(shape.proxy, u.get(Component::Proxy)),
            agent_us: when(shape.switch, u.get(Component::Agent)),
            web_us: per(u.get(Component::Web)),
            softirq_us: per(u.softirq_s),
            other_us: per(other),
            softirq_in_processes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_processes_by_host_and_name() {
        assert_eq!(process_component(Role::Backend, "nginx"), Component::Web);
        assert_eq!(
            process_component(Role::Backend, "baton-agent"),
            Component::Agent
        );
        assert_eq!(process_component(Role::Proxy, "nginx"), Component::Proxy);
        assert_eq!(process_component(Role::Proxy, "haproxy"), Component::Proxy);
        assert_eq!(process_component(Role::Client, "wrk"), Component::Client);
        assert_eq!(
            process_component(Role::Switch, "ip"),
            Component::SwitchOther
        );
    }

    #[test]
    fn splits_baton_by_thread_name() {
        assert_eq!(baton_thread_component("worker-0"), Component::SwitchWorkers);
        assert_eq!(
            baton_thread_component("worker-12"),
            Component::SwitchWorkers
        );
        assert_eq!(baton_thread_component("worker-"), Component::SwitchOther);
        assert_eq!(baton_thread_component("control"), Component::SwitchControl);
        assert_eq!(
            baton_thread_component("eal-intr-thread"),
            Component::SwitchOther
        );
        let threads = vec![
            ("baton".to_string(), 3),
            ("control".to_string(), 20),
            ("worker-0".to_string(), 500),
            ("worker-1".to_string(), 100),
            ("admin".to_string(), 2),
        ];
        // The process total holds 10 ticks of a thread that has ended.
        let s = baton_split(635, &threads);
        assert_eq!(s[Component::SwitchWorkers as usize], 600);
        assert_eq!(s[Component::SwitchControl as usize], 20);
        assert_eq!(s[Component::SwitchOther as usize], 15);
        assert_eq!(s[Component::Web as usize], 0);
        // Per-thread rounding above the process total never goes negative.
        assert_eq!(
            baton_split(610, &threads)[Component::SwitchOther as usize],
            0
        );
    }

    #[test]
    fn parses_namespace_links() {
        assert_eq!(parse_netns_link("net:[4026532281]"), Some(4026532281));
        assert_eq!(parse_netns_link("mnt:[4026532281]"), None);
        assert_eq!(parse_netns_link("net:[x]"), None);
    }

    #[test]
    fn deltas_count_new_processes_from_zero() {
        let mut before = ProcSnapshot::default();
        let mut web = [0u64; COMPONENTS];
        web[Component::Web as usize] = 100;
        before.procs.insert((10, 5), web);
        // A process that exited and a reused pid with a new start time.
        before.procs.insert((11, 5), web);
        let mut after = ProcSnapshot::default();
        let mut web2 = web;
        web2[Component::Web as usize] = 130;
        after.procs.insert((10, 5), web2);
        let mut agent = [0u64; COMPONENTS];
        agent[Component::Agent as usize] = 7;
        after.procs.insert((11, 900), agent);
        let d = after.since(&before);
        assert_eq!(d[Component::Web as usize], 30);
        assert_eq!(d[Component::Agent as usize], 7);
        assert_eq!(d.iter().sum::<u64>(), 37);
    }

    fn usage() -> Usage {
        let mut procs = [0u64; COMPONENTS];
        procs[Component::SwitchWorkers as usize] = 30;
        procs[Component::SwitchControl as usize] = 5;
        procs[Component::SwitchOther as usize] = 1;
        procs[Component::Agent as usize] = 20;
        procs[Component::Web as usize] = 40;
        Usage::from_ticks(
            procs,
            MachineTicks {
                busy_ticks: 150,
                softirq_ticks: 10,
            },
            0.25,
            0.01,
        )
    }

    #[test]
    fn ledger_divides_by_requests_and_leaves_the_rest_to_other() {
        let l = Ledger::new(
            &usage(),
            1000,
            Shape {
                switch: true,
                proxy: false,
            },
            Some(false),
        );
        let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
        assert!(close(l.machine_us, 1500.0));
        assert!(close(l.client_us, 250.0));
        assert!(close(l.switch_workers_us.unwrap(), 300.0));
        assert!(close(l.switch_control_us.unwrap(), 50.0));
        assert!(close(l.switch_other_us.unwrap(), 10.0));
        assert!(close(l.agent_us.unwrap(), 200.0));
        assert!(close(l.web_us, 400.0));
        assert!(close(l.softirq_us, 100.0));
        assert_eq!(l.proxy_us, None);
        // 1500 − (250 + 300 + 50 + 10 + 200 + 400) − 100 softirq.
        assert!(close(l.other_us, 190.0));
        // Softirq inside the tasks' figures: not subtracted twice.
        let l2 = Ledger::new(&usage(), 1000, Shape::default(), Some(true));
        assert!(close(l2.other_us, 290.0));
        assert_eq!(l2.switch_workers_us, None);
        assert_eq!(l2.agent_us, None);
        // No requests: zeros, not infinities.
        let l3 = Ledger::new(&usage(), 0, Shape::default(), None);
        assert_eq!(l3.machine_us, 0.0);
    }
}
