//! MIDI messages as the hosted tests write and read them, and comparing timed lists of them.

/// Tolerance for values that travel as `f32` (velocity, poly pressure).
pub const VALUE_TOLERANCE: f64 = 1e-6;

/// One MIDI message as the tests write and read it. Channels are `0..16`, keys `0..128`;
/// `note_id` is the CLAP note id (`-1`: none). CC, pressure, bend and program values are raw
/// MIDI integers, which nice-plug round-trips exactly.
#[derive(Clone, Debug, PartialEq)]
pub enum MidiMsg {
    /// Note on.
    NoteOn {
        /// MIDI channel, `0..16`.
        channel: u8,
        /// Key, `0..128`.
        key: u8,
        /// Velocity in `(0, 1]`.
        velocity: f64,
        /// CLAP note id, `-1` for none.
        note_id: i32,
    },
    /// Note off.
    NoteOff {
        /// MIDI channel, `0..16`.
        channel: u8,
        /// Key, `0..128`.
        key: u8,
        /// Release velocity in `[0, 1]`.
        velocity: f64,
        /// CLAP note id, `-1` for none.
        note_id: i32,
    },
    /// Polyphonic key pressure.
    PolyPressure {
        /// MIDI channel, `0..16`.
        channel: u8,
        /// Key, `0..128`.
        key: u8,
        /// Pressure in `[0, 1]`.
        pressure: f64,
        /// CLAP note id, `-1` for none.
        note_id: i32,
    },
    /// Control change.
    Cc {
        /// MIDI channel, `0..16`.
        channel: u8,
        /// Controller number, `0..128`.
        cc: u8,
        /// Raw 7-bit value.
        value: u8,
    },
    /// Channel pressure.
    ChannelPressure {
        /// MIDI channel, `0..16`.
        channel: u8,
        /// Raw 7-bit value.
        pressure: u8,
    },
    /// Pitch bend.
    PitchBend {
        /// MIDI channel, `0..16`.
        channel: u8,
        /// Raw 14-bit value (8192 is centre).
        value: u16,
    },
    /// Program change.
    ProgramChange {
        /// MIDI channel, `0..16`.
        channel: u8,
        /// Program number, `0..128`.
        program: u8,
    },
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
    pub(super) fn from_midi_bytes(d: [u8; 3]) -> Option<MidiMsg> {
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
