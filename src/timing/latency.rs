//! One peer's one-way latency over a sliding window: median, 99th percentile and maximum.
//!
//! Each event's latency is its arrival time minus its origin time, both on the Receiver's
//! timeline. The window keeps the last [`WINDOW_NS`] of samples, at most [`CAPACITY`] of them
//! (a ring: when a stream is denser than that, the window is shorter). Percentiles use the
//! nearest-rank definition (the smallest sample with at least `p` % of the samples at or
//! below it) and are computed on demand with a selection (`select_nth_unstable`, linear time)
//! into a scratch buffer allocated with the window, then cached until the window changes.
//!
//! Pure and allocation-free after construction: the time is an argument.

/// Samples older than this are forgotten, ns. Ten seconds hold a few phrases of playing, so the
/// p99 follows a route that gets slower within seconds, and a single old spike ages out.
pub const WINDOW_NS: u64 = 10_000_000_000;
/// Most samples kept: ten seconds of a dense performance (about 200 events per second).
pub const CAPACITY: usize = 2048;

/// Summary of the window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Percentiles {
    /// Median, ns.
    pub p50: i64,
    /// 99th percentile, ns.
    pub p99: i64,
    /// Largest sample, ns.
    pub max: i64,
    /// Samples in the window.
    pub count: usize,
}

/// Latency samples of one peer over the last [`WINDOW_NS`].
#[derive(Clone, Debug)]
pub struct LatencyWindow {
    /// Ring of `(arrival time, latency)`, oldest at `head`.
    ring: Vec<(u64, i64)>,
    /// Index of the oldest sample.
    head: usize,
    /// Number of samples held.
    len: usize,
    /// Work space for the selection.
    scratch: Vec<i64>,
    /// Summary of the current contents, when computed.
    cache: Option<Percentiles>,
}

impl Default for LatencyWindow {
    fn default() -> Self {
        Self::new()
    }
}

/// Index of the nearest-rank `p`-th percentile in a sorted array of `n` elements.
fn rank(p: f64, n: usize) -> usize {
    ((p * n as f64).ceil() as usize).clamp(1, n) - 1
}

impl LatencyWindow {
    /// An empty window with all its memory allocated.
    pub fn new() -> Self {
        Self {
            ring: vec![(0, 0); CAPACITY],
            head: 0,
            len: 0,
            scratch: Vec::with_capacity(CAPACITY),
            cache: None,
        }
    }

    /// Forgets samples older than the window at `now`.
    fn expire(&mut self, now: u64) {
        while self.len > 0 && now.saturating_sub(self.ring[self.head].0) > WINDOW_NS {
            self.head = (self.head + 1) % CAPACITY;
            self.len -= 1;
            self.cache = None;
        }
    }

    /// Adds the latency `latency_ns` of an event that arrived at `now`.
    pub fn push(&mut self, now: u64, latency_ns: i64) {
        self.expire(now);
        if self.len == CAPACITY {
            self.head = (self.head + 1) % CAPACITY;
            self.len -= 1;
        }
        let tail = (self.head + self.len) % CAPACITY;
        self.ring[tail] = (now, latency_ns);
        self.len += 1;
        self.cache = None;
    }

    /// Forgets every sample (the peer's clock basis changed, so old latencies are not
    /// comparable with new ones).
    pub fn clear(&mut self) {
        self.len = 0;
        self.cache = None;
    }

    /// Number of samples in the window at `now`.
    pub fn len(&mut self, now: u64) -> usize {
        self.expire(now);
        self.len
    }

    /// Whether the window is empty at `now`.
    pub fn is_empty(&mut self, now: u64) -> bool {
        self.len(now) == 0
    }

    /// Median, p99 and maximum of the window at `now`; `None` when it is empty.
    pub fn percentiles(&mut self, now: u64) -> Option<Percentiles> {
        self.expire(now);
        if self.len == 0 {
            return None;
        }
        if let Some(c) = self.cache {
            return Some(c);
        }
        self.scratch.clear();
        for i in 0..self.len {
            self.scratch.push(self.ring[(self.head + i) % CAPACITY].1);
        }
        let n = self.len;
        let (i50, i99) = (rank(0.50, n), rank(0.99, n));
        let max = self.scratch.iter().copied().max().unwrap_or(0);
        let (low, &mut p99, _) = self.scratch.select_nth_unstable(i99);
        let p50 = if i50 < i99 {
            *low.select_nth_unstable(i50).1
        } else {
            p99
        };
        let c = Percentiles {
            p50,
            p99,
            max,
            count: n,
        };
        self.cache = Some(c);
        Some(c)
    }

    /// The 99th percentile at `now`, ns.
    pub fn p99(&mut self, now: u64) -> Option<i64> {
        self.percentiles(now).map(|p| p.p99)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut w = LatencyWindow::new();
        // 1..=200 ms in a scrambled order.
        for i in 0..200u64 {
            let v = (i * 37) % 200 + 1;
            w.push(i, v as i64 * 1_000_000);
        }
        let p = w.percentiles(200).unwrap();
        assert_eq!(p.count, 200);
        assert_eq!(p.p50, 100_000_000);
        assert_eq!(p.p99, 198_000_000);
        assert_eq!(p.max, 200_000_000);
    }

    #[test]
    fn old_samples_age_out() {
        let mut w = LatencyWindow::new();
        w.push(0, 900);
        w.push(WINDOW_NS / 2, 10);
        assert_eq!(w.p99(WINDOW_NS / 2), Some(900));
        assert_eq!(w.p99(WINDOW_NS + 1), Some(10));
        assert_eq!(w.p99(2 * WINDOW_NS), None);
        assert!(w.is_empty(2 * WINDOW_NS));
    }

    #[test]
    fn a_full_ring_keeps_the_newest() {
        let mut w = LatencyWindow::new();
        for i in 0..(CAPACITY as u64 + 10) {
            w.push(1_000 + i, i as i64);
        }
        let p = w.percentiles(5_000).unwrap();
        assert_eq!(p.count, CAPACITY);
        assert_eq!(p.max, CAPACITY as i64 + 9);
        // The ten oldest (0 to 9) are gone: the window holds 10 to 2,057, whose nearest-rank
        // median is the 1,024th smallest and p99 the 2,028th.
        assert_eq!((p.p50, p.p99), (10 + 1023, 10 + 2027));
        w.clear();
        assert_eq!(w.percentiles(5_000), None);
    }

    #[test]
    fn small_windows() {
        let mut w = LatencyWindow::new();
        w.push(0, -3);
        assert_eq!(
            w.percentiles(0),
            Some(Percentiles {
                p50: -3,
                p99: -3,
                max: -3,
                count: 1
            })
        );
        w.push(0, 5);
        let p = w.percentiles(0).unwrap();
        assert_eq!((p.p50, p.p99), (-3, 5));
    }
}
