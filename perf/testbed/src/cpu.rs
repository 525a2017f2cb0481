//! CPU time: the whole machine from `/proc/stat`, a group of processes (the
//! switch or proxy) from `/proc/<pid>/stat` (user + system, all threads).

use std::collections::HashMap;

/// Clock ticks per second for `/proc` figures.
fn ticks_per_sec() -> f64 {
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
    let Some(line) = s.lines().find(|l| l.starts_with("cpu ")) else {
        return 0.0;
    };
    let v: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest is in user).
    let total: f64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0.0) + v.get(4).copied().unwrap_or(0.0);
    total - idle
}

/// User + system CPU seconds a process has used (all its threads).
pub fn process_seconds(pid: i32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_pid_stat(&s).map(|t| t / ticks_per_sec())
}

fn parse_pid_stat(s: &str) -> Option<f64> {
    // The command name may hold spaces and parentheses: fields start after
    // the last ')'. utime and stime are fields 14 and 15 (1-based).
    let rest = &s[s.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some(utime + stime)
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
    fn own_process_has_cpu_time() {
        let me = std::process::id() as i32;
        assert!(process_seconds(me).is_some());
        assert!(machine_busy_seconds() > 0.0);
    }
}
