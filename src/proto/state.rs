//! What a performance leaves switched on: held notes, sustain pedal, pitch bend and program,
//! per MIDI channel.
//!
//! The Sender keeps this state as it sends and ships it as a snapshot with its heartbeats, in
//! the spirit of the recovery journal of RTP-MIDI (RFC 6295; chapter N for notes, chapters C,
//! W and P for the sustain controller, pitch wheel and program): a Receiver that lost a
//! note-off learns from the next snapshot that the note is no longer held and ends it. A
//! Sender that goes away releases what the state says it holds.
//!
//! Plain `Copy` data (336 bytes), so it can travel through the lock-free queue to the audio
//! thread. The Sender keeps it inside a [`HeldState`], which also counts the voices on each key.

use super::event::MidiMessage;

/// MIDI channels.
pub const CHANNELS: usize = 16;
/// Controller number of the sustain (damper) pedal.
pub const CC_SUSTAIN: u8 = 64;
/// Controller number of "All Notes Off" (a channel mode message).
pub const CC_ALL_NOTES_OFF: u8 = 123;
/// Pitch bend at rest, normalised.
pub const BEND_CENTRE: f32 = 0.5;

/// Whether a normalised controller value means "pedal down" (MIDI 1.0: 64 and above).
pub fn pedal_down(value: f32) -> bool {
    (value * 127.0).round() >= 64.0
}

/// The state of one channel.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ChannelState {
    /// Bit `k` set: key `k` is held down.
    pub notes: u128,
    /// Sustain pedal down.
    pub sustain: bool,
    /// Pitch bend, normalised (0.5 is centre).
    pub bend: f32,
    /// Last program change, if any.
    pub program: Option<u8>,
}

impl ChannelState {
    /// A channel nothing happened on.
    pub const IDLE: Self = Self {
        notes: 0,
        sustain: false,
        bend: BEND_CENTRE,
        program: None,
    };

    /// Whether nothing is switched on (nothing to send in a snapshot).
    pub fn is_idle(&self) -> bool {
        self.notes == 0 && !self.sustain && self.bend == BEND_CENTRE && self.program.is_none()
    }
}

/// The state of all sixteen channels.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StateSnapshot {
    /// Channel `c` at index `c`.
    pub channels: [ChannelState; CHANNELS],
}

impl Default for StateSnapshot {
    fn default() -> Self {
        Self::IDLE
    }
}

impl StateSnapshot {
    /// Nothing switched on anywhere.
    pub const IDLE: Self = Self {
        channels: [ChannelState::IDLE; CHANNELS],
    };

    /// Follows one message. Wildcard note-offs (any key, any channel) release what they match.
    pub fn apply(&mut self, msg: &MidiMessage) {
        match *msg {
            MidiMessage::NoteOn {
                channel,
                key,
                velocity,
                ..
            } => {
                // Velocity 0 is a note-off in MIDI 1.0 running-status practice.
                if velocity > 0.0 {
                    if let (Some(c), Some(k)) = (channel, key) {
                        self.channels[c as usize % CHANNELS].notes |= 1u128 << (k & 127);
                    }
                } else {
                    self.release(channel, key);
                }
            }
            MidiMessage::NoteOff { channel, key, .. } => self.release(channel, key),
            MidiMessage::ControlChange { channel, cc, value } => {
                let ch = &mut self.channels[channel as usize % CHANNELS];
                match cc {
                    CC_SUSTAIN => ch.sustain = pedal_down(value),
                    // All Sound Off, Reset All Controllers, All Notes Off, omni/mono/poly.
                    120 | 123..=127 => ch.notes = 0,
                    121 => {
                        ch.sustain = false;
                        ch.bend = BEND_CENTRE;
                    }
                    _ => {}
                }
            }
            MidiMessage::PitchBend { channel, value } => {
                self.channels[channel as usize % CHANNELS].bend = value;
            }
            MidiMessage::ProgramChange { channel, program } => {
                self.channels[channel as usize % CHANNELS].program = Some(program);
            }
            _ => {}
        }
    }

    fn release(&mut self, channel: Option<u8>, key: Option<u8>) {
        let mask = key.map_or(u128::MAX, |k| 1u128 << (k & 127));
        match channel {
            Some(c) => self.channels[c as usize % CHANNELS].notes &= !mask,
            None => self.channels.iter_mut().for_each(|ch| ch.notes &= !mask),
        }
    }

    /// Number of notes held on all channels.
    pub fn held_notes(&self) -> u32 {
        self.channels.iter().map(|c| c.notes.count_ones()).sum()
    }

    /// Whether nothing is switched on anywhere.
    pub fn is_idle(&self) -> bool {
        self.channels.iter().all(ChannelState::is_idle)
    }

    /// The messages that release everything held: a note-off per held note, then sustain off
    /// where the pedal is down, then pitch bend back to centre where it is bent (calls `f` for
    /// each, in that order).
    pub fn release_all(&self, mut f: impl FnMut(MidiMessage)) {
        for (c, ch) in self.channels.iter().enumerate() {
            let mut notes = ch.notes;
            while notes != 0 {
                let k = notes.trailing_zeros() as u8;
                notes &= notes - 1;
                f(MidiMessage::NoteOff {
                    channel: Some(c as u8),
                    key: Some(k),
                    velocity: 0.0,
                    voice_id: None,
                });
            }
            if ch.sustain {
                f(MidiMessage::ControlChange {
                    channel: c as u8,
                    cc: CC_SUSTAIN,
                    value: 0.0,
                });
            }
            if ch.bend != BEND_CENTRE {
                f(MidiMessage::PitchBend {
                    channel: c as u8,
                    value: BEND_CENTRE,
                });
            }
        }
    }
}

/// The Sender's own record of what it holds: the snapshot it ships, and how many voices hold
/// each key. CLAP lets two voices (two note ids) sound on one key; the snapshot's bit for a
/// key stays set until the last of them is released, so that a Receiver reconciling with it
/// never ends a voice that is still held. (The count stays on the Sender: the snapshot that
/// travels keeps one bit per key, and a Receiver that lost one of two note-offs keeps the
/// other voice until the key is released for good, when the next snapshot ends it.)
#[derive(Clone, Debug, PartialEq)]
pub struct HeldState {
    /// What a snapshot says: a key's bit is set while its count is above 0.
    snapshot: StateSnapshot,
    /// Voices holding each key, per channel (saturating at 255).
    voices: [[u8; 128]; CHANNELS],
}

impl Default for HeldState {
    fn default() -> Self {
        Self::IDLE
    }
}

impl HeldState {
    /// Nothing held.
    pub const IDLE: Self = Self {
        snapshot: StateSnapshot::IDLE,
        voices: [[0; 128]; CHANNELS],
    };

    /// The snapshot to ship.
    pub fn snapshot(&self) -> &StateSnapshot {
        &self.snapshot
    }

    /// Follows one message, counting voices per key.
    pub fn apply(&mut self, msg: &MidiMessage) {
        match msg.note_key() {
            Some((true, c, k)) => {
                self.voices[c][k] = self.voices[c][k].saturating_add(1);
                self.snapshot.channels[c].notes |= 1u128 << k;
            }
            Some((false, c, k)) => {
                self.voices[c][k] = self.voices[c][k].saturating_sub(1);
                if self.voices[c][k] == 0 {
                    self.snapshot.channels[c].notes &= !(1u128 << k);
                }
            }
            None => {
                // Wildcards and channel mode messages release whole keys or channels: follow
                // the bits, then drop the counts of every key they cleared.
                self.snapshot.apply(msg);
                for (ch, counts) in self.snapshot.channels.iter().zip(self.voices.iter_mut()) {
                    for (k, n) in counts.iter_mut().enumerate() {
                        if ch.notes & (1u128 << k) == 0 {
                            *n = 0;
                        }
                    }
                }
            }
        }
    }

    /// Voices held on all channels.
    pub fn held_voices(&self) -> u32 {
        self.voices.iter().flatten().map(|&n| n as u32).sum()
    }

    /// The messages that release everything held: a note-off per held voice, then sustain off
    /// and bend centred as [`StateSnapshot::release_all`] does.
    pub fn release_all(&self, mut f: impl FnMut(MidiMessage)) {
        self.snapshot.release_all(|m| {
            if let MidiMessage::NoteOff {
                channel: Some(c),
                key: Some(k),
                ..
            } = m
            {
                for _ in 0..self.voices[c as usize % CHANNELS][k as usize & 127].max(1) {
                    f(m);
                }
            } else {
                f(m);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on(c: u8, k: u8) -> MidiMessage {
        MidiMessage::NoteOn {
            channel: Some(c),
            key: Some(k),
            velocity: 0.5,
            voice_id: None,
        }
    }

    fn off(c: Option<u8>, k: Option<u8>) -> MidiMessage {
        MidiMessage::NoteOff {
            channel: c,
            key: k,
            velocity: 0.0,
            voice_id: None,
        }
    }

    #[test]
    fn follows_notes_pedal_bend_and_program() {
        let mut s = StateSnapshot::IDLE;
        s.apply(&on(0, 60));
        s.apply(&on(0, 64));
        s.apply(&on(9, 36));
        assert_eq!(s.held_notes(), 3);
        s.apply(&off(Some(0), Some(60)));
        assert_eq!(s.channels[0].notes, 1 << 64);
        // Velocity-0 note-on releases.
        s.apply(&MidiMessage::NoteOn {
            channel: Some(9),
            key: Some(36),
            velocity: 0.0,
            voice_id: None,
        });
        assert_eq!(s.held_notes(), 1);
        s.apply(&MidiMessage::ControlChange {
            channel: 0,
            cc: CC_SUSTAIN,
            value: 1.0,
        });
        s.apply(&MidiMessage::PitchBend {
            channel: 0,
            value: 0.75,
        });
        s.apply(&MidiMessage::ProgramChange {
            channel: 3,
            program: 5,
        });
        assert!(s.channels[0].sustain);
        assert_eq!(s.channels[3].program, Some(5));
        let mut released = Vec::new();
        s.release_all(|m| released.push(m));
        assert_eq!(
            released,
            vec![
                off(Some(0), Some(64)),
                MidiMessage::ControlChange {
                    channel: 0,
                    cc: CC_SUSTAIN,
                    value: 0.0
                },
                MidiMessage::PitchBend {
                    channel: 0,
                    value: BEND_CENTRE
                },
            ]
        );
        for m in released {
            s.apply(&m);
        }
        assert_eq!(s.held_notes(), 0);
        assert!(!s.channels[0].sustain);
        // A program stays: it is not "held".
        assert!(!s.is_idle());
    }

    #[test]
    fn wildcards_release_what_they_match() {
        let mut s = StateSnapshot::IDLE;
        for c in 0..3 {
            s.apply(&on(c, 10));
            s.apply(&on(c, 20));
        }
        s.apply(&off(Some(1), None));
        assert_eq!(s.channels[1].notes, 0);
        s.apply(&off(None, Some(10)));
        assert_eq!(s.held_notes(), 2);
        s.apply(&MidiMessage::ControlChange {
            channel: 0,
            cc: CC_ALL_NOTES_OFF,
            value: 0.0,
        });
        assert_eq!(s.held_notes(), 1);
    }

    #[test]
    fn a_key_stays_held_until_its_last_voice_is_released() {
        let mut h = HeldState::IDLE;
        h.apply(&on(3, 60));
        h.apply(&on(3, 60));
        h.apply(&on(3, 62));
        assert_eq!(h.held_voices(), 3);
        h.apply(&off(Some(3), Some(60)));
        assert_eq!(h.snapshot().channels[3].notes, (1 << 60) | (1 << 62));
        let mut released = Vec::new();
        h.release_all(|m| released.push(m));
        assert_eq!(
            released,
            vec![off(Some(3), Some(60)), off(Some(3), Some(62))]
        );
        h.apply(&off(Some(3), Some(60)));
        assert_eq!(h.snapshot().channels[3].notes, 1 << 62);
        // A release with no voice left changes nothing.
        h.apply(&off(Some(3), Some(60)));
        assert_eq!(h.held_voices(), 1);
        // Two voices, one key, both released by a wildcard: nothing left to count.
        h.apply(&on(3, 64));
        h.apply(&on(3, 64));
        h.apply(&off(Some(3), None));
        assert_eq!(h.held_voices(), 0);
        assert!(h.snapshot().channels[3].notes == 0);
        h.apply(&on(3, 64));
        h.apply(&MidiMessage::ControlChange {
            channel: 3,
            cc: CC_ALL_NOTES_OFF,
            value: 0.0,
        });
        assert_eq!(h.held_voices(), 0);
        // Two voices released one by one: both note-offs go out on close.
        h.apply(&on(5, 1));
        h.apply(&on(5, 1));
        let mut released = Vec::new();
        h.release_all(|m| released.push(m));
        assert_eq!(released, vec![off(Some(5), Some(1)); 2]);
    }

    #[test]
    fn pedal_threshold_is_64() {
        assert!(!pedal_down(63.0 / 127.0));
        assert!(pedal_down(64.0 / 127.0));
    }
}
