//! The direct clock exchange between a Sender and its Receiver: offset, skew and error bound
//! from NTP-style four-timestamp samples.
//!
//! Each sample is one round of NTP's on-wire protocol (RFC 5905 §8): the Sender sends at `t1`
//! (its clock), the Receiver receives at `t2` and answers at `t3` (its clock), the Sender
//! receives at `t4`. With `theta(t)` the Receiver's clock minus the Sender's at Sender time `t`,
//! the two one-way measurements are
//!
//! - forward `f = t2 - t1 = up delay + theta(t1)`,
//! - backward `g = t4 - t3 = down delay - theta(t4)`.
//!
//! Queueing only ever adds delay, so the samples with the least delay carry the clock
//! information: that is NTP's clock filter, which keeps the minimum-delay sample of its last
//! eight (RFC 5905 §10). With a skewed clock `theta` is a line, not a constant, so the filter
//! keeps a window of [`WINDOW`] samples and fits the *lower envelope* of each direction with the
//! linear program of Moon, Skelly and Towsley ("Estimation and removal of clock skew from
//! network delay measurements", INFOCOM 1999): the line under every point that is closest to
//! them all in total, which is the edge of the points' lower convex hull above their mean
//! time. Every sample takes part, but only the fastest ones (the hull's corners) decide.
//!
//! With `F` and `G` the two envelope lines, `theta(t) = (F(t) - G(t)) / 2`, best measured at the
//! samples' mean time, where the linear program is tightest: the offset is `theta` of the whole
//! window there, carried to any other time by the skew.
//!
//! The skew is the slope of `theta`, and over the first seconds, or on a path with much
//! jitter, it is mostly noise: each envelope sits above the true minimum delay by about one
//! spacing of the lowest delays (`jitter / samples` for a uniform jitter), so the slope between
//! two such points a few seconds apart can be off by a hundred ppm, and an offset carried
//! forward by it wanders by a millisecond. So the skew is estimated with its uncertainty and
//! then shrunk towards zero by it:
//!
//! - measured: the mean of two estimates, the slope between `theta` of the older and of the
//!   newer half of the window (a long baseline) and the envelopes' own slope (Moon et al.);
//! - its uncertainty: how far each half's envelope may be from the true minimum, estimated from
//!   the gaps between the lowest delays above it (the order statistics of a distribution near
//!   its lower bound, as in Robson and Whitlock, "Estimation of a truncation point",
//!   Biometrika 1964: the minimum misses the bound by about the spacing of the smallest
//!   values), the two halves' errors combined over their distance;
//! - shrunk: the posterior mean under a Gaussian prior of zero skew with a standard deviation
//!   of [`SKEW_PRIOR_SD`] (inverse-variance weighting of prior and measurement, the update of
//!   a Kalman filter). A clean path's skew is believed within seconds; a noisy one's only as
//!   its uncertainty falls below the prior's, and until then the offset stays put instead of
//!   wandering with the noise.
//!
//! The offset is exact when the fastest paths up and down are equally long; the error bound is
//! half the envelope round trip `(F + G) / 2` (asymmetry can hide anywhere in it), grown by
//! NTP's frequency tolerance `PHI` = 15 ppm (RFC 5905 §7.2) plus the skew's remaining
//! uncertainty, for each second away from the window's mean time.
//!
//! A sample that contradicts the estimate by more than its own half round trip plus the bound
//! means the Receiver's clock jumped (it restarted): after [`OUTLIERS_TO_RESET`] such samples in a
//! row the window starts again.
//!
//! Pure and driven by the caller's clock. It allocates only in [`ClockFilter::new`].

use std::collections::VecDeque;

/// Samples kept: 102 s at the Sender's steady rate of ten per second. The more samples, the
/// closer the envelope gets to the true minimum delay; a linear clock model holds over a
/// minute (crystal drift changes by well under 0.1 ppm per minute at room temperature).
pub const WINDOW: usize = 1024;
/// Samples needed before the estimate counts as converged.
pub const MIN_SAMPLES: usize = 8;
/// Time the samples must span (Sender clock) before the estimate counts as converged, ns.
pub const MIN_SPAN_NS: u64 = 1_000_000_000;
/// Largest skew believed, as a fraction: 500 ppm (crystals are within 100 ppm).
pub const MAX_SKEW: f64 = 500e-6;
/// NTP's frequency tolerance (RFC 5905 §7.2): how fast an estimate's error may grow, s/s.
pub const PHI: f64 = 15e-6;
/// Consecutive contradicting samples that make the filter start again.
pub const OUTLIERS_TO_RESET: u32 = 3;
/// Slack added to the outlier test, ns.
const OUTLIER_SLACK_NS: f64 = 1_000_000.0;
/// Standard deviation of the prior of the skew (its mean is zero), as a fraction: 50 ppm.
/// Session clocks disciplined by NTP (Linux slews `CLOCK_MONOTONIC` with the system clock)
/// differ by well under a ppm; free-running crystals, specified within 100 ppm, by a few tens
/// of ppm. A measured skew keeps the share `prior² / (prior² + uncertainty²)` of its value: a
/// skew of 100 ppm (the simulator's worst) is followed within a few ppm after seconds on a
/// clean path, after a minute with 25 ms of jitter. (Tried: with 30 ppm, a zero skew through
/// that jitter wandered a little less and a 100 ppm one was followed later.)
pub const SKEW_PRIOR_SD: f64 = 50e-6;
/// Samples from which the skew is measured (the window's two halves must each have a spread).
const SPLIT_MIN_SAMPLES: usize = 16;
/// Time the window must span for that, ns.
const SPLIT_MIN_SPAN_NS: u64 = 1_000_000_000;
/// Spacings of the lowest delays above an envelope averaged to estimate how far the envelope
/// is from the true minimum (more: a steadier estimate; fewer: one that looks only at the
/// fastest samples, where the envelope is decided).
const SPACINGS: usize = 4;
/// Longest plausible round trip, ns: anything slower is not a live exchange.
pub const MAX_RTT_NS: i64 = 10_000_000_000;
/// Longest plausible turnaround at the Receiver (`t3 - t2`), ns.
pub const MAX_TURNAROUND_NS: i64 = 1_000_000_000;

/// Why a sample was not used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SampleError {
    /// The timestamps are impossible (negative round trip or turnaround, or far too long).
    Implausible,
    /// It contradicts the current estimate (counted towards a reset).
    Outlier,
}

/// One round of the exchange, reduced to what the fit needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Sample {
    /// Sender time of the request.
    t1: u64,
    /// Sender time of the reply's arrival.
    t4: u64,
    /// `t2 - t1`, ns.
    fwd: i64,
    /// `t4 - t3`, ns.
    back: i64,
}

impl Sample {
    /// Round trip minus the Receiver's turnaround, ns.
    fn delay(&self) -> i64 {
        self.fwd.saturating_add(self.back)
    }

    /// The offset this sample alone says, at the middle of the round trip, ns.
    fn offset(&self) -> f64 {
        (self.fwd as f64 - self.back as f64) / 2.0
    }
}

/// The filter's view of the Receiver's clock.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Estimate {
    /// Sender time at which `offset_ns` and `error_bound_ns` hold (the newest sample).
    pub ref_ns: u64,
    /// Receiver time minus Sender time at `ref_ns`, ns.
    pub offset_ns: i64,
    /// The Receiver's clock runs this much faster than the Sender's, ppm.
    pub skew_ppm: f64,
    /// Bound on the offset's error at `ref_ns`, ns.
    pub error_bound_ns: u64,
    /// Smallest round trip in the window, ns.
    pub min_delay_ns: u64,
    /// Samples in the window.
    pub samples: usize,
    /// Sender time the window spans, ns.
    pub span_ns: u64,
}

/// A line `y = y0 + slope * (x - x0)` (x and y in ns).
#[derive(Clone, Copy, Debug, PartialEq)]
struct Line {
    /// A point of the line: its x (ns after the window's base)...
    x0: i64,
    /// ... and its y (ns).
    y0: f64,
    /// dy / dx.
    slope: f64,
}

impl Line {
    fn at(&self, x: i64) -> f64 {
        self.y0 + self.slope * (x - self.x0) as f64
    }
}

/// Lower envelope of `pts` (sorted by x) in Moon et al.'s sense: the edge of the lower convex
/// hull above the mean x. `hull` is work space.
fn envelope(pts: &[(i64, i64)], hull: &mut Vec<(i64, i64)>) -> Option<Line> {
    let n = pts.len();
    if n == 0 {
        return None;
    }
    // Andrew's monotone chain, lower half: keep only left turns.
    hull.clear();
    for &p in pts {
        while hull.len() >= 2 {
            let a = hull[hull.len() - 2];
            let b = hull[hull.len() - 1];
            // In i128 from the start: the offsets come from the network and the difference
            // of two of them can exceed i64.
            let d = |q: (i64, i64), r: (i64, i64)| {
                (q.0 as i128 - r.0 as i128, q.1 as i128 - r.1 as i128)
            };
            let ((bx, by), (px, py)) = (d(b, a), d(p, a));
            let cross = bx * py - by * px;
            // Same x as the last point: keep the lower one only.
            if cross <= 0 || b.0 == p.0 {
                hull.pop();
            } else {
                break;
            }
        }
        if hull.last().is_some_and(|l| l.0 == p.0 && l.1 <= p.1) {
            continue;
        }
        hull.push(p);
    }
    let mean_x = (pts.iter().map(|p| p.0 as i128).sum::<i128>() / n as i128) as i64;
    if hull.len() == 1 {
        return Some(Line {
            x0: hull[0].0,
            y0: hull[0].1 as f64,
            slope: 0.0,
        });
    }
    let j = hull
        .windows(2)
        .position(|w| w[1].0 >= mean_x)
        .unwrap_or(hull.len() - 2);
    let (a, b) = (hull[j], hull[j + 1]);
    // Exact differences (in i128: see above), then the quotient.
    let slope = (b.1 as i128 - a.1 as i128) as f64 / (b.0 as i128 - a.0 as i128) as f64;
    Some(Line {
        x0: a.0,
        y0: a.1 as f64,
        slope: slope.clamp(-MAX_SKEW, MAX_SKEW),
    })
}

/// How far the envelope `line` of `pts` may lie above the true minimum delay, ns: the mean gap
/// between the lowest [`SPACINGS`] delays above it (past the two points the line rests on).
/// For `n` samples of a delay whose density near its minimum is `f`, the gaps are about
/// `1 / (n f)`, and so is the envelope's error (Robson and Whitlock 1964). Infinite with too
/// few points to tell. `scratch` is work space.
fn spread(pts: &[(i64, i64)], line: &Line, scratch: &mut Vec<f64>) -> f64 {
    let k = 2 + SPACINGS;
    if pts.len() <= k {
        return f64::INFINITY;
    }
    scratch.clear();
    scratch.extend(pts.iter().map(|p| (p.1 as f64 - line.at(p.0)).max(0.0)));
    let (_, r, _) = scratch.select_nth_unstable_by(k, f64::total_cmp);
    *r / SPACINGS as f64
}

/// What the envelopes of a set of samples say: at Sender time `x` (relative to the window's
/// base), the offset `theta`, its likely error, and half the envelope round trip; and the skew
/// their slopes say.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Fit {
    /// Where the envelopes are evaluated: the samples' mean time, ns after the base.
    x: i64,
    /// Receiver minus Sender time there, ns.
    theta: f64,
    /// Standard deviation of the error of `theta` (from both envelopes' [`spread`]), ns.
    theta_sd: f64,
    /// Half the envelope round trip there, ns.
    half_rtt: f64,
    /// The skew the envelopes' slopes say.
    slope: f64,
}

/// Work space of [`fit`], allocated once.
#[derive(Clone, Debug, Default)]
struct Work {
    /// Points of one direction.
    pts: Vec<(i64, i64)>,
    /// A hull.
    hull: Vec<(i64, i64)>,
    /// Residuals above an envelope.
    residuals: Vec<f64>,
}

impl Work {
    fn with_capacity(n: usize) -> Self {
        Self {
            pts: Vec::with_capacity(n),
            hull: Vec::with_capacity(n),
            residuals: Vec::with_capacity(n),
        }
    }
}

/// Both envelopes of `samples`, evaluated at the samples' mean time, where the linear program
/// fits best.
fn fit(samples: &[Sample], base: u64, w: &mut Work) -> Option<Fit> {
    let Work {
        pts,
        hull,
        residuals,
    } = w;
    if samples.is_empty() {
        return None;
    }
    pts.clear();
    pts.extend(
        samples
            .iter()
            .map(|s| (s.t1.wrapping_sub(base) as i64, s.fwd)),
    );
    pts.sort_unstable();
    let f = envelope(pts, hull)?;
    let f_spread = spread(pts, &f, residuals);
    pts.clear();
    pts.extend(
        samples
            .iter()
            .map(|s| (s.t4.wrapping_sub(base) as i64, s.back)),
    );
    pts.sort_unstable();
    let g = envelope(pts, hull)?;
    let g_spread = spread(pts, &g, residuals);
    let mid = |s: &Sample| (s.t1 / 2 + s.t4 / 2).wrapping_sub(base) as i64 as i128;
    let x = (samples.iter().map(mid).sum::<i128>() / samples.len() as i128) as i64;
    Some(Fit {
        x,
        theta: (f.at(x) - g.at(x)) / 2.0,
        // theta = (F - G) / 2, the two errors independent.
        theta_sd: f_spread.hypot(g_spread) / 2.0,
        half_rtt: ((f.at(x) + g.at(x)) / 2.0).max(0.0),
        slope: (f.slope - g.slope) / 2.0,
    })
}

/// The clock model: `theta(t) = theta + slope * (t - base - anchor)`.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Model {
    /// Sender time the model's x axis starts at.
    base: u64,
    /// Where `theta` was measured, ns after `base`.
    anchor: i64,
    /// Receiver minus Sender time at the anchor, ns.
    theta: f64,
    /// Rate of the Receiver's clock against the Sender's, minus one.
    slope: f64,
    /// Half the envelope round trip at the anchor, ns.
    half_rtt: f64,
    /// Standard deviation of `slope` (after the prior).
    slope_sd: f64,
}

impl Model {
    fn offset_at(&self, t: u64) -> f64 {
        let x = t.wrapping_sub(self.base) as i64;
        self.theta + self.slope * (x - self.anchor) as f64
    }

    fn error_at(&self, t: u64) -> f64 {
        let x = t.wrapping_sub(self.base) as i64;
        self.half_rtt + (PHI + self.slope_sd) * (x - self.anchor).unsigned_abs() as f64
    }
}

/// The skew from a measurement `measured` with standard deviation `sd` and the prior (zero,
/// [`SKEW_PRIOR_SD`]): the posterior mean and standard deviation, Gaussian.
fn shrink(measured: f64, sd: f64) -> (f64, f64) {
    let prior = SKEW_PRIOR_SD * SKEW_PRIOR_SD;
    let var = sd * sd;
    if !var.is_finite() {
        return (0.0, SKEW_PRIOR_SD);
    }
    let gain = prior / (prior + var);
    (
        (measured * gain).clamp(-MAX_SKEW, MAX_SKEW),
        (var * gain).sqrt(),
    )
}

/// The Sender's filter of its clock exchange with one Receiver.
#[derive(Clone, Debug)]
pub struct ClockFilter {
    /// The window, oldest first.
    samples: VecDeque<Sample>,
    /// The fitted clock model.
    model: Option<Model>,
    /// Work space: the window sorted by time.
    sorted: Vec<Sample>,
    /// Summary of the fit, at the newest sample.
    estimate: Option<Estimate>,
    /// Contradicting samples in a row.
    outliers: u32,
    /// Times the window started again.
    resets: u64,
    /// Work space of the fits.
    work: Work,
}

impl Default for ClockFilter {
    fn default() -> Self {
        Self::new()
    }
}

impl ClockFilter {
    /// An empty filter.
    pub fn new() -> Self {
        Self {
            samples: VecDeque::with_capacity(WINDOW),
            model: None,
            sorted: Vec::with_capacity(WINDOW),
            estimate: None,
            outliers: 0,
            resets: 0,
            work: Work::with_capacity(WINDOW),
        }
    }

    /// Forgets every sample (the Receiver changed).
    pub fn reset(&mut self) {
        self.samples.clear();
        self.model = None;
        self.estimate = None;
        self.outliers = 0;
    }

    /// Times the window started again because the Receiver's clock jumped.
    pub fn resets(&self) -> u64 {
        self.resets
    }

    /// Adds one round: `t1` and `t4` on the Sender's clock, `t2` and `t3` on the Receiver's.
    pub fn add_sample(&mut self, t1: u64, t2: u64, t3: u64, t4: u64) -> Result<(), SampleError> {
        let rtt = t4.wrapping_sub(t1) as i64;
        let turnaround = t3.wrapping_sub(t2) as i64;
        if !(0..=MAX_RTT_NS).contains(&rtt)
            || !(0..=MAX_TURNAROUND_NS).contains(&turnaround)
            || turnaround > rtt
        {
            return Err(SampleError::Implausible);
        }
        let s = Sample {
            t1,
            t4,
            fwd: t2.wrapping_sub(t1) as i64,
            back: t4.wrapping_sub(t3) as i64,
        };
        if let (Some(e), true) = (self.estimate, self.is_converged()) {
            let mid = t1 + (rtt as u64) / 2;
            let predicted = self.offset_at_f64(mid).unwrap_or(e.offset_ns as f64);
            let allowed = s.delay() as f64 / 2.0 + e.error_bound_ns as f64 + OUTLIER_SLACK_NS;
            if (s.offset() - predicted).abs() > allowed {
                self.outliers += 1;
                if self.outliers < OUTLIERS_TO_RESET {
                    return Err(SampleError::Outlier);
                }
                self.resets += 1;
                self.reset();
            } else {
                self.outliers = 0;
            }
        }
        if self.samples.len() == WINDOW {
            self.samples.pop_front();
        }
        self.samples.push_back(s);
        self.refit();
        Ok(())
    }

    fn refit(&mut self) {
        let Some(oldest) = self.samples.iter().map(|s| s.t1).min() else {
            self.model = None;
            self.estimate = None;
            return;
        };
        let base = oldest;
        self.sorted.clear();
        self.sorted.extend(self.samples.iter().copied());
        self.sorted.sort_unstable_by_key(|s| s.t1);
        let newest = self.sorted.iter().map(|s| s.t4).max().unwrap_or(base);
        let span = self.sorted.last().map_or(0, |s| s.t1 - base);
        let n = self.sorted.len();
        // The offset from the whole window, at its mean time.
        let model = fit(&self.sorted, base, &mut self.work).map(|all| {
            let (slope, slope_sd) = if n >= SPLIT_MIN_SAMPLES && span >= SPLIT_MIN_SPAN_NS {
                // The skew between the two halves, and its uncertainty from theirs.
                let (a, b) = self.sorted.split_at(n / 2);
                match (fit(a, base, &mut self.work), fit(b, base, &mut self.work)) {
                    (Some(x), Some(y)) if y.x > x.x => {
                        let dx = (y.x - x.x) as f64;
                        let halves = (y.theta - x.theta) / dx;
                        shrink(
                            (halves + all.slope) / 2.0,
                            x.theta_sd.hypot(y.theta_sd) / dx,
                        )
                    }
                    _ => shrink(0.0, f64::INFINITY),
                }
            } else {
                // Too short a window to tell the skew from the noise: the prior's.
                shrink(0.0, f64::INFINITY)
            };
            Model {
                base,
                anchor: all.x,
                theta: all.theta,
                slope,
                half_rtt: all.half_rtt,
                slope_sd,
            }
        });
        self.model = model;
        let Some(m) = model else {
            self.estimate = None;
            return;
        };
        let min_delay = self
            .samples
            .iter()
            .map(|s| s.delay().max(0))
            .min()
            .unwrap_or(0);
        self.estimate = Some(Estimate {
            ref_ns: newest,
            offset_ns: m.offset_at(newest).round() as i64,
            skew_ppm: m.slope * 1e6,
            error_bound_ns: m.error_at(newest).round() as u64,
            min_delay_ns: min_delay as u64,
            samples: n,
            span_ns: span,
        });
    }

    /// Whether there are enough samples over a long enough time to trust the estimate.
    pub fn is_converged(&self) -> bool {
        self.estimate
            .is_some_and(|e| e.samples >= MIN_SAMPLES && e.span_ns >= MIN_SPAN_NS)
    }

    /// The current fit (`None` before the first sample).
    pub fn estimate(&self) -> Option<Estimate> {
        self.estimate
    }

    fn offset_at_f64(&self, t: u64) -> Option<f64> {
        Some(self.model?.offset_at(t))
    }

    /// Receiver time minus Sender time at Sender time `t`, ns.
    pub fn offset_at(&self, t: u64) -> Option<i64> {
        self.offset_at_f64(t).map(|o| o.round() as i64)
    }

    /// Bound on the error of [`ClockFilter::offset_at`] at Sender time `t`, ns: half the
    /// envelope round trip, plus [`PHI`] per second since the newest sample.
    pub fn error_bound_at(&self, t: u64) -> Option<u64> {
        Some(self.model?.error_at(t).round() as u64)
    }
}

#[cfg(test)]
#[path = "clock_filter/tests.rs"]
mod tests;
