//! Reading figures out of a Prometheus text exposition: sums of series and
//! quantiles of histograms (the same interpolation as PromQL's
//! `histogram_quantile`).

pub use crate::client::metric_sum;

/// The `le` buckets of histogram `name` (cumulative counts, summed over the
/// series matching `labels`), sorted by bound; `+Inf` last.
pub fn buckets(text: &str, name: &str, labels: &[(&str, &str)]) -> Vec<(f64, f64)> {
    let bucket = format!("{name}_bucket");
    let mut acc: Vec<(f64, f64)> = Vec::new();
    for line in text.lines().filter(|l| l.starts_with(&bucket)) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Some((n, lbl)) = series.split_once('{') else {
            continue;
        };
        if n != bucket {
            continue;
        }
        let lbl = lbl.trim_end_matches('}');
        if !labels
            .iter()
            .all(|(k, v)| lbl.split(',').any(|p| p == format!("{k}=\"{v}\"")))
        {
            continue;
        }
        let Some(le) = lbl
            .split(',')
            .find_map(|p| p.strip_prefix("le=\""))
            .map(|s| s.trim_end_matches('"'))
        else {
            continue;
        };
        let bound = if le == "+Inf" {
            f64::INFINITY
        } else {
            le.parse().unwrap_or(f64::NAN)
        };
        let Ok(v) = value.parse::<f64>() else {
            continue;
        };
        if bound.is_nan() {
            continue;
        }
        match acc.iter_mut().find(|(b, _)| *b == bound) {
            Some(e) => e.1 += v,
            None => acc.push((bound, v)),
        }
    }
    acc.sort_by(|a, b| a.0.total_cmp(&b.0));
    acc
}

/// Quantile `q` (0..1) of cumulative buckets, linearly interpolated inside
/// the bucket it falls in; None when the histogram is empty.
pub fn quantile(buckets: &[(f64, f64)], q: f64) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut prev = (0.0, 0.0);
    for &(bound, count) in buckets {
        if count >= rank {
            if bound.is_infinite() {
                return Some(prev.0);
            }
            let in_bucket = count - prev.1;
            let frac = if in_bucket > 0.0 {
                (rank - prev.1) / in_bucket
            } else {
                1.0
            };
            return Some(prev.0 + (bound - prev.0) * frac);
        }
        prev = (bound, count);
    }
    Some(prev.0)
}

/// Every series of metric `name`: its labels and value.
pub fn series(text: &str, name: &str) -> Vec<(Vec<(String, String)>, f64)> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((s, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (n, lbl) = s.split_once('{').unwrap_or((s, ""));
        if n != name {
            continue;
        }
        let Ok(v) = value.parse::<f64>() else {
            continue;
        };
        let labels = lbl
            .trim_end_matches('}')
            .split(',')
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()))
            .collect();
        out.push((labels, v));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_series_with_labels() {
        let t = "# TYPE d counter\nd{pool=\"static\",backend=\"static-1\"} 4\nd{pool=\"app\",backend=\"app-1\"} 2\nother 1\n";
        let s = series(t, "d");
        assert_eq!(s.len(), 2);
        assert_eq!(
            s[0].0,
            vec![
                ("pool".into(), "static".into()),
                ("backend".into(), "static-1".into())
            ]
        );
        assert_eq!(s[1].1, 2.0);
    }

    #[test]
    fn quantiles_interpolate_like_promql() {
        let t = "h_bucket{w=\"0\",le=\"0.001\"} 50\nh_bucket{w=\"0\",le=\"0.002\"} 90\nh_bucket{w=\"0\",le=\"+Inf\"} 100\nh_bucket{w=\"1\",le=\"0.001\"} 0\nh_bucket{w=\"1\",le=\"0.002\"} 0\nh_bucket{w=\"1\",le=\"+Inf\"} 0\nh_sum 1\n";
        let b = buckets(t, "h", &[]);
        assert_eq!(b.len(), 3);
        assert_eq!(quantile(&b, 0.5), Some(0.001));
        let p75 = quantile(&b, 0.7).unwrap();
        assert!((p75 - 0.0015).abs() < 1e-12);
        assert_eq!(quantile(&b, 0.99), Some(0.002));
        assert_eq!(quantile(&[], 0.5), None);
    }
}
