//! The event model: one MIDI 1.0 message with everything nice-plug tells us about it.
//!
//! [`MidiMessage`] is `Copy` and fixed-size so it can travel through the lock-free queues
//! between the audio thread and the network thread without allocation. Conversions to and from
//! nice-plug's [`NoteEvent`] live here too, so the plugin shells stay thin.

use nice_plug::midi::{Channel, Key, VoiceID};
use nice_plug::prelude::*;

/// Largest SysEx message carried, in bytes, including the `F0` and `F7` framing bytes.
///
/// A bigger message is dropped by the Sender and counted. 256 bytes covers parameter changes
/// and short dumps while keeping every queue slot small and one event far below the datagram
/// budget (see `docs/protocol.md`).
pub const SYSEX_MAX: usize = 256;

/// A SysEx message stored inline, so that [`MidiMessage`] stays `Copy`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SysEx {
    /// Number of valid bytes in `data`.
    len: u16,
    /// The message, `F0 ... F7`, padded with zeros.
    data: [u8; SYSEX_MAX],
}

impl SysEx {
    /// Copies `bytes` into a new message, or returns `None` when it is empty or longer than
    /// [`SYSEX_MAX`].
    pub fn new(bytes: &[u8]) -> Option<Self> {
        if bytes.is_empty() || bytes.len() > SYSEX_MAX {
            return None;
        }
        let mut data = [0; SYSEX_MAX];
        data[..bytes.len()].copy_from_slice(bytes);
        Some(Self {
            len: bytes.len() as u16,
            data,
        })
    }

    /// The message bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.data[..self.len as usize]
    }
}

impl std::fmt::Debug for SysEx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SysEx({:02x?})", self.as_bytes())
    }
}

impl SysExMessage for SysEx {
    type Buffer = [u8; SYSEX_MAX];

    fn from_buffer(buffer: &[u8]) -> Option<Self> {
        Self::new(buffer)
    }

    fn as_buffer(&self) -> (Self::Buffer, usize) {
        (self.data, self.len as usize)
    }
}

/// One MIDI 1.0 message, with the precision nice-plug gives (normalised `f32` values, CLAP
/// voice ids). `channel` is `0..16`, `key` is `0..128`; `None` is a wildcard ("any channel" /
/// "any key"), which CLAP hosts may send in note-offs (CLAP's `clap_event_note`: -1 matches
/// every key or channel). Only a note-off may carry one ([`MidiMessage::is_valid`]): a
/// wildcard note-on or key pressure names no note that anything could later end.
// SysEx is stored inline on purpose: boxing would allocate on the audio thread.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum MidiMessage {
    /// A key was pressed.
    NoteOn {
        /// MIDI channel, `0..16`.
        channel: Option<u8>,
        /// Key, `0..128`.
        key: Option<u8>,
        /// Velocity in `(0, 1]` (0 is taken as a note-off, as in MIDI 1.0).
        velocity: f32,
        /// CLAP note id of the voice, when the host gave one.
        voice_id: Option<i32>,
    },
    /// A key was released.
    NoteOff {
        /// MIDI channel, `0..16`; `None`: every channel.
        channel: Option<u8>,
        /// Key, `0..128`; `None`: every key.
        key: Option<u8>,
        /// Release velocity in `[0, 1]`.
        velocity: f32,
        /// CLAP note id of the voice it ends; `None`: every voice of the key.
        voice_id: Option<i32>,
    },
    /// Polyphonic key pressure (aftertouch).
    PolyPressure {
        /// MIDI channel, `0..16`.
        channel: Option<u8>,
        /// Key, `0..128`.
        key: Option<u8>,
        /// Pressure in `[0, 1]`.
        pressure: f32,
        /// CLAP note id of the voice, when the host gave one.
        voice_id: Option<i32>,
    },
    /// Control change.
    ControlChange {
        /// MIDI channel, `0..16`.
        channel: u8,
        /// Controller number, `0..128`.
        cc: u8,
        /// Value normalised to `[0, 1]` (`raw / 127`).
        value: f32,
    },
    /// Channel pressure.
    ChannelPressure {
        /// MIDI channel, `0..16`.
        channel: u8,
        /// Pressure in `[0, 1]`.
        pressure: f32,
    },
    /// Pitch bend.
    PitchBend {
        /// MIDI channel, `0..16`.
        channel: u8,
        /// Bend in `[0, 1]`; `0.5` is centre (`raw14 / 16383`).
        value: f32,
    },
    /// Program change.
    ProgramChange {
        /// MIDI channel, `0..16`.
        channel: u8,
        /// Program number, `0..128`.
        program: u8,
    },
    /// A system exclusive message.
    SysEx(SysEx),
}

/// Converts nice-plug's channel to ours.
fn channel_of(c: Channel) -> Option<u8> {
    c.number()
}

/// Converts nice-plug's key to ours.
fn key_of(k: Key) -> Option<u8> {
    k.number()
}

/// Converts our channel to nice-plug's.
fn channel_to(c: Option<u8>) -> Channel {
    c.map_or(Channel::Wildcard, Channel::Number)
}

/// Converts our key to nice-plug's.
fn key_to(k: Option<u8>) -> Key {
    k.map_or(Key::Wildcard, Key::Number)
}

/// Converts our voice id to nice-plug's.
fn voice_to(v: Option<i32>) -> VoiceID {
    v.map_or(VoiceID::Wildcard, VoiceID::ID)
}

impl MidiMessage {
    /// The one key a message starts or ends, for the tables that count voices per key:
    /// `Some((true, channel, key))` for a note-on, `Some((false, channel, key))` for a note-off
    /// of one key on one channel or a note-on of velocity 0 (a note-off in MIDI 1.0
    /// running-status practice), `None` for anything else, wildcard note-offs included. The
    /// channel and key come reduced to their ranges, ready to index with.
    #[inline]
    pub fn note_key(&self) -> Option<(bool, usize, usize)> {
        let at = |c: u8, k: u8| (c as usize % super::state::CHANNELS, k as usize & 127);
        match *self {
            Self::NoteOn {
                channel: Some(c),
                key: Some(k),
                velocity,
                ..
            } => {
                let (c, k) = at(c, k);
                Some((velocity > 0.0, c, k))
            }
            Self::NoteOff {
                channel: Some(c),
                key: Some(k),
                ..
            } => {
                let (c, k) = at(c, k);
                Some((false, c, k))
            }
            _ => None,
        }
    }

    /// Takes a host event apart into its sample offset in the block and the message. Events that
    /// have no MIDI 1.0 meaning (CLAP poly modulation, voice-terminated, choke, ...) give `None`.
    pub fn from_note_event(event: &NoteEvent<SysEx>) -> Option<(u32, Self)> {
        let msg = match *event {
            NoteEvent::NoteOn {
                timing,
                voice_id,
                channel,
                key,
                velocity,
            } => (
                timing,
                Self::NoteOn {
                    channel: channel_of(channel),
                    key: key_of(key),
                    velocity,
                    voice_id: voice_id.id(),
                },
            ),
            NoteEvent::NoteOff {
                timing,
                voice_id,
                channel,
                key,
                velocity,
            } => (
                timing,
                Self::NoteOff {
                    channel: channel_of(channel),
                    key: key_of(key),
                    velocity,
                    voice_id: voice_id.id(),
                },
            ),
            NoteEvent::PolyPressure {
                timing,
                voice_id,
                channel,
                key,
                pressure,
            } => (
                timing,
                Self::PolyPressure {
                    channel: channel_of(channel),
                    key: key_of(key),
                    pressure,
                    voice_id: voice_id.id(),
                },
            ),
            NoteEvent::MidiCC {
                timing,
                channel,
                cc,
                value,
            } => (timing, Self::ControlChange { channel, cc, value }),
            NoteEvent::MidiChannelPressure {
                timing,
                channel,
                pressure,
            } => (timing, Self::ChannelPressure { channel, pressure }),
            NoteEvent::MidiPitchBend {
                timing,
                channel,
                value,
            } => (timing, Self::PitchBend { channel, value }),
            NoteEvent::MidiProgramChange {
                timing,
                channel,
                program,
            } => (timing, Self::ProgramChange { channel, program }),
            NoteEvent::MidiSysEx { timing, message } => (timing, Self::SysEx(message)),
            _ => return None,
        };
        Some(msg)
    }

    /// Builds the host event for this message at sample offset `timing`.
    pub fn to_note_event(&self, timing: u32) -> NoteEvent<SysEx> {
        match *self {
            Self::NoteOn {
                channel,
                key,
                velocity,
                voice_id,
            } => NoteEvent::NoteOn {
                timing,
                voice_id: voice_to(voice_id),
                channel: channel_to(channel),
                key: key_to(key),
                velocity,
            },
            Self::NoteOff {
                channel,
                key,
                velocity,
                voice_id,
            } => NoteEvent::NoteOff {
                timing,
                voice_id: voice_to(voice_id),
                channel: channel_to(channel),
                key: key_to(key),
                velocity,
            },
            Self::PolyPressure {
                channel,
                key,
                pressure,
                voice_id,
            } => NoteEvent::PolyPressure {
                timing,
                voice_id: voice_to(voice_id),
                channel: channel_to(channel),
                key: key_to(key),
                pressure,
            },
            Self::ControlChange { channel, cc, value } => NoteEvent::MidiCC {
                timing,
                channel,
                cc,
                value,
            },
            Self::ChannelPressure { channel, pressure } => NoteEvent::MidiChannelPressure {
                timing,
                channel,
                pressure,
            },
            Self::PitchBend { channel, value } => NoteEvent::MidiPitchBend {
                timing,
                channel,
                value,
            },
            Self::ProgramChange { channel, program } => NoteEvent::MidiProgramChange {
                timing,
                channel,
                program,
            },
            Self::SysEx(message) => NoteEvent::MidiSysEx { timing, message },
        }
    }

    /// Whether this message ends something a peer may have left sounding: a note-off (or a
    /// velocity-0 note-on), the sustain pedal released, All Sound Off or All Notes Off. Such
    /// messages keep places of their own in the queues, so that a full queue never leaves a
    /// note hanging.
    pub fn ends_something(&self) -> bool {
        match *self {
            Self::NoteOff { .. } => true,
            Self::NoteOn { velocity, .. } => velocity <= 0.0,
            Self::ControlChange { cc, value, .. } => {
                (cc == super::state::CC_SUSTAIN && !super::state::pedal_down(value))
                    || cc == 120
                    || cc == super::state::CC_ALL_NOTES_OFF
            }
            _ => false,
        }
    }

    /// Checks the ranges MIDI 1.0 allows (channel `0..16`, key, CC and program `0..128`, values
    /// finite and in `[0, 1]`), and that only a note-off uses wildcards. The decoder uses this
    /// so that no out-of-range value from the network ever reaches the host.
    pub fn is_valid(&self) -> bool {
        let ch = |c: u8| c < 16;
        let och = |c: Option<u8>| c.is_none_or(ch);
        let okey = |k: Option<u8>| k.is_none_or(|k| k < 128);
        // A note that can be tracked, and so ended: a real channel and key.
        let note = |c: Option<u8>, k: Option<u8>| c.is_some_and(ch) && k.is_some_and(|k| k < 128);
        let unit = |v: f32| v.is_finite() && (0.0..=1.0).contains(&v);
        match *self {
            Self::NoteOn {
                channel,
                key,
                velocity,
                ..
            } => note(channel, key) && unit(velocity),
            Self::NoteOff {
                channel,
                key,
                velocity,
                ..
            } => och(channel) && okey(key) && unit(velocity),
            Self::PolyPressure {
                channel,
                key,
                pressure,
                ..
            } => note(channel, key) && unit(pressure),
            Self::ControlChange { channel, cc, value } => ch(channel) && cc < 128 && unit(value),
            Self::ChannelPressure { channel, pressure } => ch(channel) && unit(pressure),
            Self::PitchBend { channel, value } => ch(channel) && unit(value),
            Self::ProgramChange { channel, program } => ch(channel) && program < 128,
            Self::SysEx(s) => {
                let b = s.as_bytes();
                b.len() >= 2 && b[0] == 0xF0 && b[b.len() - 1] == 0xF7
            }
        }
    }
}

/// A message stamped with its origin time: nanoseconds on the timeline of the machine that
/// produced it (see `docs/protocol.md`, "Timelines").
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TimedMessage {
    /// When the message happened, in nanoseconds on the sender's session timeline.
    pub time_ns: u64,
    /// The message.
    pub msg: MidiMessage,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn note_event_round_trip_every_kind() {
        let sx = SysEx::new(&[0xF0, 0x7E, 0x7F, 0x09, 0x01, 0xF7]).unwrap();
        let events: [NoteEvent<SysEx>; 8] = [
            NoteEvent::NoteOn {
                timing: 3,
                voice_id: VoiceID::ID(7),
                channel: Channel::Number(2),
                key: Key::Number(60),
                velocity: 0.8,
            },
            NoteEvent::NoteOff {
                timing: 4,
                voice_id: VoiceID::Wildcard,
                channel: Channel::Number(2),
                key: Key::Wildcard,
                velocity: 0.0,
            },
            NoteEvent::PolyPressure {
                timing: 5,
                voice_id: VoiceID::Wildcard,
                channel: Channel::Number(15),
                key: Key::Number(127),
                pressure: 0.25,
            },
            NoteEvent::MidiCC {
                timing: 6,
                channel: 1,
                cc: 64,
                value: 1.0,
            },
            NoteEvent::MidiChannelPressure {
                timing: 7,
                channel: 3,
                pressure: 0.5,
            },
            NoteEvent::MidiPitchBend {
                timing: 8,
                channel: 4,
                value: 0.75,
            },
            NoteEvent::MidiProgramChange {
                timing: 9,
                channel: 5,
                program: 42,
            },
            NoteEvent::MidiSysEx {
                timing: 10,
                message: sx,
            },
        ];
        for ev in events {
            let (t, m) = MidiMessage::from_note_event(&ev).expect("maps to MIDI");
            assert!(m.is_valid(), "{m:?}");
            assert_eq!(m.to_note_event(t), ev);
        }
    }

    #[test]
    fn only_note_offs_may_be_wildcards() {
        let wild = [(None, Some(60)), (Some(0), None), (None, None)];
        for (channel, key) in wild {
            let on = MidiMessage::NoteOn {
                channel,
                key,
                velocity: 1.0,
                voice_id: None,
            };
            let pressure = MidiMessage::PolyPressure {
                channel,
                key,
                pressure: 0.5,
                voice_id: None,
            };
            let off = MidiMessage::NoteOff {
                channel,
                key,
                velocity: 0.0,
                voice_id: None,
            };
            assert!(!on.is_valid(), "{on:?}");
            assert!(!pressure.is_valid(), "{pressure:?}");
            assert!(off.is_valid(), "{off:?}");
        }
        // A host's wildcard note-on maps, but is not valid (the Sender does not send it).
        let ev: NoteEvent<SysEx> = NoteEvent::NoteOn {
            timing: 511,
            voice_id: VoiceID::Wildcard,
            channel: Channel::Wildcard,
            key: Key::Number(0),
            velocity: 1.0,
        };
        let (_, m) = MidiMessage::from_note_event(&ev).unwrap();
        assert!(!m.is_valid());
    }

    #[test]
    fn non_midi_events_are_skipped() {
        let ev: NoteEvent<SysEx> = NoteEvent::Choke {
            timing: 0,
            voice_id: VoiceID::Wildcard,
            channel: Channel::Number(0),
            key: Key::Number(60),
        };
        assert!(MidiMessage::from_note_event(&ev).is_none());
    }

    #[test]
    fn sysex_limits() {
        assert!(SysEx::new(&[]).is_none());
        assert!(SysEx::new(&[0; SYSEX_MAX + 1]).is_none());
        let full = SysEx::new(&[0xF0; SYSEX_MAX]).unwrap();
        assert_eq!(full.as_bytes().len(), SYSEX_MAX);
        let bad = MidiMessage::SysEx(SysEx::new(&[0x01, 0x02]).unwrap());
        assert!(!bad.is_valid());
    }

    #[test]
    fn out_of_range_values_are_invalid() {
        let bad = [
            MidiMessage::ControlChange {
                channel: 16,
                cc: 1,
                value: 0.5,
            },
            MidiMessage::ControlChange {
                channel: 0,
                cc: 128,
                value: 0.5,
            },
            MidiMessage::PitchBend {
                channel: 0,
                value: f32::NAN,
            },
            MidiMessage::NoteOn {
                channel: Some(0),
                key: Some(200),
                velocity: 0.5,
                voice_id: None,
            },
            MidiMessage::ProgramChange {
                channel: 0,
                program: 128,
            },
        ];
        for m in bad {
            assert!(!m.is_valid(), "{m:?}");
        }
    }
}
