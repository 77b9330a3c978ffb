//! Duplicate-datagram filter: a sliding window over sequence numbers.
//!
//! The window is the anti-replay window of IPsec (RFC 4303 §3.4.3, RFC 6479 describes the
//! bitmap form) and WireGuard: the highest sequence number seen plus a 64-bit bitmap of the 64
//! numbers below it. A number above the highest slides the window; one inside it is accepted
//! once; one below it is too old. The network duplicates datagrams now and then, and without
//! this a duplicated datagram would play its notes twice.

/// Width of the window in sequence numbers.
pub const WINDOW: u64 = 64;

/// What the window says of a sequence number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// First time seen: process it.
    New,
    /// Seen before: drop it.
    Duplicate,
    /// Older than the window: cannot tell, drop it.
    TooOld,
}

/// Sliding window of the last [`WINDOW`] sequence numbers seen.
#[derive(Clone, Debug, Default)]
pub struct ReplayWindow {
    /// Highest sequence number accepted so far, `None` before the first one.
    top: Option<u64>,
    /// Bit `i` set: `top - i` was seen (bit 0 is `top` itself).
    bits: u64,
}

impl ReplayWindow {
    /// An empty window.
    pub fn new() -> Self {
        Self::default()
    }

    /// The highest sequence number accepted, if any.
    pub fn top(&self) -> Option<u64> {
        self.top
    }

    /// Checks `seq` without recording it.
    pub fn check(&self, seq: u64) -> Verdict {
        let Some(top) = self.top else {
            return Verdict::New;
        };
        if seq > top {
            return Verdict::New;
        }
        let back = top - seq;
        if back >= WINDOW {
            Verdict::TooOld
        } else if self.bits & (1 << back) != 0 {
            Verdict::Duplicate
        } else {
            Verdict::New
        }
    }

    /// Checks `seq` and, when it is new, records it.
    pub fn accept(&mut self, seq: u64) -> Verdict {
        let v = self.check(seq);
        if v != Verdict::New {
            return v;
        }
        match self.top {
            Some(top) if seq <= top => self.bits |= 1 << (top - seq),
            Some(top) => {
                let shift = seq - top;
                self.bits = if shift >= WINDOW {
                    0
                } else {
                    self.bits << shift
                };
                self.bits |= 1;
                self.top = Some(seq);
            }
            None => {
                self.bits = 1;
                self.top = Some(seq);
            }
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_reordered_duplicate_old() {
        let mut w = ReplayWindow::new();
        assert_eq!(w.accept(10), Verdict::New);
        assert_eq!(w.accept(10), Verdict::Duplicate);
        assert_eq!(w.accept(12), Verdict::New);
        assert_eq!(w.accept(11), Verdict::New);
        assert_eq!(w.accept(11), Verdict::Duplicate);
        assert_eq!(w.accept(12 + WINDOW), Verdict::New);
        assert_eq!(w.accept(12), Verdict::TooOld);
        assert_eq!(w.accept(13), Verdict::New);
        assert_eq!(w.accept(13), Verdict::Duplicate);
        assert_eq!(w.accept(u64::MAX), Verdict::New);
        assert_eq!(w.accept(u64::MAX), Verdict::Duplicate);
    }

    #[test]
    fn matches_a_set_model() {
        // Simple LCG so the test is deterministic and needs no crate.
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        let mut w = ReplayWindow::new();
        let mut seen = std::collections::BTreeSet::new();
        let mut top = 0u64;
        for _ in 0..20_000 {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let jump = (x >> 33) % 100;
            let seq = if jump < 70 {
                top + jump % 4
            } else {
                top.saturating_sub(jump % 80)
            };
            let expect = if !seen.is_empty() && seq + WINDOW <= top {
                Verdict::TooOld
            } else if seen.contains(&seq) {
                Verdict::Duplicate
            } else {
                Verdict::New
            };
            assert_eq!(w.accept(seq), expect, "seq {seq} top {top}");
            if expect == Verdict::New {
                seen.insert(seq);
                top = top.max(seq);
            }
        }
    }
}
