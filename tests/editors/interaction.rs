//! Using the editors as a person would, headless: clicks and typing go in as egui events, and
//! the tests look at what reached the network thread (commands, settings) and the host
//! (parameter changes).

use egui::{FullOutput, Key, Pos2};
use nice_plug::prelude::{Param, ParamPtr};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;
use udp_midi::bridge::SenderShared;
use udp_midi::editor::headless::{find_text, Headless, ParamChange};
use udp_midi::editor::view::Activity;
use udp_midi::editor::{demo, receiver, sender, ReceiverEditor, SenderEditor, REFRESH};
use udp_midi::proto::room::RoomCode;
use udp_midi::status::{Command, Commands, LinkState, Published};
use udp_midi::{ReceiverParams, SenderParams};

/// A Receiver editor over the demo session, with its handles.
struct Rx {
    /// Parameters and settings, as the plugin shares them.
    params: Arc<ReceiverParams>,
    /// The command queue the network thread would drain.
    commands: Arc<Commands>,
    /// The editor.
    editor: ReceiverEditor,
    /// The windowless context.
    h: Headless,
}

impl Rx {
    fn new() -> Self {
        let params = Arc::new(ReceiverParams::default());
        params.settings.set(demo::receiver_settings());
        let status = Arc::new(Published::default());
        status.publish(&demo::receiver_status());
        let commands = Arc::new(Commands::default());
        let editor = ReceiverEditor::new(params.clone(), status, commands.clone());
        let mut rx = Self {
            params,
            commands,
            editor,
            h: Headless::new(receiver::SIZE, 1.0),
        };
        rx.frames(3);
        rx
    }

    /// Runs `n` frames; returns the last one's output.
    fn frames(&mut self, n: usize) -> FullOutput {
        let mut out = None;
        for _ in 0..n {
            let e = &mut self.editor;
            out = Some(self.h.frame(|ui, setter| e.draw(ui, setter)));
        }
        out.expect("at least one frame")
    }

    /// Clicks the centre of the text `text`; returns the output of the release frame.
    fn click(&mut self, text: &str) -> FullOutput {
        self.click_frames(text).1
    }

    /// Clicks the centre of the text `text`; returns the outputs of the press frame and of the
    /// release frame.
    fn click_frames(&mut self, text: &str) -> (FullOutput, FullOutput) {
        let out = self.frames(1);
        let at = find_text(&out, text)
            .unwrap_or_else(|| panic!("{text:?} is not on screen"))
            .center();
        self.h.click(at);
        let pressed = self.frames(1);
        self.h.release();
        (pressed, self.frames(1))
    }

    /// Clicks at `at`; returns the output of the release frame.
    fn click_at(&mut self, at: Pos2) -> FullOutput {
        self.h.click(at);
        self.frames(1);
        self.h.release();
        self.frames(1)
    }

    fn commands(&self) -> Vec<Command> {
        let mut v = Vec::new();
        self.commands.drain_into(&mut v);
        v
    }
}

#[test]
fn panic_and_kick_reach_the_network_thread() {
    let mut rx = Rx::new();
    rx.click("All notes off");
    assert_eq!(rx.commands(), vec![Command::Panic]);

    // The kick buttons are in slot order; the third is Chloé's (slot 2).
    let out = rx.frames(1);
    let mut kicks: Vec<_> = Vec::new();
    for s in &out.shapes {
        collect_kicks(&s.shape, &mut kicks);
    }
    assert_eq!(kicks.len(), 3);
    kicks.sort_by(|a, b| a.y.total_cmp(&b.y));
    rx.click_at(kicks[2]);
    assert_eq!(rx.commands(), vec![Command::Kick(2)]);
    assert!(rx.commands().is_empty(), "one click, one command");
}

fn collect_kicks(shape: &egui::Shape, out: &mut Vec<Pos2>) {
    match shape {
        egui::Shape::Text(t) if t.galley.text() == "Kick" => {
            out.push(t.galley.rect.translate(t.pos.to_vec2()).center());
        }
        egui::Shape::Vec(v) => v.iter().for_each(|s| collect_kicks(s, out)),
        _ => {}
    }
}

#[test]
fn copy_puts_the_room_code_on_the_clipboard() {
    let mut rx = Rx::new();
    // egui reports a click on the release frame, but look at the press frame too: the code is
    // copied once, whichever frame does it.
    let (pressed, released) = rx.click_frames("Copy");
    let copied: Vec<_> = [&pressed, &released]
        .iter()
        .flat_map(|out| out.platform_output.commands.iter())
        .filter_map(|c| match c {
            egui::OutputCommand::CopyText(t) => Some(t.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(copied, vec!["7QF2-M9KD-XW3C-T0ZB".to_string()]);
    let out = rx.frames(1);
    assert!(find_text(&out, "Copied").is_some(), "says it copied");
}

#[test]
fn a_new_room_code_needs_confirming() {
    let mut rx = Rx::new();
    let before = rx.params.settings.get().room;
    rx.click("New code");
    assert_eq!(rx.params.settings.get().room, before, "not yet");
    rx.click("Cancel");
    assert_eq!(rx.params.settings.get().room, before);
    rx.click("New code");
    rx.click("Make a new code");
    let after = rx.params.settings.get().room;
    assert_ne!(after, before);
    assert!(RoomCode::parse(&after).is_ok());
    // The field shows the new code.
    let out = rx.frames(2);
    assert!(find_text(&out, &after).is_some());
}

#[test]
fn mode_and_align_local_are_set_through_the_host() {
    let mut rx = Rx::new();
    rx.h.recorder.take();
    rx.click("Fixed");
    let mode: ParamPtr = rx.params.mode.as_ptr();
    let changes = rx.h.recorder.take();
    assert_eq!(
        changes,
        vec![
            ParamChange::Begin(mode),
            ParamChange::Set(mode, 1.0),
            ParamChange::End(mode)
        ]
    );
    rx.click("Align local input");
    let local = rx.params.align_local.as_ptr();
    assert_eq!(
        rx.h.recorder.take(),
        vec![
            ParamChange::Begin(local),
            ParamChange::Set(local, 0.0),
            ParamChange::End(local)
        ]
    );
}

/// Clicks a text field showing `shown`, erases it, types `typed`, presses Enter.
fn retype(rx: &mut Rx, shown: &str, typed: &str) -> FullOutput {
    rx.click(shown);
    rx.h.key(Key::End);
    for _ in 0..shown.chars().count() + 2 {
        rx.h.key(Key::Backspace);
    }
    rx.h.type_text(typed);
    rx.frames(1);
    rx.h.key(Key::Enter);
    rx.frames(2)
}

#[test]
fn a_bad_port_is_refused_in_words_and_a_good_one_applied() {
    let mut rx = Rx::new();
    let out = retype(&mut rx, "47800", "70000");
    assert_eq!(rx.params.settings.get().port, 47800, "the old port stays");
    assert!(
        find_text(
            &out,
            "Port: a port is a number from 1 to 65535 (still using 47800)"
        )
        .is_some(),
        "the error is shown in words"
    );
    let g = rx.params.settings.generation();
    retype(&mut rx, "70000", "47801");
    assert_eq!(rx.params.settings.get().port, 47801);
    assert_ne!(
        rx.params.settings.generation(),
        g,
        "the network thread will notice"
    );
}

#[test]
fn closing_and_reopening_changes_nothing() {
    let mut rx = Rx::new();
    let settings = rx.params.settings.get();
    let g = rx.params.settings.generation();
    // A new editor over the same handles, as after closing and reopening the window.
    let status = Arc::new(Published::default());
    status.publish(&demo::receiver_status());
    rx.editor = ReceiverEditor::new(rx.params.clone(), status, rx.commands.clone());
    rx.h = Headless::new(receiver::SIZE, 1.0);
    let out = rx.frames(3);
    assert!(find_text(&out, "7QF2-M9KD-XW3C-T0ZB").is_some());
    assert_eq!(rx.params.settings.get(), settings);
    assert_eq!(rx.params.settings.generation(), g, "no setting was written");
    assert!(rx.commands().is_empty());
    assert!(rx.h.recorder.take().is_empty(), "no parameter was touched");
}

#[test]
fn sender_fields_validate_and_apply() {
    let params = Arc::new(SenderParams::default());
    params.settings.set(demo::sender_settings());
    let status = Arc::new(Published::default());
    let mut s = demo::sender_status();
    s.link = LinkState::Refused;
    status.publish(&s);
    let mut editor = SenderEditor::new(params.clone(), status, Arc::default());
    let mut h = Headless::new(sender::SIZE, 1.0);
    let mut frame = |h: &mut Headless| h.frame(|ui, setter| editor.draw(ui, setter));
    for _ in 0..3 {
        frame(&mut h);
    }
    let out = frame(&mut h);
    assert!(find_text(&out, "Refused: wrong room code").is_some());

    // A host with a port in it is refused, in words.
    let at = find_text(&out, "studio.example.org").unwrap().center();
    h.click(at);
    frame(&mut h);
    h.release();
    frame(&mut h);
    h.key(Key::End);
    h.type_text(":47800");
    frame(&mut h);
    h.key(Key::Enter);
    frame(&mut h);
    let out = frame(&mut h);
    assert_eq!(params.settings.get().host, "studio.example.org");
    assert!(find_text(
        &out,
        "Host: put the port in the Port field, not after the address (still using \
         studio.example.org)"
    )
    .is_some());

    // The thru switch is a parameter.
    let at = find_text(&out, "MIDI thru").unwrap().center();
    h.recorder.take();
    h.click(at);
    frame(&mut h);
    h.release();
    frame(&mut h);
    let thru = params.thru.as_ptr();
    assert_eq!(
        h.recorder.take(),
        vec![
            ParamChange::Begin(thru),
            ParamChange::Set(thru, 0.0),
            ParamChange::End(thru)
        ]
    );
}

/// The Sender's MIDI light follows the audio thread's count of queued events frame by frame,
/// with no new snapshot from the network thread, and asks for the frame that turns it off.
#[test]
fn midi_light_follows_the_queued_events_every_frame() {
    let params = Arc::new(SenderParams::default());
    params.settings.set(demo::sender_settings());
    let status = Arc::new(Published::default());
    status.publish(&demo::sender_status());
    let generation = status.generation();
    let shared = Arc::new(SenderShared::default());
    let mut editor = SenderEditor::new(params, status.clone(), shared.clone());
    let mut h = Headless::new(sender::SIZE, 1.0);
    // Runs a frame; returns the delay it asked for before the next one.
    let frame = |h: &mut Headless, e: &mut SenderEditor| {
        let out = h.frame(|ui, setter| e.draw(ui, setter));
        out.viewport_output
            .get(&egui::ViewportId::ROOT)
            .expect("the root viewport")
            .repaint_delay
    };
    for _ in 0..3 {
        frame(&mut h, &mut editor);
    }
    assert!(!editor.midi_lit(), "dark before any MIDI");

    shared.events_queued.fetch_add(1, Relaxed);
    frame(&mut h, &mut editor);
    assert!(editor.midi_lit(), "lit on the very next frame");
    // Frames come 1/60 s apart here: dark once HOLD_S has passed with nothing new, and each lit
    // frame asks for the next one by the time the light must go off.
    let mut left = Activity::HOLD_S - 1.0 / 60.0;
    let mut lit_frames = 1;
    loop {
        let delay = frame(&mut h, &mut editor);
        if !editor.midi_lit() {
            break;
        }
        lit_frames += 1;
        assert!(
            delay <= REFRESH.min(Duration::from_secs_f64(left.max(0.0)) + Duration::from_millis(1)),
            "asked for the next frame in {delay:?} with {left:.3} s of light left"
        );
        left -= 1.0 / 60.0;
        assert!(lit_frames < 20, "the light stays on");
    }
    let expected = (Activity::HOLD_S * 60.0).round() as i32;
    assert!(
        (lit_frames - expected).abs() <= 1,
        "lit for {lit_frames} frames, not about {expected}"
    );

    // MIDI going on keeps it lit.
    for _ in 0..30 {
        shared.events_queued.fetch_add(2, Relaxed);
        frame(&mut h, &mut editor);
        assert!(editor.midi_lit());
    }
    assert_eq!(
        status.generation(),
        generation,
        "no snapshot was published meanwhile: the light read the live count"
    );
}
