//! A latency histogram with fixed buckets, updated with atomics only (no
//! lock, no allocation per observation), encoded in Prometheus's text
//! format through `prometheus-client`.

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Upper bounds of the buckets, in microseconds: 50 µs to 10 s, about
/// three per decade (what fsyncs, commits and client calls span).
const BOUNDS_US: [u64; 17] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    2_500_000, 5_000_000, 10_000_000,
];

/// Durations observed, counted per bucket (the last: above every bound).
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; BOUNDS_US.len() + 1],
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let at = BOUNDS_US.partition_point(|&b| b < us);
        self.buckets[at].fetch_add(1, Relaxed);
        self.count.fetch_add(1, Relaxed);
        self.sum_us.fetch_add(us, Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Relaxed)
    }

    /// A copy as it stands now.
    pub fn copy(&self) -> Histogram {
        let h = Histogram::default();
        for (to, from) in h.buckets.iter().zip(&self.buckets) {
            to.store(from.load(Relaxed), Relaxed);
        }
        h.count.store(self.count.load(Relaxed), Relaxed);
        h.sum_us.store(self.sum_us.load(Relaxed), Relaxed);
        h
    }

    /// Each bucket's upper bound in seconds and its own count (not
    /// cumulative: the encoder sums them up, as Prometheus has them).
    fn per_bucket(&self) -> Vec<(f64, u64)> {
        BOUNDS_US
            .iter()
            .map(|b| *b as f64 / 1e6)
            .chain([f64::INFINITY])
            .zip(&self.buckets)
            .map(|(bound, n)| (bound, n.load(Relaxed)))
            .collect()
    }
}

impl TypedMetric for Histogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Histogram {
    fn encode(&self, mut encoder: MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
        let buckets = self.per_bucket();
        // The count is the buckets' sum, so the two always agree.
        let count = buckets.iter().map(|b| b.1).sum();
        let sum = self.sum_us.load(Relaxed) as f64 / 1e6;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_the_first_bucket_that_holds_them() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(50));
        h.observe(Duration::from_micros(51));
        h.observe(Duration::from_secs(60));
        let b = h.per_bucket();
        assert_eq!(b[0], (50e-6, 1));
        assert_eq!(b[1], (100e-6, 1));
        assert_eq!(b.last(), Some(&(f64::INFINITY, 1)));
        assert_eq!(b.iter().map(|b| b.1).sum::<u64>(), 3);
        assert_eq!(h.count(), 3);
    }
}
