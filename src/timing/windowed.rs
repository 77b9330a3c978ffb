//! Minimum and maximum over a sliding window, in constant space.
//!
//! Two buckets that rotate every half window: the result is that of the current and the
//! previous bucket, so an old extreme ages out within one to two half-windows and the estimate
//! follows a route or a clock that changes, without storing every sample. This is the
//! "two-window minimum" LEDBAT uses for its base delay (RFC 6817 §3.4.2).

/// Minimum of `i64` samples over the last one to two [`WindowedMin::bucket_ns`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowedMin {
    /// Length of one bucket, ns.
    bucket_ns: u64,
    /// Start of the current bucket (ns, caller's timeline).
    bucket_start: u64,
    /// Minimum of the current bucket.
    current: i64,
    /// Minimum of the previous bucket (`i64::MAX`: none).
    previous: i64,
}

impl WindowedMin {
    /// A window of buckets of `bucket_ns` holding one sample taken at `now`.
    pub fn new(bucket_ns: u64, now: u64, sample: i64) -> Self {
        Self {
            bucket_ns,
            bucket_start: now,
            current: sample,
            previous: i64::MAX,
        }
    }

    /// Length of one bucket, ns.
    pub fn bucket_ns(&self) -> u64 {
        self.bucket_ns
    }

    /// Adds a sample taken at `now`.
    pub fn push(&mut self, now: u64, sample: i64) {
        let age = now.saturating_sub(self.bucket_start);
        if age >= 2 * self.bucket_ns {
            self.previous = i64::MAX;
            self.current = sample;
            self.bucket_start = now;
        } else if age >= self.bucket_ns {
            self.previous = self.current;
            self.current = sample;
            self.bucket_start = now;
        } else {
            self.current = self.current.min(sample);
        }
    }

    /// The minimum over the window.
    pub fn get(&self) -> i64 {
        self.current.min(self.previous)
    }
}

/// Maximum of `i64` samples over the last one to two buckets (a [`WindowedMin`] of the
/// negated samples).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowedMax(WindowedMin);

impl WindowedMax {
    /// A window of buckets of `bucket_ns` holding one sample taken at `now`.
    pub fn new(bucket_ns: u64, now: u64, sample: i64) -> Self {
        Self(WindowedMin::new(bucket_ns, now, sample.saturating_neg()))
    }

    /// Adds a sample taken at `now`.
    pub fn push(&mut self, now: u64, sample: i64) {
        self.0.push(now, sample.saturating_neg());
    }

    /// The maximum over the window.
    pub fn get(&self) -> i64 {
        self.0.get().saturating_neg()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_ages_out() {
        let s = 5_000;
        let mut m = WindowedMin::new(s, 0, 100);
        m.push(1, 50);
        m.push(2, 70);
        assert_eq!(m.get(), 50);
        m.push(s, 80); // rotates: previous = 50
        assert_eq!(m.get(), 50);
        m.push(2 * s, 90); // rotates: previous = 80
        assert_eq!(m.get(), 80);
        m.push(5 * s, 120); // long silence: only the new sample counts
        assert_eq!(m.get(), 120);
    }

    #[test]
    fn max_mirrors_min() {
        let mut m = WindowedMax::new(10, 0, 3);
        m.push(1, 9);
        m.push(2, -4);
        assert_eq!(m.get(), 9);
        m.push(25, 1);
        assert_eq!(m.get(), 1);
        m.push(26, i64::MIN);
        assert_eq!(m.get(), 1);
    }
}
