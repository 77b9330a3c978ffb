//! Events bodies: a batch of timestamped MIDI messages with consecutive event sequence
//! numbers (`docs/protocol.md`, "Events").

use super::super::event::{MidiMessage, SysEx, TimedMessage};
use super::{Datagram, DecodeError, PacketType, Prelude};
use serde::{Deserialize, Serialize};

/// Most events one datagram may carry (a bound for the decoder; the size limit already
/// keeps honest datagrams under it).
pub const MAX_EVENTS_PER_DATAGRAM: usize = 256;
/// The wildcard value of a channel or key on the wire ("any channel", "any key").
const WILDCARD: u8 = 0xFF;

/// One event on the wire: its time relative to the batch's base time, and the message.
/// Field order and variant order are the wire format: never reorder.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
pub(super) struct WireEvent<'a> {
    /// Origin time minus the batch base time, in ns (zigzag varint).
    pub(super) dt_ns: i64,
    /// The message.
    #[serde(borrow)]
    pub(super) msg: WireMsg<'a>,
}

/// Wire form of [`MidiMessage`]: the variant index is the tag of `docs/protocol.md`'s table;
/// channels and keys carry [`WILDCARD`] for "any".
#[derive(Serialize, Deserialize, Debug, PartialEq)]
pub(super) enum WireMsg<'a> {
    NoteOn(u8, u8, f32, Option<i32>),
    NoteOff(u8, u8, f32, Option<i32>),
    PolyPressure(u8, u8, f32, Option<i32>),
    ControlChange(u8, u8, f32),
    ChannelPressure(u8, f32),
    PitchBend(u8, f32),
    ProgramChange(u8, u8),
    SysEx(&'a [u8]),
}

fn opt_to_wire(v: Option<u8>) -> u8 {
    v.unwrap_or(WILDCARD)
}

fn opt_from_wire(v: u8) -> Option<u8> {
    (v != WILDCARD).then_some(v)
}

impl<'a> WireMsg<'a> {
    fn from_msg(m: &'a MidiMessage) -> Self {
        match *m {
            MidiMessage::NoteOn {
                channel,
                key,
                velocity,
                voice_id,
            } => Self::NoteOn(opt_to_wire(channel), opt_to_wire(key), velocity, voice_id),
            MidiMessage::NoteOff {
                channel,
                key,
                velocity,
                voice_id,
            } => Self::NoteOff(opt_to_wire(channel), opt_to_wire(key), velocity, voice_id),
            MidiMessage::PolyPressure {
                channel,
                key,
                pressure,
                voice_id,
            } => Self::PolyPressure(opt_to_wire(channel), opt_to_wire(key), pressure, voice_id),
            MidiMessage::ControlChange { channel, cc, value } => {
                Self::ControlChange(channel, cc, value)
            }
            MidiMessage::ChannelPressure { channel, pressure } => {
                Self::ChannelPressure(channel, pressure)
            }
            MidiMessage::PitchBend { channel, value } => Self::PitchBend(channel, value),
            MidiMessage::ProgramChange { channel, program } => {
                Self::ProgramChange(channel, program)
            }
            MidiMessage::SysEx(ref s) => Self::SysEx(s.as_bytes()),
        }
    }

    fn to_msg(&self) -> Result<MidiMessage, DecodeError> {
        let m = match *self {
            Self::NoteOn(c, k, velocity, voice_id) => MidiMessage::NoteOn {
                channel: opt_from_wire(c),
                key: opt_from_wire(k),
                velocity,
                voice_id,
            },
            Self::NoteOff(c, k, velocity, voice_id) => MidiMessage::NoteOff {
                channel: opt_from_wire(c),
                key: opt_from_wire(k),
                velocity,
                voice_id,
            },
            Self::PolyPressure(c, k, pressure, voice_id) => MidiMessage::PolyPressure {
                channel: opt_from_wire(c),
                key: opt_from_wire(k),
                pressure,
                voice_id,
            },
            Self::ControlChange(channel, cc, value) => {
                MidiMessage::ControlChange { channel, cc, value }
            }
            Self::ChannelPressure(channel, pressure) => {
                MidiMessage::ChannelPressure { channel, pressure }
            }
            Self::PitchBend(channel, value) => MidiMessage::PitchBend { channel, value },
            Self::ProgramChange(channel, program) => {
                MidiMessage::ProgramChange { channel, program }
            }
            Self::SysEx(bytes) => {
                MidiMessage::SysEx(SysEx::new(bytes).ok_or(DecodeError::InvalidEvent)?)
            }
        };
        if m.is_valid() {
            Ok(m)
        } else {
            Err(DecodeError::InvalidEvent)
        }
    }
}

/// What follows the prelude in an Events body, before the events.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
pub(super) struct EventsHead {
    /// Event sequence number of the first event; the others follow consecutively.
    pub(super) first_event_seq: u64,
    /// Origin time of the first event, ns on the sender's timeline; event times are relative
    /// to it.
    pub(super) base_ns: u64,
}

/// Decodes the rest of an Events body (after the prelude) into `out` and returns the sequence
/// number of the first event.
pub(super) fn decode_events(rest: &[u8], out: &mut Vec<TimedMessage>) -> Result<u64, DecodeError> {
    let (head, mut rest): (EventsHead, _) =
        postcard::take_from_bytes(rest).map_err(|_| DecodeError::Malformed)?;
    head.first_event_seq
        .checked_add(MAX_EVENTS_PER_DATAGRAM as u64)
        .ok_or(DecodeError::Malformed)?;
    while !rest.is_empty() {
        if out.len() == MAX_EVENTS_PER_DATAGRAM {
            return Err(DecodeError::TooManyEvents);
        }
        let (ev, tail): (WireEvent<'_>, _) =
            postcard::take_from_bytes(rest).map_err(|_| DecodeError::Malformed)?;
        rest = tail;
        let time_ns = head
            .base_ns
            .checked_add_signed(ev.dt_ns)
            .ok_or(DecodeError::TimeOverflow)?;
        out.push(TimedMessage {
            time_ns,
            msg: ev.msg.to_msg()?,
        });
    }
    if out.is_empty() {
        return Err(DecodeError::Empty);
    }
    Ok(head.first_event_seq)
}

/// Encodes as many of `events` as fit into one (unsealed) Events datagram and returns it with
/// the number of events it holds (at least one whenever `events` is not empty and the first
/// fits; 0 means nothing to send). `events[0]` has event sequence number `first_event_seq`.
pub fn encode_events(
    sender_id: u64,
    seq: u64,
    prelude: Prelude,
    first_event_seq: u64,
    events: &[TimedMessage],
) -> (Datagram, usize) {
    let mut d = Datagram::new(PacketType::Events, sender_id, seq);
    let Some(first) = events.first() else {
        return (d, 0);
    };
    let base_ns = first.time_ns;
    let head = EventsHead {
        first_event_seq,
        base_ns,
    };
    if d.push(&prelude).is_err() || d.push(&head).is_err() {
        return (d, 0);
    }
    let mut n = 0;
    for ev in events.iter().take(MAX_EVENTS_PER_DATAGRAM) {
        let wire = WireEvent {
            dt_ns: ev.time_ns.wrapping_sub(base_ns) as i64,
            msg: WireMsg::from_msg(&ev.msg),
        };
        if d.push(&wire).is_err() {
            // Does not fit: the rest goes into the next datagram.
            break;
        }
        n += 1;
    }
    (d, n)
}
