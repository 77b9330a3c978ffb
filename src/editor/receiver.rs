//! The Receiver's editor: the room (code, port, NTP, open room), the delay and its parts, the
//! players with their latency, the history graph, and what was rejected.
//!
//! [`ReceiverUi::ui`] draws one frame from a status snapshot. It needs no plugin host: the
//! window calls it with the host's `ParamSetter`, the tests and the benchmark with a headless
//! one (`super::headless`, with the `testkit` feature).

use super::fields::{self, Commit, Field};
use super::format;
use super::graph;
use super::view::{self, PeerRow, Tone};
use super::widgets::{
    self, field_errors, paint_cell, peer_color, rich, section, status_line, text_field, tone_color,
    BAD, SMALL, TEXT, WARN, WEAK,
};
use crate::proto::room::RoomCode;
use crate::settings::{ReceiverSettings, Settings};
use crate::status::{Command, Commands, ReceiverStatus};
use crate::{AlignMode, ReceiverParams};
use egui::{Align, Button, FontId, Label, Layout, Rect, RichText, Sense, Ui, Vec2};
use nice_plug::prelude::{Param, ParamSetter};
use nice_plug_egui::widgets::ParamSlider;

/// Window size, points.
pub const SIZE: Vec2 = Vec2::new(720.0, 560.0);

/// Smallest and largest height of the history graph, points: it takes the height the rest of
/// the editor leaves, and the page scrolls when even the smallest does not fit.
pub const GRAPH_H: (f32, f32) = (110.0, 180.0);

/// How long "Copied" shows after the copy button, s.
const COPIED_S: f64 = 1.5;

/// Table columns: (header, width in points, right-aligned).
const COLUMNS: [(&str, f32, bool); 10] = [
    ("Player", 152.0, false),
    ("Clock offset", 104.0, false),
    ("p50 ms", 46.0, true),
    ("p99 ms", 46.0, true),
    ("Jitter ms", 54.0, true),
    ("Loss %", 42.0, true),
    ("Late %", 42.0, true),
    ("Ev/s", 32.0, true),
    ("Seen", 44.0, true),
    ("", 42.0, true),
];
/// Space between table columns, points.
const COLUMN_GAP: f32 = 6.0;
/// Height of a two-line table row, points.
const ROW_H: f32 = 34.0;
/// Rows shown before the table scrolls.
const ROWS_SHOWN: f32 = 4.0;

/// Editor state that lives on the GUI thread only: the text fields being edited and a few
/// moments to remember. Dropping it (closing the window) changes nothing in the session.
#[derive(Debug, Default)]
pub struct ReceiverUi {
    /// The room code field.
    room: Field,
    /// The listening port field.
    port: Field,
    /// The NTP server field.
    ntp: Field,
    /// "New code" was pressed: asking to confirm, since it locks everyone out.
    confirm_new_code: bool,
    /// When the code was last copied (editor time, s), to say "Copied".
    copied_at: Option<f64>,
}

/// Changes one thing in the settings (GUI thread; the network thread notices).
fn update(settings: &Settings<ReceiverSettings>, f: impl FnOnce(&mut ReceiverSettings)) {
    let mut v = settings.get();
    f(&mut v);
    settings.set(v);
}

/// Sets a parameter as one gesture.
fn set_param<P: Param>(setter: &ParamSetter, p: &P, v: P::Plain) {
    setter.begin_set_parameter(p);
    setter.set_parameter(p, v);
    setter.end_set_parameter(p);
}

impl ReceiverUi {
    /// Draws one frame in a page `height` points tall: the graph takes what the rest leaves,
    /// within [`GRAPH_H`].
    pub fn ui(
        &mut self,
        ui: &mut Ui,
        height: f32,
        status: &ReceiverStatus,
        params: &ReceiverParams,
        setter: &ParamSetter,
        commands: &Commands,
    ) {
        let top = ui.cursor().top();
        let settings = params.settings.get();
        let rows = view::peer_rows(status, view::stale_after(params.timeout_ns()));
        self.header(ui, commands);
        self.room(ui, status, &params.settings, &settings);
        ui.add_space(2.0);
        delay(ui, status, params, setter);
        ui.add_space(2.0);
        players(ui, status, &rows, commands);
        ui.add_space(2.0);
        let left = height - (ui.cursor().top() - top);
        bottom(ui, status, &rows, left.clamp(GRAPH_H.0, GRAPH_H.1));
    }

    /// Title and the panic button.
    fn header(&mut self, ui: &mut Ui, commands: &Commands) {
        ui.horizontal(|ui| {
            ui.label(RichText::new("UDP MIDI Receiver").heading().color(TEXT));
            ui.with_layout(Layout::right_to_left(Align::Center), |ui| {
                let b = ui
                    .add(Button::new(RichText::new("All notes off").color(BAD)))
                    .on_hover_text("Ends every note of every player now (panic).");
                if b.clicked() {
                    commands.push(Command::Panic);
                }
            });
        });
    }

    /// Room code, port, listening state, NTP, open room.
    fn room(
        &mut self,
        ui: &mut Ui,
        status: &ReceiverStatus,
        store: &Settings<ReceiverSettings>,
        settings: &ReceiverSettings,
    ) {
        let now = ui.input(|i| i.time);
        self.room.sync(&settings.room, widgets::focused(ui, "room"));
        self.port
            .sync(&settings.port.to_string(), widgets::focused(ui, "port"));
        self.ntp
            .sync(&settings.ntp_server, widgets::focused(ui, "ntp"));
        section(ui, "", |ui| {
            ui.horizontal(|ui| {
                ui.label("Room code");
                let check = |s: &str| fields::room(s, false);
                if let Commit::Apply(v) = text_field(
                    ui,
                    "room",
                    &mut self.room,
                    172.0,
                    "XXXX-XXXX-XXXX-XXXX",
                    true,
                    check,
                ) {
                    update(store, |s| s.room = v);
                }
                let copied = self.copied_at.is_some_and(|t| now - t < COPIED_S);
                let copy = ui
                    .add_enabled(
                        !settings.room.is_empty(),
                        Button::new(if copied { "Copied" } else { "Copy" }),
                    )
                    .on_hover_text("Copy the room code, to send it to the players.");
                if copy.clicked() {
                    ui.ctx().copy_text(settings.room.clone());
                    self.copied_at = Some(now);
                }
                if ui
                    .button("New code")
                    .on_hover_text("Draw a new random room code.")
                    .clicked()
                {
                    self.confirm_new_code = true;
                }
                ui.with_layout(Layout::right_to_left(Align::Center), |ui| {
                    let mut open = settings.open_room;
                    let r = ui.checkbox(&mut open, "Open room").on_hover_text(
                        "Let any Sender in, with or without the code. Nothing is then \
                             authenticated or encrypted.",
                    );
                    if r.changed() {
                        update(store, |s| s.open_room = open);
                    }
                });
            });
            if self.confirm_new_code {
                ui.horizontal(|ui| {
                    ui.label(
                        RichText::new("Players must type the new code to get back in.").color(WARN),
                    );
                    if ui.button("Make a new code").clicked() {
                        let code = RoomCode::random().to_string();
                        update(store, |s| s.room = code);
                        self.confirm_new_code = false;
                    }
                    if ui.button("Cancel").clicked() {
                        self.confirm_new_code = false;
                    }
                });
            }
            if settings.open_room {
                ui.label(
                    RichText::new(
                        "Open room: anyone who can reach this port can play into this track, \
                         unauthenticated and unencrypted.",
                    )
                    .color(WARN),
                );
            }
            ui.horizontal(|ui| {
                ui.label("Port");
                let check = |s: &str| fields::port(s).map(|p| p.to_string());
                if let Commit::Apply(v) =
                    text_field(ui, "port", &mut self.port, 64.0, "47800", false, check)
                {
                    if let Ok(p) = v.parse() {
                        update(store, |s| s.port = p);
                    }
                }
                ui.add_space(8.0);
                ui.label("NTP");
                if let Commit::Apply(v) = text_field(
                    ui,
                    "ntp",
                    &mut self.ntp,
                    148.0,
                    "off",
                    false,
                    fields::ntp_server,
                ) {
                    update(store, |s| s.ntp_server = v);
                }
                let n = view::ntp(status.ntp, &settings.ntp_server);
                ui.add(Label::new(rich(&n).size(SMALL)).wrap());
            });
            // The socket's state has a row of its own: a busy port or an OS error takes words,
            // wrapped to the window.
            let l = view::listen(&status.listen, settings.port);
            status_line(ui, &l, false);
            field_errors(
                ui,
                &[
                    ("Room code", &self.room),
                    ("Port", &self.port),
                    ("NTP server", &self.ntp),
                ],
            );
        });
    }
}

/// The delay in use and its controls.
fn delay(ui: &mut Ui, status: &ReceiverStatus, params: &ReceiverParams, setter: &ParamSetter) {
    let d = view::DelayView::new(&status.delay, &status.peers);
    section(ui, "", |ui| {
        ui.horizontal(|ui| {
            ui.label(RichText::new("Delay").color(WEAK));
            ui.label(RichText::new(&d.total).size(20.0).strong().color(TEXT))
                .on_hover_text(
                    "Every event plays this long after it was played, so all players line up.",
                );
            let parts =
                ui.add(Label::new(RichText::new(format!("= {}", d.parts)).color(WEAK)).wrap());
            if let Some(who) = &d.slowest_name {
                parts.on_hover_text(format!("The slowest player now: {who}."));
            }
        });
        // What the delay is doing, when it says anything, on a line of its own (wrapped).
        let mut notes: Vec<&str> = Vec::new();
        if let Some(m) = &d.moving {
            notes.push(m);
        }
        if status.offline {
            notes.push("offline render: events pass through unaligned");
        }
        if !notes.is_empty() {
            ui.add(Label::new(RichText::new(notes.join("; ")).color(WARN).size(SMALL)).wrap())
                .on_hover_text(
                    "The delay rises at once when a player gets slower and comes down only in \
                     silences. An offline render (a bounce) runs faster than real time: there \
                     is no wall clock to align to, so remote events play as they come.",
                );
        }
        ui.horizontal(|ui| {
            ui.label("Mode");
            let mode = params.mode.value();
            for (m, label, hint) in [
                (
                    AlignMode::Slowest,
                    "Align to slowest",
                    "Delay = the slowest player's p99 latency + Default delay.",
                ),
                (
                    AlignMode::Fixed,
                    "Fixed",
                    "Delay = Default delay, whatever the players' latency.",
                ),
            ] {
                if ui
                    .selectable_label(mode == m, label)
                    .on_hover_text(hint)
                    .clicked()
                    && mode != m
                {
                    set_param(setter, &params.mode, m);
                }
            }
            ui.add_space(8.0);
            ui.label("Default delay");
            ui.add(ParamSlider::for_param(&params.delay, setter).with_width(120.0))
                .on_hover_text(
                    "The safety margin added to the slowest player's latency (the whole delay \
                     in Fixed mode). Double-click to reset, shift-drag for fine steps.",
                );
            ui.add_space(8.0);
            let mut local = params.align_local.value();
            if ui
                .checkbox(&mut local, "Align local input")
                .on_hover_text(
                    "Delay this track's own MIDI by the same amount, so the host plays in time \
                     with the remote players.",
                )
                .changed()
            {
                set_param(setter, &params.align_local, local);
            }
        });
    });
}

/// The players table, with what was received from them in the title line.
fn players(ui: &mut Ui, status: &ReceiverStatus, rows: &[PeerRow], commands: &Commands) {
    section(ui, "", |ui| {
        ui.horizontal(|ui| {
            let title = format!("PLAYERS ({})", rows.len());
            ui.label(RichText::new(title).size(SMALL).color(WEAK).strong());
            ui.with_layout(Layout::right_to_left(Align::Center), |ui| {
                let dropped = view::events_dropped(status);
                if let Some((total, why)) = &dropped {
                    ui.label(
                        RichText::new(format!("{total} dropped"))
                            .size(SMALL)
                            .color(tone_color(Tone::Warn)),
                    )
                    .on_hover_text(why.as_str());
                }
                let counts = format!(
                    "{} datagrams accepted · {} events, {} late{}",
                    format::count(status.datagrams),
                    format::count(status.events),
                    format::count(status.late),
                    if dropped.is_some() { ", " } else { "" }
                );
                ui.label(RichText::new(counts).size(SMALL).color(WEAK));
            });
        });
        if rows.is_empty() {
            ui.label(
                RichText::new(
                    "No player yet. Players join with the room code and this machine's public \
                     address and port.",
                )
                .color(WEAK),
            );
            return;
        }
        table_header(ui);
        egui::ScrollArea::vertical()
            .max_height(ROW_H * ROWS_SHOWN)
            .auto_shrink([false, true])
            .show(ui, |ui| {
                for r in rows {
                    table_row(ui, r, commands);
                }
            });
    });
}

/// The x ranges of the table's columns, from `left`.
fn column_rects(left: f32, top: f32, h: f32) -> impl Iterator<Item = Rect> {
    let mut x = left;
    COLUMNS.iter().map(move |&(_, w, _)| {
        let r = Rect::from_min_size(egui::pos2(x, top), Vec2::new(w, h));
        x += w + COLUMN_GAP;
        r
    })
}

/// Total width of the table, points.
fn table_width() -> f32 {
    COLUMNS.iter().map(|c| c.1).sum::<f32>() + COLUMN_GAP * (COLUMNS.len() - 1) as f32
}

/// The header line of the table.
fn table_header(ui: &mut Ui) {
    let (rect, _) = ui.allocate_exact_size(Vec2::new(table_width(), 16.0), Sense::hover());
    let painter = ui.painter();
    let font = FontId::proportional(SMALL);
    for (r, &(name, _, right)) in
        column_rects(rect.left() + 10.0, rect.top(), rect.height()).zip(COLUMNS.iter())
    {
        paint_cell(painter, r, name, WEAK, font.clone(), right);
    }
}

/// One player's row: name and address, clock, latency, loss, activity, kick.
fn table_row(ui: &mut Ui, r: &PeerRow, commands: &Commands) {
    let (rect, resp) =
        ui.allocate_exact_size(Vec2::new(table_width() + 10.0, ROW_H), Sense::hover());
    let painter = ui.painter().clone();
    if r.slowest {
        painter.rect_filled(rect, 4, WARN.gamma_multiply(0.13));
    } else if resp.hovered() {
        painter.rect_filled(rect, 4, TEXT.gamma_multiply(0.04));
    }
    let color = peer_color(r.slot);
    painter.rect_filled(
        Rect::from_min_size(rect.min + Vec2::new(2.0, 5.0), Vec2::new(3.0, ROW_H - 10.0)),
        1,
        color,
    );
    let body = FontId::proportional(widgets::BODY);
    let small = FontId::proportional(SMALL);
    let cols: Vec<Rect> = column_rects(rect.left() + 10.0, rect.top(), rect.height()).collect();
    let top = |c: Rect| {
        Rect::from_min_max(
            c.min + Vec2::new(0.0, 2.0),
            egui::pos2(c.max.x, c.center().y),
        )
    };
    let bottom = |c: Rect| {
        Rect::from_min_max(
            egui::pos2(c.min.x, c.center().y),
            c.max - Vec2::new(0.0, 2.0),
        )
    };
    let name_color = if r.stale { WEAK } else { TEXT };
    let name_rect = top(cols[0]);
    let drawn = paint_cell(
        &painter,
        name_rect,
        &r.name,
        name_color,
        body.clone(),
        false,
    );
    if r.slowest {
        // A tag after the name, when it fits (the row's tint says it anyway).
        let tag = Rect::from_min_max(
            egui::pos2(drawn.right() + 6.0, name_rect.top()),
            name_rect.max,
        );
        let w = painter
            .layout_no_wrap("slowest".into(), small.clone(), WARN)
            .size()
            .x;
        if tag.width() >= w {
            paint_cell(&painter, tag, "slowest", WARN, small.clone(), false);
        }
    }
    paint_cell(
        &painter,
        bottom(cols[0]),
        &r.addr,
        WEAK,
        small.clone(),
        false,
    );
    paint_cell(
        &painter,
        top(cols[1]),
        &r.offset.text,
        tone_color(r.offset.tone),
        body.clone(),
        false,
    );
    paint_cell(
        &painter,
        bottom(cols[1]),
        &r.clock.text,
        tone_color(r.clock.tone),
        small.clone(),
        false,
    );
    ui.interact(
        cols[1],
        ui.scope_id().with(("clock", r.slot)),
        Sense::hover(),
    )
    .on_hover_text(&r.clock_hint);
    for (c, cell) in cols[2..9].iter().zip([
        &r.p50, &r.p99, &r.jitter, &r.loss, &r.late, &r.rate, &r.seen,
    ]) {
        paint_cell(
            &painter,
            *c,
            &cell.text,
            tone_color(cell.tone),
            body.clone(),
            true,
        );
    }
    let kick = Rect::from_center_size(cols[9].center(), Vec2::new(cols[9].width(), 22.0));
    if ui
        .put(kick, Button::new(RichText::new("Kick").size(SMALL)))
        .on_hover_text(
            "Drop this player now and end their notes. They come back if their Sender keeps \
             sending.",
        )
        .clicked()
    {
        commands.push(Command::Kick(r.slot));
    }
}

/// Rows of the rejected-datagram list that fit in a panel `h` points tall, with its title, its
/// margins and the "and N more" line.
fn rejected_rows_fitting(h: f32) -> usize {
    const TITLE_AND_MARGINS: f32 = 16.0 + 20.0;
    const ROW: f32 = SMALL + 6.0;
    (((h - TITLE_AND_MARGINS) / ROW).floor() as usize)
        .saturating_sub(1)
        .max(1)
}

/// The graph and the rejected datagrams, `h` points tall.
fn bottom(ui: &mut Ui, status: &ReceiverStatus, rows: &[PeerRow], h: f32) {
    ui.horizontal_top(|ui| {
        let lines: Vec<graph::Line> = rows
            .iter()
            .map(|r| graph::Line {
                slot: r.slot,
                bold: r.slowest,
            })
            .collect();
        let w = ui.available_width() - 200.0;
        graph::history(ui, Vec2::new(w, h), &status.history, &lines);
        ui.vertical(|ui| {
            ui.set_width(ui.available_width());
            section(ui, "REJECTED DATAGRAMS", |ui| {
                let rej = view::rejected(status);
                if rej.is_empty() {
                    ui.label(RichText::new("none").color(WEAK));
                }
                // As many reasons as the panel holds, most frequent first; the others on hover.
                let shown = if rej.len() <= rejected_rows_fitting(h) + 1 {
                    rej.len()
                } else {
                    rejected_rows_fitting(h)
                };
                egui::Grid::new("rejected")
                    .num_columns(2)
                    .spacing(Vec2::new(12.0, 2.0))
                    .show(ui, |ui| {
                        for (label, n) in &rej[..shown] {
                            ui.label(RichText::new(*label).size(SMALL));
                            ui.label(RichText::new(n).size(SMALL).color(tone_color(Tone::Warn)));
                            ui.end_row();
                        }
                    });
                if rej.len() > shown {
                    let rest: Vec<String> = rej[shown..]
                        .iter()
                        .map(|(l, n)| format!("{l}: {n}"))
                        .collect();
                    ui.label(
                        RichText::new(format!("and {} more reasons", rej.len() - shown))
                            .size(SMALL)
                            .color(WEAK),
                    )
                    .on_hover_text(rest.join("\n"));
                }
            });
        });
    });
}
