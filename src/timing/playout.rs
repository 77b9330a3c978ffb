//! The common playout delay `D`: every event from every peer plays at `origin + D`, so all
//! players line up on the slowest one.
//!
//! Two pieces, both pure:
//! - [`PlayoutDelay`] (network thread) turns the peers' p99 one-way latencies into the target
//!   `D = max p99 + margin` (or the margin alone in [`PlayoutMode::Fixed`]). It rises at once
//!   when the slowest peer needs more than the margin can absorb: a late note is worse than a
//!   little more delay. It falls only after the target has stayed lower for [`HOLD_NS`], then
//!   in one step, so that it changes rarely. Changes smaller than half the margin (at least
//!   [`MIN_BAND_NS`]) are ignored both ways, so the noise of a p99 estimate does not move `D`. This is the shape of adaptive playout in VoIP jitter buffers (Ramjee,
//!   Kurose, Towsley and Schulzrinne, "Adaptive playout mechanisms for packetized audio
//!   applications in wide-area networks", INFOCOM 1994): follow spikes quickly, decay slowly,
//!   and change only between talkspurts.
//! - [`PlayoutGate`] (audio thread) applies a lower `D` only between phrases, the "between
//!   talkspurts" of that paper: a rest of at least [`MIN_REST_NS`] between two events may be
//!   shortened by at most [`MAX_SQUEEZE`] of its length (a large fall takes several rests).
//!   Events never change order, and notes that follow each other closely keep their exact
//!   spacing: `D` changes only between the last event played and the next one, so every event
//!   after the change moves earlier by the same amount, and only the rest before them is
//!   shorter. A higher `D` applies at once (it moves every waiting event later together).
//!
//! The dead band means `D` sits anywhere within half the margin of the target, above or
//! below: at least the slowest need plus the block plus half the margin.

/// How the target delay is chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlayoutMode {
    /// `D = slowest active peer's p99 one-way latency + margin`.
    Adaptive,
    /// `D = margin`, exactly.
    Fixed,
}

/// Smallest dead band around `D`, ns: with a margin under 2 ms, changes under 1 ms are ignored.
pub const MIN_BAND_NS: i64 = 1_000_000;
/// A lower target must stay lower this long before `D` falls, ns: twice the latency window
/// (`latency::WINDOW_NS`), so that a p99 that only dipped because its highest sample aged out
/// does not pull `D` down just before the next high one comes.
pub const HOLD_NS: u64 = 20_000_000_000;
/// Shortest rest the gate shortens, ns: a quarter note at 240 bpm.
pub const MIN_REST_NS: u64 = 250_000_000;
/// Most of a rest the gate takes away: 5 %, below what listeners notice in a rest's length.
pub const MAX_SQUEEZE: f64 = 0.05;

/// The dead band for a margin, ns.
fn band(margin_ns: i64) -> i64 {
    (margin_ns / 2).max(MIN_BAND_NS)
}

/// The target playout delay, updated by the network thread.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PlayoutDelay {
    /// `D` now, ns.
    current: i64,
    /// Since when the target has been lower than `current` by more than the band.
    lower_since: Option<u64>,
    /// Time of the previous update, ns.
    last_update: Option<u64>,
}

impl PlayoutDelay {
    /// Starts at `margin_ns` (no peer known yet).
    pub fn new(margin_ns: i64) -> Self {
        Self {
            current: margin_ns.max(0),
            lower_since: None,
            last_update: None,
        }
    }

    /// `D` now, ns.
    pub fn current(&self) -> i64 {
        self.current
    }

    /// The target for these peers' needs (ns; none when no peer has data yet).
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

    /// Time is `now`; the active peers' needs (p99 latencies) are `p99s`. Returns the new `D`.
    pub fn update(
        &mut self,
        now: u64,
        p99s: impl IntoIterator<Item = i64>,
        margin_ns: i64,
        mode: PlayoutMode,
    ) -> i64 {
        let target = Self::target(p99s, margin_ns, mode);
        self.last_update = Some(now);
        let band = band(margin_ns.max(0));
        if mode == PlayoutMode::Fixed || target > self.current.saturating_add(band) {
            // Fixed follows the parameter both ways; a clearly slower peer raises D at once.
            self.current = target;
            self.lower_since = None;
            return self.current;
        }
        if target >= self.current {
            // Within the band above: the margin absorbs it.
            self.lower_since = None;
            return self.current;
        }
        if self.current - target <= band {
            self.lower_since = None;
            return self.current;
        }
        let since = *self.lower_since.get_or_insert(now);
        if now.saturating_sub(since) >= HOLD_NS {
            // One step, applied by the gate in the next rests: a delay that changes rarely.
            self.current = target;
            self.lower_since = None;
        }
        self.current
    }
}

/// The delay the audio thread actually uses: rises with the target at once, falls only into
/// rests. Real-time safe (a few comparisons). Audio thread only.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PlayoutGate {
    /// The delay in use, ns (`None` until the first block).
    applied: Option<i64>,
    /// Where the current rest began (session time, ns): when the last event was played, or,
    /// when none was since the gate started or was reset, its first block since.
    last_played: Option<u64>,
    /// How much the delay was lowered since that event, ns.
    lowered: i64,
}

impl PlayoutGate {
    /// A gate that takes the first target as it is.
    pub const fn new() -> Self {
        Self {
            applied: None,
            last_played: None,
            lowered: 0,
        }
    }

    /// The delay to use for the block starting at `block_start_ns`, given the `target` and the
    /// due time (before the delay) of the earliest waiting event, if any.
    pub fn apply(&mut self, target: i64, block_start_ns: u64, next_due: Option<u64>) -> i64 {
        let target = target.max(0);
        // Nothing played since the start (or a reset): the rest began now.
        let last = *self.last_played.get_or_insert(block_start_ns);
        let applied = match self.applied {
            None => target,
            Some(a) if target >= a => target,
            Some(a) => {
                // The rest runs from the last event played to the next one (or to now, when
                // nothing waits: it grows as long as the silence lasts).
                let end = next_due.map_or(block_start_ns, |d| d.saturating_add(a.max(0) as u64));
                let rest = end.saturating_sub(last);
                if rest < MIN_REST_NS {
                    a
                } else {
                    let allowed = (rest as f64 * MAX_SQUEEZE) as i64 - self.lowered;
                    // Never so far that the next event would be due before this block.
                    let ahead = match next_due {
                        Some(_) => end.saturating_sub(block_start_ns).min(i64::MAX as u64) as i64,
                        None => i64::MAX,
                    };
                    let step = (a - target).min(allowed.max(0)).min(ahead);
                    self.lowered += step;
                    a - step
                }
            }
        };
        self.applied = Some(applied);
        applied
    }

    /// An event was played at session time `at_ns`.
    pub fn played(&mut self, at_ns: u64) {
        self.last_played = Some(at_ns);
        self.lowered = 0;
    }

    /// The delay in use, ns (0 before the first block).
    pub fn applied(&self) -> i64 {
        self.applied.unwrap_or(0)
    }

    /// Host `reset()`: keeps the delay in use (what is still scheduled was scheduled with it,
    /// and the session timeline does not move with a reset) and starts a rest: a lower target
    /// takes at most [`MAX_SQUEEZE`] of the time from here to the next event, as after any
    /// event. (A new activation starts from [`PlayoutGate::new`], which takes its first target
    /// as it is.)
    pub fn reset(&mut self) {
        self.last_played = None;
        self.lowered = 0;
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
    fn rises_at_once_falls_after_the_hold_in_one_step() {
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
        // The slow peer recovers: D holds for HOLD_NS, then takes the target.
        let start = t;
        let mut history = Vec::new();
        for _ in 0..3000 {
            t += 10_000_000;
            history.push((
                t - start,
                d.update(t, [20 * MS], 5 * MS, PlayoutMode::Adaptive),
            ));
        }
        let changes: Vec<_> = history.windows(2).filter(|w| w[1].1 != w[0].1).collect();
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0][1].1, 25 * MS);
        assert!(changes[0][1].0 >= HOLD_NS && changes[0][1].0 <= HOLD_NS + 20_000_000);
        // A target that comes back up before the hold ends resets it.
        let mut d = PlayoutDelay::new(0);
        d.update(0, [100 * MS], 0, PlayoutMode::Adaptive);
        d.update(S, [50 * MS], 0, PlayoutMode::Adaptive);
        d.update(15 * S, [100 * MS], 0, PlayoutMode::Adaptive);
        assert_eq!(
            d.update(30 * S, [50 * MS], 0, PlayoutMode::Adaptive),
            100 * MS
        );
    }

    #[test]
    fn noise_within_half_the_margin_is_ignored_both_ways() {
        let mut d = PlayoutDelay::new(0);
        d.update(0, [50 * MS], 6 * MS, PlayoutMode::Adaptive);
        for k in 1..1000i64 {
            // The p99 wanders by up to 2.9 ms either way.
            let p = 50 * MS + ((k * 37) % 59 - 29) * MS / 10;
            assert_eq!(
                d.update(k as u64 * 10_000_000, [p], 6 * MS, PlayoutMode::Adaptive),
                56 * MS
            );
        }
        // 3.1 ms more is more than the band: D follows at once.
        assert_eq!(
            d.update(
                10 * S,
                [50 * MS + 31 * MS / 10],
                6 * MS,
                PlayoutMode::Adaptive
            ),
            59_100_000
        );
    }

    #[test]
    fn fixed_follows_the_parameter_both_ways() {
        let mut d = PlayoutDelay::new(5 * MS);
        assert_eq!(d.update(0, [90 * MS], 30 * MS, PlayoutMode::Fixed), 30 * MS);
        assert_eq!(d.update(1, [90 * MS], 10 * MS, PlayoutMode::Fixed), 10 * MS);
    }

    #[test]
    fn gate_rises_at_once_and_falls_only_into_rests() {
        let mut g = PlayoutGate::new();
        let ms = MS as u64;
        assert_eq!(g.apply(50 * MS, 0, None), 50 * MS);
        g.played(100 * ms);
        assert_eq!(g.apply(80 * MS, 101 * ms, Some(50 * ms)), 80 * MS);
        // The next event plays 130 ms after the last: too short a rest to touch.
        assert_eq!(g.apply(20 * MS, 102 * ms, Some(150 * ms)), 80 * MS);
        // A 400 ms rest ahead: it may lose 5 %, 20 ms, and no more, however many blocks pass.
        let next = 100 * ms + 400 * ms - 80 * ms;
        assert_eq!(g.apply(20 * MS, 103 * ms, Some(next)), 60 * MS);
        assert_eq!(g.apply(20 * MS, 104 * ms, Some(next)), 60 * MS);
        // Nor so much that the next event would already be due.
        g.played(1_000 * ms);
        assert_eq!(g.apply(20 * MS, 1_395 * ms, Some(1_340 * ms)), 55 * MS);
        // Silence: the rest grows with time, and so does what may be taken from it.
        g.played(2_000 * ms);
        assert_eq!(
            g.apply(20 * MS, 2_300 * ms, None),
            40 * MS,
            "300 ms of silence: 15 ms"
        );
        assert_eq!(g.apply(20 * MS, 3_000 * ms, None), 20 * MS);
    }

    #[test]
    fn a_reset_keeps_the_delay_and_starts_a_rest() {
        let ms = MS as u64;
        let mut g = PlayoutGate::new();
        assert_eq!(g.apply(100 * MS, 0, None), 100 * MS);
        g.played(10 * ms);
        // The host resets; an event still waits, due 100 ms later. A target of 20 ms must not
        // take D down at once (the event would come out 80 ms early against its neighbours).
        g.reset();
        assert_eq!(g.applied(), 100 * MS);
        let due = Some(50 * ms);
        assert_eq!(g.apply(20 * MS, 50 * ms, due), 100 * MS, "a rest of 100 ms");
        // From the reset (the first block after it) to the event: 5 % of that rest at most.
        let mut g = PlayoutGate::new();
        g.apply(100 * MS, 0, None);
        g.reset();
        let d = g.apply(20 * MS, 1_000 * ms, Some(2_000 * ms));
        assert_eq!(d, 100 * MS - 55 * MS, "5 % of 1,100 ms");
        // A gate that was never used takes its first target as it is.
        assert_eq!(PlayoutGate::new().apply(20 * MS, 5 * ms, due), 20 * MS);
    }

    #[test]
    fn a_fall_shortens_only_the_rest_between_two_phrases() {
        // Two phrases of eight notes 120 ms apart, 1 s of rest between them; the target falls
        // by 30 ms during the first. Every note of a phrase keeps its spacing to the sample;
        // the rest alone is 30 ms shorter (at most 5 % of it, 50 ms, may go).
        let block = 1_000_000u64;
        let mut g = PlayoutGate::new();
        let mut origins: Vec<u64> = (0..8).map(|k| 1_000 * block + k * 120 * block).collect();
        let second = origins[7] + 1_000 * block;
        origins.extend((0..8).map(|k| second + k * 120 * block));
        let mut played = Vec::new();
        let mut now = 900 * block;
        let mut next = 0;
        while next < origins.len() {
            let target = if now < 1_300 * block {
                80 * MS
            } else {
                50 * MS
            };
            let d = g.apply(target, now, Some(origins[next])) as u64;
            // Everything due in this block plays at its time.
            while next < origins.len() && origins[next] + d < now + block {
                let at = origins[next] + d;
                assert!(at >= now, "due before its block");
                g.played(at);
                played.push((origins[next], at));
                next += 1;
            }
            now += block;
        }
        let gaps: Vec<(u64, u64)> = played
            .windows(2)
            .map(|w| (w[1].0 - w[0].0, w[1].1 - w[0].1))
            .collect();
        for (i, &(want, got)) in gaps.iter().enumerate() {
            if i == 7 {
                assert_eq!(want - got, 30 * block, "the rest loses the fall");
            } else {
                assert_eq!(got, want, "note {i} of a phrase");
            }
        }
    }

    #[test]
    fn gate_never_reorders_and_keeps_close_notes_exact() {
        // Random targets; events every 30 to 500 ms, each arriving one block before it is due.
        let mut g = PlayoutGate::new();
        let mut x = 99u64;
        let block = 10_000_000u64;
        let mut origin = 1_000_000_000u64;
        let mut last: Option<(u64, u64, u64)> = None; // (origin, play time, delay)
        let mut now = 0u64;
        for _ in 0..5000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            origin += 30_000_000 + (x % 470) * 1_000_000;
            let target = (x % 200) as i64 * MS;
            // Blocks pass until this event is played.
            loop {
                now += block;
                let d = g.apply(target, now, Some(origin)) as u64;
                let play = origin + d;
                if play < now + block {
                    // A fall never makes an event due before its block.
                    assert!(play >= now, "due before its block");
                    if let Some((lo, lp, ld)) = last {
                        assert!(play >= lp, "order");
                        let gap = origin - lo;
                        let got = play - lp;
                        if gap < MIN_REST_NS {
                            // Exact: the spacing itself, plus a rise of D between them.
                            assert!(d >= ld, "a close note was squeezed");
                            assert_eq!(got, gap + (d - ld), "a close note moved");
                        }
                        assert!(got as f64 >= gap as f64 * (1.0 - MAX_SQUEEZE) - 1.0);
                    }
                    g.played(play);
                    last = Some((origin, play, d));
                    break;
                }
            }
        }
    }
}
