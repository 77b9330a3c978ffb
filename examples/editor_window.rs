//! Opens one of the plugins' editors in a real window, with the made-up three-player session
//! and no host: `cargo run --example editor_window -- receiver` (or `sender`). It goes through
//! the same `Editor` the host gets (baseview, OpenGL), so it shows what a DAW would. Parameter
//! changes go nowhere; settings and commands behave as in the plugin.

use nice_plug::context::gui::GuiContext;
use nice_plug::editor::EditorHandle;
use nice_plug::prelude::Editor;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;
use udp_midi::bridge::SenderShared;
use udp_midi::editor::headless::Recorder;
use udp_midi::editor::{demo, receiver_editor, sender_editor};
use udp_midi::status::{Commands, Published};
use udp_midi::{ReceiverParams, SenderParams};

/// Opens `editor` as a top-level window and waits until it is closed.
fn run<E: Editor>(editor: E) {
    let gui = GuiContext::new(Arc::new(Recorder::default()));
    let spawned = editor
        .spawn(None, false, None, gui, None)
        .unwrap_or_else(|e| panic!("cannot open the window: {e}"));
    if let Err(e) = E::Handle::run_until_closed(spawned.window) {
        eprintln!("window error: {e}");
    }
}

fn main() {
    let which = std::env::args().nth(1).unwrap_or_else(|| "receiver".into());
    match which.as_str() {
        "receiver" => {
            let params = Arc::new(ReceiverParams::default());
            params.settings.set(demo::receiver_settings());
            let status = Arc::new(Published::default());
            status.publish(&demo::receiver_status());
            let commands = Arc::new(Commands::default());
            run(receiver_editor(params, status, commands).expect("an editor"));
        }
        "sender" => {
            let params = Arc::new(SenderParams::default());
            params.settings.set(demo::sender_settings());
            let status = Arc::new(Published::default());
            let shared = Arc::new(SenderShared::default());
            let (publisher, audio) = (status.clone(), shared.clone());
            // Some MIDI is played now and then, so the light blinks, and sent.
            std::thread::spawn(move || {
                let mut s = demo::sender_status();
                loop {
                    audio.events_queued.fetch_add(2, Relaxed);
                    s.events_sent += 2;
                    s.datagrams_sent += 1;
                    publisher.publish(&s);
                    std::thread::sleep(Duration::from_millis(400));
                }
            });
            run(sender_editor(params, status, shared).expect("an editor"));
        }
        other => eprintln!("usage: editor_window [receiver|sender] (not {other:?})"),
    }
}
