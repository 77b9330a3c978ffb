//! The editors' look and their small shared pieces: colours, text sizes, a framed section,
//! a status light, a validated text field, and text cut to fit a table cell.

use super::fields::{Commit, Field};
use super::view::{Cell, Tone};
use egui::text::{LayoutJob, TextWrapping};
use egui::{
    Align2, Color32, CornerRadius, FontFamily, FontId, Label, Margin, Painter, Pos2, Rect,
    Response, RichText, Sense, Stroke, TextEdit, TextStyle, Ui, Vec2,
};

/// Window background.
pub const BG: Color32 = Color32::from_rgb(0x1b, 0x1d, 0x22);
/// Background of a section.
pub const PANEL: Color32 = Color32::from_rgb(0x24, 0x27, 0x2e);
/// Background of fields and the graph.
pub const FIELD: Color32 = Color32::from_rgb(0x14, 0x16, 0x1a);
/// Lines between things.
pub const LINE: Color32 = Color32::from_rgb(0x3a, 0x3e, 0x47);
/// Ordinary text.
pub const TEXT: Color32 = Color32::from_rgb(0xe4, 0xe6, 0xea);
/// Secondary text.
pub const WEAK: Color32 = Color32::from_rgb(0x9a, 0xa0, 0xaa);
/// All is well.
pub const GOOD: Color32 = Color32::from_rgb(0x6c, 0xd4, 0x7e);
/// Worth a look; also the slowest peer's highlight.
pub const WARN: Color32 = Color32::from_rgb(0xf5, 0xb9, 0x4c);
/// Something is wrong.
pub const BAD: Color32 = Color32::from_rgb(0xff, 0x6b, 0x6b);
/// Buttons, selection, focus.
pub const ACCENT: Color32 = Color32::from_rgb(0x4f, 0xa8, 0xe8);

/// One colour per peer slot, the same in the table and the graph.
const PEER_COLORS: [Color32; 8] = [
    Color32::from_rgb(0x5a, 0xb0, 0xff),
    Color32::from_rgb(0xb3, 0x8c, 0xff),
    Color32::from_rgb(0xff, 0x8f, 0xb8),
    Color32::from_rgb(0x5c, 0xd6, 0xc8),
    Color32::from_rgb(0xe8, 0xd8, 0x6a),
    Color32::from_rgb(0xff, 0x9a, 0x5c),
    Color32::from_rgb(0x9c, 0xe0, 0x7a),
    Color32::from_rgb(0xc8, 0xc8, 0xd8),
];

/// The colour of a peer slot.
pub fn peer_color(slot: u8) -> Color32 {
    PEER_COLORS[slot as usize % PEER_COLORS.len()]
}

/// The colour of a tone.
pub fn tone_color(t: Tone) -> Color32 {
    match t {
        Tone::Normal => TEXT,
        Tone::Weak => WEAK,
        Tone::Good => GOOD,
        Tone::Warn => WARN,
        Tone::Bad => BAD,
    }
}

/// A cell as rich text.
pub fn rich(c: &Cell) -> RichText {
    RichText::new(&c.text).color(tone_color(c.tone))
}

/// Body text size, points.
pub const BODY: f32 = 13.5;
/// Small text size (hints, units, table headers), points.
pub const SMALL: f32 = 11.5;

/// Sets the editors' dark style on a context: called when a window opens, and by the
/// headless renderer.
pub fn apply_style(ctx: &egui::Context) {
    ctx.set_visuals(egui::Visuals::dark());
    ctx.all_styles_mut(|style| {
        use TextStyle::*;
        style.text_styles = [
            (Small, FontId::new(SMALL, FontFamily::Proportional)),
            (Body, FontId::new(BODY, FontFamily::Proportional)),
            (Button, FontId::new(BODY, FontFamily::Proportional)),
            (Heading, FontId::new(18.0, FontFamily::Proportional)),
            (Monospace, FontId::new(BODY, FontFamily::Monospace)),
        ]
        .into();
        style.spacing.item_spacing = Vec2::new(8.0, 6.0);
        style.spacing.button_padding = Vec2::new(8.0, 3.0);
        style.spacing.interact_size.y = 22.0;
        let v = &mut style.visuals;
        v.panel_fill = BG;
        v.window_fill = BG;
        v.extreme_bg_color = FIELD;
        v.override_text_color = None;
        v.widgets.noninteractive.fg_stroke = Stroke::new(1.0, TEXT);
        v.widgets.noninteractive.bg_stroke = Stroke::new(1.0, LINE);
        v.widgets.inactive.fg_stroke = Stroke::new(1.0, TEXT);
        v.widgets.inactive.weak_bg_fill = Color32::from_rgb(0x33, 0x37, 0x40);
        v.widgets.inactive.bg_fill = Color32::from_rgb(0x33, 0x37, 0x40);
        v.widgets.inactive.bg_stroke = Stroke::new(1.0, LINE);
        v.widgets.hovered.weak_bg_fill = Color32::from_rgb(0x40, 0x45, 0x50);
        v.widgets.hovered.bg_fill = Color32::from_rgb(0x40, 0x45, 0x50);
        v.selection.bg_fill = ACCENT.gamma_multiply(0.55);
        v.selection.stroke = Stroke::new(1.0, ACCENT);
        v.hyperlink_color = ACCENT;
    });
}

/// A framed block with a small title.
pub fn section<R>(ui: &mut Ui, title: &str, add: impl FnOnce(&mut Ui) -> R) -> R {
    egui::Frame::new()
        .fill(PANEL)
        .corner_radius(CornerRadius::same(6))
        .inner_margin(Margin::symmetric(10, 8))
        .show(ui, |ui| {
            ui.set_width(ui.available_width());
            if !title.is_empty() {
                ui.label(RichText::new(title).size(SMALL).color(WEAK).strong());
            }
            add(ui)
        })
        .inner
}

/// A round light: lit in `color`, or dark.
pub fn light(ui: &mut Ui, on: bool, color: Color32, diameter: f32) -> Response {
    let (rect, resp) = ui.allocate_exact_size(Vec2::splat(diameter), Sense::hover());
    paint_light(ui.painter(), rect.center(), diameter / 2.0, on, color);
    resp
}

/// Paints a light of radius `r` at `c`.
fn paint_light(painter: &Painter, c: Pos2, r: f32, on: bool, color: Color32) {
    if on {
        painter.circle_filled(c, r + 2.0, color.gamma_multiply(0.25));
        painter.circle_filled(c, r, color);
    } else {
        painter.circle_filled(c, r, Color32::from_rgb(0x30, 0x33, 0x3a));
        painter.circle_stroke(c, r, Stroke::new(1.0, Color32::from_rgb(0x48, 0x4d, 0x57)));
    }
}

/// A status in words after a light of its tone: the text wraps to the width left, its lines
/// after the light, so a long state (a busy port, an OS error, a host that does not resolve)
/// never runs past the window.
pub fn status_line(ui: &mut Ui, cell: &Cell, strong: bool) -> Response {
    ui.horizontal_top(|ui| {
        // The light sits on the middle of the first line of text.
        let h = ui.text_style_height(&TextStyle::Body);
        let (rect, _) = ui.allocate_exact_size(Vec2::new(10.0, h), Sense::hover());
        paint_light(
            ui.painter(),
            rect.center(),
            5.0,
            true,
            tone_color(cell.tone),
        );
        let text = if strong {
            rich(cell).strong()
        } else {
            rich(cell)
        };
        ui.add(Label::new(text).wrap())
    })
    .inner
}

/// A text field bound to a setting. The caller has just run [`Field::sync`]. Returns what to
/// apply, if anything. A field whose text is rejected gets a red frame; the words go where the
/// caller shows [`field_errors`].
pub fn text_field(
    ui: &mut Ui,
    id: &str,
    field: &mut Field,
    width: f32,
    hint: &str,
    monospace: bool,
    check: impl Fn(&str) -> Result<String, String>,
) -> Commit {
    let id = ui.make_persistent_id(id);
    let has_error = field.error.is_some();
    let resp = ui
        .scope(|ui| {
            if has_error {
                let v = ui.visuals_mut();
                v.widgets.inactive.bg_stroke = Stroke::new(1.5, BAD);
                v.widgets.hovered.bg_stroke = Stroke::new(1.5, BAD);
                v.selection.stroke = Stroke::new(1.5, BAD);
            }
            let mut edit = TextEdit::singleline(&mut field.text)
                .id(id)
                .desired_width(width)
                .hint_text(RichText::new(hint).color(WEAK.gamma_multiply(0.8)));
            if monospace {
                edit = edit.font(TextStyle::Monospace);
            }
            ui.add(edit)
        })
        .inner;
    if resp.changed() {
        field.edited(&check);
    }
    if resp.lost_focus() {
        field.done(&check)
    } else {
        Commit::None
    }
}

/// Whether the text field `id` has the keyboard focus (so [`Field::sync`] leaves it alone).
pub fn focused(ui: &Ui, id: &str) -> bool {
    let id = ui.make_persistent_id(id);
    ui.memory(|m| m.has_focus(id))
}

/// The errors of some fields, one line each: `Port: a port is a number from 1 to 65535 (still
/// using 47800)`.
pub fn field_errors(ui: &mut Ui, fields: &[(&str, &Field)]) {
    for (label, f) in fields {
        if let Some(e) = &f.error {
            let still = if f.in_force().is_empty() {
                String::new()
            } else {
                format!(" (still using {})", f.in_force())
            };
            ui.label(
                RichText::new(format!("{label}: {e}{still}"))
                    .color(BAD)
                    .size(SMALL),
            );
        }
    }
}

/// Paints one line of text inside `rect`, aligned left or right, cut with "…" if too long.
pub fn paint_cell(
    painter: &Painter,
    rect: Rect,
    text: &str,
    color: Color32,
    font: FontId,
    right: bool,
) -> Rect {
    let mut job = LayoutJob::simple_singleline(text.to_string(), font, color);
    job.wrap = TextWrapping::truncate_at_width(rect.width());
    let galley = painter.layout_job(job);
    let size = galley.size();
    let (anchor, x) = if right {
        (Align2::RIGHT_CENTER, rect.right())
    } else {
        (Align2::LEFT_CENTER, rect.left())
    };
    let r = anchor.anchor_size(Pos2::new(x, rect.center().y), size);
    painter.galley(r.min, galley, color);
    r
}
