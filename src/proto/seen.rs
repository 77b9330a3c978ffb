//! Which events of a Sender have arrived: duplicate removal over event sequence numbers, and
//! the count of events that never arrived.
//!
//! Every event is sent several times (each datagram repeats the last few batches), so the
//! Receiver must play each event number once. This is the sliding-window filter of
//! [`super::replay`] (RFC 4303 §3.4.3), wider ([`WINDOW`] numbers, a ring of bits), and it
//! also counts the numbers that leave the window unseen: events lost for good, which neither
//! the repeats nor reordering brought back.

/// Width of the window in event numbers: a few seconds of dense playing, far more than the
/// repeats and any reordering span.
pub const WINDOW: u64 = 1024;
const WORDS: usize = (WINDOW / 64) as usize;

/// What the window says of an event number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seen {
    /// First time: play it.
    New,
    /// Already played.
    Duplicate,
    /// Older than the window: cannot tell, so it is dropped.
    TooOld,
}

/// Event numbers seen from one Sender.
#[derive(Clone, Debug, Default)]
pub struct SeenEvents {
    /// Highest number seen, `None` before the first.
    top: Option<u64>,
    /// Lowest number seen (numbers below it were never expected).
    first: u64,
    /// Bit `n % WINDOW` set: `n` was seen, for `n` in `(top - WINDOW, top]`.
    bits: [u64; WORDS],
    /// Numbers that left the window unseen.
    lost: u64,
}

impl SeenEvents {
    /// Nothing seen yet.
    pub fn new() -> Self {
        Self::default()
    }

    fn bit(&self, n: u64) -> bool {
        let i = (n % WINDOW) as usize;
        self.bits[i / 64] & (1 << (i % 64)) != 0
    }

    fn set(&mut self, n: u64, on: bool) {
        let i = (n % WINDOW) as usize;
        if on {
            self.bits[i / 64] |= 1 << (i % 64);
        } else {
            self.bits[i / 64] &= !(1 << (i % 64));
        }
    }

    /// What [`SeenEvents::accept`] would say of `n`, without recording it: an event is only
    /// recorded once it was handed on, so that a copy of one that could not be is still new.
    pub fn check(&self, n: u64) -> Seen {
        match self.top {
            None => Seen::New,
            Some(top) if n > top => Seen::New,
            Some(top) if top - n >= WINDOW => Seen::TooOld,
            Some(_) if self.bit(n) => Seen::Duplicate,
            Some(_) => Seen::New,
        }
    }

    /// Checks event number `n` and records it when new.
    pub fn accept(&mut self, n: u64) -> Seen {
        let Some(top) = self.top else {
            self.top = Some(n);
            self.first = n;
            self.set(n, true);
            return Seen::New;
        };
        if n <= top {
            if top - n >= WINDOW {
                return Seen::TooOld;
            }
            // Inside the window but before the first seen: the stream's start, reordered.
            self.first = self.first.min(n);
            if self.bit(n) {
                return Seen::Duplicate;
            }
            self.set(n, true);
            return Seen::New;
        }
        // Slide: every number that falls out of the window unseen is lost.
        let jump = n - top;
        if jump >= WINDOW {
            for m in top.saturating_sub(WINDOW - 1).max(self.first)..=top {
                if !self.bit(m) {
                    self.lost += 1;
                }
            }
            // Numbers strictly between the old window and the new one were never seen.
            self.lost += jump - WINDOW;
            self.bits = [0; WORDS];
        } else {
            for m in top + 1..=n {
                // `m` takes the place of `m - WINDOW`.
                if m >= WINDOW && m - WINDOW >= self.first && !self.bit(m - WINDOW) {
                    self.lost += 1;
                }
                self.set(m, false);
            }
        }
        self.set(n, true);
        self.top = Some(n);
        Seen::New
    }

    /// Events that left the window without arriving.
    pub fn lost(&self) -> u64 {
        self.lost
    }

    /// Numbers inside the window not seen (yet): possibly still on their way.
    pub fn missing_in_window(&self) -> u64 {
        let Some(top) = self.top else {
            return 0;
        };
        let lo = top.saturating_sub(WINDOW - 1).max(self.first);
        (lo..=top).filter(|&m| !self.bit(m)).count() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_old_and_lost() {
        let mut s = SeenEvents::new();
        assert_eq!(s.accept(100), Seen::New);
        assert_eq!(s.accept(100), Seen::Duplicate);
        assert_eq!(
            s.accept(99),
            Seen::New,
            "the start of the stream, reordered"
        );
        assert_eq!(s.accept(103), Seen::New);
        assert_eq!(s.accept(101), Seen::New);
        assert_eq!(s.missing_in_window(), 1);
        // 102 never comes; the window moves past it.
        assert_eq!(s.accept(103 + WINDOW), Seen::New);
        assert_eq!(s.lost(), 1, "102");
        assert_eq!(
            s.missing_in_window(),
            WINDOW - 1,
            "104 .. 103 + WINDOW, still to come"
        );
        assert_eq!(s.accept(103), Seen::TooOld);
    }

    #[test]
    fn matches_a_set_model() {
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        let mut s = SeenEvents::new();
        let mut seen = std::collections::BTreeSet::new();
        let mut top = 5_000u64;
        for _ in 0..50_000 {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let r = (x >> 33) % 1000;
            let n = if r < 600 {
                top + r % 3
            } else if r < 995 {
                top.saturating_sub(r % 1500)
            } else {
                top + 2000
            };
            let expect = if seen.is_empty() {
                Seen::New
            } else if n <= top && top - n >= WINDOW {
                Seen::TooOld
            } else if seen.contains(&n) {
                Seen::Duplicate
            } else {
                Seen::New
            };
            assert_eq!(s.check(n), expect, "n {n} top {top}");
            assert_eq!(s.accept(n), expect, "n {n} top {top}");
            if expect == Seen::New {
                seen.insert(n);
                top = top.max(n);
            }
        }
        // Everything below the window that was never seen is counted as lost.
        let first = *seen.iter().next().unwrap();
        let lo = top + 1 - WINDOW;
        let lost_model = (first..lo).filter(|m| !seen.contains(m)).count() as u64;
        assert_eq!(s.lost(), lost_model);
    }
}
