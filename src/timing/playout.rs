//! The common playout delay `D`: every event from every peer plays at `origin + D`, so all
//! players line up on the slowest one.
//!
//! Two pieces, both pure:
//! - [`PlayoutDelay`] (network thread) turns the peers' p99 one-way latencies into the target
//!   `D = max p99 + margin` (or the margin alone in [`PlayoutMode::Fixed`]). It rises at once
//!   when the slowest peer gets slower: a late note is worse than a little more delay. It
//!   falls only after the target has stayed more than [`HYSTERESIS_NS`] lower for [`HOLD_NS`],
//!   and then exponentially with time constant [`FALL_TAU_NS`], so a single fast phrase does
//!   not make it hunt. This is the shape of adaptive playout in VoIP jitter buffers (Ramjee,
//!   Kurose, Towsley and Schulzrinne, "Adaptive playout mechanisms for packetized audio
//!   applications in wide-area networks", INFOCOM 1994: follow spikes quickly, decay slowly).
//! - [`PlayoutGate`] (audio thread) applies a lower `D` only where it squeezes nothing: when no
//!   event is waiting, and by no more than the silence since the last event played. Then no
//!   event can come out before one that was played earlier, and a lower delay only shortens a
//!   pause. A higher `D` applies at once (it moves every waiting event later together).

/// How the target delay is chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlayoutMode {
    /// `D = slowest active peer's p99 one-way latency + margin`.
    Adaptive,
    /// `D = margin`, exactly.
    Fixed,
}

/// A lower target must be at least this much lower to start a fall, ns.
pub const HYSTERESIS_NS: i64 = 1_000_000;
/// ... and stay so for this long, ns.
pub const HOLD_NS: u64 = 2_000_000_000;
/// Time constant of a fall, ns: a fall covers 63 % of the way in 4 s, 99 % in 18 s.
pub const FALL_TAU_NS: f64 = 4e9;
/// A fall ends when `D` is this close to the target, ns.
const FALL_DONE_NS: f64 = 50_000.0;

/// The target playout delay, updated by the network thread.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PlayoutDelay {
    /// `D` now, ns.
    current: i64,
    /// Since when the target has been lower than `current - HYSTERESIS_NS`.
    lower_since: Option<u64>,
    /// Whether `D` is falling towards the target.
    falling: bool,
    /// Time of the previous update, ns.
    last_update: Option<u64>,
}

impl PlayoutDelay {
    /// Starts at `margin_ns` (no peer known yet).
    pub fn new(margin_ns: i64) -> Self {
        Self {
            current: margin_ns.max(0),
            lower_since: None,
            falling: false,
            last_update: None,
        }
    }

    /// `D` now, ns.
    pub fn current(&self) -> i64 {
        self.current
    }

    /// The target for these peers' p99 latencies (ns; none when no peer has data yet).
    pub fn target(p99s: impl IntoIterator<Item = i64>, margin_ns: i64, mode: PlayoutMode) -> i64 {
        let margin = margin_ns.max(0);
        match mode {
            PlayoutMode::Fixed => margin,
            PlayoutMode::Adaptive => p99s
                .into_iter()
                .max()
                .map_or(margin, |p| p.max(0).saturating_add(margin)),
        }
    }

    /// Time is `now`; the active peers' p99 latencies are `p99s`. Returns the new `D`.
    pub fn update(
        &mut self,
        now: u64,
        p99s: impl IntoIterator<Item = i64>,
        margin_ns: i64,
        mode: PlayoutMode,
    ) -> i64 {
        let target = Self::target(p99s, margin_ns, mode);
        let dt = self.last_update.map_or(0, |t| now.saturating_sub(t));
        self.last_update = Some(now);
        if mode == PlayoutMode::Fixed || target >= self.current {
            // Fixed follows the parameter both ways; a slower peer raises D at once.
            self.current = target;
            self.lower_since = None;
            self.falling = false;
            return self.current;
        }
        if !self.falling {
            if self.current - target <= HYSTERESIS_NS {
                self.lower_since = None;
                return self.current;
            }
            let since = *self.lower_since.get_or_insert(now);
            if now.saturating_sub(since) < HOLD_NS {
                return self.current;
            }
            self.falling = true;
        }
        let gap = (self.current - target) as f64 * (-(dt as f64) / FALL_TAU_NS).exp();
        if gap < FALL_DONE_NS {
            self.current = target;
            self.falling = false;
            self.lower_since = None;
        } else {
            self.current = target + gap.round() as i64;
        }
        self.current
    }
}

/// The delay the audio thread actually uses: rises with the target at once, falls only where
/// it squeezes nothing. Real-time safe (a few comparisons).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PlayoutGate {
    /// The delay in use, ns (`None` until the first block).
    applied: Option<i64>,
    /// When the last event was played (session time, ns) and the delay then in use.
    last_played: Option<(u64, i64)>,
}

impl PlayoutGate {
    /// A gate that takes the first target as it is.
    pub const fn new() -> Self {
        Self {
            applied: None,
            last_played: None,
        }
    }

    /// The delay to use for the block starting at `block_start_ns`, given the `target` and
    /// whether any event is waiting in the schedule.
    pub fn apply(&mut self, target: i64, block_start_ns: u64, nothing_waiting: bool) -> i64 {
        let target = target.max(0);
        let applied = match self.applied {
            None => target,
            Some(a) if target >= a => target,
            Some(a) if nothing_waiting => match self.last_played {
                None => target,
                Some((at, d_then)) => {
                    // An event that arrives later has an origin after the last one played,
                    // so it comes out no earlier than that one as long as the delay falls by
                    // no more than the silence since.
                    let silence = block_start_ns.saturating_sub(at).min(i64::MAX as u64) as i64;
                    target.max(d_then.saturating_sub(silence)).min(a)
                }
            },
            Some(a) => a,
        };
        self.applied = Some(applied);
        applied
    }

    /// An event was played at session time `at_ns` with the delay in use.
    pub fn played(&mut self, at_ns: u64) {
        if let Some(d) = self.applied {
            self.last_played = Some((at_ns, d));
        }
    }

    /// The delay in use, ns (0 before the first block).
    pub fn applied(&self) -> i64 {
        self.applied.unwrap_or(0)
    }

    /// Forgets the history (host `reset()`): the next target is taken as it is.
    pub fn reset(&mut self) {
        *self = Self::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: i64 = 1_000_000;
    const S: u64 = 1_000_000_000;

    #[test]
    fn target_is_slowest_p99_plus_margin_or_the_margin() {
        let p = [12 * MS, 80 * MS, 40 * MS];
        assert_eq!(
            PlayoutDelay::target(p, 5 * MS, PlayoutMode::Adaptive),
            85 * MS
        );
        assert_eq!(PlayoutDelay::target(p, 5 * MS, PlayoutMode::Fixed), 5 * MS);
        assert_eq!(
            PlayoutDelay::target([], 5 * MS, PlayoutMode::Adaptive),
            5 * MS
        );
        // A negative p99 (a clock estimate slightly off on loopback) counts as zero.
        assert_eq!(
            PlayoutDelay::target([-MS], 5 * MS, PlayoutMode::Adaptive),
            5 * MS
        );
    }

    #[test]
    fn rises_at_once_falls_after_hold_and_slowly() {
        let mut d = PlayoutDelay::new(5 * MS);
        let mut t = 0;
        assert_eq!(
            d.update(t, [20 * MS], 5 * MS, PlayoutMode::Adaptive),
            25 * MS
        );
        t += 10_000_000;
        assert_eq!(
            d.update(t, [100 * MS], 5 * MS, PlayoutMode::Adaptive),
            105 * MS
        );
        // The slow peer recovers: D holds for HOLD_NS.
        let mut history = Vec::new();
        for _ in 0..4000 {
            t += 10_000_000;
            history.push((t, d.update(t, [20 * MS], 5 * MS, PlayoutMode::Adaptive)));
        }
        let at = |secs: f64| {
            history
                .iter()
                .find(|h| h.0 >= 10_000_000 + (secs * S as f64) as u64)
                .unwrap()
                .1
        };
        assert_eq!(at(1.9), 105 * MS, "holds");
        // Falls: 63 % of the way about one time constant after the hold.
        let one_tau = at(2.0 + FALL_TAU_NS / 1e9);
        assert!(
            (one_tau - (25 * MS + 80 * MS * 37 / 100)).abs() < 2 * MS,
            "{one_tau}"
        );
        // Monotone, and lands exactly on the target.
        assert!(history.windows(2).all(|w| w[1].1 <= w[0].1));
        assert_eq!(history.last().unwrap().1, 25 * MS);
    }

    #[test]
    fn small_dips_are_ignored() {
        let mut d = PlayoutDelay::new(0);
        d.update(0, [50 * MS], 5 * MS, PlayoutMode::Adaptive);
        for k in 1..1000 {
            let p = 50 * MS - (k % 2) * MS / 2; // dips by 0.5 ms
            assert_eq!(
                d.update(k as u64 * 10_000_000, [p], 5 * MS, PlayoutMode::Adaptive),
                55 * MS
            );
        }
    }

    #[test]
    fn fixed_follows_the_parameter_both_ways() {
        let mut d = PlayoutDelay::new(5 * MS);
        assert_eq!(d.update(0, [90 * MS], 30 * MS, PlayoutMode::Fixed), 30 * MS);
        assert_eq!(d.update(1, [90 * MS], 10 * MS, PlayoutMode::Fixed), 10 * MS);
    }

    #[test]
    fn gate_rises_at_once_and_falls_only_into_silence() {
        let mut g = PlayoutGate::new();
        let ms = MS as u64;
        assert_eq!(g.apply(50 * MS, 0, true), 50 * MS);
        g.played(10 * ms);
        assert_eq!(g.apply(80 * MS, 11 * ms, false), 80 * MS);
        g.played(12 * ms);
        // The target falls to 20 ms, but events are waiting: hold.
        assert_eq!(g.apply(20 * MS, 13 * ms, false), 80 * MS);
        // Nothing waiting, 30 ms of silence since the last event: fall by 30 ms only.
        assert_eq!(g.apply(20 * MS, 42 * ms, true), 50 * MS);
        // More silence: down to the target, never below it.
        assert_eq!(g.apply(20 * MS, 200 * ms, true), 20 * MS);
        assert_eq!(g.applied(), 20 * MS);
        g.reset();
        assert_eq!(g.applied(), 0);
    }

    #[test]
    fn gate_never_reorders() {
        // Whatever the targets, an event with a later origin never plays before an earlier
        // one, provided it arrives before its playout time.
        let mut g = PlayoutGate::new();
        let mut x = 99u64;
        let mut last_play = 0u64;
        let mut last_origin = 0u64;
        let block = 10_000_000u64;
        for b in 1..20_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let target = (x % 200) as i64 * MS;
            let now = b * block;
            // One event every few blocks, origin at the previous block, nothing else waiting.
            let d = g.apply(target, now, true);
            if x.is_multiple_of(5) {
                let origin = now - block;
                let play = origin + d as u64;
                if play >= now {
                    assert!(origin > last_origin);
                    assert!(play >= last_play, "block {b}: {play} < {last_play}");
                    last_play = play;
                    last_origin = origin;
                    g.played(play);
                }
            }
        }
    }
}
