//! A plain MIDI pass-through plugin, compiled only with the `baseline` feature, so benchmarks
//! can measure the Receiver against the cheapest thing a MIDI plugin can do, in the same run
//! and through the same host. It is never part of the bundles users install.

use crate::proto::event::SysEx;
use nice_plug::prelude::*;
use std::sync::Arc;

/// Its one parameter (hosts and validators want at least one).
#[derive(Params)]
pub struct ThruParams {
    /// Unused switch.
    #[id = "on"]
    pub on: BoolParam,
}

/// Passes every event through unchanged.
pub struct Thru {
    /// Parameters, built in `default()`.
    params: Arc<ThruParams>,
}

impl Default for Thru {
    fn default() -> Self {
        Self {
            params: Arc::new(ThruParams {
                on: BoolParam::new("On", true),
            }),
        }
    }
}

impl Plugin for Thru {
    const NAME: &'static str = "UDP MIDI Thru (baseline)";
    const VENDOR: &'static str = "udp-midi";
    const URL: &'static str = "";
    const EMAIL: &'static str = "";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const AUDIO_IO_LAYOUTS: &'static [AudioIOLayout] = crate::AUDIO_IO_LAYOUTS;
    const MIDI_INPUT: MidiConfig = MidiConfig::MidiCCs;
    const MIDI_OUTPUT: MidiConfig = MidiConfig::MidiCCs;
    type SysExMessage = SysEx;
    type BackgroundTask = ();
    type Editor = ();

    fn params(&self) -> Arc<dyn Params> {
        self.params.clone()
    }

    fn process(
        &mut self,
        _buffer: &mut Buffer,
        _aux: &mut AuxiliaryBuffers,
        context: &mut impl ProcessContext<Self>,
    ) -> ProcessStatus {
        while let Some(ev) = context.next_event() {
            let _ = context.try_send_event(ev);
        }
        ProcessStatus::Normal
    }
}

impl ClapPlugin for Thru {
    const CLAP_ID: &'static str = "org.udp-midi.baseline-thru";
    const CLAP_DESCRIPTION: Option<&'static str> = Some("MIDI pass-through baseline");
    const CLAP_MANUAL_URL: Option<&'static str> = None;
    const CLAP_SUPPORT_URL: Option<&'static str> = None;
    const CLAP_FEATURES: &'static [ClapFeature] = &[ClapFeature::NoteEffect];
}

impl Vst3Plugin for Thru {
    const VST3_CLASS_ID: [u8; 16] = *b"udpmidi-baseline";
    const VST3_SUBCATEGORIES: &'static [Vst3SubCategory] = &[Vst3SubCategory::Tools];
}
