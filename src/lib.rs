//! # udp-midi
//!
//! Two plugins, one bundle: **UDP MIDI Sender** stamps a track's MIDI with the moment each
//! event happened, on a clock synchronised with the Receiver's, and sends it over UDP, sealed
//! with the room's code; **UDP MIDI Receiver** receives from any number of Senders and plays
//! every event on the host's instrument track at its origin time plus one common delay, so all
//! players line up on the slowest one.
//!
//! This file holds the two plugin structs, their parameters, their `impl Plugin` and the export
//! macros. The work lives in sibling modules:
//! - [`proto`]: the sans-IO protocol core (wire format, sealing, peers, Sender and Receiver
//!   state machines, snapshots, playout schedule);
//! - [`net`]: the network thread, the only owner of sockets;
//! - [`bridge`]: lock-free queues and atomic counters between the threads;
//! - [`audio`]: what `process()` does with them;
//! - [`editor`]: the two editors (egui), drawn from the status snapshots;
//! - [`settings`]: what is saved with the project besides parameters;
//! - [`status`]: the session snapshot the editors show, and their commands;
//! - [`timing`]: estimators (host sample clock, clock exchange, latency, jitter, playout
//!   delay).

#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]
#![warn(missing_docs)]

pub mod audio;
#[cfg(feature = "baseline")]
pub mod baseline;
pub mod bridge;
pub mod editor;
pub mod net;
pub mod proto;
pub mod settings;
pub mod status;
/// Test helpers; compiled for the tests, benchmarks and examples only (feature `testkit`).
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
pub mod timing;

use audio::receiver::{BlockInput, ReceiverAudio};
use audio::sender::SenderAudio;
use bridge::{ReceiverShared, SenderShared};
use net::key_cache::KeyCache;
use net::NetThread;
use nice_plug::prelude::*;
use nice_plug_egui::EguiEditor;
use proto::event::SysEx;
use settings::{ReceiverSettings, SenderSettings, Settings};
use status::{Commands, Published, ReceiverStatus, SenderStatus};
use std::num::NonZeroU32;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

/// Vendor shown by hosts.
const VENDOR: &str = "udp-midi";
/// Project page.
const URL: &str = "https://github.com/udp-midi/udp-midi";
/// Contact address.
const EMAIL: &str = "udp-midi@users.noreply.github.com";

/// Stereo in and out (audio passes through untouched), or no audio at all: both plugins are
/// MIDI effects, and some hosts only place plugins with audio ports on audio chains.
pub(crate) const AUDIO_IO_LAYOUTS: &[AudioIOLayout] = &[
    AudioIOLayout {
        main_input_channels: NonZeroU32::new(2),
        main_output_channels: NonZeroU32::new(2),
        aux_input_ports: &[],
        aux_output_ports: &[],
        names: PortNames::const_default(),
    },
    AudioIOLayout {
        main_input_channels: None,
        main_output_channels: None,
        aux_input_ports: &[],
        aux_output_ports: &[],
        names: PortNames::const_default(),
    },
];

/// Whether an activation with `config` may keep what the previous one set up: its network
/// thread still runs, its audio state is there, and the whole configuration is the same
/// (sample rate, buffer sizes, realtime or offline: the audio state is built for all of them).
fn reusable(
    net: Option<&NetThread>,
    has_audio: bool,
    previous: Option<BufferConfig>,
    config: &BufferConfig,
) -> bool {
    net.is_some_and(NetThread::is_running) && has_audio && previous == Some(*config)
}

// ----------------------------------------------------------------------------------------------
// Sender
// ----------------------------------------------------------------------------------------------

/// The Sender's parameters and saved settings.
#[derive(Params)]
pub struct SenderParams {
    /// Pass the track's MIDI on to the next plugin, so the player still hears their own synth.
    /// Read by the audio thread every block.
    #[id = "thru"]
    pub thru: BoolParam,
    /// Destination host and port, room code, display name, NTP server, repeats. Saved with the
    /// project; read by the network thread and the editor; written by the host when it loads
    /// a project, and by the editor.
    #[persist = "sender"]
    pub settings: Arc<Settings<SenderSettings>>,
}

impl Default for SenderParams {
    fn default() -> Self {
        Self {
            thru: BoolParam::new("MIDI thru", true),
            settings: Arc::default(),
        }
    }
}

/// UDP MIDI Sender: sends the track's MIDI, timestamped, to a Receiver.
pub struct Sender {
    /// Parameters and settings, shared with the host and the network thread. Built in
    /// `default()`.
    params: Arc<SenderParams>,
    /// Counters and state, written by the audio and network threads, read by anyone.
    shared: Arc<SenderShared>,
    /// Session snapshot for the editor: published by the network thread a few times a second,
    /// read by the editor (GUI thread). Created in `default()`; outlives activations.
    status: Arc<Published<SenderStatus>>,
    /// Audio-thread state: the queue to the network thread. `Some` while active; built in
    /// `initialize()` (`activate`), used only by `process()`.
    audio: Option<SenderAudio>,
    /// The network thread. `Some` while active; started in `initialize()`, stopped in
    /// `deactivate()` and on drop (main thread).
    net: Option<NetThread>,
    /// The configuration the current activation was set up for (main thread): an activation
    /// with the very same one keeps the running thread and queues.
    config: Option<BufferConfig>,
    /// The room key derived last (network threads only): the next activation with the same
    /// code takes it instead of deriving it again. Created empty in `default()`.
    keys: Arc<KeyCache>,
}

impl Default for Sender {
    fn default() -> Self {
        Self {
            params: Arc::new(SenderParams::default()),
            shared: Arc::default(),
            status: Arc::default(),
            audio: None,
            net: None,
            config: None,
            keys: Arc::default(),
        }
    }
}

impl Sender {
    /// Stops the network thread (it sends a goodbye first) and drops the audio state.
    fn stop(&mut self) {
        if let Some(mut n) = self.net.take() {
            n.stop();
        }
        self.audio = None;
    }
}

impl Plugin for Sender {
    const NAME: &'static str = "UDP MIDI Sender";
    const VENDOR: &'static str = VENDOR;
    const URL: &'static str = URL;
    const EMAIL: &'static str = EMAIL;
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const AUDIO_IO_LAYOUTS: &'static [AudioIOLayout] = AUDIO_IO_LAYOUTS;
    const MIDI_INPUT: MidiConfig = MidiConfig::MidiCCs;
    const MIDI_OUTPUT: MidiConfig = MidiConfig::MidiCCs;
    const SAMPLE_ACCURATE_AUTOMATION: bool = false;

    type SysExMessage = SysEx;
    type Editor = EguiEditor<editor::SenderEditor>;
    type BackgroundTask = ();

    fn params(&self) -> Arc<dyn Params> {
        self.params.clone()
    }

    fn editor(&mut self, _async_executor: AsyncExecutor<Self>) -> Option<Self::Editor> {
        editor::sender_editor(
            self.params.clone(),
            self.status.clone(),
            self.shared.clone(),
        )
    }

    fn activate(
        &mut self,
        _layout: &AudioIOLayout,
        config: &BufferConfig,
        _context: &mut impl ActivateContext<Self>,
    ) -> bool {
        // Hosts call this again and again; keep a running thread when nothing changed.
        if reusable(self.net.as_ref(), self.audio.is_some(), self.config, config) {
            return true;
        }
        self.stop();
        // Anchor the session clock here, not on the audio thread.
        let _ = net::clock::now_ns();
        let (producer, consumer) = bridge::sender_queue();
        let thread = net::sender_thread::SenderThread {
            settings: self.params.settings.clone(),
            queue: consumer,
            shared: self.shared.clone(),
            status: self.status.clone(),
            keys: self.keys.clone(),
        };
        match NetThread::spawn("udp-midi sender", move |stop| thread.run(stop)) {
            Ok(t) => self.net = Some(t),
            Err(e) => nice_error!("udp-midi sender: cannot start the network thread: {e}"),
        }
        let offline = config.process_mode == ProcessMode::Offline;
        self.audio = Some(SenderAudio::new(producer, config.sample_rate, offline));
        self.config = Some(*config);
        true
    }

    fn reset(&mut self) {
        if let Some(a) = &mut self.audio {
            a.reset();
        }
    }

    fn process(
        &mut self,
        buffer: &mut Buffer,
        _aux: &mut AuxiliaryBuffers,
        context: &mut impl ProcessContext<Self>,
    ) -> ProcessStatus {
        let now = net::clock::now_ns();
        let n = buffer.samples() as u32;
        let thru = self.params.thru.value();
        match &mut self.audio {
            Some(a) => a.process(now, n, thru, &self.shared, context),
            None => {
                while let Some(ev) = context.next_event() {
                    if thru {
                        let _ = context.try_send_event(ev);
                    }
                }
            }
        }
        ProcessStatus::Normal
    }

    fn deactivate(&mut self) {
        self.stop();
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        self.stop();
    }
}

impl ClapPlugin for Sender {
    const CLAP_ID: &'static str = "org.udp-midi.sender";
    const CLAP_DESCRIPTION: Option<&'static str> =
        Some("Sends the track's MIDI, timestamped, to a UDP MIDI Receiver over the network");
    const CLAP_MANUAL_URL: Option<&'static str> = None;
    const CLAP_SUPPORT_URL: Option<&'static str> = None;
    const CLAP_FEATURES: &'static [ClapFeature] = &[ClapFeature::NoteEffect, ClapFeature::Utility];
}

impl Vst3Plugin for Sender {
    const VST3_CLASS_ID: [u8; 16] = *b"udpmidi-sender01";
    const VST3_SUBCATEGORIES: &'static [Vst3SubCategory] =
        &[Vst3SubCategory::Instrument, Vst3SubCategory::Tools];
}

// ----------------------------------------------------------------------------------------------
// Receiver
// ----------------------------------------------------------------------------------------------

/// How the Receiver chooses the playout delay.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum AlignMode {
    /// D = the slowest active peer's p99 one-way latency + Default delay.
    #[id = "slowest"]
    #[name = "Align to slowest"]
    Slowest,
    /// D = Default delay, exactly.
    #[id = "fixed"]
    #[name = "Fixed delay"]
    Fixed,
}

/// The Receiver's parameters and saved settings.
#[derive(Params)]
pub struct ReceiverParams {
    /// Safety margin, in ms, added to the slowest player's p99 latency (or the whole delay in
    /// fixed mode). Automatable. Read by the audio thread every block and by the network
    /// thread every few ms.
    #[id = "delay"]
    pub delay: FloatParam,
    /// Align to the slowest player, or a fixed delay. Read like `delay`.
    #[id = "mode"]
    pub mode: EnumParam<AlignMode>,
    /// Delay the Receiver's own track MIDI by the same playout delay, so the host player lines
    /// up with the remote ones. Read by the audio thread every block.
    #[id = "align_local"]
    pub align_local: BoolParam,
    /// A Sender silent for this long (seconds) is forgotten and its notes are ended. Read by
    /// the network thread every few ms.
    #[id = "timeout"]
    pub timeout: FloatParam,
    /// Listening port, room code, open room, NTP server. Saved with the project; read by the
    /// network thread and the editor; written by the host when it loads a project, and by the
    /// editor.
    #[persist = "receiver"]
    pub settings: Arc<Settings<ReceiverSettings>>,
}

impl Default for ReceiverParams {
    fn default() -> Self {
        Self {
            delay: FloatParam::new(
                "Default delay",
                5.0,
                FloatRange::Skewed {
                    min: 0.0,
                    max: 1000.0,
                    factor: FloatRange::skew_factor(-2.0),
                },
            )
            .with_unit(" ms")
            .with_step_size(0.1),
            mode: EnumParam::new("Delay mode", AlignMode::Slowest),
            align_local: BoolParam::new("Align local input", true),
            timeout: FloatParam::new(
                "Silence timeout",
                2.0,
                FloatRange::Skewed {
                    min: 0.5,
                    max: 30.0,
                    factor: FloatRange::skew_factor(-1.0),
                },
            )
            .with_unit(" s")
            .with_step_size(0.1),
            settings: Arc::default(),
        }
    }
}

impl ReceiverParams {
    /// The silence timeout, ns, as the parameter says now.
    pub fn timeout_ns(&self) -> u64 {
        (self.timeout.value().max(0.1) as f64 * 1e9) as u64
    }

    /// Margin (ns) and mode of the playout delay, as the parameters say now.
    pub fn playout(&self) -> (i64, timing::playout::PlayoutMode) {
        let margin = (self.delay.value().max(0.0) as f64 * 1e6) as i64;
        let mode = match self.mode.value() {
            AlignMode::Slowest => timing::playout::PlayoutMode::Adaptive,
            AlignMode::Fixed => timing::playout::PlayoutMode::Fixed,
        };
        (margin, mode)
    }
}

/// UDP MIDI Receiver: plays the MIDI of every Sender that sends to it, with its timing.
pub struct Receiver {
    /// Parameters and settings, shared with the host and the network thread. Built in
    /// `default()`.
    params: Arc<ReceiverParams>,
    /// Counters and state, written by the audio and network threads, read by anyone.
    shared: Arc<ReceiverShared>,
    /// Session snapshot for the editor: published by the network thread a few times a second,
    /// read by the editor (GUI thread). Created in `default()`; outlives activations.
    status: Arc<Published<ReceiverStatus>>,
    /// Requests from the editor (kick a peer, panic), taken by the network thread. Created in
    /// `default()`.
    commands: Arc<Commands>,
    /// Audio-thread state: the queue from the network thread and the playout schedule.
    /// `Some` while active; built in `initialize()` (`activate`), used only by `process()` and
    /// `reset()`.
    audio: Option<ReceiverAudio>,
    /// The network thread. `Some` while active; started in `initialize()`, stopped in
    /// `deactivate()` and on drop (main thread).
    net: Option<NetThread>,
    /// The configuration the current activation was set up for (main thread): an activation
    /// with the very same one keeps the running thread and queues.
    config: Option<BufferConfig>,
    /// The room key derived last (network threads only): the next activation with the same
    /// code takes it instead of deriving it again. Created empty in `default()`.
    keys: Arc<KeyCache>,
    /// What is sounding at the output, parked here between activations (so the next one can
    /// end it). Allocated in `default()` (about 600 KB), moved into and out of `audio`.
    voices: Option<audio::voices::Voices>,
}

impl Default for Receiver {
    fn default() -> Self {
        Self {
            params: Arc::new(ReceiverParams::default()),
            shared: Arc::default(),
            status: Arc::default(),
            commands: Arc::default(),
            audio: None,
            net: None,
            config: None,
            keys: Arc::default(),
            voices: Some(audio::voices::Voices::new()),
        }
    }
}

impl Receiver {
    /// Stops the network thread (closing the socket) and drops the audio state, keeping what
    /// is sounding for the next activation.
    fn stop(&mut self) {
        if let Some(mut n) = self.net.take() {
            n.stop();
        }
        if let Some(a) = self.audio.take() {
            self.voices = Some(a.into_voices());
        }
    }
}

impl Plugin for Receiver {
    const NAME: &'static str = "UDP MIDI Receiver";
    const VENDOR: &'static str = VENDOR;
    const URL: &'static str = URL;
    const EMAIL: &'static str = EMAIL;
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const AUDIO_IO_LAYOUTS: &'static [AudioIOLayout] = AUDIO_IO_LAYOUTS;
    const MIDI_INPUT: MidiConfig = MidiConfig::MidiCCs;
    const MIDI_OUTPUT: MidiConfig = MidiConfig::MidiCCs;
    const SAMPLE_ACCURATE_AUTOMATION: bool = false;

    type SysExMessage = SysEx;
    type Editor = EguiEditor<editor::ReceiverEditor>;
    type BackgroundTask = ();

    fn params(&self) -> Arc<dyn Params> {
        self.params.clone()
    }

    fn editor(&mut self, _async_executor: AsyncExecutor<Self>) -> Option<Self::Editor> {
        editor::receiver_editor(
            self.params.clone(),
            self.status.clone(),
            self.commands.clone(),
        )
    }

    fn activate(
        &mut self,
        _layout: &AudioIOLayout,
        config: &BufferConfig,
        _context: &mut impl ActivateContext<Self>,
    ) -> bool {
        if reusable(self.net.as_ref(), self.audio.is_some(), self.config, config) {
            return true;
        }
        self.stop();
        let _ = net::clock::now_ns();
        let (producer, consumer) = bridge::receiver_queue();
        let thread = net::receiver_thread::ReceiverThread {
            params: self.params.clone(),
            queue: producer,
            shared: self.shared.clone(),
            status: self.status.clone(),
            commands: self.commands.clone(),
            keys: self.keys.clone(),
        };
        match NetThread::spawn("udp-midi receiver", move |stop| thread.run(stop)) {
            Ok(t) => self.net = Some(t),
            Err(e) => nice_error!("udp-midi receiver: cannot start the network thread: {e}"),
        }
        let offline = config.process_mode == ProcessMode::Offline;
        let voices = self.voices.take().unwrap_or_default();
        let panic_seen = self.shared.panic_requests.load(Relaxed);
        self.audio = Some(ReceiverAudio::new(
            consumer,
            config.sample_rate,
            offline,
            voices,
            panic_seen,
        ));
        self.config = Some(*config);
        true
    }

    fn reset(&mut self) {
        if let Some(a) = &mut self.audio {
            a.reset();
        }
    }

    fn process(
        &mut self,
        buffer: &mut Buffer,
        _aux: &mut AuxiliaryBuffers,
        context: &mut impl ProcessContext<Self>,
    ) -> ProcessStatus {
        let now = net::clock::now_ns();
        let (margin, mode) = self.params.playout();
        // Fixed mode follows the parameter at once (automation); otherwise the target comes
        // from the network thread, which adds the same margin to the slowest peer's need.
        let target_delay_ns = match mode {
            timing::playout::PlayoutMode::Fixed => margin,
            _ => self.shared.playout_delay_ns.load(Relaxed).max(margin),
        };
        let input = BlockInput {
            now_ns: now,
            n: buffer.samples() as u32,
            target_delay_ns,
            align_local: self.params.align_local.value(),
        };
        match &mut self.audio {
            Some(a) => a.process(input, &self.shared, context),
            None => {
                while let Some(ev) = context.next_event() {
                    let _ = context.try_send_event(ev);
                }
            }
        }
        ProcessStatus::Normal
    }

    fn deactivate(&mut self) {
        self.stop();
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop();
    }
}

impl ClapPlugin for Receiver {
    const CLAP_ID: &'static str = "org.udp-midi.receiver";
    const CLAP_DESCRIPTION: Option<&'static str> =
        Some("Plays the MIDI of remote UDP MIDI Senders on this track, in time");
    const CLAP_MANUAL_URL: Option<&'static str> = None;
    const CLAP_SUPPORT_URL: Option<&'static str> = None;
    const CLAP_FEATURES: &'static [ClapFeature] = &[ClapFeature::NoteEffect, ClapFeature::Utility];
}

impl Vst3Plugin for Receiver {
    const VST3_CLASS_ID: [u8; 16] = *b"udpmidi-receiver";
    const VST3_SUBCATEGORIES: &'static [Vst3SubCategory] =
        &[Vst3SubCategory::Instrument, Vst3SubCategory::Tools];
}

#[cfg(not(feature = "baseline"))]
nice_export_clap!(Sender, Receiver);
#[cfg(not(feature = "baseline"))]
nice_export_vst3!(Sender, Receiver);
// Benchmark builds add the pass-through baseline (never in the installed bundles).
#[cfg(feature = "baseline")]
nice_export_clap!(Sender, Receiver, baseline::Thru);
#[cfg(feature = "baseline")]
nice_export_vst3!(Sender, Receiver, baseline::Thru);

#[cfg(test)]
mod tests {
    use super::*;

    /// An activation keeps the running thread only for the very same configuration.
    #[test]
    fn only_the_same_whole_configuration_is_reused() {
        let mut net = NetThread::spawn("test", |stop| async move { stop.notified().await })
            .expect("a thread");
        let base = BufferConfig {
            sample_rate: 48_000.0,
            min_buffer_size: Some(1),
            max_buffer_size: 512,
            process_mode: ProcessMode::Realtime,
        };
        assert!(reusable(Some(&net), true, Some(base), &base));
        for other in [
            BufferConfig {
                sample_rate: 44_100.0,
                ..base
            },
            BufferConfig {
                max_buffer_size: 1024,
                ..base
            },
            BufferConfig {
                min_buffer_size: None,
                ..base
            },
            BufferConfig {
                process_mode: ProcessMode::Offline,
                ..base
            },
        ] {
            assert!(!reusable(Some(&net), true, Some(base), &other), "{other:?}");
        }
        assert!(
            !reusable(Some(&net), false, Some(base), &base),
            "no audio state"
        );
        assert!(!reusable(Some(&net), true, None, &base), "never activated");
        assert!(!reusable(None, true, Some(base), &base), "no thread");
        net.stop();
        assert!(
            !reusable(Some(&net), true, Some(base), &base),
            "thread stopped"
        );
    }
}
