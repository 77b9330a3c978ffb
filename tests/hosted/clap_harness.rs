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

use clack_extensions::state::PluginState;
use clack_host::events::event_types::{
    MidiEvent, MidiSysExEvent, NoteExpressionEvent, NoteExpressionType, NoteOffEvent, NoteOnEvent,
};
use clack_host::events::io::{OutputEventBuffer, TryPushError};
use clack_host::events::spaces::CoreEventSpace;
use clack_host::prelude::*;
use std::ffi::CString;
use std::io::Cursor;
use std::net::UdpSocket;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// CLAP id of the Sender.
pub const SENDER_ID: &str = "org.udp-midi.sender";
/// CLAP id of the Receiver.
pub const RECEIVER_ID: &str = "org.udp-midi.receiver";
/// Sample rate every test runs at.
pub const SAMPLE_RATE: f64 = 48_000.0;
/// Block size every test runs at.
pub const BLOCK: u32 = 512;
/// Tolerance for values that travel as `f32` (velocity, poly pressure).
pub const VALUE_TOLERANCE: f64 = 1e-6;

// ----------------------------------------------------------------------------------------------
// MIDI messages, test side
// ----------------------------------------------------------------------------------------------

/// One MIDI message as the tests write and read it. Channels are `0..16`, keys `0..128`;
/// `note_id` is the CLAP note id (`-1`: none). CC, pressure, bend and program values are raw
/// MIDI integers, which nice-plug round-trips exactly.
#[derive(Clone, Debug, PartialEq)]
pub enum MidiMsg {
    /// Note on, velocity in `(0, 1]`.
    NoteOn {
        channel: u8,
        key: u8,
        velocity: f64,
        note_id: i32,
    },
    /// Note off, release velocity in `[0, 1]`.
    NoteOff {
        channel: u8,
        key: u8,
        velocity: f64,
        note_id: i32,
    },
    /// Polyphonic key pressure in `[0, 1]`.
    PolyPressure {
        channel: u8,
        key: u8,
        pressure: f64,
        note_id: i32,
    },
    /// Control change, raw 7-bit value.
    Cc { channel: u8, cc: u8, value: u8 },
    /// Channel pressure, raw 7-bit value.
    ChannelPressure { channel: u8, pressure: u8 },
    /// Pitch bend, raw 14-bit value (8192 is centre).
    PitchBend { channel: u8, value: u16 },
    /// Program change.
    ProgramChange { channel: u8, program: u8 },
    /// System exclusive message, `F0 ... F7`.
    SysEx(Vec<u8>),
}

impl MidiMsg {
    /// Short name of the kind, for reports.
    pub fn kind(&self) -> &'static str {
        match self {
            MidiMsg::NoteOn { .. } => "NoteOn",
            MidiMsg::NoteOff { .. } => "NoteOff",
            MidiMsg::PolyPressure { .. } => "PolyPressure",
            MidiMsg::Cc { .. } => "CC",
            MidiMsg::ChannelPressure { .. } => "ChannelPressure",
            MidiMsg::PitchBend { .. } => "PitchBend",
            MidiMsg::ProgramChange { .. } => "ProgramChange",
            MidiMsg::SysEx(_) => "SysEx",
        }
    }

    /// MIDI channel, for channel messages.
    pub fn channel(&self) -> Option<u8> {
        match *self {
            MidiMsg::NoteOn { channel, .. }
            | MidiMsg::NoteOff { channel, .. }
            | MidiMsg::PolyPressure { channel, .. }
            | MidiMsg::Cc { channel, .. }
            | MidiMsg::ChannelPressure { channel, .. }
            | MidiMsg::PitchBend { channel, .. }
            | MidiMsg::ProgramChange { channel, .. } => Some(channel),
            MidiMsg::SysEx(_) => None,
        }
    }

    /// Equal, with `f32` precision ([`VALUE_TOLERANCE`]) for velocities and pressures and
    /// exact equality for everything else.
    pub fn approx_eq(&self, other: &MidiMsg) -> bool {
        let close = |a: f64, b: f64| (a - b).abs() <= VALUE_TOLERANCE;
        match (self, other) {
            (
                MidiMsg::NoteOn {
                    channel: c1,
                    key: k1,
                    velocity: v1,
                    note_id: n1,
                },
                MidiMsg::NoteOn {
                    channel: c2,
                    key: k2,
                    velocity: v2,
                    note_id: n2,
                },
            )
            | (
                MidiMsg::NoteOff {
                    channel: c1,
                    key: k1,
                    velocity: v1,
                    note_id: n1,
                },
                MidiMsg::NoteOff {
                    channel: c2,
                    key: k2,
                    velocity: v2,
                    note_id: n2,
                },
            )
            | (
                MidiMsg::PolyPressure {
                    channel: c1,
                    key: k1,
                    pressure: v1,
                    note_id: n1,
                },
                MidiMsg::PolyPressure {
                    channel: c2,
                    key: k2,
                    pressure: v2,
                    note_id: n2,
                },
            ) => c1 == c2 && k1 == k2 && n1 == n2 && close(*v1, *v2),
            (a, b) => a == b,
        }
    }

    /// Decodes a 1-3 byte MIDI 1.0 channel message (what `CLAP_EVENT_MIDI` carries).
    fn from_midi_bytes(d: [u8; 3]) -> Option<MidiMsg> {
        let channel = d[0] & 0x0f;
        Some(match d[0] & 0xf0 {
            0x80 => MidiMsg::NoteOff {
                channel,
                key: d[1],
                velocity: d[2] as f64 / 127.0,
                note_id: -1,
            },
            0x90 if d[2] == 0 => MidiMsg::NoteOff {
                channel,
                key: d[1],
                velocity: 0.0,
                note_id: -1,
            },
            0x90 => MidiMsg::NoteOn {
                channel,
                key: d[1],
                velocity: d[2] as f64 / 127.0,
                note_id: -1,
            },
            0xa0 => MidiMsg::PolyPressure {
                channel,
                key: d[1],
                pressure: d[2] as f64 / 127.0,
                note_id: -1,
            },
            0xb0 => MidiMsg::Cc {
                channel,
                cc: d[1],
                value: d[2],
            },
            0xc0 => MidiMsg::ProgramChange {
                channel,
                program: d[1],
            },
            0xd0 => MidiMsg::ChannelPressure {
                channel,
                pressure: d[1],
            },
            0xe0 => MidiMsg::PitchBend {
                channel,
                value: d[1] as u16 | (d[2] as u16) << 7,
            },
            _ => return None,
        })
    }
}

/// Compares two timed event lists: same length, same offsets, and [`MidiMsg::approx_eq`]
/// messages in the same order. `Err` describes the first difference.
pub fn compare_timed(expected: &[(u32, MidiMsg)], got: &[(u32, MidiMsg)]) -> Result<(), String> {
    for (i, (e, g)) in expected.iter().zip(got).enumerate() {
        if e.0 != g.0 || !e.1.approx_eq(&g.1) {
            return Err(format!("event {i}: expected {e:?}, got {g:?}"));
        }
    }
    if expected.len() != got.len() {
        return Err(format!(
            "expected {} events, got {}: {:?}",
            expected.len(),
            got.len(),
            if got.len() > expected.len() {
                &got[expected.len()..]
            } else {
                &expected[got.len()..]
            }
        ));
    }
    Ok(())
}

// ----------------------------------------------------------------------------------------------
// Plugin state (nice-plug's JSON, through the CLAP state extension)
// ----------------------------------------------------------------------------------------------

/// nice-plug's saved state: `{"version", "params": {id: {"bool"|"f32"|"i32"|"string": v}},
/// "fields": {key: "<JSON text>"}}`. Both maps are required; parameters left out keep their
/// defaults. (nice-plug's `wrapper/state.rs`; `fields` values are JSON documents stored as
/// strings.)
pub fn plugin_state(params: serde_json::Value, fields: &[(&str, serde_json::Value)]) -> String {
    let fields: serde_json::Map<String, serde_json::Value> = fields
        .iter()
        .map(|(k, v)| (k.to_string(), serde_json::Value::String(v.to_string())))
        .collect();
    serde_json::json!({ "version": "0.1.0", "params": params, "fields": fields }).to_string()
}

/// A Sender's state: send to `host:port`, MIDI thru on or off (`None`: default), NTP off (the
/// tests must not depend on the internet; unknown keys would be ignored by older builds).
pub fn sender_state(host: &str, port: u16, name: &str, thru: Option<bool>) -> String {
    let params = match thru {
        Some(t) => serde_json::json!({ "thru": { "bool": t } }),
        None => serde_json::json!({}),
    };
    plugin_state(
        params,
        &[(
            "sender",
            serde_json::json!({ "host": host, "port": port, "name": name, "ntp_server": "" }),
        )],
    )
}

/// A Receiver's state: listen on `port`, NTP off, "Default delay" `delay_ms` (`None`: default),
/// other parameters at their defaults.
pub fn receiver_state(port: u16, delay_ms: Option<f32>) -> String {
    let params = match delay_ms {
        Some(d) => serde_json::json!({ "delay": { "f32": d } }),
        None => serde_json::json!({}),
    };
    plugin_state(
        params,
        &[(
            "receiver",
            serde_json::json!({ "port": port, "ntp_server": "" }),
        )],
    )
}

/// The room code of the tests' Receivers in a room (any valid code would do; this one is
/// fixed so that failures are reproducible).
pub const ROOM: &str = "7QF2-M9KD-XW3C-T0ZB";

/// A Sender's state with its room code given explicitly, as a Sender behind a relay needs it:
/// the local room file is only read for a loopback destination's own port, and a relay's port
/// is not the Receiver's. NTP off.
pub fn sender_state_in_room(host: &str, port: u16, name: &str, room: &str) -> String {
    plugin_state(
        serde_json::json!({}),
        &[(
            "sender",
            serde_json::json!({
                "host": host, "port": port, "name": name, "ntp_server": "", "room": room
            }),
        )],
    )
}

/// A Receiver's state in room `room` on `port`, NTP off, with these parameters (nice-plug's
/// form, e.g. `{"delay": {"f32": 10.0}, "timeout": {"f32": 1.0}}`; the others at defaults).
pub fn receiver_state_in_room(port: u16, room: &str, params: serde_json::Value) -> String {
    plugin_state(
        params,
        &[(
            "receiver",
            serde_json::json!({ "port": port, "ntp_server": "", "room": room, "open_room": false }),
        )],
    )
}

// ----------------------------------------------------------------------------------------------
// The host
// ----------------------------------------------------------------------------------------------

/// Host callbacks shared with the plugin. Restart and process requests are ignored (the tests
/// drive activation and processing themselves); callback requests are served after each call.
pub struct Shared {
    /// The plugin asked for `on_main_thread`.
    callback_requested: AtomicBool,
}

impl<'a> SharedHandler<'a> for Shared {
    fn request_restart(&self) {}

    fn request_process(&self) {}

    fn request_callback(&self) {
        self.callback_requested.store(true, Ordering::Release);
    }
}

/// The host's handler types.
pub struct TestHost;

impl HostHandlers for TestHost {
    type Shared<'a> = Shared;
    type MainThread<'a> = ();
    type AudioProcessor<'a> = ();
}

/// Path of the plugin library `cargo test` built next to this test binary.
pub fn plugin_library() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe.parent().expect("test binary has a parent directory");
    let lib = dir.join(format!(
        "{}udp_midi{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    ));
    assert!(
        lib.exists(),
        "{} does not exist: run the tests through `cargo test`, which builds it",
        lib.display()
    );
    lib
}

/// Loads the plugin library now (it stays loaded for the whole process), so that what loading
/// it does is not counted as what an instance does.
pub fn load_library() {
    entry();
}

/// The plugin library, loaded once and kept loaded for the whole test process (unloading a
/// Rust library that has started threads is not something hosts do between tests either).
fn entry() -> &'static PluginEntry {
    static ENTRY: OnceLock<PluginEntry> = OnceLock::new();
    ENTRY.get_or_init(|| {
        let path = plugin_library();
        // SAFETY: the library is this crate's own CLAP build; loading it runs its CLAP entry
        // `init`, which nice-plug implements without side effects beyond logging setup.
        unsafe { PluginEntry::load(&path) }
            .unwrap_or_else(|e| panic!("cannot load {}: {e}", path.display()))
    })
}

/// Collects a `process()` call's output events, decoding each during `try_push` (the only
/// moment a plugin's SysEx buffer is guaranteed to be alive).
#[derive(Default)]
struct Collector {
    /// MIDI output, in push order.
    midi: Vec<(u32, MidiMsg)>,
    /// Other events: (time, CLAP type id).
    other: Vec<(u32, u16)>,
}

impl OutputEventBuffer for Collector {
    fn try_push(&mut self, event: &UnknownEvent) -> Result<(), TryPushError> {
        let time = event.header().time();
        // A wildcard channel or key (-1) reads as 255, which no test sends.
        let pckn = |p: Pckn| {
            let byte = |v: i16| u8::try_from(v).unwrap_or(u8::MAX);
            (byte(p.raw_channel()), byte(p.raw_key()), p.raw_note_id())
        };
        let msg = match event.as_core_event() {
            Some(CoreEventSpace::NoteOn(e)) => {
                let (channel, key, note_id) = pckn(e.pckn());
                Some(MidiMsg::NoteOn {
                    channel,
                    key,
                    velocity: e.velocity(),
                    note_id,
                })
            }
            Some(CoreEventSpace::NoteOff(e)) => {
                let (channel, key, note_id) = pckn(e.pckn());
                Some(MidiMsg::NoteOff {
                    channel,
                    key,
                    velocity: e.velocity(),
                    note_id,
                })
            }
            Some(CoreEventSpace::NoteExpression(e))
                if e.expression_type() == Some(NoteExpressionType::Pressure) =>
            {
                let (channel, key, note_id) = pckn(e.pckn());
                Some(MidiMsg::PolyPressure {
                    channel,
                    key,
                    pressure: e.value(),
                    note_id,
                })
            }
            Some(CoreEventSpace::Midi(e)) => MidiMsg::from_midi_bytes(e.data()),
            Some(CoreEventSpace::MidiSysEx(e)) => {
                // SAFETY: the plugin's buffer is valid for the duration of this `try_push`
                // call, and it is copied before returning.
                Some(MidiMsg::SysEx(unsafe { e.data() }.to_vec()))
            }
            _ => None,
        };
        match msg {
            Some(m) => self.midi.push((time, m)),
            None => self.other.push((time, event.header().type_id())),
        }
        Ok(())
    }
}

/// Silent audio buffers for one block: two input and two output channels.
struct Audio {
    input: [Vec<f32>; 2],
    output: [Vec<f32>; 2],
    in_ports: AudioPorts,
    out_ports: AudioPorts,
}

/// One plugin instance with its processor.
pub struct ClapPlugin {
    /// The started audio processor while active. Declared before `instance` so it is gone
    /// first (`Drop` deactivates explicitly anyway).
    processor: Option<StartedPluginAudioProcessor<TestHost>>,
    /// The instance.
    instance: PluginInstance<TestHost>,
    /// Its CLAP id, for messages.
    id: String,
    /// Largest block of the current activation.
    max_block: u32,
    /// Frames processed since the last activation (the `steady_time` passed to the plugin).
    steady_time: u64,
    /// Scratch audio buffers.
    audio: Audio,
    /// Non-MIDI events of the last `process_block` (time, CLAP type id).
    pub last_other_events: Vec<(u32, u16)>,
}

impl ClapPlugin {
    /// Instantiates plugin `id` from the library and, when given, loads `state_json` (nice-plug's
    /// state document, see [`plugin_state`]) through the CLAP state extension, before any
    /// activation. Panics with a message on failure.
    pub fn load(id: &str, state_json: Option<&str>) -> Self {
        let info = HostInfo::new(
            "udp-midi hosted tests",
            "udp-midi",
            "https://example.invalid",
            "0",
        )
        .expect("host info");
        let cid = CString::new(id).expect("plugin id");
        let instance = PluginInstance::<TestHost>::new(
            |_| Shared {
                callback_requested: AtomicBool::new(false),
            },
            |_| (),
            entry(),
            &cid,
            &info,
        )
        .unwrap_or_else(|e| panic!("cannot instantiate {id}: {e}"));
        let mut plugin = Self {
            processor: None,
            instance,
            id: id.to_owned(),
            max_block: 0,
            steady_time: 0,
            audio: Audio {
                input: [Vec::new(), Vec::new()],
                output: [Vec::new(), Vec::new()],
                in_ports: AudioPorts::with_capacity(2, 1),
                out_ports: AudioPorts::with_capacity(2, 1),
            },
            last_other_events: Vec::new(),
        };
        if let Some(json) = state_json {
            plugin.load_state(json);
        }
        plugin
    }

    /// Loads nice-plug's JSON state: CLAP gives no stream length, so nice-plug expects a
    /// little-endian `u64` byte count in front of the JSON.
    pub fn load_state(&mut self, json: &str) {
        let mut bytes = (json.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(json.as_bytes());
        let handle = self.instance.plugin_handle();
        let ext = handle
            .get_extension::<PluginState>()
            .unwrap_or_else(|| panic!("{} has no CLAP state extension", self.id));
        ext.load(&handle, &mut Cursor::new(bytes))
            .unwrap_or_else(|e| panic!("{} refused its state {json}: {e}", self.id));
        self.run_main_thread_callback();
    }

    /// Saves the state and returns nice-plug's JSON (without the length prefix).
    pub fn save_state(&mut self) -> serde_json::Value {
        let handle = self.instance.plugin_handle();
        let ext = handle
            .get_extension::<PluginState>()
            .unwrap_or_else(|| panic!("{} has no CLAP state extension", self.id));
        let mut bytes = Vec::new();
        ext.save(&handle, &mut bytes)
            .unwrap_or_else(|e| panic!("{} cannot save its state: {e}", self.id));
        assert!(bytes.len() >= 8, "state shorter than its length prefix");
        let len = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
        assert_eq!(len, bytes.len() - 8, "state length prefix");
        serde_json::from_slice(&bytes[8..]).expect("state is JSON")
    }

    /// Activates at `sample_rate` with blocks of 1 to `max_block` frames and starts
    /// processing. Panics on failure.
    pub fn activate(&mut self, sample_rate: f64, max_block: u32) {
        assert!(self.processor.is_none(), "{} is already active", self.id);
        let cfg = PluginAudioConfiguration {
            sample_rate,
            min_frames_count: 1,
            max_frames_count: max_block,
        };
        let stopped = self
            .instance
            .activate(|_, _| (), cfg)
            .unwrap_or_else(|e| panic!("cannot activate {}: {e}", self.id));
        let started = stopped
            .start_processing()
            .unwrap_or_else(|e| panic!("cannot start processing {}: {e}", self.id));
        self.processor = Some(started);
        self.max_block = max_block;
        self.steady_time = 0;
        self.run_main_thread_callback();
    }

    /// Calls the plugin's `activate` again while it is active, with no `deactivate` between.
    /// CLAP forbids this; some hosts do it anyway, so the plugin must survive it. Returns what
    /// the plugin's `activate` returned. The host side keeps the current processor.
    pub fn activate_again_without_deactivate(&mut self, sample_rate: f64, max_block: u32) -> bool {
        assert!(self.processor.is_some(), "{} is not active", self.id);
        let raw = self.instance.raw_instance();
        let activate = raw.activate.expect("plugin has an activate function");
        // SAFETY: `raw` is the live plugin instance and this is its main thread; nothing is
        // processing concurrently (this host is single-threaded). Calling `activate` twice is a
        // protocol violation on purpose, which the plugin is expected to tolerate.
        let ok = unsafe { activate(raw, sample_rate, 1, max_block) };
        if ok {
            self.max_block = self.max_block.min(max_block);
        }
        ok
    }

    /// Stops processing and deactivates (no-op when inactive).
    pub fn deactivate(&mut self) {
        if let Some(p) = self.processor.take() {
            self.instance.deactivate(p.stop_processing());
        }
        self.run_main_thread_callback();
    }

    /// Runs `on_main_thread` if the plugin asked for it (this thread is the main thread).
    fn run_main_thread_callback(&mut self) {
        let requested = self
            .instance
            .access_shared_handler(|s| s.callback_requested.swap(false, Ordering::AcqRel));
        if requested {
            self.instance.call_on_main_thread_callback();
        }
    }

    /// Runs one `process()` call of `n_frames` with silent audio and `input` events (sample
    /// offset, message; sorted by offset here, stably), and returns the MIDI the plugin
    /// output, in its order. Non-MIDI output goes to [`ClapPlugin::last_other_events`].
    /// Panics if the plugin is inactive or reports a processing error.
    pub fn process_block(
        &mut self,
        n_frames: u32,
        input: &[(u32, MidiMsg)],
    ) -> Vec<(u32, MidiMsg)> {
        assert!(n_frames >= 1 && n_frames <= self.max_block, "block size");
        let mut sorted: Vec<&(u32, MidiMsg)> = input.iter().collect();
        sorted.sort_by_key(|(t, _)| *t);
        let mut events = EventBuffer::with_capacity(sorted.len());
        for (t, msg) in sorted {
            let t = *t;
            assert!(
                t < n_frames,
                "event offset {t} outside a block of {n_frames}"
            );
            let pckn = |ch: u8, key: u8, id: i32| Pckn::from_raw(0, ch as i16, key as i16, id);
            match msg {
                MidiMsg::NoteOn {
                    channel,
                    key,
                    velocity,
                    note_id,
                } => events.push(&NoteOnEvent::new(
                    t,
                    pckn(*channel, *key, *note_id),
                    *velocity,
                )),
                MidiMsg::NoteOff {
                    channel,
                    key,
                    velocity,
                    note_id,
                } => events.push(&NoteOffEvent::new(
                    t,
                    pckn(*channel, *key, *note_id),
                    *velocity,
                )),
                MidiMsg::PolyPressure {
                    channel,
                    key,
                    pressure,
                    note_id,
                } => events.push(&NoteExpressionEvent::new(
                    t,
                    pckn(*channel, *key, *note_id),
                    NoteExpressionType::Pressure,
                    *pressure,
                )),
                MidiMsg::Cc { channel, cc, value } => {
                    events.push(&MidiEvent::new(t, 0, [0xb0 | channel, *cc, *value]))
                }
                MidiMsg::ChannelPressure { channel, pressure } => {
                    events.push(&MidiEvent::new(t, 0, [0xd0 | channel, *pressure, 0]))
                }
                MidiMsg::PitchBend { channel, value } => events.push(&MidiEvent::new(
                    t,
                    0,
                    [0xe0 | channel, (value & 0x7f) as u8, (value >> 7) as u8],
                )),
                MidiMsg::ProgramChange { channel, program } => {
                    events.push(&MidiEvent::new(t, 0, [0xc0 | channel, *program, 0]))
                }
                // SAFETY: `bytes` belongs to `input`, which outlives this `process()` call, the
                // only place the event buffer is read.
                MidiMsg::SysEx(bytes) => events.push(&unsafe { MidiSysExEvent::new(t, 0, bytes) }),
            }
        }

        let n = n_frames as usize;
        let audio = &mut self.audio;
        for ch in audio.input.iter_mut().chain(audio.output.iter_mut()) {
            ch.clear();
            ch.resize(n, 0.0);
        }
        let [in_l, in_r] = &mut audio.input;
        let inputs = audio.in_ports.with_input_buffers([AudioPortBuffer {
            latency: 0,
            channels: AudioPortBufferType::f32_input_only([
                InputChannel::constant(in_l.as_mut_slice()),
                InputChannel::constant(in_r.as_mut_slice()),
            ]),
        }]);
        let [out_l, out_r] = &mut audio.output;
        let mut outputs = audio.out_ports.with_output_buffers([AudioPortBuffer {
            latency: 0,
            channels: AudioPortBufferType::f32_output_only([
                out_l.as_mut_slice(),
                out_r.as_mut_slice(),
            ]),
        }]);

        let mut collector = Collector::default();
        let processor = self
            .processor
            .as_mut()
            .unwrap_or_else(|| panic!("{} is not active", self.id));
        processor
            .process(
                &inputs,
                &mut outputs,
                &InputEvents::from_buffer(&events),
                &mut OutputEvents::from_buffer(&mut collector),
                Some(self.steady_time),
                None,
            )
            .unwrap_or_else(|e| panic!("{} process() failed: {e}", self.id));
        self.steady_time += n_frames as u64;
        self.last_other_events = collector.other;
        self.run_main_thread_callback();
        collector.midi
    }
}

impl Drop for ClapPlugin {
    fn drop(&mut self) {
        if let Some(p) = self.processor.take() {
            self.instance.deactivate(p.stop_processing());
        }
    }
}

// ----------------------------------------------------------------------------------------------
// Pacing, ports, threads
// ----------------------------------------------------------------------------------------------

/// Runs blocks at real-time pace: block `i` is due `i * block / sample_rate` after the start.
pub struct Pacer {
    start: Instant,
    block: Duration,
}

impl Pacer {
    /// A pacer starting now.
    pub fn new(sample_rate: f64, block: u32) -> Self {
        Self {
            start: Instant::now(),
            block: Duration::from_secs_f64(block as f64 / sample_rate),
        }
    }

    /// When block `index` is due.
    pub fn due(&self, index: u64) -> Instant {
        self.start + self.block.mul_f64(index as f64)
    }

    /// Sleeps until block `index` is due (returns at once when it is already late).
    pub fn wait_for_block(&self, index: u64) {
        let due = self.due(index);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
    }
}

/// A UDP port nobody uses, for one test. Ports come from 20000-29999 (below Linux's ephemeral
/// range, so a Sender's own socket never takes it), from a per-process sequence (tests running
/// in parallel never share one) starting at an offset chosen by the process id (parallel test
/// processes rarely collide), and each is checked free on IPv4 and IPv6 first.
pub fn free_udp_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = (std::process::id() % 500) * 20;
    for _ in 0..10_000 {
        let k = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (20_000 + (start + k) % 10_000) as u16;
        // One at a time: a dual-stack IPv6 socket conflicts with an IPv4 one on the same port.
        // IPv6 may be missing on the machine: then only IPv4 has to be free.
        let v4 = UdpSocket::bind(("0.0.0.0", port)).is_ok();
        if v4 && (!ipv6_available() || UdpSocket::bind(("::", port)).is_ok()) {
            return port;
        }
    }
    panic!("no free UDP port in 20000-29999");
}

/// Whether this machine can open IPv6 sockets.
fn ipv6_available() -> bool {
    UdpSocket::bind("[::1]:0").is_ok()
}

/// Whether any socket of this machine is bound to UDP `port` (IPv4 or IPv6), from
/// `/proc/net/udp{,6}`: a passive check, which never takes the port from the plugin.
pub fn udp_port_bound(port: u16) -> bool {
    let needle = format!(":{port:04X}");
    ["/proc/net/udp", "/proc/net/udp6"].iter().any(|f| {
        std::fs::read_to_string(f).is_ok_and(|text| {
            text.lines().skip(1).any(|l| {
                l.split_whitespace()
                    .nth(1)
                    .is_some_and(|local| local.ends_with(&needle))
            })
        })
    })
}

/// Waits up to `timeout` for `cond`, polling every millisecond; returns whether it held.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Names of this process's threads (`/proc/self/task/*/comm`).
pub fn thread_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .filter_map(|e| e.ok())
        .map(|e| {
            std::fs::read_to_string(e.path().join("comm"))
                .map(|s| s.trim().to_owned())
                .unwrap_or_else(|_| "?".into())
        })
        .collect();
    names.sort();
    names
}

/// Number of threads of this process (entries of `/proc/self/task`).
pub fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .count()
}

/// Runs the `#[ignore]`d test `name` (its full path, e.g. `lifecycle::child_x`) alone in a
/// child process of this test binary, so that nothing else runs in the process it measures
/// (thread counts), and fails if it fails or did not run.
/// Serialises the tests that play at real-time pace and check timing: run side by side on a
/// two-core machine they would measure each other's scheduling, not the plugins. Hold the
/// guard for the whole test.
pub fn realtime() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Runs the ignored test `name` of this binary in a child process, alone.
pub fn run_isolated(name: &str) {
    let exe = std::env::current_exe().expect("current_exe");
    let out = std::process::Command::new(exe)
        .args([
            "--ignored",
            "--exact",
            name,
            "--nocapture",
            "--test-threads=1",
        ])
        .output()
        .expect("cannot run the test binary");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("---- {name} (child process) stdout:\n{stdout}");
    if !stderr.trim().is_empty() {
        println!("---- {name} (child process) stderr:\n{stderr}");
    }
    assert!(out.status.success(), "{name} failed in its child process");
    assert!(
        stdout.contains("test result: ok. 1 passed"),
        "{name} did not run in its child process"
    );
}
