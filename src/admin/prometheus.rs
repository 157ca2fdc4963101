//! The Prometheus text exposition format (version 0.0.4), just what `/metrics` needs:
//! metric families with `# HELP` and `# TYPE`, samples with escaped label values, and
//! histograms with cumulative `le` buckets.
//!
//! ```text
//! # HELP ringway_no_match_total Requests that matched no rule.
//! # TYPE ringway_no_match_total counter
//! ringway_no_match_total 3
//! ```

use crate::observe::metrics::{HistogramSum, LATENCY_BUCKETS_US};
use std::fmt::{Display, Write};

/// The `Content-Type` of the format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The kind of a metric family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// An exposition being written.
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
}

impl Exposition {
    /// Starts a metric family: its `# HELP` and `# TYPE` lines. Write its samples next.
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) {
        let kind = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        };
        let _ = writeln!(self.out, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    /// One sample: `name{label="value",…} value`.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.out.push_str(name);
        self.labels(labels, None);
        let _ = writeln!(self.out, " {value}");
    }

    /// The samples of one histogram of microsecond observations, in seconds:
    /// `NAME_bucket{…,le="…"}` (cumulative, ending with `+Inf`), `NAME_sum` and
    /// `NAME_count` (equal to the `+Inf` bucket).
    pub fn histogram(&mut self, name: &str, labels: &[(&str, &str)], h: &HistogramSum) {
        let mut cumulative = 0u64;
        for (i, n) in h.buckets.iter().enumerate() {
            cumulative += n;
            let le = match LATENCY_BUCKETS_US.get(i) {
                Some(&us) => seconds(us),
                None => "+Inf".to_string(),
            };
            let _ = write!(self.out, "{name}_bucket");
            self.labels(labels, Some(&le));
            let _ = writeln!(self.out, " {cumulative}");
        }
        let _ = write!(self.out, "{name}_sum");
        self.labels(labels, None);
        let _ = writeln!(self.out, " {}", seconds(h.sum_us));
        let _ = write!(self.out, "{name}_count");
        self.labels(labels, None);
        let _ = writeln!(self.out, " {cumulative}");
    }

    fn labels(&mut self, labels: &[(&str, &str)], le: Option<&str>) {
        if labels.is_empty() && le.is_none() {
            return;
        }
        self.out.push('{');
        let le = le.map(|v| ("le", v));
        for (i, (k, v)) in labels.iter().copied().chain(le).enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            let _ = write!(self.out, "{k}=\"{}\"", escape_label(v));
        }
        self.out.push('}');
    }

    pub fn finish(self) -> String {
        self.out
    }
}

/// Microseconds as decimal seconds, without exponent (`250` → `0.00025`).
fn seconds(us: u64) -> String {
    let (s, frac) = (us / 1_000_000, us % 1_000_000);
    if frac == 0 {
        return s.to_string();
    }
    let frac = format!("{frac:06}");
    format!("{s}.{}", frac.trim_end_matches('0'))
}

/// A label value: `\` → `\\`, `"` → `\"`, newline → `\n`.
fn escape_label(v: &str) -> std::borrow::Cow<'_, str> {
    if !v.contains(['\\', '"', '\n']) {
        return v.into();
    }
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
        .into()
}

/// `# HELP` text: `\` → `\\`, newline → `\n`.
fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        let mut e = Exposition::default();
        e.sample("m", &[("route", "a\"b\\c\nd"), ("group", "plain")], 1);
        assert_eq!(e.finish(), "m{route=\"a\\\"b\\\\c\\nd\",group=\"plain\"} 1\n");
    }

    #[test]
    fn help_is_escaped_and_precedes_type() {
        let mut e = Exposition::default();
        e.family("m_total", Kind::Counter, "a \\ b\nc");
        e.sample("m_total", &[], 0);
        assert_eq!(
            e.finish(),
            "# HELP m_total a \\\\ b\\nc\n# TYPE m_total counter\nm_total 0\n"
        );
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_count_is_the_inf_bucket() {
        let mut h = HistogramSum::default();
        h.buckets[0] = 2; // ≤ 100 µs
        h.buckets[3] = 1; // ≤ 1 ms
        h.buckets[12] = 1; // ≤ 2.5 s
        h.buckets[LATENCY_BUCKETS_US.len()] = 4; // > 300 s
        h.sum_us = 1_202_001_250;
        let mut e = Exposition::default();
        e.histogram("d_seconds", &[("route", "r")], &h);
        let text = e.finish();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), LATENCY_BUCKETS_US.len() + 3);
        assert_eq!(lines[0], "d_seconds_bucket{route=\"r\",le=\"0.0001\"} 2");
        assert_eq!(lines[1], "d_seconds_bucket{route=\"r\",le=\"0.00025\"} 2");
        assert_eq!(lines[3], "d_seconds_bucket{route=\"r\",le=\"0.001\"} 3");
        assert_eq!(lines[11], "d_seconds_bucket{route=\"r\",le=\"1\"} 3");
        // Up to the default timeouts (response 30 s, send and body 60 s).
        assert_eq!(lines[12], "d_seconds_bucket{route=\"r\",le=\"2.5\"} 4");
        assert_eq!(lines[15], "d_seconds_bucket{route=\"r\",le=\"30\"} 4");
        assert_eq!(lines[16], "d_seconds_bucket{route=\"r\",le=\"60\"} 4");
        assert_eq!(lines[18], "d_seconds_bucket{route=\"r\",le=\"300\"} 4");
        assert_eq!(lines[19], "d_seconds_bucket{route=\"r\",le=\"+Inf\"} 8");
        assert_eq!(lines[20], "d_seconds_sum{route=\"r\"} 1202.00125");
        assert_eq!(lines[21], "d_seconds_count{route=\"r\"} 8");
        // Never decreasing.
        let counts: Vec<u64> = lines[..20]
            .iter()
            .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
            .collect();
        assert!(counts.windows(2).all(|w| w[0] <= w[1]), "{counts:?}");
    }

    #[test]
    fn seconds_are_plain_decimals() {
        assert_eq!(seconds(0), "0");
        assert_eq!(seconds(100), "0.0001");
        assert_eq!(seconds(2_500), "0.0025");
        assert_eq!(seconds(1_000_000), "1");
        assert_eq!(seconds(12_345_678), "12.345678");
    }
}
