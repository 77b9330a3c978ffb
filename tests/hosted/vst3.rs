//! The VST3 build, hosted by `vst3-host` in this process: the plugin library that `cargo test`
//! builds, laid out as a `.vst3` bundle in a temporary directory, loaded class by class, its
//! parameters listed and set through the host, its state loaded through `IComponent::setState`,
//! and `process()` driven with MIDI in and out.
//!
//! - Both classes are exported, under their names and class ids, with their parameters.
//! - The Sender passes note-on and note-off through at their sample offsets; with "MIDI thru"
//!   set off through the host, it passes nothing.
//! - The Receiver, with "Align local input" set off through the host, passes its own track's
//!   notes at their offsets; with it on (the default) it delays them, spacing kept.
//! - A Sender and a Receiver, both VST3 instances, play together over loopback UDP.
//!
//! nice-plug's VST3 state is its JSON with no length prefix (`wrapper/vst3/wrapper.rs`,
//! `setState` reads the stream to its end), and `vst3-host` passes a blob without its own
//! envelope header to `setState` as it is (`plugin.rs`, `decode_state_snapshot`), so the CLAP
//! tests' JSON states load here unchanged.

use crate::clap_harness::{
    free_udp_port, load_library, plugin_library, receiver_state, sender_state, udp_port_bound,
    wait_until, Pacer, BLOCK, SAMPLE_RATE,
};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use vst3_host::discovery::get_detailed_plugin_info;
use vst3_host::{AudioBuffers, MidiChannel, MidiEvent, PluginEventData, Vst3Host};

/// The Sender's VST3 class id (`Vst3Plugin::VST3_CLASS_ID` in `src/lib.rs`).
const SENDER_CLASS: &[u8; 16] = b"udpmidi-sender01";
/// The Receiver's VST3 class id.
const RECEIVER_CLASS: &[u8; 16] = b"udpmidi-receiver";
/// The Sender's name, as hosts list it.
const SENDER_NAME: &str = "UDP MIDI Sender";
/// The Receiver's name.
const RECEIVER_NAME: &str = "UDP MIDI Receiver";
/// VST3 `ParameterInfo::kIsHidden` (`ivsteditcontroller.h`): nice-plug hides the 2080
/// parameters it adds to receive MIDI CCs, channel pressure and pitch bend (16 channels of
/// 130), which are no parameters of ours.
const PARAM_HIDDEN: u32 = 1 << 4;
/// Tolerance for velocities, which travel as `f32` and as `x / 127` from 7-bit MIDI.
const VELOCITY_TOLERANCE: f32 = 1e-6;
/// Blocks run before a Sender plays (about 0.2 s: it introduces itself to the Receiver), as in
/// the CLAP loopback tests.
const LEAD_IN_BLOCKS: u64 = 20;
/// Blocks run before a Sender plays to a Receiver over the network (1.5 s), as in the CLAP
/// loopback tests: the notes are played once the Sender has found the room code, joined, and
/// its clock exchange has converged, not while a loaded machine may still be getting it there.
const NETWORK_LEAD_IN_BLOCKS: u64 = 141;
/// Blocks the Receiver keeps running after the last note was sent (about 0.5 s).
const TAIL_BLOCKS: u64 = 47;
/// Sanity bound on a delay or latency over loopback, samples (250 ms), as in the CLAP tests.
const MAX_LATENCY: i64 = 12_000;

// ----------------------------------------------------------------------------------------------
// The bundle and the host
// ----------------------------------------------------------------------------------------------

/// A `.vst3` bundle made for one test: `<tmp>/UDP MIDI.vst3/Contents/<arch>-linux/UDP MIDI.so`,
/// a symbolic link to the library `cargo test` built. Removed when dropped.
struct Bundle {
    /// The temporary directory that holds the bundle.
    dir: PathBuf,
    /// The bundle directory, `<dir>/UDP MIDI.vst3`.
    path: PathBuf,
}

impl Bundle {
    /// Lays out a fresh bundle. The library is first loaded through its CLAP entry, which keeps
    /// it loaded for the whole test process (see `clap_harness::entry`): the dynamic loader maps
    /// a file once whatever path names it, so every VST3 module `vst3-host` opens and closes
    /// is that same copy, as it is for the CLAP tests running alongside.
    fn new() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        load_library();
        let dir = std::env::temp_dir().join(format!(
            "udp-midi-vst3-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("UDP MIDI.vst3");
        // The VST3 bundle layout for Linux: `Contents/<architecture>-linux/<name>.so`.
        let bin = path
            .join("Contents")
            .join(format!("{}-linux", std::env::consts::ARCH));
        std::fs::create_dir_all(&bin)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", bin.display()));
        let so = bin.join("UDP MIDI.so");
        std::os::unix::fs::symlink(plugin_library(), &so)
            .unwrap_or_else(|e| panic!("cannot link {}: {e}", so.display()));
        Self { dir, path }
    }
}

impl Drop for Bundle {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A class id as `vst3-host` spells it on Linux: the 16 bytes in order, in upper-case hex
/// (`internal/utils.rs`, `format_class_uid`; the COM byte order applies on Windows only).
fn class_hex(id: &[u8; 16]) -> String {
    id.iter().map(|b| format!("{b:02X}")).collect()
}

/// An in-process host at the tests' sample rate and block size.
fn host() -> Vst3Host {
    Vst3Host::builder()
        .sample_rate(SAMPLE_RATE)
        .block_size(BLOCK as usize)
        .with_process_isolation(false)
        .build()
        .expect("cannot build the VST3 host")
}

/// One plugin instance of the bundle, with the calls the tests make.
struct Vst3Plugin {
    /// The instance.
    plugin: vst3_host::Plugin,
    /// Stereo in and out, one block.
    audio: AudioBuffers,
}

impl Vst3Plugin {
    /// Instantiates class `class` of `bundle`, loads `state_json` (nice-plug's JSON) through
    /// `setState` if given, and starts processing.
    fn load(
        host: &mut Vst3Host,
        bundle: &Bundle,
        class: &[u8; 16],
        state_json: Option<&str>,
    ) -> Self {
        let mut plugin = host
            .load_plugin_class(&bundle.path, &class_hex(class))
            .unwrap_or_else(|e| panic!("cannot load class {}: {e}", class_hex(class)));
        if let Some(json) = state_json {
            plugin
                .load_state(json.as_bytes())
                .unwrap_or_else(|e| panic!("{} refused its state {json}: {e}", plugin.info().name));
        }
        plugin
            .start_processing()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", plugin.info().name));
        Self {
            plugin,
            audio: AudioBuffers::new(2, 2, BLOCK as usize, SAMPLE_RATE),
        }
    }

    /// The parameter named `name`, which must exist.
    fn param_id(&self, name: &str) -> u32 {
        self.plugin
            .find_parameter(name)
            .unwrap_or_else(|e| {
                panic!("{} has no parameter {name:?}: {e}", self.plugin.info().name)
            })
            .id
    }

    /// The plugin's state, saved through `getState`, as nice-plug's JSON.
    fn saved_state(&self) -> serde_json::Value {
        let blob = self.plugin.save_state().expect("getState");
        // vst3-host wraps the component's stream in its own envelope: 16 bytes of magic, then
        // little-endian u32 version, component length and controller length (`plugin.rs`,
        // `encode_state_snapshot`).
        assert!(
            blob.starts_with(b"VST3HOST_STATE"),
            "unknown state envelope"
        );
        let len = u32::from_le_bytes(blob[20..24].try_into().expect("4 bytes")) as usize;
        serde_json::from_slice(&blob[28..28 + len]).expect("the component state is JSON")
    }

    /// One block with `input` notes (sample offset, note); returns the notes it output.
    fn process(&mut self, input: &[(u32, Note)]) -> Vec<(u32, Note)> {
        for (offset, note) in input {
            assert!(*offset < BLOCK, "offset {offset} outside a block");
            self.plugin
                .send_midi_event_at(note.to_midi(), *offset as i32)
                .expect("send_midi_event_at");
        }
        self.plugin
            .process_audio(&mut self.audio)
            .unwrap_or_else(|e| panic!("{} process() failed: {e}", self.plugin.info().name));
        self.plugin
            .take_output_events()
            .into_iter()
            .map(|ev| {
                let offset = u32::try_from(ev.sample_offset).expect("non-negative offset");
                let note = Note::from_event(&ev.data)
                    .unwrap_or_else(|| panic!("unexpected output event {ev:?}"));
                (offset, note)
            })
            .collect()
    }
}

impl Drop for Vst3Plugin {
    fn drop(&mut self) {
        let _ = self.plugin.stop_processing();
    }
}

// ----------------------------------------------------------------------------------------------
// Notes
// ----------------------------------------------------------------------------------------------

/// A note-on or note-off as the tests send and read it. `channel` is `0..16`, `velocity` the
/// 7-bit MIDI value (the host sends `velocity / 127`).
#[derive(Clone, Copy, Debug, PartialEq)]
struct Note {
    /// Note-on, or note-off.
    on: bool,
    /// MIDI channel, `0..16`.
    channel: u8,
    /// Key, `0..128`.
    key: u8,
    /// Velocity as sent, `0..128`; read back as `x / 127`.
    velocity: f32,
}

impl Note {
    /// A note-on.
    fn on(channel: u8, key: u8, velocity: u8) -> Self {
        Self {
            on: true,
            channel,
            key,
            velocity: velocity as f32,
        }
    }

    /// A note-off.
    fn off(channel: u8, key: u8, velocity: u8) -> Self {
        Self {
            on: false,
            ..Self::on(channel, key, velocity)
        }
    }

    /// As `vst3-host` sends it.
    fn to_midi(self) -> MidiEvent {
        let channel = MidiChannel::from_index(self.channel).expect("channel 0..16");
        let velocity = self.velocity as u8;
        if self.on {
            MidiEvent::NoteOn {
                channel,
                note: self.key,
                velocity,
            }
        } else {
            MidiEvent::NoteOff {
                channel,
                note: self.key,
                velocity,
            }
        }
    }

    /// From a VST3 output event; `None` for anything but a note-on or note-off. The velocity
    /// comes back in `0..=127`.
    fn from_event(data: &PluginEventData) -> Option<Self> {
        let (on, channel, pitch, velocity) = match *data {
            PluginEventData::NoteOn {
                channel,
                pitch,
                velocity,
                ..
            } => (true, channel, pitch, velocity),
            PluginEventData::NoteOff {
                channel,
                pitch,
                velocity,
                ..
            } => (false, channel, pitch, velocity),
            _ => return None,
        };
        Some(Self {
            on,
            channel: u8::try_from(channel).ok()?,
            key: u8::try_from(pitch).ok()?,
            velocity: velocity * 127.0,
        })
    }

    /// Same note, velocities equal within `f32` precision.
    fn matches(&self, other: &Note) -> bool {
        self.on == other.on
            && self.channel == other.channel
            && self.key == other.key
            && (self.velocity - other.velocity).abs() <= VELOCITY_TOLERANCE * 127.0
    }
}

/// Asserts that `got` holds the notes of `expected` at the same offsets, in order.
fn assert_same_notes(what: &str, expected: &[(u32, Note)], got: &[(u32, Note)]) {
    let same = expected.len() == got.len()
        && expected
            .iter()
            .zip(got)
            .all(|(e, g)| e.0 == g.0 && e.1.matches(&g.1));
    assert!(same, "{what}: expected {expected:?}\n got {got:?}");
}

/// A short performance at absolute sample times from block `first_block` on: chords on one
/// sample, notes on the first and the last sample of a block, overlaps, two channels, every
/// note released.
fn performance(first_block: u64) -> Vec<(u64, Note)> {
    let b = |k: u64, offset: u64| (first_block + k) * BLOCK as u64 + offset;
    vec![
        (b(0, 0), Note::on(0, 60, 100)),
        (b(0, 7), Note::on(0, 64, 90)),
        (b(0, 7), Note::on(0, 67, 80)),
        (b(1, 100), Note::off(0, 60, 0)),
        (b(1, 301), Note::on(9, 36, 127)),
        (b(2, 511), Note::off(0, 64, 64)),
        (b(3, 0), Note::off(9, 36, 0)),
        (b(3, 250), Note::off(0, 67, 1)),
        (b(5, 42), Note::on(0, 72, 1)),
        (b(7, 480), Note::off(0, 72, 100)),
    ]
}

/// The events of block `block` of `perf`, as (offset, note).
fn block_of(perf: &[(u64, Note)], block: u64) -> Vec<(u32, Note)> {
    let lo = block * BLOCK as u64;
    perf.iter()
        .filter(|(t, _)| (lo..lo + BLOCK as u64).contains(t))
        .map(|(t, n)| ((t - lo) as u32, *n))
        .collect()
}

/// Checks that `got` holds the notes of `sent`, in order, each at least `min_latency` and at
/// most [`MAX_LATENCY`] samples later, the spacing between consecutive notes changed by at most
/// `max_spacing_error` samples. Returns the latencies.
fn assert_delayed(
    what: &str,
    sent: &[(u64, Note)],
    got: &[(u64, Note)],
    min_latency: i64,
    max_spacing_error: i64,
) -> Vec<i64> {
    let same = sent.len() == got.len() && sent.iter().zip(got).all(|(s, g)| s.1.matches(&g.1));
    assert!(same, "{what}: sent {sent:?}\n received {got:?}");
    let latency: Vec<i64> = sent
        .iter()
        .zip(got)
        .map(|(s, g)| g.0 as i64 - s.0 as i64)
        .collect();
    let spacing_error = latency
        .windows(2)
        .map(|w| (w[1] - w[0]).abs())
        .max()
        .unwrap_or(0);
    println!("{what}: latencies {latency:?} samples, spacing error at most {spacing_error}");
    for (i, l) in latency.iter().enumerate() {
        assert!(
            (min_latency..=MAX_LATENCY).contains(l),
            "{what}: note {i} came out {l} samples after it was sent, outside \
             {min_latency}..={MAX_LATENCY}"
        );
    }
    assert!(
        spacing_error <= max_spacing_error,
        "{what}: the spacing between notes changed by up to {spacing_error} samples (limit \
         {max_spacing_error}): latencies {latency:?}"
    );
    latency
}

// ----------------------------------------------------------------------------------------------
// Tests
// ----------------------------------------------------------------------------------------------

/// The bundle's factory lists both plugins, by name and class id, and each loads with a MIDI
/// input and output and exactly its own parameters.
#[test]
fn vst3_bundle_exports_both_plugins_with_their_parameters() {
    let bundle = Bundle::new();
    let info = get_detailed_plugin_info(&bundle.path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", bundle.path.display()));
    assert_eq!(
        info.factory.vendor, "udp-midi",
        "factory {:?}",
        info.factory
    );
    let mut audio_classes: Vec<(String, String)> = info
        .classes
        .iter()
        .filter(|c| c.category == "Audio Module Class")
        .map(|c| (c.name.clone(), c.class_id.clone()))
        .collect();
    audio_classes.sort();
    assert_eq!(
        audio_classes,
        vec![
            (RECEIVER_NAME.to_owned(), class_hex(RECEIVER_CLASS)),
            (SENDER_NAME.to_owned(), class_hex(SENDER_CLASS)),
        ],
        "audio classes of the bundle: {:?}",
        info.classes
    );

    let mut host = host();
    let cases: [(&[u8; 16], &str, &[&str]); 2] = [
        (SENDER_CLASS, SENDER_NAME, &["MIDI thru"]),
        (
            RECEIVER_CLASS,
            RECEIVER_NAME,
            &[
                "Default delay",
                "Delay mode",
                "Align local input",
                "Silence timeout",
            ],
        ),
    ];
    for (class, name, params) in cases {
        let plugin = host
            .load_plugin_class(&bundle.path, &class_hex(class))
            .unwrap_or_else(|e| panic!("cannot load {name}: {e}"));
        let info = plugin.info();
        assert_eq!(info.name, name);
        assert!(
            info.has_midi_input && info.has_midi_output,
            "{name} has no MIDI input or output: {info:?}"
        );
        let all = plugin.get_parameters().expect("parameters");
        let visible: Vec<&str> = all
            .iter()
            .filter(|p| p.flags & PARAM_HIDDEN == 0)
            .map(|p| p.name.as_str())
            .collect();
        println!("{name}: {} parameters, visible {visible:?}", all.len());
        assert_eq!(visible, params, "{name}'s parameters");
    }
}

/// The Sender with "MIDI thru" on (its default) outputs every note at the sample offset it
/// came in at; set off through the host, it outputs none.
#[test]
fn vst3_sender_passes_notes_thru_at_their_offsets() {
    let bundle = Bundle::new();
    let mut host = host();
    // Sending to a port nobody listens on: only the thru path is under test.
    let state = sender_state("127.0.0.1", free_udp_port(), "vst3 thru", None);
    let mut tx = Vst3Plugin::load(&mut host, &bundle, SENDER_CLASS, Some(&state));
    let thru = tx.param_id("MIDI thru");
    assert_eq!(
        tx.plugin.get_parameter(thru).expect("thru"),
        1.0,
        "thru is on by default"
    );

    let perf = performance(0);
    for b in 0..8 {
        let input = block_of(&perf, b);
        let got = tx.process(&input);
        assert_same_notes(&format!("Sender thru, block {b}"), &input, &got);
    }

    tx.plugin.set_parameter(thru, 0.0).expect("set MIDI thru");
    for b in 0..8 {
        let got = tx.process(&block_of(&perf, b));
        assert!(got.is_empty(), "thru is off, yet block {b} output {got:?}");
    }
    assert_eq!(
        tx.saved_state()["params"]["thru"]["bool"],
        false,
        "the host's change did not reach the Sender's state"
    );
}

/// The Receiver with "Align local input" set off through the host passes its own track's notes
/// at their sample offsets, in the block they came in.
#[test]
fn vst3_receiver_passes_its_track_with_align_local_off() {
    let bundle = Bundle::new();
    let mut host = host();
    let state = receiver_state(free_udp_port(), None);
    let mut rx = Vst3Plugin::load(&mut host, &bundle, RECEIVER_CLASS, Some(&state));
    let align = rx.param_id("Align local input");
    assert_eq!(
        rx.plugin.get_parameter(align).expect("align"),
        1.0,
        "align is on by default"
    );
    rx.plugin
        .set_parameter(align, 0.0)
        .expect("set Align local input");
    let first = rx.process(&[]);
    assert!(first.is_empty(), "an idle Receiver output {first:?}");
    assert_eq!(
        rx.saved_state()["params"]["align_local"]["bool"],
        false,
        "the host's change did not reach the Receiver's state"
    );

    let perf = performance(0);
    for b in 0..8 {
        let input = block_of(&perf, b);
        let got = rx.process(&input);
        assert_same_notes(&format!("Receiver's own track, block {b}"), &input, &got);
    }
}

/// The Receiver with "Align local input" on (its default), at real-time pace: its own track's
/// notes come out in order, later by at least the playout delay, with their spacing kept within
/// a block (the CLAP tests' criterion; every note came out exactly 240 samples late in the runs
/// made while writing this test).
#[test]
fn vst3_receiver_delays_its_track_with_align_local_on() {
    let bundle = Bundle::new();
    let mut host = host();
    let state = receiver_state(free_udp_port(), None);
    let mut rx = Vst3Plugin::load(&mut host, &bundle, RECEIVER_CLASS, Some(&state));
    let perf = performance(LEAD_IN_BLOCKS);
    let blocks = LEAD_IN_BLOCKS + 8 + TAIL_BLOCKS;
    let pacer = Pacer::new(SAMPLE_RATE, BLOCK);
    let mut got = Vec::new();
    for b in 0..blocks {
        pacer.wait_for_block(b);
        for (offset, note) in rx.process(&block_of(&perf, b)) {
            got.push((b * BLOCK as u64 + offset as u64, note));
        }
    }
    // "Default delay" is 5 ms (240 samples): the playout delay is at least that, less one
    // sample for rounding a time to a sample offset.
    let latency = assert_delayed(
        "Receiver's own track, aligned",
        &perf,
        &got,
        239,
        BLOCK as i64,
    );
    println!(
        "own track delayed by {:.2} ms",
        latency[0] as f64 * 1000.0 / SAMPLE_RATE
    );
}

/// A Sender and a Receiver, both VST3 instances, over loopback UDP at real-time pace: the
/// Receiver plays the Sender's notes in order with their spacing kept within a block, and the
/// Sender passes them through at their offsets. The Sender has no room code: it reads the
/// Receiver's from the per-user room file, as a Sender with default settings does.
#[test]
fn vst3_sender_to_receiver_over_loopback() {
    let _realtime = crate::clap_harness::realtime();
    let bundle = Bundle::new();
    let mut host = host();
    let port = free_udp_port();
    let mut rx = Vst3Plugin::load(
        &mut host,
        &bundle,
        RECEIVER_CLASS,
        Some(&receiver_state(port, Some(10.0))),
    );
    assert!(
        wait_until(Duration::from_secs(2), || udp_port_bound(port)),
        "the Receiver did not bind UDP port {port} within 2 s of activation"
    );
    let state = sender_state("127.0.0.1", port, "vst3 loopback", None);
    let mut tx = Vst3Plugin::load(&mut host, &bundle, SENDER_CLASS, Some(&state));

    let perf = performance(NETWORK_LEAD_IN_BLOCKS);
    let blocks = NETWORK_LEAD_IN_BLOCKS + 8 + TAIL_BLOCKS;
    let pacer = Pacer::new(SAMPLE_RATE, BLOCK);
    let mut got = Vec::new();
    for b in 0..blocks {
        pacer.wait_for_block(b);
        let input = block_of(&perf, b);
        let thru = tx.process(&input);
        assert_same_notes(&format!("Sender thru, block {b}"), &input, &thru);
        for (offset, note) in rx.process(&[]) {
            got.push((b * BLOCK as u64 + offset as u64, note));
        }
    }
    assert_delayed(
        "Receiver output vs Sender input",
        &perf,
        &got,
        0,
        BLOCK as i64,
    );
}
