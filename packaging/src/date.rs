//! The one date a package build carries (man pages, changelog, file times):
//! `SOURCE_DATE_EPOCH` when set (the reproducible-builds convention dpkg
//! follows too), else the time of the source tree's last commit, so two
//! builds of one commit give the same packages. Only a tree outside git falls
//! back to the clock.

use std::path::Path;
use std::process::Command;

/// Seconds since 1970, UTC.
pub fn source_epoch(workspace: &Path) -> u64 {
    if let Some(s) = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|v| v.trim().parse().ok())
    {
        return s;
    }
    let from_git = Command::new("git")
        .arg("-C")
        .arg(workspace)
        .args(["log", "-1", "--format=%ct"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok());
    if let Some(s) = from_git {
        return s;
    }
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `2024-2026`: the years from the tree's first commit to the source date,
/// for the copyright notice (only the source date's year outside git).
pub fn copyright_years(workspace: &Path, epoch: u64) -> String {
    let year = |e: u64| civil((e / 86_400) as i64).0;
    let first = Command::new("git")
        .arg("-C")
        .arg(workspace)
        .args(["log", "--max-parents=0", "--format=%ct"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter_map(|l| l.trim().parse::<u64>().ok())
                .min()
        })
        .map(year);
    let last = year(epoch);
    match first {
        Some(f) if f < last => format!("{f}-{last}"),
        _ => last.to_string(),
    }
}

/// (year, month 1-12, day 1-31) of a day count since 1970-01-01 (Howard
/// Hinnant's `civil_from_days`).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// `2025-12-02`, as man pages date themselves.
pub fn iso_date(epoch: u64) -> String {
    let (y, m, d) = civil((epoch / 86_400) as i64);
    format!("{y:04}-{m:02}-{d:02}")
}

/// `Tue, 02 Dec 2025 11:13:23 +0000`, as a Debian changelog's trailer wants.
pub fn rfc2822(epoch: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = epoch / 86_400;
    let (y, m, d) = civil(days as i64);
    let s = epoch % 86_400;
    format!(
        "{}, {d:02} {} {y:04} {:02}:{:02}:{:02} +0000",
        DAYS[(days % 7) as usize],
        MONTHS[(m - 1) as usize],
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(iso_date(0), "1970-01-01");
        assert_eq!(rfc2822(0), "Thu, 01 Jan 1970 00:00:00 +0000");
        // `date -u -d @1764674003 -R`
        assert_eq!(rfc2822(1_764_674_003), "Tue, 02 Dec 2025 11:13:23 +0000");
        assert_eq!(iso_date(951_782_400), "2000-02-29");
    }
}
