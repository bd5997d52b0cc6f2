//! Histograms with fixed buckets, updated with atomics only (no lock, no
//! allocation per observation), encoded in Prometheus's text format
//! through `prometheus-client`: durations (in seconds) and sizes (entries,
//! bytes).

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

/// Bounds for counts of entries (a log write's, a batch's): powers of two
/// to 1,024, then of four.
pub const ENTRY_BOUNDS: &[u64] = &[1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1_024, 4_096, 16_384];

/// Bounds for sizes in bytes: 256 B to 64 MiB, powers of four.
pub const BYTE_BOUNDS: &[u64] = &[
    256,
    1 << 10,
    4 << 10,
    16 << 10,
    64 << 10,
    256 << 10,
    1 << 20,
    4 << 20,
    16 << 20,
    64 << 20,
];

const MAX_BUCKETS: usize = BOUNDS_US.len() + 1;

/// Values observed, counted per bucket (the last: above every bound).
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [u64],
    /// How many units of a bound make one of the exposed unit (1e6: µs
    /// exposed as seconds).
    per_unit: f64,
    buckets: [AtomicU64; MAX_BUCKETS],
    count: AtomicU64,
    sum: AtomicU64,
}

impl Default for Histogram {
    /// A histogram of durations.
    fn default() -> Self {
        Histogram::with_bounds(&BOUNDS_US, 1e6)
    }
}

impl Histogram {
    /// A histogram of sizes (entries, bytes) under `bounds` (increasing,
    /// at most 17).
    pub fn sizes(bounds: &'static [u64]) -> Histogram {
        Histogram::with_bounds(bounds, 1.0)
    }

    fn with_bounds(bounds: &'static [u64], per_unit: f64) -> Histogram {
        assert!(bounds.len() < MAX_BUCKETS && bounds.windows(2).all(|w| w[0] < w[1]));
        Histogram {
            bounds,
            per_unit,
            buckets: Default::default(),
            count: AtomicU64::new(0),
            sum: AtomicU64::new(0),
        }
    }

    /// Observes a duration (a histogram of durations).
    pub fn observe(&self, d: Duration) {
        self.record(u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    }

    /// Observes a value in the bounds' unit.
    pub fn record(&self, v: u64) {
        let at = self.bounds.partition_point(|&b| b < v);
        self.buckets[at].fetch_add(1, Relaxed);
        self.count.fetch_add(1, Relaxed);
        self.sum.fetch_add(v, Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Relaxed)
    }

    /// A copy as it stands now.
    pub fn copy(&self) -> Histogram {
        let h = Histogram::with_bounds(self.bounds, self.per_unit);
        for (to, from) in h.buckets.iter().zip(&self.buckets) {
            to.store(from.load(Relaxed), Relaxed);
        }
        h.count.store(self.count.load(Relaxed), Relaxed);
        h.sum.store(self.sum.load(Relaxed), Relaxed);
        h
    }

    /// Each bucket's upper bound in the exposed unit and its own count (not
    /// cumulative: the encoder sums them up, as Prometheus has them).
    fn per_bucket(&self) -> Vec<(f64, u64)> {
        self.bounds
            .iter()
            .map(|b| *b as f64 / self.per_unit)
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
        let sum = self.sum.load(Relaxed) as f64 / self.per_unit;
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

    #[test]
    fn sizes_are_counted_in_their_own_unit() {
        let h = Histogram::sizes(ENTRY_BOUNDS);
        h.record(1);
        h.record(3);
        h.record(1_000_000);
        let b = h.per_bucket();
        assert_eq!(b.len(), ENTRY_BOUNDS.len() + 1);
        assert_eq!(b[0], (1.0, 1));
        assert_eq!(b[2], (4.0, 1));
        assert_eq!(b.last(), Some(&(f64::INFINITY, 1)));
        assert_eq!(h.copy().per_bucket(), b);
    }
}
