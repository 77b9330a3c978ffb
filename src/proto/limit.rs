//! A token bucket (the shaping algorithm of RFC 2697's single-rate meter, without colours):
//! `rate` tokens per second accrue up to `burst`; each datagram takes one or is dropped. It
//! bounds what one peer, or all the Receiver's "refused" notices together, can cost.
//! Pure: the time is an argument.

/// A token bucket.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TokenBucket {
    /// Tokens per second.
    rate: f64,
    /// Most tokens held.
    burst: f64,
    /// Tokens now.
    tokens: f64,
    /// Time of the last refill, ns (`None` before the first use).
    last: Option<u64>,
}

impl TokenBucket {
    /// A full bucket of `burst` tokens refilled at `rate` per second.
    pub const fn new(rate: f64, burst: f64) -> Self {
        Self {
            rate,
            burst,
            tokens: burst,
            last: None,
        }
    }

    /// Takes one token at `now` if there is one.
    pub fn take(&mut self, now: u64) -> bool {
        if let Some(last) = self.last {
            let dt = now.saturating_sub(last) as f64 * 1e-9;
            self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        }
        self.last = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_rate() {
        let mut b = TokenBucket::new(100.0, 10.0);
        let taken = (0..50).filter(|_| b.take(0)).count();
        assert_eq!(taken, 10);
        // One second later: 100 more, capped by the burst of 10.
        let taken = (0..50).filter(|_| b.take(1_000_000_000)).count();
        assert_eq!(taken, 10);
        // Steady 100/s over ten seconds, offered 1000/s.
        let mut ok = 0;
        for i in 0..10_000u64 {
            if b.take(1_000_000_000 + i * 1_000_000) {
                ok += 1;
            }
        }
        assert!((995..=1010).contains(&ok), "{ok}");
    }
}
