//! Prometheus histograms read from two scrapes: the observations made in
//! between, their mean, and a quantile interpolated inside the bucket that
//! holds it (what PromQL's `histogram_quantile` does). The latency probe uses
//! it to say where an idle bed's added latency goes: the switch's decision
//! and handoff times and the agents' adoption time. Parsing and the quantile
//! are [`crate::promtext`]'s.

use crate::promtext;

/// The observations of one histogram (summed over every label set) between
/// two scrapes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HistDelta {
    /// Observations.
    pub count: f64,
    /// Sum of the observed values.
    pub sum: f64,
    /// Cumulative counts by upper bound (`le`), ascending, `+Inf` last.
    pub buckets: Vec<(f64, f64)>,
}

/// Cumulative buckets, count and sum of histogram `name` in one scrape,
/// summed over every series.
fn read(text: &str, name: &str) -> (Vec<(f64, f64)>, f64, f64) {
    let buckets = promtext::buckets(text, name, &[]);
    let count = promtext::metric_sum(text, &format!("{name}_count"), &[]).unwrap_or(0.0);
    let sum = promtext::metric_sum(text, &format!("{name}_sum"), &[]).unwrap_or(0.0);
    (buckets, count, sum)
}

impl HistDelta {
    /// What histogram `name` observed between scrape `before` and `after`
    /// (each the concatenation of every scraped endpoint).
    pub fn between(before: &str, after: &str, name: &str) -> HistDelta {
        let (b0, c0, s0) = read(before, name);
        let (b1, c1, s1) = read(after, name);
        let buckets = b1
            .iter()
            .map(|(le, v)| {
                let old = b0.iter().find(|(l, _)| l == le).map_or(0.0, |x| x.1);
                (*le, (v - old).max(0.0))
            })
            .collect();
        HistDelta {
            count: (c1 - c0).max(0.0),
            sum: (s1 - s0).max(0.0),
            buckets,
        }
    }

    /// Mean observed value, if any observation was made.
    pub fn mean(&self) -> Option<f64> {
        (self.count > 0.0).then(|| self.sum / self.count)
    }

    /// Quantile `q` (0–1), linearly interpolated inside its bucket.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        promtext::quantile(&self.buckets, q)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = "# TYPE x histogram\n\
        x_bucket{b=\"1\",le=\"0.00001\"} 0\nx_bucket{b=\"1\",le=\"0.00002\"} 1\nx_bucket{b=\"1\",le=\"+Inf\"} 1\n\
        x_sum{b=\"1\"} 0.000015\nx_count{b=\"1\"} 1\n";
    const AFTER: &str = "x_bucket{b=\"1\",le=\"0.00001\"} 4\nx_bucket{b=\"1\",le=\"0.00002\"} 9\nx_bucket{b=\"1\",le=\"+Inf\"} 11\n\
        x_sum{b=\"1\"} 0.000215\nx_count{b=\"1\"} 11\n\
        x_bucket{b=\"2\",le=\"0.00001\"} 0\nx_bucket{b=\"2\",le=\"0.00002\"} 0\nx_bucket{b=\"2\",le=\"+Inf\"} 0\n\
        x_sum{b=\"2\"} 0\nx_count{b=\"2\"} 0\n";

    #[test]
    fn delta_mean_and_quantiles() {
        let d = HistDelta::between(BEFORE, AFTER, "x");
        assert_eq!(d.count, 10.0);
        assert!((d.mean().unwrap() - 0.00002).abs() < 1e-12);
        assert_eq!(
            d.buckets,
            vec![(0.00001, 4.0), (0.00002, 8.0), (f64::INFINITY, 10.0)]
        );
        // Rank 5 of 10 lies a quarter into the (10 µs, 20 µs] bucket.
        assert!((d.quantile(0.5).unwrap() - 0.0000125).abs() < 1e-12);
        // Rank 9.9 is in +Inf: the largest finite bound.
        assert_eq!(d.quantile(0.99), Some(0.00002));
        assert_eq!(HistDelta::between(AFTER, AFTER, "x").quantile(0.5), None);
        assert_eq!(HistDelta::between("", "", "y").mean(), None);
    }
}
