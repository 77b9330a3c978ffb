//! A small CLAP host for the hosted tests, on `clack-host`: it loads the plugin library that
//! `cargo test` builds (`target/<profile>/deps/libudp_midi.so`), instantiates a plugin by its
//! CLAP id, loads a saved state through the CLAP state extension, activates it and runs
//! `process()` blocks with MIDI in and out, in the test-side [`MidiMsg`] form.
//!
//! How nice-plug's CLAP wrapper maps events (read from its source, `wrapper/clap/wrapper.rs`
//! for input and `wrapper/clap/context.rs` for output), and therefore how the harness sends
//! and reads them:
//!
//! | [`MidiMsg`] | CLAP event, both directions |
//! |---|---|
//! | `NoteOn`, `NoteOff` | `CLAP_EVENT_NOTE_ON` / `CLAP_EVENT_NOTE_OFF` (velocity `f64`, note id) |
//! | `PolyPressure` | `CLAP_EVENT_NOTE_EXPRESSION` with `CLAP_NOTE_EXPRESSION_PRESSURE` |
//! | `Cc`, `ChannelPressure`, `PitchBend`, `ProgramChange` | `CLAP_EVENT_MIDI` (3 bytes) |
//! | `SysEx` | `CLAP_EVENT_MIDI_SYSEX` |
//!
//! nice-plug keeps velocities and pressures as `f32`: compare them with [`MidiMsg::approx_eq`].
//! The plugin's output SysEx buffer only lives during its `try_push` call, so the harness
//! decodes every output event inside `try_push` (its own [`OutputEventBuffer`]), never later.
//!
//! The host runs everything on the calling thread: it is the main thread and the audio thread
//! at once, which is how the tests drive several plugins in lockstep.
//!
//! - [`midi`]: [`MidiMsg`] and comparing timed lists of them;
//! - [`state`]: the plugins' saved state (nice-plug's JSON) for a test's settings;
//! - [`host`]: [`ClapPlugin`], one plugin instance in the host;
//! - [`pacing`]: real-time pacing, timing tests one at a time, child processes, free ports,
//!   and what the process holds (threads, UDP sockets).

// Loaded by path from `tests/hosted.rs`, this file's modules resolve next to it: named by path.
#[path = "clap_harness/host.rs"]
mod host;
#[path = "clap_harness/midi.rs"]
mod midi;
#[path = "clap_harness/pacing.rs"]
mod pacing;
#[path = "clap_harness/state.rs"]
mod state;

pub use host::{load_library, plugin_library, ClapPlugin};
pub use midi::{compare_timed, MidiMsg};
pub use pacing::*;
pub use state::*;

/// CLAP id of the Sender.
pub const SENDER_ID: &str = "org.udp-midi.sender";
/// CLAP id of the Receiver.
pub const RECEIVER_ID: &str = "org.udp-midi.receiver";
/// Sample rate every test runs at.
pub const SAMPLE_RATE: f64 = 48_000.0;
/// Block size every test runs at.
pub const BLOCK: u32 = 512;
