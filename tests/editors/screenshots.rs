//! Screenshots of both editors with the made-up three-player session, rendered on the CPU.
//!
//! Each test renders a few frames (egui sizes some things from the previous frame), rasterizes
//! the last one at 2 pixels per point, and checks what a reader would: the window's size, that
//! every player and every headline is there, that no text is cut off, and that the picture is
//! not blank. Nothing is compared pixel by pixel, so a new font hinting or egui version does
//! not break the build. `UPDATE_SCREENSHOTS=1 cargo test --test editors screenshots` rewrites
//! the PNGs in `docs/`.

use crate::raster::{Canvas, Textures};
use std::path::PathBuf;
use std::sync::Arc;
use udp_midi::editor::headless::{clipped_texts, texts, Headless};
use udp_midi::editor::{demo, receiver, sender, widgets, ReceiverEditor, SenderEditor};
use udp_midi::status::{Commands, Published};
use udp_midi::{ReceiverParams, SenderParams};

/// Pixels per point of the screenshots (a high-density screen: crisp when shown at half size).
const PPP: f32 = 2.0;
/// Frames run before the one that is kept.
const FRAMES: usize = 4;

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

/// Renders frames of `draw`, rasterizes the last one, saves it as `name` (in `docs/` if
/// `in_docs` and asked to); returns the last frame's texts, the texts cut off, and the image.
fn shoot(
    name: &str,
    in_docs: bool,
    size: egui::Vec2,
    mut draw: impl FnMut(&mut Headless, usize) -> egui::FullOutput,
) -> (Vec<String>, Vec<String>, Canvas) {
    let mut h = Headless::new(size, PPP);
    let mut last = None;
    for i in 0..FRAMES {
        last = Some(draw(&mut h, i));
    }
    let mut textures = Textures::default();
    textures.apply(h.take_textures());
    let mut out = last.expect("frames were run");
    let screen = egui::Rect::from_min_size(egui::Pos2::ZERO, size);
    let all = texts(&out);
    let clipped = clipped_texts(&out, screen);
    let ppp = out.pixels_per_point;
    assert_eq!(ppp, PPP);
    let prims = h.tessellate(&mut out);
    let mut canvas = Canvas::new(
        (size.x * ppp).round() as usize,
        (size.y * ppp).round() as usize,
        widgets::BG,
    );
    canvas.draw(&textures, &prims, ppp);
    let path = destination(name, in_docs);
    canvas.save_png(&path).expect("the PNG is written");
    eprintln!("wrote {}", path.display());
    (all, clipped, canvas)
}

/// Checks that an image is a picture of something: many colours, some bright text, mostly
/// dark background.
fn assert_not_blank(c: &Canvas) {
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

/// Asserts each wanted text is drawn.
fn assert_shows(all: &[String], wanted: &[&str]) {
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
    let (all, clipped, canvas) = shoot("receiver-editor.png", true, receiver::SIZE, |h, _| {
        h.frame(|ui, setter| editor.draw(ui, setter))
    });
    assert_eq!((canvas.w, canvas.h), (1440, 1040));
    assert!(clipped.is_empty(), "cut off: {clipped:?}");
    assert_shows(
        &all,
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
        ],
    );
    assert_eq!(all.iter().filter(|t| *t == "Kick").count(), 3);
    assert_not_blank(&canvas);
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
    let (all, clipped, canvas) = shoot(
        "receiver-editor-empty.png",
        false,
        receiver::SIZE,
        |h, _| h.frame(|ui, setter| editor.draw(ui, setter)),
    );
    assert!(clipped.is_empty(), "cut off: {clipped:?}");
    assert_shows(
        &all,
        &[
            "Open room",
            "unauthenticated",
            "No player yet",
            "Stopped",
            "waiting for pool.ntp.org",
        ],
    );
    assert_not_blank(&canvas);
}

#[test]
fn sender_editor_screenshot() {
    let params = Arc::new(SenderParams::default());
    params.settings.set(demo::sender_settings());
    let status = Arc::new(Published::default());
    let mut s = demo::sender_status();
    status.publish(&s);
    let mut editor = SenderEditor::new(params, status.clone());
    let (all, clipped, canvas) = shoot("sender-editor.png", true, sender::SIZE, |h, i| {
        // MIDI goes out during the last frames: the light is on in the picture.
        if i >= FRAMES - 2 {
            s.events_sent += 3;
            status.publish(&s);
        }
        h.frame(|ui, setter| editor.draw(ui, setter))
    });
    assert_eq!((canvas.w, canvas.h), (960, 720));
    assert!(clipped.is_empty(), "cut off: {clipped:?}");
    assert_shows(
        &all,
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
    assert_not_blank(&canvas);
}
