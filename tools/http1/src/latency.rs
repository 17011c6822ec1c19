//! Latencies recorded one by one, read back as percentiles.

use std::time::Duration;

/// Latencies in whole microseconds (4 bytes each, so a load generator can
/// keep millions), with nearest-rank percentiles.
#[derive(Debug, Clone, Default)]
pub struct Latencies {
    micros: Vec<u32>,
    sorted: bool,
}

impl Latencies {
    /// None recorded yet.
    pub fn new() -> Latencies {
        Latencies::default()
    }

    /// Room for `n` without reallocating.
    pub fn with_capacity(n: usize) -> Latencies {
        Latencies {
            micros: Vec::with_capacity(n),
            sorted: false,
        }
    }

    /// Records one latency (capped at about 71 minutes).
    pub fn record(&mut self, d: Duration) {
        self.micros
            .push(u32::try_from(d.as_micros()).unwrap_or(u32::MAX));
        self.sorted = false;
    }

    /// Adds every latency `other` recorded.
    pub fn extend(&mut self, other: &Latencies) {
        self.micros.extend_from_slice(&other.micros);
        self.sorted = false;
    }

    /// How many were recorded.
    pub fn len(&self) -> usize {
        self.micros.len()
    }

    /// Whether none was recorded.
    pub fn is_empty(&self) -> bool {
        self.micros.is_empty()
    }

    /// The `p`th percentile (0 is the least, 100 the most): the latency at
    /// rank `p / 100 * (len - 1)`, rounded; `None` when none was recorded.
    pub fn percentile(&mut self, p: f64) -> Option<Duration> {
        if !self.sorted {
            self.micros.sort_unstable();
            self.sorted = true;
        }
        let last = self.micros.len().checked_sub(1)?;
        let rank = ((p.clamp(0.0, 100.0) / 100.0) * last as f64).round() as usize;
        Some(Duration::from_micros(u64::from(
            self.micros[rank.min(last)],
        )))
    }

    /// [`percentile`](Latencies::percentile) in milliseconds.
    pub fn percentile_ms(&mut self, p: f64) -> Option<f64> {
        self.percentile(p).map(|d| d.as_secs_f64() * 1e3)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut l = Latencies::new();
        assert_eq!(l.percentile(50.0), None);
        for ms in [5, 1, 4, 2, 3] {
            l.record(Duration::from_millis(ms));
        }
        assert_eq!(l.percentile(0.0), Some(Duration::from_millis(1)));
        assert_eq!(l.percentile(50.0), Some(Duration::from_millis(3)));
        assert_eq!(l.percentile(100.0), Some(Duration::from_millis(5)));
        assert_eq!(l.percentile_ms(99.0), Some(5.0));
        let mut more = Latencies::new();
        more.record(Duration::from_micros(500));
        l.extend(&more);
        assert_eq!((l.len(), l.percentile_ms(0.0)), (6, Some(0.5)));
    }
}
