//! The session clock: nanoseconds since the Unix epoch, advancing with the monotonic clock.
//!
//! Read once per block by `process()` and on every datagram by the network thread. The epoch
//! anchor is taken once per process (the first call, made from `initialize()`, never from the
//! audio thread), so all instances and threads of the plugin share one timeline, and later
//! jumps of the wall clock (NTP slews, manual changes) do not make it jump. Reading it is one
//! `clock_gettime(CLOCK_MONOTONIC)` through the vDSO: no system call, no lock, no allocation.

use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// The wall-clock time and monotonic instant of the first call.
struct Anchor {
    /// Unix time in ns at `instant`.
    unix_ns: u64,
    /// Monotonic instant at the anchor.
    instant: Instant,
}

static ANCHOR: OnceLock<Anchor> = OnceLock::new();

/// Current session time in ns since the Unix epoch.
#[inline]
pub fn now_ns() -> u64 {
    let a = ANCHOR.get_or_init(|| Anchor {
        unix_ns: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
        instant: Instant::now(),
    });
    a.unix_ns + a.instant.elapsed().as_nanos() as u64
}

#[cfg(test)]
mod tests {
    #[test]
    fn monotonic_and_near_wall_clock() {
        let a = super::now_ns();
        let b = super::now_ns();
        assert!(b >= a);
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        assert!(wall.abs_diff(b) < 5_000_000_000);
    }
}
