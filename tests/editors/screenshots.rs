//! Screenshots of both editors with the made-up three-player session, rendered on the CPU, and
//! the driver every picture test uses ([`Driver`]).
//!
//! Each test runs a few frames (egui sizes some things from the previous frame), checks the last
//! one's layout as a reader would see it ([`assert_layout`]: no text cut off, no text over
//! another, nothing outside the window), rasterizes it at 2 pixels per point, and checks that the
//! picture holds what it should and is not blank. Nothing is compared pixel by pixel, so a new
//! font hinting or egui version does not break the build. The pictures go to a temporary folder
//! (the path is printed); `UPDATE_SCREENSHOTS=1 cargo test --test editors screenshots` rewrites
//! the ones shown in `docs/`.

use crate::raster::{Canvas, Textures};
use egui::{FullOutput, Key, Pos2, Rect, Ui};
use nice_plug::prelude::ParamSetter;
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use udp_midi::bridge::SenderShared;
use udp_midi::editor::headless::{
    clipped_texts, cut_shapes, find_text, overlapping_texts, texts, Headless,
};
use udp_midi::editor::{demo, receiver, sender, widgets, ReceiverEditor, SenderEditor};
use udp_midi::status::{Commands, Published};
use udp_midi::{ReceiverParams, SenderParams};

/// Pixels per point of the screenshots (a high-density screen: crisp when shown at half size).
const PPP: f32 = 2.0;
/// Frames run before the one that is kept.
const FRAMES: usize = 4;
/// How far two texts' line boxes may overlap, or a shape pass its clip rectangle, points: the
/// line boxes of tightly stacked rows touch, and strokes and anti-aliasing reach a little past
/// an edge. Anything that can be seen overlapping is several points.
const TOLERANCE: f32 = 1.0;

/// Where a screenshot goes: `docs/` when asked to update them (for the ones shown there), a
/// temporary folder otherwise.
fn destination(name: &str, in_docs: bool) -> PathBuf {
    if in_docs && std::env::var_os("UPDATE_SCREENSHOTS").is_some_and(|v| v != "0") {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("docs")
            .join(name)
    } else {
        let dir = std::env::temp_dir().join(format!("udp-midi-screenshots-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temporary folder");
        dir.join(name)
    }
}

/// What [`assert_layout`] looks at: the texts cut off, the pairs of texts over each other, and
/// the shapes outside their clip rectangle or the window.
type Layout = (Vec<String>, Vec<(String, String)>, Vec<String>);

/// Asserts that a frame reads well: no text is cut off by its clip rectangle or the window, no
/// text is painted over another, and no shape at all lies outside its clip rectangle or the
/// window (so nothing needs scrolling either).
fn assert_layout(what: &str, (clipped, over, cut): Layout) {
    assert!(clipped.is_empty(), "{what}: texts cut off: {clipped:?}");
    assert!(
        over.is_empty(),
        "{what}: texts painted over each other: {over:?}"
    );
    assert!(
        cut.is_empty(),
        "{what}: shapes outside the window or cut: {cut:#?}"
    );
}

/// What a screenshot test gets back.
pub struct Shot {
    /// Every text of the kept frame.
    pub texts: Vec<String>,
    /// The picture.
    pub canvas: Canvas,
}

/// What draws one frame of an editor.
type DrawFn<'a> = dyn FnMut(&mut Ui, &ParamSetter) + 'a;

/// An editor in a windowless context, driven frame by frame like a person at a window would.
pub struct Driver<'a> {
    /// The context.
    pub h: Headless,
    /// Draws one frame of the editor.
    draw: Box<DrawFn<'a>>,
    /// The output of the last frame run.
    last: Option<FullOutput>,
}

impl<'a> Driver<'a> {
    /// A window of `size` points that draws with `draw`.
    pub fn new(size: egui::Vec2, draw: impl FnMut(&mut Ui, &ParamSetter) + 'a) -> Self {
        Self {
            h: Headless::new(size, PPP),
            draw: Box::new(draw),
            last: None,
        }
    }

    /// Runs `n` frames; returns the last one's output.
    pub fn frames(&mut self, n: usize) -> &FullOutput {
        for _ in 0..n {
            let draw = &mut self.draw;
            self.last = Some(self.h.frame(|ui, setter| draw(ui, setter)));
        }
        self.last.as_ref().expect("at least one frame")
    }

    /// Clicks the text field showing exactly `shown`, erases it, types `typed` and presses
    /// Enter, as someone correcting a setting would.
    pub fn retype(&mut self, shown: &str, typed: &str) {
        let at = find_text(self.frames(1), shown)
            .unwrap_or_else(|| panic!("{shown:?} is not on screen"))
            .center();
        self.h.click(at);
        self.frames(1);
        self.h.release();
        self.frames(1);
        self.h.key(Key::End);
        for _ in 0..shown.chars().count() + 2 {
            self.h.key(Key::Backspace);
        }
        self.h.type_text(typed);
        self.frames(1);
        self.h.key(Key::Enter);
        self.frames(2);
    }

    /// Runs [`FRAMES`] more frames, rasterizes the last one, saves it as `name` (in `docs/` if
    /// `in_docs` and asked to), and checks its layout ([`assert_layout`]).
    pub fn shoot(mut self, name: &str, in_docs: bool) -> Shot {
        self.frames(FRAMES);
        let mut out = self.last.take().expect("frames were run");
        let size = self.h.size;
        let texts = texts(&out);
        let screen = Rect::from_min_size(Pos2::ZERO, size);
        let layout = (
            clipped_texts(&out, screen),
            overlapping_texts(&out, screen, TOLERANCE),
            cut_shapes(&out, screen, TOLERANCE),
        );
        let mut textures = Textures::default();
        textures.apply(self.h.take_textures());
        let ppp = out.pixels_per_point;
        assert_eq!(ppp, PPP);
        let prims = self.h.tessellate(&mut out);
        let mut canvas = Canvas::new(
            (size.x * ppp).round() as usize,
            (size.y * ppp).round() as usize,
            widgets::BG,
        );
        canvas.draw(&textures, &prims, ppp);
        let path = destination(name, in_docs);
        canvas.save_png(&path).expect("the PNG is written");
        eprintln!("wrote {}", path.display());
        // Checked once the picture is written, so that a failure can be looked at.
        assert_layout(name, layout);
        Shot { texts, canvas }
    }
}

/// Checks that an image is a picture of something: many colours, some bright text, mostly
/// dark background.
pub fn assert_not_blank(c: &Canvas) {
    let px = c.rgba8();
    let mut colours = std::collections::HashSet::new();
    let mut bright = 0usize;
    for p in px.chunks_exact(4) {
        colours.insert([p[0], p[1], p[2]]);
        let lum = 0.2126 * f32::from(p[0]) + 0.7152 * f32::from(p[1]) + 0.0722 * f32::from(p[2]);
        if lum > 170.0 {
            bright += 1;
        }
    }
    let share = bright as f64 / (c.w * c.h) as f64;
    assert!(colours.len() > 200, "only {} colours", colours.len());
    assert!((0.005..0.25).contains(&share), "bright share {share}");
}

/// Asserts each wanted text is drawn (as a part of some text).
pub fn assert_shows(all: &[String], wanted: &[&str]) {
    for w in wanted {
        assert!(
            all.iter().any(|t| t.contains(w)),
            "{w:?} is not on screen; texts: {all:?}"
        );
    }
}

#[test]
fn receiver_editor_screenshot() {
    let params = Arc::new(ReceiverParams::default());
    params.settings.set(demo::receiver_settings());
    let status = Arc::new(Published::default());
    status.publish(&demo::receiver_status());
    let mut editor = ReceiverEditor::new(params, status, Arc::new(Commands::default()));
    let shot = Driver::new(receiver::SIZE, |ui, setter| editor.draw(ui, setter))
        .shoot("receiver-editor.png", true);
    assert_eq!((shot.canvas.w, shot.canvas.h), (1440, 1120));
    assert_shows(
        &shot.texts,
        &[
            "Ana (Lisbon)",
            "Ben (Berlin)",
            "Chloé (Montréal)",
            "slowest",
            "130.6 ms",
            "Listening on UDP port 47800",
            "7QF2-M9KD-XW3C-T0ZB",
            "All notes off",
            "REJECTED DATAGRAMS",
            "duplicate",
            "NTP",
            "\u{2212}60 s",
            "\u{2212}30 s",
        ],
    );
    assert_eq!(shot.texts.iter().filter(|t| *t == "Kick").count(), 3);
    assert_not_blank(&shot.canvas);
}

#[test]
fn receiver_editor_open_room_and_no_players() {
    let params = Arc::new(ReceiverParams::default());
    params.settings.set(udp_midi::settings::ReceiverSettings {
        open_room: true,
        ..demo::receiver_settings()
    });
    let status = Arc::new(Published::default());
    let mut editor = ReceiverEditor::new(params, status, Arc::new(Commands::default()));
    let shot = Driver::new(receiver::SIZE, |ui, setter| editor.draw(ui, setter))
        .shoot("receiver-editor-empty.png", false);
    assert_shows(
        &shot.texts,
        &[
            "Open room",
            "unauthenticated",
            "No player yet",
            "Stopped",
            "waiting for pool.ntp.org",
        ],
    );
    assert_not_blank(&shot.canvas);
}

#[test]
fn sender_editor_screenshot() {
    let params = Arc::new(SenderParams::default());
    params.settings.set(demo::sender_settings());
    let status = Arc::new(Published::default());
    status.publish(&demo::sender_status());
    let shared = Arc::new(SenderShared::default());
    let mut editor = SenderEditor::new(params, status, shared.clone());
    let mut d = Driver::new(sender::SIZE, |ui, setter| editor.draw(ui, setter));
    d.frames(2);
    // MIDI is being played: the light is on in the picture.
    shared.events_queued.fetch_add(3, Relaxed);
    let shot = d.shoot("sender-editor.png", true);
    assert!(editor.midi_lit(), "the MIDI light is on");
    assert_eq!((shot.canvas.w, shot.canvas.h), (960, 880));
    assert_shows(
        &shot.texts,
        &[
            "studio.example.org",
            "47800",
            "7QF2-M9KD-XW3C-T0ZB",
            "Ana (Lisbon)",
            "Connected to 203.0.113.7:47800",
            "9.8 ms",
            "+2.4 ms ±0.3 ms",
            "good, direct exchange",
            "MIDI thru",
        ],
    );
    assert_not_blank(&shot.canvas);
}
