//! The host: loads the plugin library once, instantiates a plugin by CLAP id, loads its state,
//! activates it, and runs `process()` blocks with MIDI in and out.

use super::midi::MidiMsg;
use clack_extensions::state::PluginState;
use clack_host::events::event_types::{
    MidiEvent, MidiSysExEvent, NoteExpressionEvent, NoteExpressionType, NoteOffEvent, NoteOnEvent,
};
use clack_host::events::io::{OutputEventBuffer, TryPushError};
use clack_host::events::spaces::CoreEventSpace;
use clack_host::prelude::*;
use std::ffi::CString;
use std::io::Cursor;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

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
    /// The two input channels, silent, resized to each block.
    input: [Vec<f32>; 2],
    /// The two output channels the plugin writes (audio passes through; nobody reads it).
    output: [Vec<f32>; 2],
    /// clack's description of the input port, reused from block to block.
    in_ports: AudioPorts,
    /// The same for the output port.
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
