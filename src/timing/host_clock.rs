//! The host's sample clock on the session timeline.
//!
//! A plugin learns the time once per block, by reading the session clock when `process()`
//! starts. That moment is late by a variable amount (the audio thread's wake-up, the plugins
//! before us), but never early, while the samples themselves are played by a crystal at a
//! steady rate. (Except a call that follows the previous one sooner than half its audio: a host
//! that splits one device buffer, or a block at a loop point, into calls back to back makes the
//! later ones ahead of their samples. Their readings are left out of the fit.) So the raw
//! reading is not used as the block's time: each block gets a start time on a straight line
//! `time = a + b * sample_index`, fitted to the readings as Ableton Link's host-time filter
//! does (a linear regression over the recent `(sample index, time)` pairs, Link's
//! `HostTimeFilter`), but to the *lower envelope* of the readings: since the delay is
//! one-sided, the earliest reading of each stretch of audio is the one closest to the truth
//! (the reasoning of NTP's minimum-delay clock filter, RFC 5905 §10).
//!
//! - The audio is cut into buckets of [`BUCKET_NS`]; each bucket keeps its earliest reading
//!   relative to the line (one comparison per block), of the calls paced by the sound card.
//! - When a bucket closes, the line is refitted by least squares through the last
//!   [`BUCKETS`] bucket minima (16 s); its slope is the measured duration of one sample (the
//!   device's rate against the system clock, within 1,000 ppm of nominal).
//! - Until two buckets have closed, the line has the nominal slope through the earliest
//!   reading so far.
//!
//! Between refits the line does not move at all, so consecutive blocks are exactly
//! `n / rate` apart; a refit moves it by the change of the estimate (microseconds).
//!
//! It also handles what hosts do besides steady playback:
//! - a new sample rate, or `reset()`: start again from the next reading;
//! - a stall (no `process()` for a while: a busy disk, a dialog, a stopped device) or any
//!   reading more than [`RELOCK_NS`] off the line: start again at that reading (counted);
//! - a shorter skip (a dropout of a few blocks): when even the earliest reading of
//!   [`STALE_WINDOW_NS`] of wall time is more than [`STALE_LATE_NS`] late, the line moves
//!   forward by that much, keeping the measured rate (counted);
//! - offline rendering (blocks processed much faster than real time, by a host that does not
//!   say so): detected over a second of audio ([`HostClock::is_offline`]), since there is no
//!   wall clock to align to then.
//!
//! The host's transport (its song position, loops, locates) plays no part: the line maps the
//! samples the host has processed, counted from the lock, to the session timeline, so a host
//! that jumps its transport, or splits a block at a loop point into two calls, keeps its line as
//! long as it keeps calling `process()` at pace.
//!
//! Pure: the caller passes the time in; nothing here reads a clock or allocates, so it runs on
//! the audio thread. A block costs a few comparisons; a refit (when a bucket closes, or, before
//! two have, when the open bucket gets an earlier reading) a sum over at most 32 points.

/// Audio time per bucket, ns.
pub const BUCKET_NS: f64 = 500e6;
/// Bucket minima in the fit: 16 s of audio. Long enough to measure the rate to about a ppm,
/// short enough that a sound card's drift with temperature stays linear over it.
pub const BUCKETS: usize = 32;
/// A reading this far from the line (ns) is a stall or a jump, not jitter: start again.
/// Larger than the burst of a host that splits an 8,192-sample device buffer into 512-sample
/// calls (170 ms at 48 kHz), much smaller than a human-noticeable stall.
pub const RELOCK_NS: f64 = 500e6;
/// Window of wall time over which the earliest reading must come close to the line, ns: longer
/// than the burst of a host that splits a large device buffer into calls back to back (a
/// 4,096-sample buffer is 85 ms at 48 kHz), so that the first call of a burst is in every window.
pub const STALE_WINDOW_NS: u64 = 200_000_000;
/// The earliest reading of a window later than the line by more than this means the host
/// skipped time, ns: more than any scheduling delay of a working host. (Readings earlier than
/// the line are normal: a host that processes a device buffer in several calls back to back
/// makes the later calls before their samples. The line never moves back: that would place a
/// block's events before those of the block before it.)
pub const STALE_LATE_NS: f64 = 10_000_000.0;
/// Largest rate error accepted against the nominal sample rate: 1,000 ppm. Crystals are within
/// 100 ppm; beyond this the fit is following something other than a sound card.
pub const MAX_RATE_ERROR: f64 = 1e-3;
/// Audio time over which real-time pace is checked, ns.
pub const OFFLINE_WINDOW_NS: f64 = 1e9;
/// Wall time below this share of audio time over a window means offline rendering.
pub const OFFLINE_BELOW: f64 = 0.5;
/// Wall time above this share of audio time over a window means real time again.
pub const ONLINE_ABOVE: f64 = 0.8;

/// Where one block lies on the session timeline.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockTiming {
    /// Session time of the block's first sample, ns.
    pub start_ns: u64,
    /// Duration of one sample, ns (the nominal `1e9 / rate`, as measured).
    pub ns_per_sample: f64,
    /// The clock started again at this block (first block, new rate, reset, stall).
    pub relocked: bool,
}

impl BlockTiming {
    /// Session time of sample `k` of the block, ns.
    #[inline]
    pub fn time_of(&self, k: u32) -> u64 {
        self.start_ns + (k as f64 * self.ns_per_sample).round() as u64
    }
}

/// The sample-clock filter of one plugin instance. Created in `initialize()`, updated once per
/// `process()` with the session time read at its start.
#[derive(Clone, Debug)]
pub struct HostClock {
    /// Sample rate in use (0 before the first block).
    sample_rate: f64,
    /// Whether a line is held (false before the first block and after `reset`).
    locked: bool,
    /// Session time of the first reading since the lock: readings are kept relative to it.
    origin_ns: u64,
    /// Sample index of the next block since the lock.
    samples: u64,
    /// The line: time (ns after `origin_ns`) at sample index 0, and ns per sample.
    line: (f64, f64),
    /// Minima of closed buckets: `(sample index, reading - origin)`, a ring.
    minima: [(f64, f64); BUCKETS],
    /// Number of valid entries in `minima`.
    minima_len: usize,
    /// Next slot of `minima` to write.
    minima_next: usize,
    /// Earliest reading of the open bucket (relative to the line), and its sample index.
    open: Option<(f64, f64)>,
    /// Sample index at which the open bucket closes.
    open_until: u64,
    /// Session time at which the current pace window began.
    window_wall: u64,
    /// Audio time processed in the current pace window, ns (nominal rate).
    window_audio: f64,
    /// Blocks are coming much faster than real time.
    offline: bool,
    /// Starts after the first (stalls, jumps, new rates, resets), for the editor.
    relocks: u64,
    /// End of the previous block on the timeline, ns after `origin_ns` (`None` after a lock).
    prev_end: Option<f64>,
    /// Smallest residual (reading minus line, ns) since `stale_since`: how far the line is
    /// from the earliest reading of the last moments.
    stale_min: f64,
    /// Session time the current staleness window began (0: not begun).
    stale_since: u64,
    /// The points the line is fitted to changed since the last refit.
    dirty: bool,
    /// Session time and audio duration (ns) of the previous call with samples: a call that
    /// follows it sooner than half of that is not paced by the sound card.
    prev_call: Option<(u64, f64)>,
}

impl Default for HostClock {
    fn default() -> Self {
        Self::new()
    }
}

impl HostClock {
    /// A clock that starts on its first block.
    pub const fn new() -> Self {
        Self {
            sample_rate: 0.0,
            locked: false,
            origin_ns: 0,
            samples: 0,
            line: (0.0, 0.0),
            minima: [(0.0, 0.0); BUCKETS],
            minima_len: 0,
            minima_next: 0,
            open: None,
            open_until: 0,
            window_wall: 0,
            window_audio: 0.0,
            offline: false,
            relocks: 0,
            prev_end: None,
            stale_min: 0.0,
            stale_since: 0,
            dirty: false,
            prev_call: None,
        }
    }

    /// Forgets the line: the next block starts again (host `reset()`; real-time safe).
    pub fn reset(&mut self) {
        self.locked = false;
        self.window_audio = 0.0;
    }

    /// Whether the host has been rendering much faster than real time (offline bounce) over
    /// the last second of audio.
    pub fn is_offline(&self) -> bool {
        self.offline
    }

    /// Starts taken after the first one (stalls, jumps, new rates, resets).
    pub fn relocks(&self) -> u64 {
        self.relocks
    }

    /// The measured duration of one sample, ns (0 before the first block).
    pub fn ns_per_sample(&self) -> f64 {
        self.line.1
    }

    /// Follows the smallest residual over windows of [`STALE_WINDOW_NS`] of wall time; at the
    /// end of a window, returns it when the line is off by more than jitter explains.
    fn stale(&mut self, now: u64, residual: f64) -> Option<f64> {
        if self.stale_since == 0 {
            self.stale_since = now;
            self.stale_min = residual;
            return None;
        }
        self.stale_min = self.stale_min.min(residual);
        if now.saturating_sub(self.stale_since) < STALE_WINDOW_NS {
            return None;
        }
        let min = self.stale_min;
        self.stale_since = now;
        self.stale_min = f64::INFINITY;
        (min > STALE_LATE_NS).then_some(min)
    }

    fn lock(&mut self, now: u64, sample_rate: f64) {
        self.sample_rate = sample_rate;
        self.locked = true;
        self.origin_ns = now;
        self.samples = 0;
        self.line = (0.0, 1e9 / sample_rate);
        self.minima_len = 0;
        self.minima_next = 0;
        self.open = None;
        self.open_until = 0;
        self.stale_since = 0;
        self.prev_end = None;
        self.dirty = true;
        self.prev_call = None;
    }

    /// Number of samples per bucket.
    fn bucket_samples(&self) -> u64 {
        (BUCKET_NS * self.sample_rate / 1e9).round().max(1.0) as u64
    }

    /// Refits the line through the closed buckets' minima (least squares), or through the
    /// earliest reading with the nominal slope while fewer than two buckets have closed.
    fn refit(&mut self) {
        let nominal = 1e9 / self.sample_rate;
        if self.minima_len < 2 {
            // One point (the open bucket's, or the single closed one) and the nominal rate.
            let mut best: Option<(f64, f64)> = None;
            let pts = self.minima[..self.minima_len]
                .iter()
                .chain(self.open.iter());
            for &(x, y) in pts {
                let r = y - nominal * x;
                if best.is_none_or(|b| r < b.1 - nominal * b.0) {
                    best = Some((x, y));
                }
            }
            if let Some((x, y)) = best {
                self.line = (y - nominal * x, nominal);
            }
            return;
        }
        let pts = &self.minima[..self.minima_len];
        let n = pts.len() as f64;
        let mx = pts.iter().map(|p| p.0).sum::<f64>() / n;
        let my = pts.iter().map(|p| p.1).sum::<f64>() / n;
        let (mut sxy, mut sxx) = (0.0, 0.0);
        for &(x, y) in pts {
            sxy += (x - mx) * (y - my);
            sxx += (x - mx) * (x - mx);
        }
        let slope = if sxx > 0.0 { sxy / sxx } else { nominal }.clamp(
            nominal * (1.0 - MAX_RATE_ERROR),
            nominal * (1.0 + MAX_RATE_ERROR),
        );
        self.line = (my - slope * mx, slope);
    }

    /// A block of `n` samples at `sample_rate` Hz starts being processed at session time
    /// `now`: returns where it lies on the filtered timeline.
    pub fn update(&mut self, now: u64, n: u32, sample_rate: f64) -> BlockTiming {
        if n == 0 && self.locked && sample_rate == self.sample_rate {
            // An empty block (some hosts send them to deliver parameter changes): where the
            // next block would start, and nothing learnt from it.
            let start = self
                .prev_end
                .unwrap_or(self.line.0 + self.line.1 * self.samples as f64);
            return BlockTiming {
                start_ns: self.origin_ns.saturating_add_signed(start.round() as i64),
                ns_per_sample: self.line.1,
                relocked: false,
            };
        }
        let mut relocked = false;
        if !self.locked || sample_rate != self.sample_rate || sample_rate <= 0.0 {
            if self.sample_rate > 0.0 {
                self.relocks += 1;
            }
            self.lock(now, sample_rate.max(1.0));
            relocked = true;
            self.window_wall = now;
            self.window_audio = 0.0;
        }
        let x = self.samples as f64;
        let mut y = (now as i128 - self.origin_ns as i128) as f64;
        let residual = y - (self.line.0 + self.line.1 * x);
        if residual.abs() > RELOCK_NS {
            self.relocks += 1;
            self.lock(now, self.sample_rate);
            relocked = true;
            y = 0.0;
        } else if let Some(shift) = self.stale(now, residual) {
            // The host skipped time (a short stall, a dropout) or the line started late: every
            // reading of the last moments is off the line by the same amount. Move the line,
            // and its history, by it; the measured rate stays.
            self.relocks += 1;
            relocked = true;
            self.line.0 += shift;
            for m in &mut self.minima[..self.minima_len] {
                m.1 += shift;
            }
            if let Some(o) = &mut self.open {
                o.1 += shift;
            }
            self.dirty = true;
        }
        let x = self.samples as f64;
        // A call that comes sooner after the previous one than half the previous block's audio
        // was not waiting for the sound card: the second part of a block the host split (at a
        // loop point, for automation), or a burst of calls for one device buffer. It runs
        // ahead of its samples, so its reading says nothing about when they play.
        let paced = self
            .prev_call
            .is_none_or(|(t, d)| now.saturating_sub(t) as f64 >= d / 2.0);
        self.prev_call = Some((now, n as f64 * self.line.1));

        // The open bucket keeps its earliest paced reading relative to the line.
        if self.samples >= self.open_until && self.open.is_some() {
            if let Some(p) = self.open.take() {
                self.minima[self.minima_next] = p;
                self.minima_next = (self.minima_next + 1) % BUCKETS;
                self.minima_len = (self.minima_len + 1).min(BUCKETS);
                self.dirty = true;
            }
        }
        let slope = self.line.1;
        let earlier = match self.open {
            _ if !paced => false,
            Some((ox, oy)) if oy - slope * ox <= y - slope * x => false,
            Some(_) => {
                self.open = Some((x, y));
                true
            }
            None => {
                self.open = Some((x, y));
                self.open_until = self.samples + self.bucket_samples();
                true
            }
        };
        // Only the closed buckets count once two have closed; before, the open one too.
        if self.dirty || (earlier && self.minima_len < 2) {
            self.refit();
            self.dirty = false;
        }

        // Blocks never overlap by more than a sample: when the line moves back (a new earliest
        // reading, a refit), the blocks close the gap one sample per block (a 0.2 % slew at
        // 512-sample blocks) instead of jumping back, so that an event of a block never comes
        // before one of the block before it.
        let mut t = self.line.0 + self.line.1 * x;
        if let Some(end) = self.prev_end {
            t = t.max(end - self.line.1);
        }
        self.prev_end = Some(t + n as f64 * self.line.1);
        let timing = BlockTiming {
            start_ns: self.origin_ns.saturating_add_signed(t.round() as i64),
            ns_per_sample: self.line.1,
            relocked,
        };

        // Real-time pace, measured over whole windows of audio.
        let nominal = 1e9 / self.sample_rate;
        if self.window_audio >= OFFLINE_WINDOW_NS {
            let wall = now.saturating_sub(self.window_wall) as f64;
            let ratio = wall / self.window_audio;
            if ratio < OFFLINE_BELOW {
                self.offline = true;
            } else if ratio > ONLINE_ABOVE {
                self.offline = false;
            }
            self.window_wall = now;
            self.window_audio = 0.0;
        }
        self.window_audio += n as f64 * nominal;
        self.samples += n as u64;
        timing
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SR: f64 = 48_000.0;

    use crate::testkit::Rng;

    /// Drives the clock with a device whose true sample duration is `true_nps` ns, blocks of
    /// `sizes` (cycled), calls arriving up to `jitter` ns after the block's true start. After
    /// `settle` seconds and up to `seconds`, returns the worst wander (ns: the error of a
    /// block's time against the truth, both measured from the first block after settling) and
    /// the worst error of the time between blocks 125 ms apart (the spacing of two notes).
    fn errors(true_nps: f64, sizes: &[u32], jitter: u64, settle: f64, seconds: f64) -> (f64, f64) {
        let mut c = HostClock::new();
        let mut rng = Rng(5);
        let t0 = 1_700_000_000_000_000_000u64;
        let mut samples = 0u64;
        let (mut wander, mut spacing) = (0f64, 0f64);
        let mut history: Vec<(f64, f64)> = Vec::new();
        let mut i = 0;
        while (samples as f64) < seconds * SR {
            let n = sizes[i % sizes.len()];
            i += 1;
            let true_start = samples as f64 * true_nps;
            let now = t0 + true_start as u64 + rng.below(jitter + 1);
            let t = (c.update(now, n, SR).start_ns - t0) as f64;
            if samples as f64 >= settle * SR {
                history.push((true_start, t));
                let (ft, ff) = history[0];
                wander = wander.max(((t - ff) - (true_start - ft)).abs());
                let back = history.iter().rev().find(|h| true_start - h.0 >= 125e6);
                if let Some(&(bt, bf)) = back {
                    spacing = spacing.max(((t - bf) - (true_start - bt)).abs());
                }
            }
            samples += n as u64;
        }
        (wander, spacing)
    }

    #[test]
    fn steady_host_with_jitter() {
        let nps = 1e9 / SR;
        // A badly behaved host: calls up to 1 ms late, uniformly.
        let (wander, spacing) = errors(nps, &[512], 1_000_000, 5.0, 60.0);
        assert!(spacing < nps, "spacing error {spacing} ns");
        assert!(wander < 2.0 * nps, "wander {wander} ns");
        // A usual one: up to 100 us late.
        let (wander, spacing) = errors(nps, &[512], 100_000, 5.0, 60.0);
        assert!(spacing < 0.1 * nps, "spacing error {spacing} ns");
        assert!(wander < 0.25 * nps, "wander {wander} ns");
    }

    #[test]
    fn follows_a_sound_card_100_ppm_off_with_varying_blocks() {
        let nps = 1e9 / SR * (1.0 + 100e-6);
        let (wander, spacing) = errors(nps, &[64, 512, 128, 1024, 333], 500_000, 10.0, 60.0);
        assert!(wander < 1e9 / SR, "wander {wander} ns");
        assert!(spacing < 0.25e9 / SR, "spacing error {spacing} ns");
    }

    #[test]
    fn split_device_buffer_bursts_are_smoothed() {
        // A host that processes a 2,048-sample device buffer as 4 calls of 512 back to back:
        // the call times form a staircase; the clock must still give a straight line, and
        // never move it.
        let nps = 1e9 / SR;
        let mut c = HostClock::new();
        let t0 = 1_000_000_000_000u64;
        let mut starts = Vec::new();
        let mut relocks_at_half = 0;
        for k in 0..4000u64 {
            let device = t0 + ((k / 4) as f64 * 2048.0 * nps) as u64;
            let now = device + (k % 4) * 50_000; // 50 us per call
            starts.push(c.update(now, 512, SR).start_ns as f64);
            if k == 2000 {
                relocks_at_half = c.relocks();
            }
        }
        let tail = &starts[2000..];
        let worst = tail
            .windows(2)
            .map(|w| ((w[1] - w[0]) - 512.0 * nps).abs())
            .fold(0.0, f64::max);
        assert!(worst < nps, "step error {worst} ns");
        // And on the sound card's time: the first call of each burst waits for its buffer; the
        // three after it come early (by up to 32 ms) and are not taken for the truth.
        let off = starts[2000..]
            .iter()
            .enumerate()
            .map(|(k, s)| (s - (t0 as f64 + (2000 + k) as f64 * 512.0 * nps)).abs())
            .fold(0.0, f64::max);
        assert!(off < nps, "{off} ns off the sound card");
        assert_eq!((relocks_at_half, c.relocks()), (0, 0));
        assert!(!c.is_offline());
    }

    #[test]
    fn blocks_never_go_back_in_time_while_the_line_settles() {
        // Bursts of four calls from the very first block: the earliest readings come in block
        // after block, and the line moves back; the blocks must not.
        let nps = 1e9 / SR;
        let mut c = HostClock::new();
        let mut prev: Option<(u64, f64)> = None;
        for k in 0..2000u64 {
            let device = 3_000_000_000 + ((k / 4) as f64 * 2048.0 * nps) as u64;
            let t = c.update(device + (k % 4) * 30_000, 512, SR);
            if let Some((s, d)) = prev {
                let end = s as f64 + 512.0 * d;
                assert!(t.start_ns as f64 >= end - d - 1.0, "block {k} goes back");
            }
            prev = Some((t.start_ns, t.ns_per_sample));
        }
    }

    #[test]
    fn stall_and_rate_change_relock() {
        let nps = 1e9 / SR;
        let mut c = HostClock::new();
        let mut now = 5_000_000_000u64;
        assert!(c.update(now, 512, SR).relocked);
        for _ in 0..100 {
            now += (512.0 * nps) as u64;
            assert!(!c.update(now, 512, SR).relocked);
        }
        // Three seconds without a call.
        now += 3_000_000_000;
        let t = c.update(now, 512, SR);
        assert!(t.relocked);
        assert_eq!(t.start_ns, now);
        assert_eq!(c.relocks(), 1);
        // A new sample rate.
        now += 10_000_000;
        let t = c.update(now, 512, 96_000.0);
        assert!(t.relocked);
        assert!((t.ns_per_sample - 1e9 / 96_000.0).abs() < 1e-9);
        // Reset.
        c.reset();
        now += 5_000_000;
        assert!(c.update(now, 512, 96_000.0).relocked);
    }

    #[test]
    fn a_short_skip_moves_the_line_within_a_window() {
        let nps = 1e9 / SR;
        let mut c = HostClock::new();
        let t0 = 5_000_000_000u64;
        let mut samples = 0u64;
        let mut skip = 0u64;
        let mut last = None;
        for k in 0..2000u64 {
            if k == 1000 {
                // The host loses 300 ms (fewer than the 500 ms that mean a stall).
                skip = 300_000_000;
            }
            let now = t0 + (samples as f64 * nps) as u64 + skip + (k % 7) * 20_000;
            let t = c.update(now, 512, SR);
            last = Some((now, t.start_ns));
            samples += 512;
            if k == 1000 + 40 {
                // 430 ms later the line has followed (to within the jitter of the calls).
                let err = t.start_ns as i64 - (now - (k % 7) * 20_000) as i64;
                assert!(err.abs() < 200_000, "{err} ns");
            }
        }
        let (now, start) = last.unwrap();
        assert!((now as i64 - start as i64).abs() < 200_000);
        assert_eq!(c.relocks(), 1);
    }

    #[test]
    fn offline_rendering_is_detected_and_left() {
        let nps = 1e9 / SR;
        let mut c = HostClock::new();
        let mut now = 1_000_000_000u64;
        // Ten times faster than real time for 3 s of audio.
        for _ in 0..300 {
            c.update(now, 512, SR);
            now += (512.0 * nps / 10.0) as u64;
        }
        assert!(c.is_offline());
        // Back to real time.
        for _ in 0..300 {
            c.update(now, 512, SR);
            now += (512.0 * nps) as u64;
        }
        assert!(!c.is_offline());
    }

    #[test]
    fn zero_sample_blocks_do_not_move_the_line() {
        let mut c = HostClock::new();
        let a = c.update(1_000, 512, SR);
        let b = c.update(2_000, 0, SR);
        let d = c.update(1_000 + 10_666_667, 512, SR);
        assert_eq!(a.start_ns, 1_000);
        assert_eq!(b.start_ns, d.start_ns);
    }

    #[test]
    fn a_transport_jump_or_a_loop_split_keeps_the_line() {
        // The clock ignores the host's transport: a host that loops every 2 s, splitting the
        // block that holds the loop point into two calls back to back (the second one's reading
        // is then before its samples), and that locates its song position elsewhere now and
        // then, still calls `process()` at the pace of its sound card. The block times follow
        // the samples, not the song position.
        let nps = 1e9 / SR;
        let mut c = HostClock::new();
        let mut rng = Rng(11);
        let t0 = 2_000_000_000_000u64;
        let mut samples = 0u64;
        let mut song = 0u64;
        let mut first_error = None;
        let mut worst = 0f64;
        let mut check = |start: u64, truth: f64, settled: bool| {
            let e = start as f64 - truth;
            if settled {
                let f = *first_error.get_or_insert(e);
                worst = worst.max((e - f).abs());
            }
        };
        for k in 0..6000u64 {
            let truth = t0 as f64 + samples as f64 * nps;
            let now = truth as u64 + rng.below(200_000);
            let settled = samples as f64 >= 10.0 * SR;
            let to_loop = 96_000 - song % 96_000;
            if to_loop < 512 {
                let a = c.update(now, to_loop as u32, SR);
                let b = c.update(now + 30_000, 512 - to_loop as u32, SR);
                check(a.start_ns, truth, settled);
                check(b.start_ns, truth + to_loop as f64 * nps, settled);
                song = 512 - to_loop;
            } else {
                check(c.update(now, 512, SR).start_ns, truth, settled);
                song += 512;
            }
            if k % 1000 == 999 {
                // A locate: the song jumps; the samples do not.
                song = rng.below(1_000_000);
            }
            samples += 512;
        }
        assert!(worst < 0.5 * nps, "the line moved by {worst} ns");
        assert_eq!(c.relocks(), 0);
    }
}
