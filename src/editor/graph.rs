//! The Receiver's history graph: each player's p99 latency over the last minute, one colour per
//! player, with the playout delay D drawn over them. When D sits just above the highest line,
//! everyone is in time; a line that pokes through D is a player whose notes come late.

use super::format;
use super::widgets::{peer_color, FIELD, LINE, SMALL, TEXT, WEAK};
use crate::status::{HistoryPoint, HISTORY_LEN, PUBLISH_EVERY_NS};
use egui::{Align2, Color32, CornerRadius, FontId, Pos2, Rect, Sense, Shape, Stroke, Ui, Vec2};

/// Seconds shown: the history's points, one per publish of the Receiver's status.
pub const WINDOW_S: f32 = HISTORY_LEN as f32 * (PUBLISH_EVERY_NS as f32 / 1e9);

/// The time axis' labels: `(fraction of the width, text, anchor)`, from [`WINDOW_S`].
pub fn time_labels() -> [(f32, String, Align2); 3] {
    let ago = |s: f32| format!("\u{2212}{s:.0} s");
    [
        (0.0, ago(WINDOW_S), Align2::LEFT_TOP),
        (0.5, ago(WINDOW_S / 2.0), Align2::CENTER_TOP),
        (1.0, "now".to_string(), Align2::RIGHT_TOP),
    ]
}

/// A round top for the value axis and the spacing of its grid lines: the step is 1, 2 or 5
/// times a power of ten, with at most five steps up to the top, and the top leaves a little
/// room above `max`.
pub fn nice_scale(max: f32) -> (f32, f32) {
    if !max.is_finite() || max <= 0.0 {
        return (10.0, 2.0);
    }
    let want = max * 1.05;
    let mut magnitude = 10f32.powi((want / 5.0).log10().floor() as i32);
    loop {
        for m in [1.0, 2.0, 5.0] {
            let step = m * magnitude;
            let n = (want / step).ceil();
            if n <= 5.0 {
                return (n.max(1.0) * step, step);
            }
        }
        magnitude *= 10.0;
    }
}

/// The highest value the graph must show: D and every shown slot's p99, ms.
pub fn y_max(history: &[HistoryPoint], slots: &[u8]) -> f32 {
    history
        .iter()
        .flat_map(|p| {
            std::iter::once(p.delay_ms).chain(
                slots
                    .iter()
                    .filter_map(|&s| p.p99_ms.get(s as usize).copied()),
            )
        })
        .filter(|v| v.is_finite())
        .fold(0.0, f32::max)
}

/// Runs of consecutive known values, as `(t_s, value)` points: a gap (NaN) breaks the line.
pub fn runs(
    history: &[HistoryPoint],
    value: impl Fn(&HistoryPoint) -> f32,
) -> Vec<Vec<(f32, f32)>> {
    let mut out = Vec::new();
    let mut cur = Vec::new();
    for p in history {
        let v = value(p);
        if v.is_finite() {
            cur.push((p.t_s, v));
        } else if !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// One line on the graph.
pub struct Line {
    /// Peer slot (its colour).
    pub slot: u8,
    /// Drawn thicker: the slowest player.
    pub bold: bool,
}

/// Draws the graph in a `size` box.
pub fn history(ui: &mut Ui, size: Vec2, history: &[HistoryPoint], lines: &[Line]) {
    let (outer, _) = ui.allocate_exact_size(size, Sense::hover());
    let painter = ui.painter_at(outer);
    painter.rect_filled(outer, CornerRadius::same(4), FIELD);
    let small = FontId::proportional(SMALL - 1.0);
    let plot = Rect::from_min_max(
        outer.min + Vec2::new(38.0, 26.0),
        outer.max - Vec2::new(10.0, 18.0),
    );
    let slots: Vec<u8> = lines.iter().map(|l| l.slot).collect();
    let (top, step) = nice_scale(y_max(history, &slots));
    let t_end = history.last().map_or(0.0, |p| p.t_s);
    let t0 = t_end - WINDOW_S;
    let to_screen = |t: f32, v: f32| {
        Pos2::new(
            plot.left() + (t - t0) / WINDOW_S * plot.width(),
            plot.bottom() - (v / top).clamp(0.0, 1.05) * plot.height(),
        )
    };

    // Grid and value labels.
    let mut v = 0.0;
    while v <= top + step * 0.01 {
        let y = plot.bottom() - v / top * plot.height();
        painter.line_segment(
            [Pos2::new(plot.left(), y), Pos2::new(plot.right(), y)],
            Stroke::new(1.0, LINE.gamma_multiply(if v == 0.0 { 1.0 } else { 0.6 })),
        );
        painter.text(
            Pos2::new(plot.left() - 5.0, y),
            Align2::RIGHT_CENTER,
            format!("{v:.0}"),
            small.clone(),
            WEAK,
        );
        v += step;
    }
    painter.text(
        Pos2::new(outer.left() + 8.0, outer.top() + 4.0),
        Align2::LEFT_TOP,
        "ms",
        small.clone(),
        WEAK,
    );
    for (frac, label, anchor) in time_labels() {
        let x = plot.left() + frac * plot.width();
        painter.text(
            Pos2::new(x, plot.bottom() + 3.0),
            anchor,
            label,
            small.clone(),
            WEAK,
        );
    }

    // Each player's p99, then D over them.
    for l in lines {
        let stroke = Stroke::new(if l.bold { 2.0 } else { 1.4 }, peer_color(l.slot));
        for run in runs(history, |p| {
            p.p99_ms.get(l.slot as usize).copied().unwrap_or(f32::NAN)
        }) {
            let pts: Vec<Pos2> = run.iter().map(|&(t, v)| to_screen(t, v)).collect();
            painter.add(Shape::line(pts, stroke));
        }
    }
    let d_color = Color32::WHITE;
    for run in runs(history, |p| p.delay_ms) {
        let pts: Vec<Pos2> = run.iter().map(|&(t, v)| to_screen(t, v)).collect();
        painter.add(Shape::line(pts, Stroke::new(2.0, d_color)));
    }

    // Legend, top right.
    let d_now = history.last().map(|p| p.delay_ms).filter(|v| v.is_finite());
    let legend = match d_now {
        Some(d) => format!(
            "D, the delay in use: {}",
            format::ms_unit((f64::from(d) * 1e6) as i64)
        ),
        None => "D, the delay in use".to_string(),
    };
    let r = painter.text(
        Pos2::new(outer.right() - 10.0, outer.top() + 4.0),
        Align2::RIGHT_TOP,
        legend,
        small.clone(),
        TEXT,
    );
    painter.line_segment(
        [
            Pos2::new(r.left() - 22.0, r.center().y),
            Pos2::new(r.left() - 6.0, r.center().y),
        ],
        Stroke::new(2.0, d_color),
    );
    let r2 = painter.text(
        Pos2::new(r.left() - 34.0, outer.top() + 4.0),
        Align2::RIGHT_TOP,
        "each player's p99 latency",
        small,
        WEAK,
    );
    let mut x = r2.left() - 8.0;
    for l in lines.iter().rev().take(8) {
        painter.circle_filled(Pos2::new(x - 3.0, r2.center().y), 3.5, peer_color(l.slot));
        x -= 10.0;
    }
    if history.is_empty() {
        painter.text(
            plot.center(),
            Align2::CENTER_CENTER,
            "No history yet",
            FontId::proportional(SMALL),
            WEAK,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::peers::MAX_PEERS;

    #[test]
    fn the_time_axis_spans_the_history() {
        // A minute of points, one per publish.
        assert_eq!(WINDOW_S, crate::status::HISTORY_S as f32);
        let labels = time_labels();
        assert_eq!(
            labels[0].1,
            format!("\u{2212}{} s", crate::status::HISTORY_S)
        );
        assert_eq!(
            labels[1].1,
            format!("\u{2212}{} s", crate::status::HISTORY_S / 2)
        );
        assert_eq!(labels[2].1, "now");
    }

    #[test]
    fn scales_are_round_and_cover_the_data() {
        for (max, top, step) in [
            (0.0, 10.0, 2.0),
            (f32::NAN, 10.0, 2.0),
            (4.0, 5.0, 1.0),
            (9.5, 10.0, 2.0),
            (125.3, 150.0, 50.0),
            (181.0, 200.0, 50.0),
            (940.0, 1000.0, 200.0),
            (0.3, 0.4, 0.1),
        ] {
            let (t, s) = nice_scale(max);
            assert!(
                (t - top).abs() < 1e-3 && (s - step).abs() < 1e-4,
                "{max}: {t} {s}"
            );
        }
        for i in 1..2000 {
            let max = i as f32 * 0.731;
            let (top, step) = nice_scale(max);
            assert!(top >= max, "{max}");
            let n = top / step;
            assert!(
                n <= 5.0 + 1e-3 && (n - n.round()).abs() < 1e-3,
                "{max}: {top} {step}"
            );
            let m = step / 10f32.powi((step.log10() + 1e-4).floor() as i32);
            assert!(
                [1.0, 2.0, 5.0].iter().any(|x| (x - m).abs() < 1e-3),
                "{step}"
            );
        }
    }

    fn point(t_s: f32, delay_ms: f32, p: &[(usize, f32)]) -> HistoryPoint {
        let mut p99_ms = [f32::NAN; MAX_PEERS];
        for &(s, v) in p {
            p99_ms[s] = v;
        }
        HistoryPoint {
            t_s,
            delay_ms,
            p99_ms,
        }
    }

    #[test]
    fn gaps_break_lines_and_the_top_covers_shown_slots_only() {
        let h = vec![
            point(0.0, 10.0, &[(0, 5.0), (3, 400.0)]),
            point(0.25, 10.0, &[(3, 400.0)]),
            point(0.5, 12.0, &[(0, 6.0), (3, 400.0)]),
            point(0.75, 12.0, &[(0, 7.0)]),
        ];
        let r = runs(&h, |p| p.p99_ms[0]);
        assert_eq!(r, vec![vec![(0.0, 5.0)], vec![(0.5, 6.0), (0.75, 7.0)]]);
        assert_eq!(runs(&h, |p| p.delay_ms).len(), 1);
        assert_eq!(y_max(&h, &[0]), 12.0);
        assert_eq!(y_max(&h, &[0, 3]), 400.0);
        assert_eq!(y_max(&[], &[0]), 0.0);
    }
}
