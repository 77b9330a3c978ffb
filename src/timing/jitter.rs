//! Interarrival jitter as RTP defines it (RFC 3550 §6.4.1 and appendix A.8): a running mean of
//! how much the transit time of consecutive packets differs, with gain 1/16.
//!
//! `J += (|D(i-1, i)| - J) / 16`, where `D(i-1, i)` is the difference of the transit times
//! (arrival minus send time) of packets `i-1` and `i`. The gain 1/16 "gives a good noise
//! reduction ratio while maintaining a reasonable rate of convergence" (RFC 3550). Transit
//! times may include any constant clock offset: only their differences count.

/// Interarrival jitter of one packet stream, ns.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Jitter {
    /// Transit time of the previous packet, ns (`None` before the first).
    last_transit: Option<i64>,
    /// The estimate, ns (kept in `f64`: the RFC's integer form scales by 16 for the same end).
    jitter: f64,
}

impl Jitter {
    /// No packet seen yet.
    pub const fn new() -> Self {
        Self {
            last_transit: None,
            jitter: 0.0,
        }
    }

    /// A packet with transit time `transit_ns` (arrival minus send time, on any common
    /// offset) arrived.
    pub fn update(&mut self, transit_ns: i64) {
        if let Some(last) = self.last_transit {
            let d = transit_ns.saturating_sub(last).unsigned_abs() as f64;
            self.jitter += (d - self.jitter) / 16.0;
        }
        self.last_transit = Some(transit_ns);
    }

    /// The current estimate, ns.
    pub fn get(&self) -> u64 {
        self.jitter.round() as u64
    }

    /// Forgets the stream (a clock basis changed, so transit times jump).
    pub fn restart(&mut self) {
        self.last_transit = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_transit_has_no_jitter_and_offsets_do_not_matter() {
        let mut j = Jitter::new();
        for _ in 0..100 {
            j.update(-5_000_000_000);
        }
        assert_eq!(j.get(), 0);
    }

    #[test]
    fn converges_to_the_mean_absolute_difference() {
        // Transit alternating between 10 ms and 12 ms: |D| is always 2 ms, so J tends to 2 ms.
        let mut j = Jitter::new();
        for i in 0..400 {
            j.update(if i % 2 == 0 { 10_000_000 } else { 12_000_000 });
        }
        assert!((j.get() as i64 - 2_000_000).abs() < 1_000, "{}", j.get());
    }

    #[test]
    fn one_step_moves_by_a_sixteenth() {
        let mut j = Jitter::new();
        j.update(0);
        j.update(1_600);
        assert_eq!(j.get(), 100);
        j.restart();
        j.update(1_000_000);
        assert_eq!(j.get(), 100, "a restart does not count the jump");
    }
}
