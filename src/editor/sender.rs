//! The Sender's editor: where it sends (host, port, room code, name, NTP server), whether the
//! Receiver answers, the round trip and the clock, and a light that blinks with the MIDI.
//!
//! [`SenderUi::ui`] draws one frame from a status snapshot and the Sender's live counters, with
//! no plugin host needed.

use super::fields::{self, Commit, Field};
use super::format::{self, UNKNOWN};
use super::view::{self, Activity};
use super::widgets::{
    self, field_errors, light, rich, section, status_line, text_field, GOOD, SMALL, TEXT, WEAK,
};
use crate::bridge::SenderShared;
use crate::proto::sender::MAX_REDUNDANCY;
use crate::settings::{SenderSettings, Settings};
use crate::status::SenderStatus;
use crate::SenderParams;
use egui::{Align, Grid, Label, Layout, RichText, Ui, Vec2};
use nice_plug::prelude::ParamSetter;
use std::sync::atomic::Ordering::Relaxed;

/// Window size, points: room for the longest state (a hint under the link, the dropped events,
/// a field's error) without scrolling; a window made smaller scrolls.
pub const SIZE: Vec2 = Vec2::new(480.0, 440.0);

/// Width of the text fields, points.
const FIELD_W: f32 = 200.0;

/// Editor state that lives on the GUI thread only. Dropping it (closing the window) changes
/// nothing in the session.
#[derive(Debug, Default)]
pub struct SenderUi {
    /// The Receiver's host field.
    host: Field,
    /// The Receiver's port field.
    port: Field,
    /// The room code field.
    room: Field,
    /// The display name field.
    name: Field,
    /// The NTP server field.
    ntp: Field,
    /// The MIDI light, fed every frame with the audio thread's count of queued events.
    activity: Activity,
}

/// Changes one thing in the settings (GUI thread; the network thread notices).
fn update(settings: &Settings<SenderSettings>, f: impl FnOnce(&mut SenderSettings)) {
    let mut v = settings.get();
    f(&mut v);
    settings.set(v);
}

impl SenderUi {
    /// Whether the MIDI light is on, as of the last frame drawn.
    pub fn midi_lit(&self) -> bool {
        self.activity.lit()
    }

    /// How long until the MIDI light must go off, s, while it is on: the next frame is due
    /// then at the latest.
    pub fn midi_lit_for(&self, now_s: f64) -> Option<f64> {
        self.activity.remaining(now_s)
    }

    /// Draws one frame. `shared` gives the audio thread's live counters: the MIDI light follows
    /// the events it queues, frame by frame, not the snapshot's count of a quarter second ago.
    pub fn ui(
        &mut self,
        ui: &mut Ui,
        status: &SenderStatus,
        shared: &SenderShared,
        params: &SenderParams,
        setter: &ParamSetter,
    ) {
        let now = ui.input(|i| i.time);
        let lit = self
            .activity
            .update(shared.events_queued.load(Relaxed), now);
        ui.horizontal(|ui| {
            ui.label(RichText::new("UDP MIDI Sender").heading().color(TEXT));
            ui.with_layout(Layout::right_to_left(Align::Center), |ui| {
                ui.label(RichText::new("MIDI").color(if lit { TEXT } else { WEAK }));
                light(ui, lit, GOOD, 12.0).on_hover_text("Blinks when MIDI is sent.");
                ui.add_space(12.0);
                let mut thru = params.thru.value();
                if ui
                    .checkbox(&mut thru, "MIDI thru")
                    .on_hover_text(
                        "Pass the MIDI on to the next plugin, so you hear your own synth.",
                    )
                    .changed()
                {
                    setter.begin_set_parameter(&params.thru);
                    setter.set_parameter(&params.thru, thru);
                    setter.end_set_parameter(&params.thru);
                }
            });
        });
        self.destination(ui, &params.settings);
        ui.add_space(2.0);
        connection(
            ui,
            status,
            shared.events_dropped.load(Relaxed),
            &params.settings.get(),
        );
    }

    /// The settings: where to send, as whom.
    fn destination(&mut self, ui: &mut Ui, store: &Settings<SenderSettings>) {
        let s = store.get();
        self.host.sync(&s.host, widgets::focused(ui, "host"));
        self.port
            .sync(&s.port.to_string(), widgets::focused(ui, "port"));
        self.room.sync(&s.room, widgets::focused(ui, "room"));
        self.name.sync(&s.name, widgets::focused(ui, "name"));
        self.ntp.sync(&s.ntp_server, widgets::focused(ui, "ntp"));
        section(ui, "SEND TO", |ui| {
            Grid::new("destination")
                .num_columns(2)
                .spacing(Vec2::new(10.0, 6.0))
                .show(ui, |ui| {
                    ui.label("Host");
                    ui.horizontal(|ui| {
                        if let Commit::Apply(v) = text_field(
                            ui,
                            "host",
                            &mut self.host,
                            FIELD_W,
                            "address or name",
                            false,
                            fields::host,
                        ) {
                            update(store, |s| s.host = v);
                        }
                        ui.label("Port");
                        let check = |t: &str| fields::port(t).map(|p| p.to_string());
                        if let Commit::Apply(v) =
                            text_field(ui, "port", &mut self.port, 64.0, "47800", false, check)
                        {
                            if let Ok(p) = v.parse() {
                                update(store, |s| s.port = p);
                            }
                        }
                    });
                    ui.end_row();
                    ui.label("Room code");
                    let check = |t: &str| fields::room(t, true);
                    if let Commit::Apply(v) = text_field(
                        ui,
                        "room",
                        &mut self.room,
                        FIELD_W,
                        "from the host (empty: this machine)",
                        true,
                        check,
                    ) {
                        update(store, |s| s.room = v);
                    }
                    ui.end_row();
                    ui.label("Your name");
                    if let Commit::Apply(v) = text_field(
                        ui,
                        "name",
                        &mut self.name,
                        FIELD_W,
                        "shown to the host",
                        false,
                        fields::name,
                    ) {
                        update(store, |s| s.name = v);
                    }
                    ui.end_row();
                    ui.label("NTP server");
                    ui.horizontal(|ui| {
                        if let Commit::Apply(v) = text_field(
                            ui,
                            "ntp",
                            &mut self.ntp,
                            FIELD_W,
                            "empty: NTP off",
                            false,
                            fields::ntp_server,
                        ) {
                            update(store, |s| s.ntp_server = v);
                        }
                        ui.label("Repeats");
                        let mut r = s.redundancy.min(MAX_REDUNDANCY as u8);
                        if ui
                            .add(egui::DragValue::new(&mut r).range(0..=MAX_REDUNDANCY as u8))
                            .on_hover_text(
                                "How many earlier batches of events every datagram carries \
                                 again: more survive more loss, at the cost of bandwidth.",
                            )
                            .changed()
                        {
                            update(store, |s| s.redundancy = r);
                        }
                    });
                    ui.end_row();
                });
            field_errors(
                ui,
                &[
                    ("Host", &self.host),
                    ("Port", &self.port),
                    ("Room code", &self.room),
                    ("Your name", &self.name),
                    ("NTP server", &self.ntp),
                ],
            );
        });
    }
}

/// The link to the Receiver, the clock, and the counters. `queue_full` is the audio thread's
/// live count of events its queue to the network thread could not take.
fn connection(ui: &mut Ui, status: &SenderStatus, queue_full: u64, settings: &SenderSettings) {
    section(ui, "CONNECTION", |ui| {
        let (head, hint) = view::link(status);
        // The headline wraps: a host that does not resolve comes with the system's words.
        status_line(ui, &head, true);
        if let Some(h) = hint {
            ui.add(Label::new(RichText::new(h).size(SMALL).color(WEAK)).wrap());
        }
        Grid::new("connection")
            .num_columns(2)
            .spacing(Vec2::new(10.0, 3.0))
            .show(ui, |ui| {
                ui.label(RichText::new("Round trip").color(WEAK));
                let rtt = status.rtt_ns.map_or_else(
                    || UNKNOWN.to_string(),
                    |r| format::ms_unit(r.min(i64::MAX as u64) as i64),
                );
                ui.label(rtt);
                ui.end_row();
                ui.label(RichText::new("Clock offset").color(WEAK));
                let (off, quality) = view::sender_clock(status);
                ui.horizontal(|ui| {
                    ui.label(off);
                    ui.label(rich(&quality).size(SMALL));
                    if status.clock != crate::status::ClockSource::None {
                        ui.label(
                            RichText::new(format!("drift {}", format::ppm(status.skew_ppm)))
                                .size(SMALL)
                                .color(WEAK),
                        );
                    }
                });
                ui.end_row();
                ui.label(RichText::new("NTP").color(WEAK));
                ui.add(Label::new(rich(&view::ntp(status.ntp, &settings.ntp_server))).wrap());
                ui.end_row();
                ui.label(RichText::new("Sent").color(WEAK));
                ui.label(format!(
                    "{} events in {} datagrams",
                    format::count(status.events_sent),
                    format::count(status.datagrams_sent)
                ));
                ui.end_row();
                if let Some(d) = view::dropped(status.events_dropped, queue_full) {
                    ui.label(RichText::new("Dropped").color(WEAK));
                    ui.add(Label::new(rich(&d)).wrap());
                    ui.end_row();
                }
            });
    });
}
