//! What the Receiver has switched on at its output, per peer: the guard against stuck notes.
//!
//! The audio thread plays each peer's events in time order, but the network may deliver them
//! late, twice (redundancy) or never. This table remembers, per peer slot, channel and key,
//! how many notes are sounding and the event number of the last note event played, and so:
//! - drops a note event older than one already played on that key (a late repeat that would
//!   otherwise cut a newer note or restart an ended one);
//! - drops a note-off for a key that is not sounding (nothing to end, and it might end
//!   another voice);
//! - reconciles with the Sender's snapshots: a note the snapshot says is no longer held is
//!   ended, and the pedal, bend and program are put right (RFC 6295's recovery journal,
//!   chapters N, C, W and P, applied at the moment the snapshot describes);
//! - ends everything a peer holds when it leaves, and everything at all on panic or reset.
//!
//! All fixed-size arrays, allocated once: real-time safe.

use crate::proto::event::MidiMessage;
use crate::proto::peers::MAX_PEERS;
use crate::proto::receiver::{Item, ScheduledEvent};
use crate::proto::state::{
    pedal_down, StateSnapshot, BEND_CENTRE, CC_ALL_NOTES_OFF, CC_SUSTAIN, CHANNELS,
};

/// Slots: one per network peer, and one for the Receiver's own track.
pub const SLOTS: usize = MAX_PEERS + 1;
/// The slot of the Receiver's own track.
pub const LOCAL_SLOT: u8 = MAX_PEERS as u8;

/// One peer's output state.
#[derive(Clone, Debug)]
struct Slot {
    /// Generation of the peer this slot currently plays for (generations only grow).
    gen: u64,
    /// Whether a peer of generation `gen` is playing (false: empty or ended).
    active: bool,
    /// Items numbered below this are stale (a snapshot covered them).
    floor: u64,
    /// Notes sounding per channel and key.
    count: [[u8; 128]; CHANNELS],
    /// Bit `k` of channel `c`: `count[c][k] > 0`.
    held: [u128; CHANNELS],
    /// Event number of the last note event played, per channel and key.
    last: [[u64; 128]; CHANNELS],
    /// Pedal down, and the number of the event that set it.
    sustain: [(bool, u64); CHANNELS],
    /// Bend, and the number of the event that set it.
    bend: [(f32, u64); CHANNELS],
    /// Program, and the number of the event that set it.
    program: [(Option<u8>, u64); CHANNELS],
}

impl Slot {
    fn new() -> Self {
        Self {
            gen: 0,
            active: false,
            floor: 0,
            count: [[0; 128]; CHANNELS],
            held: [0; CHANNELS],
            last: [[0; 128]; CHANNELS],
            sustain: [(false, 0); CHANNELS],
            bend: [(BEND_CENTRE, 0); CHANNELS],
            program: [(None, 0); CHANNELS],
        }
    }

    /// Forgets everything (after its notes were ended).
    fn clear(&mut self) {
        self.floor = 0;
        self.count = [[0; 128]; CHANNELS];
        self.held = [0; CHANNELS];
        self.last = [[0; 128]; CHANNELS];
        self.sustain = [(false, 0); CHANNELS];
        self.bend = [(BEND_CENTRE, 0); CHANNELS];
        self.program = [(None, 0); CHANNELS];
    }

    /// Emits what ends everything this slot holds (note-offs, pedal up, bend centred).
    fn release(&mut self, emit: &mut impl FnMut(MidiMessage)) -> u32 {
        let mut ended = 0;
        for c in 0..CHANNELS {
            let mut bits = self.held[c];
            while bits != 0 {
                let k = bits.trailing_zeros() as usize;
                bits &= bits - 1;
                for _ in 0..self.count[c][k] {
                    emit(note_off(c as u8, k as u8));
                    ended += 1;
                }
                self.count[c][k] = 0;
            }
            self.held[c] = 0;
            if self.sustain[c].0 {
                emit(MidiMessage::ControlChange {
                    channel: c as u8,
                    cc: CC_SUSTAIN,
                    value: 0.0,
                });
                self.sustain[c].0 = false;
            }
            if self.bend[c].0 != BEND_CENTRE {
                emit(MidiMessage::PitchBend {
                    channel: c as u8,
                    value: BEND_CENTRE,
                });
                self.bend[c].0 = BEND_CENTRE;
            }
        }
        ended
    }
}

fn note_off(channel: u8, key: u8) -> MidiMessage {
    MidiMessage::NoteOff {
        channel: Some(channel),
        key: Some(key),
        velocity: 0.0,
        voice_id: None,
    }
}

/// What happened to an item.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Messages emitted.
    pub emitted: u32,
    /// The item was dropped as stale or pointless.
    pub dropped: bool,
    /// Notes ended by a reconciliation or an end.
    pub ended: u32,
}

/// Output state of every slot. About 600 KB, allocated once.
#[derive(Debug)]
pub struct Voices {
    /// Slot `i` at index `i`.
    slots: Box<[Slot]>,
}

impl Default for Voices {
    fn default() -> Self {
        Self::new()
    }
}

impl Voices {
    /// Every slot empty.
    pub fn new() -> Self {
        let mut slots: Box<[Slot]> = (0..SLOTS).map(|_| Slot::new()).collect();
        // The Receiver's own track is always playing, as generation 0.
        slots[LOCAL_SLOT as usize].active = true;
        Self { slots }
    }

    /// Notes sounding in `slot`.
    pub fn held_notes(&self, slot: u8) -> u32 {
        self.slots
            .get(slot as usize)
            .map_or(0, |s| s.held.iter().map(|h| h.count_ones()).sum())
    }

    /// Notes sounding in all slots.
    pub fn total_held(&self) -> u32 {
        (0..SLOTS as u8).map(|s| self.held_notes(s)).sum()
    }

    /// Sustain pedals held down, over all slots and channels.
    pub fn pedals_down(&self) -> u32 {
        self.slots
            .iter()
            .map(|s| s.sustain.iter().filter(|p| p.0).count() as u32)
            .sum()
    }

    /// Plays `ev` through the guard, calling `emit` for each message to send.
    pub fn apply(&mut self, ev: &ScheduledEvent, mut emit: impl FnMut(MidiMessage)) -> Outcome {
        let dropped = Outcome {
            dropped: true,
            ..Outcome::default()
        };
        let Some(slot) = self.slots.get_mut(ev.peer as usize) else {
            return dropped;
        };
        let mut emitted = 0;
        let mut send = |m: MidiMessage| {
            emitted += 1;
            emit(m);
        };
        let mut ended = 0;
        if ev.gen != slot.gen || !slot.active {
            if ev.gen <= slot.gen {
                // The end of a peer already ended, or a straggler of an older one.
                return dropped;
            }
            // A new peer in this slot, or the end of one (an end replaces the ends of the
            // slot's earlier peers): whatever an older one left sounding ends now.
            ended += slot.release(&mut send);
            slot.clear();
            slot.gen = ev.gen;
            slot.active = true;
        }
        let mut was_dropped = false;
        match ev.item {
            Item::Midi(m) => was_dropped = !play(slot, ev.seq, &m, &mut send),
            Item::Reconcile(ref snap) => ended += reconcile(slot, ev.seq, snap, &mut send),
            Item::EndPeer => {
                ended += slot.release(&mut send);
                slot.clear();
                slot.active = false;
            }
        }
        Outcome {
            emitted,
            dropped: was_dropped,
            ended,
        }
    }

    /// Ends what every slot holds (reset, reactivation): note-offs for the notes tracked, pedal
    /// up and bend centred where they are not at rest. Emits nothing when nothing is held.
    pub fn release_all(&mut self, mut emit: impl FnMut(MidiMessage)) -> u32 {
        // Keep each slot's generation and floor: later items of the same peers still apply.
        self.slots.iter_mut().map(|s| s.release(&mut emit)).sum()
    }

    /// Forgets which peer each slot played for (after [`Voices::release_all`], when a new
    /// network thread starts numbering peers and events afresh). Real-time safe.
    pub fn forget_peers(&mut self) {
        for (i, s) in self.slots.iter_mut().enumerate() {
            s.clear();
            s.gen = 0;
            s.active = i == LOCAL_SLOT as usize;
        }
    }

    /// The panic button: [`Voices::release_all`], then pedal up and "All Notes Off" on every
    /// channel, for anything the table does not know about.
    pub fn panic(&mut self, mut emit: impl FnMut(MidiMessage)) -> u32 {
        let ended = self.release_all(&mut emit);
        for c in 0..CHANNELS as u8 {
            emit(MidiMessage::ControlChange {
                channel: c,
                cc: CC_SUSTAIN,
                value: 0.0,
            });
            emit(MidiMessage::ControlChange {
                channel: c,
                cc: CC_ALL_NOTES_OFF,
                value: 0.0,
            });
        }
        ended
    }
}

/// Plays one message of a peer; returns whether it was played.
fn play(slot: &mut Slot, seq: u64, m: &MidiMessage, emit: &mut impl FnMut(MidiMessage)) -> bool {
    let stale = |last: u64| seq < slot.floor || seq < last;
    match m.note_key() {
        Some((true, c, k)) => {
            if stale(slot.last[c][k]) {
                return false;
            }
            slot.last[c][k] = seq;
            slot.count[c][k] = slot.count[c][k].saturating_add(1);
            slot.held[c] |= 1 << k;
            emit(*m);
            return true;
        }
        Some((false, c, k)) => {
            if stale(slot.last[c][k]) || slot.count[c][k] == 0 {
                slot.last[c][k] = slot.last[c][k].max(seq);
                return false;
            }
            slot.last[c][k] = seq;
            slot.count[c][k] -= 1;
            if slot.count[c][k] == 0 {
                slot.held[c] &= !(1 << k);
            }
            emit(*m);
            return true;
        }
        None => {}
    }
    match *m {
        MidiMessage::NoteOff { channel, key, .. } => {
            // A wildcard: ends every matching note.
            let keys = key.map_or(u128::MAX, |k| 1u128 << (k & 127));
            for c in 0..CHANNELS {
                if channel.is_some_and(|ch| ch as usize != c) {
                    continue;
                }
                let mut bits = slot.held[c] & keys;
                while bits != 0 {
                    let k = bits.trailing_zeros() as usize;
                    bits &= bits - 1;
                    slot.count[c][k] = 0;
                }
                slot.held[c] &= !keys;
            }
            emit(*m);
            true
        }
        MidiMessage::ControlChange { channel, cc, value } if cc == CC_SUSTAIN => {
            let c = channel as usize % CHANNELS;
            if stale(slot.sustain[c].1) {
                return false;
            }
            slot.sustain[c] = (pedal_down(value), seq);
            emit(*m);
            true
        }
        MidiMessage::PitchBend { channel, value } => {
            let c = channel as usize % CHANNELS;
            if stale(slot.bend[c].1) {
                return false;
            }
            slot.bend[c] = (value, seq);
            emit(*m);
            true
        }
        MidiMessage::ProgramChange { channel, program } => {
            let c = channel as usize % CHANNELS;
            if stale(slot.program[c].1) {
                return false;
            }
            slot.program[c] = (Some(program), seq);
            emit(*m);
            true
        }
        // A note-on or key pressure without a real channel and key names no note that could
        // be tracked and ended: never played (the decoder refuses them too).
        MidiMessage::NoteOn { .. } | MidiMessage::PolyPressure { channel: None, .. } => false,
        MidiMessage::PolyPressure { key: None, .. } => false,
        _ => {
            emit(*m);
            true
        }
    }
}

/// Puts the slot in line with a snapshot that covers every event numbered below `seq`; returns
/// the notes ended.
fn reconcile(
    slot: &mut Slot,
    seq: u64,
    snap: &StateSnapshot,
    emit: &mut impl FnMut(MidiMessage),
) -> u32 {
    if seq <= slot.floor {
        return 0;
    }
    let mut ended = 0;
    for (c, want) in snap.channels.iter().enumerate() {
        // Sounding here, released there, and nothing newer played since.
        let mut bits = slot.held[c] & !want.notes;
        while bits != 0 {
            let k = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            if slot.last[c][k] >= seq {
                continue;
            }
            for _ in 0..slot.count[c][k] {
                emit(note_off(c as u8, k as u8));
                ended += 1;
            }
            slot.count[c][k] = 0;
            slot.held[c] &= !(1 << k);
            slot.last[c][k] = seq;
        }
        if slot.sustain[c].1 < seq && slot.sustain[c].0 != want.sustain {
            emit(MidiMessage::ControlChange {
                channel: c as u8,
                cc: CC_SUSTAIN,
                value: if want.sustain { 1.0 } else { 0.0 },
            });
            slot.sustain[c] = (want.sustain, seq);
        }
        if slot.bend[c].1 < seq && (slot.bend[c].0 - want.bend).abs() > 1e-6 {
            emit(MidiMessage::PitchBend {
                channel: c as u8,
                value: want.bend,
            });
            slot.bend[c] = (want.bend, seq);
        }
        if let Some(p) = want.program {
            if slot.program[c].1 < seq && slot.program[c].0 != Some(p) {
                emit(MidiMessage::ProgramChange {
                    channel: c as u8,
                    program: p,
                });
                slot.program[c] = (Some(p), seq);
            }
        }
    }
    slot.floor = seq;
    ended
}

#[cfg(test)]
#[path = "voices/tests.rs"]
mod tests;
