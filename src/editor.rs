//! The editors (GUI), drawn with egui through `nice-plug-egui`.
//!
//! Each editor reads the session snapshot its plugin's network thread publishes
//! ([`crate::status::Published`], lock-free) once per frame, and the Sender's also reads the
//! audio thread's live counters ([`crate::bridge::SenderShared`], atomics); it writes settings
//! ([`crate::settings::Settings`]) when a text field holds a valid new value, sets parameters
//! through the host, and sends commands (kick, panic) through a bounded queue. It never
//! touches the audio thread, and nothing in the session depends on it: closing and reopening
//! the window only rebuilds the text fields from the settings.
//!
//! - [`view`] and [`format`](mod@format): the stats-to-view rules, plain code with unit tests;
//! - [`fields`]: what typed addresses, ports, room codes and names must look like;
//! - [`widgets`] and [`graph`]: colours, small widgets, the latency history graph;
//! - [`receiver`] and [`sender`]: the two editors' frames, drawn from a snapshot;
//! - `headless` and `demo` (feature `testkit`): a windowless context and a made-up
//!   three-player session, for the screenshots, the tests and the benchmark.

pub mod fields;
pub mod format;
pub mod graph;
pub mod receiver;
pub mod sender;
pub mod view;
pub mod widgets;

// Test helpers, compiled for the tests, benchmarks and examples only (feature `testkit`, which
// `cargo test` and `cargo bench` turn on): never in the bundles.
#[cfg(any(test, feature = "testkit"))]
pub mod demo;
#[cfg(any(test, feature = "testkit"))]
pub mod headless;

use crate::bridge::SenderShared;
use crate::status::{Commands, Published, ReceiverStatus, SenderStatus};
use crate::{ReceiverParams, SenderParams};
use nice_plug::context::gui::GuiContext;
use nice_plug::editor::dpi::LogicalSize;
use nice_plug::prelude::ParamSetter;
use nice_plug_egui::{
    create_egui_editor, EguiEditor, EguiEditorState, EguiNiceSettings, Frame, NiceEguiApp,
    RepaintNotifier,
};
use std::sync::Arc;
use std::time::Duration;

/// How often an open editor redraws to show fresh numbers (the network thread publishes a
/// few times per second, [`crate::status::PUBLISH_EVERY_NS`]; the MIDI light, which reads the
/// audio thread's count every frame, wants more).
pub const REFRESH: Duration = Duration::from_millis(50);

/// Fills the window: background and margins, then `add`.
fn page(ui: &mut egui::Ui, add: impl FnOnce(&mut egui::Ui)) {
    egui::CentralPanel::no_frame()
        .frame(
            egui::Frame::new()
                .fill(widgets::BG)
                .inner_margin(egui::Margin::same(12)),
        )
        .show(ui, |ui| {
            ui.spacing_mut().item_spacing.y = 6.0;
            add(ui)
        });
}

/// [`page`], scrolling when the window is too small for what it shows. `add` gets the height
/// of the page that is seen, points.
fn scrolling_page(ui: &mut egui::Ui, add: impl FnOnce(&mut egui::Ui, f32)) {
    page(ui, |ui| {
        let seen = ui.available_height();
        egui::ScrollArea::vertical()
            .auto_shrink([false, false])
            .show(ui, |ui| add(ui, seen));
    });
}

/// The Receiver's editor as nice-plug runs it: the shared handles and the GUI-thread state.
pub struct ReceiverEditor {
    /// Parameters and settings (shared with the host and the network thread).
    params: Arc<ReceiverParams>,
    /// Snapshot published by the network thread; read once per frame (GUI thread).
    status: Arc<Published<ReceiverStatus>>,
    /// Queue of kick and panic requests to the network thread.
    commands: Arc<Commands>,
    /// Text fields and the like (GUI thread only).
    ui: receiver::ReceiverUi,
    /// The host's side of parameter changes; set when the window opens.
    gui: Option<GuiContext>,
}

impl ReceiverEditor {
    /// An editor over the plugin's shared handles.
    pub fn new(
        params: Arc<ReceiverParams>,
        status: Arc<Published<ReceiverStatus>>,
        commands: Arc<Commands>,
    ) -> Self {
        Self {
            params,
            status,
            commands,
            ui: receiver::ReceiverUi::default(),
            gui: None,
        }
    }

    /// Draws one frame from the latest snapshot.
    pub fn draw(&mut self, ui: &mut egui::Ui, setter: &ParamSetter) {
        let status = self.status.load();
        scrolling_page(ui, |ui, height| {
            self.ui
                .ui(ui, height, &status, &self.params, setter, &self.commands)
        });
        ui.ctx().request_repaint_after(REFRESH);
    }
}

impl NiceEguiApp for ReceiverEditor {
    fn build(
        &mut self,
        egui_ctx: egui::Context,
        nice_gui_ctx: GuiContext,
        frame: &mut Frame,
    ) -> Result<(), nice_plug_egui::baseview::HandlerError> {
        widgets::apply_style(&egui_ctx);
        frame.set_clear_color(widgets::BG.into());
        self.gui = Some(nice_gui_ctx);
        self.ui = receiver::ReceiverUi::default();
        Ok(())
    }

    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut Frame) {
        if let Some(gui) = self.gui.clone() {
            self.draw(ui, &gui.param_setter());
        }
    }

    fn editor_closed(&mut self) {
        self.gui = None;
    }
}

/// The Sender's editor as nice-plug runs it.
pub struct SenderEditor {
    /// Parameters and settings (shared with the host and the network thread).
    params: Arc<SenderParams>,
    /// Snapshot published by the network thread; read once per frame (GUI thread).
    status: Arc<Published<SenderStatus>>,
    /// Counters the audio and network threads keep in atomics; the editor reads the queued
    /// and dropped events every frame (GUI thread, loads only).
    shared: Arc<SenderShared>,
    /// Text fields and the MIDI light (GUI thread only).
    ui: sender::SenderUi,
    /// The host's side of parameter changes; set when the window opens.
    gui: Option<GuiContext>,
}

impl SenderEditor {
    /// An editor over the plugin's shared handles.
    pub fn new(
        params: Arc<SenderParams>,
        status: Arc<Published<SenderStatus>>,
        shared: Arc<SenderShared>,
    ) -> Self {
        Self {
            params,
            status,
            shared,
            ui: sender::SenderUi::default(),
            gui: None,
        }
    }

    /// Draws one frame from the latest snapshot and the live counters. While the MIDI light is
    /// on, the next frame comes when it must go off, if that is sooner than [`REFRESH`].
    pub fn draw(&mut self, ui: &mut egui::Ui, setter: &ParamSetter) {
        let status = self.status.load();
        scrolling_page(ui, |ui, _| {
            self.ui.ui(ui, &status, &self.shared, &self.params, setter)
        });
        let now = ui.input(|i| i.time);
        let next = self
            .ui
            .midi_lit_for(now)
            .map_or(REFRESH, |s| REFRESH.min(Duration::from_secs_f64(s)));
        ui.ctx().request_repaint_after(next);
    }

    /// Whether the MIDI light was on in the last frame drawn.
    pub fn midi_lit(&self) -> bool {
        self.ui.midi_lit()
    }
}

impl NiceEguiApp for SenderEditor {
    fn build(
        &mut self,
        egui_ctx: egui::Context,
        nice_gui_ctx: GuiContext,
        frame: &mut Frame,
    ) -> Result<(), nice_plug_egui::baseview::HandlerError> {
        widgets::apply_style(&egui_ctx);
        frame.set_clear_color(widgets::BG.into());
        self.gui = Some(nice_gui_ctx);
        self.ui = sender::SenderUi::default();
        Ok(())
    }

    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut Frame) {
        if let Some(gui) = self.gui.clone() {
            self.draw(ui, &gui.param_setter());
        }
    }

    fn editor_closed(&mut self) {
        self.gui = None;
    }
}

/// Window settings for an editor of `size` titled `title`.
fn window(title: &str, size: egui::Vec2) -> (Arc<EguiEditorState>, EguiNiceSettings) {
    let state =
        EguiEditorState::from_size(LogicalSize::new(f64::from(size.x), f64::from(size.y)), 1.0);
    (state, EguiNiceSettings::new().with_tile(title))
}

/// The Receiver's editor, for `Plugin::editor`.
pub fn receiver_editor(
    params: Arc<ReceiverParams>,
    status: Arc<Published<ReceiverStatus>>,
    commands: Arc<Commands>,
) -> Option<EguiEditor<ReceiverEditor>> {
    let (state, settings) = window("UDP MIDI Receiver", receiver::SIZE);
    create_egui_editor(
        state,
        RepaintNotifier::new(),
        settings,
        ReceiverEditor::new(params, status, commands),
    )
}

/// The Sender's editor, for `Plugin::editor`.
pub fn sender_editor(
    params: Arc<SenderParams>,
    status: Arc<Published<SenderStatus>>,
    shared: Arc<SenderShared>,
) -> Option<EguiEditor<SenderEditor>> {
    let (state, settings) = window("UDP MIDI Sender", sender::SIZE);
    create_egui_editor(
        state,
        RepaintNotifier::new(),
        settings,
        SenderEditor::new(params, status, shared),
    )
}
