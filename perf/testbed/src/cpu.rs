//! CPU time: the whole machine from `/proc/stat`, a group of processes (the
//! switch or proxy) from `/proc/<pid>/stat` (user + system, all threads), one
//! thread from `/proc/<pid>/task/<tid>/stat`, and reaped children (wrk) from
//! `getrusage(RUSAGE_CHILDREN)`, since they are gone before a second look.
//!
//! The parsers take the text so that they are tested on fixtures; the
//! readers around them are thin.

use std::collections::HashMap;

/// Clock ticks per second for `/proc` figures.
pub fn ticks_per_sec() -> f64 {
    // SAFETY: sysconf(3) has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// Busy CPU seconds of the whole machine since boot (all cores, excluding
/// idle and iowait).
pub fn machine_busy_seconds() -> f64 {
    let Ok(s) = std::fs::read_to_string("/proc/stat") else {
        return 0.0;
    };
    parse_proc_stat_busy(&s) / ticks_per_sec()
}

fn parse_proc_stat_busy(s: &str) -> f64 {
    parse_machine(s).busy_ticks as f64
}

/// The machine-wide figures of `/proc/stat`'s `cpu` line, in clock ticks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MachineTicks {
    /// Busy time: user, nice, system, irq, softirq and steal (guest time is
    /// inside user); idle and iowait left out.
    pub busy_ticks: u64,
    /// The softirq column alone.
    pub softirq_ticks: u64,
}

impl MachineTicks {
    /// Reads `/proc/stat` now (zeros when unreadable).
    pub fn read() -> MachineTicks {
        std::fs::read_to_string("/proc/stat")
            .map(|s| parse_machine(&s))
            .unwrap_or_default()
    }

    /// Increase from `earlier` to `self` (saturating).
    pub fn since(&self, earlier: &MachineTicks) -> MachineTicks {
        MachineTicks {
            busy_ticks: self.busy_ticks.saturating_sub(earlier.busy_ticks),
            softirq_ticks: self.softirq_ticks.saturating_sub(earlier.softirq_ticks),
        }
    }
}

/// Parses the aggregate `cpu` line of `/proc/stat`.
pub fn parse_machine(s: &str) -> MachineTicks {
    let Some(line) = s.lines().find(|l| l.starts_with("cpu ")) else {
        return MachineTicks::default();
    };
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest is in user).
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    MachineTicks {
        busy_ticks: total.saturating_sub(idle),
        softirq_ticks: v.get(6).copied().unwrap_or(0),
    }
}

/// User + system CPU seconds a process has used (all its threads).
pub fn process_seconds(pid: i32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_pid_stat(&s).map(|t| t / ticks_per_sec())
}

fn parse_pid_stat(s: &str) -> Option<f64> {
    parse_task_stat(s).map(|t| t.cpu_ticks as f64)
}

/// What the ledger needs from a `/proc/<pid>/stat` or
/// `/proc/<pid>/task/<tid>/stat` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskTicks {
    /// utime + stime, clock ticks.
    pub cpu_ticks: u64,
    /// Start time after boot, clock ticks: with the pid, it tells a process
    /// from a later one that reused the pid.
    pub start_ticks: u64,
}

/// Parses a process's or thread's `stat` line.
pub fn parse_task_stat(s: &str) -> Option<TaskTicks> {
    // The command name may hold spaces and parentheses: fields start after
    // the last ')'. utime, stime and starttime are fields 14, 15 and 22
    // (1-based); the first field after ')' is field 3.
    let rest = &s[s.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    let start: u64 = f.get(19)?.parse().ok()?;
    Some(TaskTicks {
        cpu_ticks: utime + stime,
        start_ticks: start,
    })
}

/// User + system CPU seconds of this process's children that have exited and
/// been waited for (wrk, run to completion by the harness).
pub fn children_seconds() -> f64 {
    // SAFETY: getrusage(2) writes into the zeroed struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above; RUSAGE_CHILDREN is a valid `who`.
    if unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) } != 0 {
        return 0.0;
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Whether the running kernel charges softirq time also to the task it
/// interrupted, read from its build config: without
/// `CONFIG_IRQ_TIME_ACCOUNTING` tick-based accounting adds a softirq tick
/// both to `/proc/stat`'s softirq column and to the interrupted task's
/// stime. `None` when the config cannot be read.
pub fn softirq_charged_to_tasks() -> Option<bool> {
    let out = std::process::Command::new("sh")
        .args([
            "-c",
            "zcat /proc/config.gz 2>/dev/null || cat /boot/config-$(uname -r) 2>/dev/null",
        ])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    parse_irq_time_accounting(&String::from_utf8_lossy(&out.stdout)).map(|on| !on)
}

/// `Some(true)` when a kernel config has `CONFIG_IRQ_TIME_ACCOUNTING=y`,
/// `Some(false)` when it is off or absent, `None` for an empty text.
pub fn parse_irq_time_accounting(config: &str) -> Option<bool> {
    if !config.lines().any(|l| l.starts_with("CONFIG_")) {
        return None;
    }
    Some(
        config
            .lines()
            .any(|l| l.trim() == "CONFIG_IRQ_TIME_ACCOUNTING=y"),
    )
}

/// CPU seconds of a changing set of processes (all those in a namespace):
/// call [`ProcGroupCpu::sample`] before and after.
#[derive(Debug, Default, Clone)]
pub struct ProcGroupCpu {
    seen: HashMap<i32, f64>,
}

impl ProcGroupCpu {
    /// Records the current CPU time of `pids`.
    pub fn sample(pids: &[i32]) -> Self {
        let seen = pids
            .iter()
            .filter_map(|&p| process_seconds(p).map(|s| (p, s)))
            .collect();
        ProcGroupCpu { seen }
    }

    /// CPU seconds used by `pids` since `self` was sampled (processes new
    /// since then count from zero).
    pub fn used_since(&self, pids: &[i32]) -> f64 {
        pids.iter()
            .filter_map(|&p| {
                let now = process_seconds(p)?;
                Some(now - self.seen.get(&p).copied().unwrap_or(0.0))
            })
            .filter(|d| *d > 0.0)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_stat() {
        let s = "cpu  100 5 50 1000 20 3 2 0 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n";
        assert_eq!(parse_proc_stat_busy(s), 160.0);
    }

    #[test]
    fn parses_pid_stat_with_odd_names() {
        let s =
            "1234 (we ird) name)) S 1 1234 1234 0 -1 4194560 100 0 0 0 70 30 0 0 20 0 1 0 5 0 0";
        assert_eq!(parse_pid_stat(s), Some(100.0));
        assert_eq!(parse_pid_stat("garbage"), None);
    }

    #[test]
    fn parses_machine_busy_and_softirq() {
        let s = "cpu  10801 0 3370 38121 447 5 65 11 0 0\ncpu0 5112 0 1362 19886 50 0 6 4 0 0\nintr 1\n";
        let m = parse_machine(s);
        assert_eq!(m.busy_ticks, 10801 + 3370 + 5 + 65 + 11);
        assert_eq!(m.softirq_ticks, 65);
        let later = MachineTicks {
            busy_ticks: m.busy_ticks + 100,
            softirq_ticks: 70,
        };
        assert_eq!(
            later.since(&m),
            MachineTicks {
                busy_ticks: 100,
                softirq_ticks: 5
            }
        );
        assert_eq!(parse_machine("intr 1\n"), MachineTicks::default());
    }

    #[test]
    fn parses_thread_stat_with_start_time() {
        // A real line of a `baton` worker thread (fields 14, 15, 22).
        let s = "4242 (worker-0) R 4200 4200 4100 0 -1 4194368 150 0 0 0 812 95 0 0 20 0 6 0 123456 2147483648 3000 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        assert_eq!(
            parse_task_stat(s),
            Some(TaskTicks {
                cpu_ticks: 907,
                start_ticks: 123456
            })
        );
        assert_eq!(parse_task_stat("4242 (x) R 1 2"), None);
    }

    #[test]
    fn reads_irq_time_accounting_from_config() {
        assert_eq!(
            parse_irq_time_accounting("CONFIG_HZ=250\n# CONFIG_IRQ_TIME_ACCOUNTING is not set\n"),
            Some(false)
        );
        assert_eq!(
            parse_irq_time_accounting("CONFIG_HZ=250\nCONFIG_IRQ_TIME_ACCOUNTING=y\n"),
            Some(true)
        );
        assert_eq!(parse_irq_time_accounting(""), None);
    }

    #[test]
    fn own_process_has_cpu_time() {
        let me = std::process::id() as i32;
        assert!(process_seconds(me).is_some());
        assert!(machine_busy_seconds() > 0.0);
    }
}
