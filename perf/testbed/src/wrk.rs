//! Bounded load with wrk (duration + connection count, one thread), and the
//! parsing of its report: requests/s, latency percentiles, errors.

use crate::error::{BedError, Result};
use crate::netns;
use serde::Serialize;
use std::time::Duration;

/// One wrk run.
#[derive(Debug, Clone)]
pub struct WrkRun {
    /// Full URL.
    pub url: String,
    /// Open connections.
    pub connections: u32,
    /// Test duration.
    pub duration: Duration,
    /// Send `Connection: close` so every request opens a new connection.
    pub close: bool,
    /// Per-request timeout.
    pub timeout: Duration,
}

impl WrkRun {
    /// A keep-alive run of `connections` for `secs` seconds.
    pub fn new(url: impl Into<String>, connections: u32, duration: Duration) -> Self {
        WrkRun {
            url: url.into(),
            connections,
            duration,
            close: false,
            timeout: Duration::from_secs(5),
        }
    }

    /// The argument list (without the program name).
    pub fn args(&self) -> Vec<String> {
        let mut a = vec![
            "-t1".to_string(),
            format!("-c{}", self.connections),
            format!("-d{}s", self.duration.as_secs().max(1)),
            format!("--timeout={}s", self.timeout.as_secs().max(1)),
            "--latency".to_string(),
        ];
        if self.close {
            a.push("-H".into());
            a.push("Connection: close".into());
        }
        a.push(self.url.clone());
        a
    }

    /// Runs wrk in namespace `ns` and parses its report.
    pub fn run_in(&self, ns: &str) -> Result<WrkReport> {
        let args = self.args();
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = netns::run_stdout(Some(ns), "wrk", &argv)?;
        parse(&out)
    }
}

/// Runs one wrk per URL at the same time in namespace `ns`, splitting the
/// connections evenly, and merges the reports: counts and rates add up;
/// percentiles are the request-weighted mean of the runs' percentiles (the
/// runs aim at identical servers, so their distributions are near equal).
pub fn run_parallel_in(ns: &str, runs: &[WrkRun]) -> Result<WrkReport> {
    let results: Vec<Result<WrkReport>> = std::thread::scope(|scope| {
        let handles: Vec<_> = runs
            .iter()
            .map(|r| scope.spawn(move || r.run_in(ns)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(bad("a wrk thread panicked")))
            })
            .collect()
    });
    let mut reps = Vec::with_capacity(results.len());
    for r in results {
        reps.push(r?);
    }
    Ok(merge(&reps))
}

/// Merges simultaneous reports (see [`run_parallel_in`]).
pub fn merge(reps: &[WrkReport]) -> WrkReport {
    let total: u64 = reps.iter().map(|r| r.requests).sum();
    let weighted = |f: fn(&WrkReport) -> f64| {
        if total == 0 {
            return 0.0;
        }
        reps.iter().map(|r| f(r) * r.requests as f64).sum::<f64>() / total as f64
    };
    WrkReport {
        requests: total,
        seconds: reps.iter().map(|r| r.seconds).fold(0.0, f64::max),
        bytes_read: reps.iter().map(|r| r.bytes_read).sum(),
        rps: reps.iter().map(|r| r.rps).sum(),
        p50_us: weighted(|r| r.p50_us),
        p75_us: weighted(|r| r.p75_us),
        p90_us: weighted(|r| r.p90_us),
        p99_us: weighted(|r| r.p99_us),
        err_connect: reps.iter().map(|r| r.err_connect).sum(),
        err_read: reps.iter().map(|r| r.err_read).sum(),
        err_write: reps.iter().map(|r| r.err_write).sum(),
        err_timeout: reps.iter().map(|r| r.err_timeout).sum(),
        non_2xx: reps.iter().map(|r| r.non_2xx).sum(),
    }
}

/// What wrk reported.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct WrkReport {
    /// Completed requests.
    pub requests: u64,
    /// Wall time of the run in seconds.
    pub seconds: f64,
    /// Bytes read (wrk's rounded figure).
    pub bytes_read: f64,
    /// Requests per second.
    pub rps: f64,
    /// Latency percentiles in microseconds.
    pub p50_us: f64,
    pub p75_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    /// Socket errors: connect, read, write, timeout.
    pub err_connect: u64,
    pub err_read: u64,
    pub err_write: u64,
    pub err_timeout: u64,
    /// Responses with status other than 2xx/3xx.
    pub non_2xx: u64,
}

impl WrkReport {
    /// Requests that failed in any way (socket errors or bad status).
    ///
    /// wrk counts a server's close after `Connection: close` as nothing, but a
    /// reset before the response as a read error: so `read` errors are real
    /// failures in both modes.
    pub fn failures(&self) -> u64 {
        self.err_connect + self.err_read + self.err_write + self.err_timeout + self.non_2xx
    }
}

fn bad(detail: impl Into<String>) -> BedError {
    BedError::Parse {
        what: "wrk output",
        detail: detail.into(),
    }
}

/// Parses a duration such as `1.49ms`, `311.54us`, `2.00s`, `1.00m` into µs.
pub fn parse_latency_us(s: &str) -> Option<f64> {
    let s = s.trim();
    let split = s.find(|c: char| c.is_ascii_alphabetic())?;
    let (num, unit) = s.split_at(split);
    let v: f64 = num.parse().ok()?;
    let mult = match unit {
        "us" => 1.0,
        "ms" => 1e3,
        "s" => 1e6,
        "m" => 60e6,
        "h" => 3600e6,
        _ => return None,
    };
    Some(v * mult)
}

fn parse_size(s: &str) -> Option<f64> {
    let s = s.trim().trim_end_matches(',');
    let split = s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let v: f64 = num.parse().ok()?;
    let mult = match unit {
        "" | "B" => 1.0,
        "KB" => 1024.0,
        "MB" => 1024.0 * 1024.0,
        "GB" => 1024.0 * 1024.0 * 1024.0,
        "TB" => 1024.0f64.powi(4),
        _ => return None,
    };
    Some(v * mult)
}

/// Parses wrk's text report (run with `--latency`).
pub fn parse(out: &str) -> Result<WrkReport> {
    let mut r = WrkReport::default();
    let mut saw_rps = false;
    let mut saw_total = false;
    for line in out.lines() {
        let t = line.trim();
        let words: Vec<&str> = t.split_whitespace().collect();
        match words.as_slice() {
            ["Requests/sec:", v] => {
                r.rps = v.parse().map_err(|_| bad(format!("Requests/sec `{v}`")))?;
                saw_rps = true;
            }
            [p @ ("50%" | "75%" | "90%" | "99%"), v] => {
                let us = parse_latency_us(v).ok_or_else(|| bad(format!("latency `{v}`")))?;
                match *p {
                    "50%" => r.p50_us = us,
                    "75%" => r.p75_us = us,
                    "90%" => r.p90_us = us,
                    _ => r.p99_us = us,
                }
            }
            [n, "requests", "in", secs, bytes, "read"] => {
                r.requests = n.parse().map_err(|_| bad(format!("request count `{n}`")))?;
                r.seconds = parse_latency_us(secs.trim_end_matches(','))
                    .ok_or_else(|| bad(format!("duration `{secs}`")))?
                    / 1e6;
                r.bytes_read = parse_size(bytes).unwrap_or(0.0);
                saw_total = true;
            }
            ["Socket", "errors:", "connect", c, "read", rd, "write", w, "timeout", to] => {
                let num = |s: &str| s.trim_end_matches(',').parse::<u64>().unwrap_or(0);
                r.err_connect = num(c);
                r.err_read = num(rd);
                r.err_write = num(w);
                r.err_timeout = num(to);
            }
            ["Non-2xx", "or", "3xx", "responses:", n] => {
                r.non_2xx = n.parse().unwrap_or(0);
            }
            _ => {}
        }
    }
    if !saw_rps || !saw_total {
        return Err(bad(format!("no summary in:\n{out}")));
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "Running 6s test @ http://198.18.0.3/static/1k.bin
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   1.55ms  311.54us   8.41ms   91.31%
    Req/Sec    20.70k     1.07k   22.11k    83.33%
  Latency Distribution
     50%    1.49ms
     75%    1.62ms
     90%    1.79ms
     99%  850.00us
  123456 requests in 6.00s, 139.02MB read
  Socket errors: connect 0, read 3, write 0, timeout 2
  Non-2xx or 3xx responses: 12
Requests/sec:  20576.00
Transfer/sec:     23.17MB
";

    #[test]
    fn parses_a_full_report() {
        let r = parse(SAMPLE).unwrap();
        assert_eq!(r.requests, 123456);
        assert_eq!(r.seconds, 6.0);
        assert_eq!(r.rps, 20576.0);
        assert_eq!(r.p50_us, 1490.0);
        assert_eq!(r.p99_us, 850.0);
        assert_eq!(r.err_read, 3);
        assert_eq!(r.err_timeout, 2);
        assert_eq!(r.non_2xx, 12);
        assert_eq!(r.failures(), 17);
        assert!((r.bytes_read - 139.02 * 1024.0 * 1024.0).abs() < 1.0);
    }

    #[test]
    fn rejects_output_without_summary() {
        assert!(parse("unable to connect to 198.18.0.10:80 Connection refused").is_err());
    }

    #[test]
    fn latency_units() {
        assert_eq!(parse_latency_us("2.00s"), Some(2e6));
        assert_eq!(parse_latency_us("12.5us"), Some(12.5));
        assert_eq!(parse_latency_us("1.00m"), Some(60e6));
        assert_eq!(parse_latency_us("3ns"), None);
        assert_eq!(parse_latency_us(""), None);
    }

    #[test]
    fn close_mode_adds_the_header() {
        let mut w = WrkRun::new("http://x/", 8, Duration::from_secs(2));
        w.close = true;
        let a = w.args();
        assert!(a
            .windows(2)
            .any(|p| p[0] == "-H" && p[1] == "Connection: close"));
        assert_eq!(a.last().unwrap(), "http://x/");
    }
}
