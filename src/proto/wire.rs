//! Wire format v1: byte layout, encoder and decoder. `docs/protocol.md` is the specification;
//! this file implements it and must change with it.
//!
//! A datagram is a fixed 24-byte header read by hand (so that magic, version and type are
//! checked before any variable-length field is touched) followed by a body encoded with
//! `postcard` (varints, little-endian floats). The decoder never panics and never allocates
//! more than the caller's reused buffer: every failure is a [`DecodeError`].

use super::event::{MidiMessage, SysEx, TimedMessage};
use serde::{Deserialize, Serialize};

/// The first four bytes of every datagram: ASCII `UMID`.
pub const MAGIC: [u8; 4] = *b"UMID";
/// The protocol version this build speaks.
pub const VERSION: u8 = 1;
/// Size of the fixed header in bytes.
pub const HEADER_LEN: usize = 24;
/// Largest datagram the encoder writes. 1,200 bytes is the budget QUIC uses (RFC 9000
/// §14) so that a datagram crosses any IPv6 path (minimum MTU 1,280, RFC 8200 §5) and common
/// tunnels without IP fragmentation.
pub const MAX_DATAGRAM: usize = 1200;
/// Largest datagram the decoder accepts. Anything larger is not ours: rejected unread.
pub const MAX_ACCEPTED_DATAGRAM: usize = 1472;
/// Longest display name in bytes (UTF-8).
pub const NAME_MAX: usize = 64;
/// Most events one datagram may carry (a bound for the decoder; the size limit already
/// keeps honest datagrams under it).
pub const MAX_EVENTS_PER_DATAGRAM: usize = 256;
/// The wildcard value of a channel or key on the wire ("any channel", "any key").
const WILDCARD: u8 = 0xFF;

/// What a datagram carries (header byte 5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum PacketType {
    /// A batch of timestamped MIDI events.
    Events = 1,
    /// "I am here": the sender's display name; also the heartbeat when idle.
    Hello = 2,
    /// The sender is leaving (deactivated or removed).
    Bye = 3,
    /// Sender to Receiver: first half of a clock exchange (t1).
    TimeRequest = 4,
    /// Receiver to Sender: second half of a clock exchange (t1, t2, t3).
    TimeReply = 5,
    /// Sender to Receiver: the sender's current clock estimate.
    ClockReport = 6,
}

impl PacketType {
    fn from_u8(b: u8) -> Option<Self> {
        match b {
            1 => Some(Self::Events),
            2 => Some(Self::Hello),
            3 => Some(Self::Bye),
            4 => Some(Self::TimeRequest),
            5 => Some(Self::TimeReply),
            6 => Some(Self::ClockReport),
            _ => None,
        }
    }
}

/// The fixed header of every datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// What the body holds.
    pub packet_type: PacketType,
    /// Random 64-bit id the sender chose when it was instantiated.
    pub sender_id: u64,
    /// Datagram sequence number, per sender, starting at 0, +1 per datagram.
    pub seq: u64,
}

/// Why a datagram was rejected. Every variant is counted separately by the Receiver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Shorter than the header.
    TooShort,
    /// Longer than [`MAX_ACCEPTED_DATAGRAM`].
    TooLong,
    /// The first four bytes are not [`MAGIC`].
    BadMagic,
    /// A protocol version this build does not speak.
    UnsupportedVersion(u8),
    /// A packet type this version does not define.
    UnknownType(u8),
    /// Reserved header bits are set.
    ReservedBits,
    /// The body does not parse (truncated, bad varint, bad enum tag, bad UTF-8, ...).
    Malformed,
    /// Bytes left over after a complete body.
    TrailingBytes,
    /// An event's value is outside the MIDI 1.0 range.
    InvalidEvent,
    /// An event's time overflows the 64-bit timeline.
    TimeOverflow,
    /// More than [`MAX_EVENTS_PER_DATAGRAM`] events.
    TooManyEvents,
    /// A display name longer than [`NAME_MAX`].
    NameTooLong,
    /// An Events datagram with no event.
    Empty,
    /// A field out of its documented range (clock source, padding).
    InvalidField,
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::TooShort => write!(f, "datagram shorter than the {HEADER_LEN}-byte header"),
            Self::TooLong => write!(f, "datagram longer than {MAX_ACCEPTED_DATAGRAM} bytes"),
            Self::BadMagic => write!(f, "not a UDP MIDI datagram (bad magic)"),
            Self::UnsupportedVersion(v) => write!(f, "unsupported protocol version {v}"),
            Self::UnknownType(t) => write!(f, "unknown packet type {t}"),
            Self::ReservedBits => write!(f, "reserved header bits set"),
            Self::Malformed => write!(f, "malformed body"),
            Self::TrailingBytes => write!(f, "trailing bytes after body"),
            Self::InvalidEvent => write!(f, "event value out of MIDI range"),
            Self::TimeOverflow => write!(f, "event time overflows"),
            Self::TooManyEvents => write!(f, "too many events in one datagram"),
            Self::NameTooLong => write!(f, "display name too long"),
            Self::Empty => write!(f, "events datagram without events"),
            Self::InvalidField => write!(f, "field out of range"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// One event on the wire: its time relative to the batch's base time, and the message.
/// Field order and variant order are the wire format: never reorder.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct WireEvent<'a> {
    /// Origin time minus the batch base time, in ns (zigzag varint).
    dt_ns: i64,
    #[serde(borrow)]
    msg: WireMsg<'a>,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
enum WireMsg<'a> {
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

/// Header of an Events body: the base time and the sequence number of its first event.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct EventsPrelude {
    /// Origin time of the batch, ns on the sender's timeline; event times are relative to it.
    base_ns: u64,
    /// Event sequence number of the first event; the others follow consecutively.
    first_event_seq: u64,
}

/// Body of a Hello datagram.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct HelloBody<'a> {
    /// Display name, UTF-8, at most [`NAME_MAX`] bytes.
    name: &'a str,
}

/// Encodes a datagram whose body is one postcard value.
fn encode_body<T: Serialize>(h: &Header, body: &T) -> Datagram {
    let mut d = Datagram {
        buf: [0; MAX_DATAGRAM],
        len: HEADER_LEN,
    };
    write_header(&mut d.buf, h);
    // Callers only pass bodies of a few dozen bytes.
    if let Ok(b) = postcard::to_slice(body, &mut d.buf[HEADER_LEN..]) {
        d.len += b.len();
    }
    d
}

/// Decodes a body that is exactly one postcard value.
fn decode_body<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, DecodeError> {
    let (v, rest) = postcard::take_from_bytes(body).map_err(|_| DecodeError::Malformed)?;
    if rest.is_empty() {
        Ok(v)
    } else {
        Err(DecodeError::TrailingBytes)
    }
}

/// Writes the fixed header into the first [`HEADER_LEN`] bytes of `out`.
fn write_header(out: &mut [u8; MAX_DATAGRAM], h: &Header) {
    out[0..4].copy_from_slice(&MAGIC);
    out[4] = VERSION;
    out[5] = h.packet_type as u8;
    out[6..8].copy_from_slice(&0u16.to_le_bytes());
    out[8..16].copy_from_slice(&h.sender_id.to_le_bytes());
    out[16..24].copy_from_slice(&h.seq.to_le_bytes());
}

/// Reads and checks the fixed header; returns it with the body that follows.
pub fn decode_header(bytes: &[u8]) -> Result<(Header, &[u8]), DecodeError> {
    if bytes.len() > MAX_ACCEPTED_DATAGRAM {
        return Err(DecodeError::TooLong);
    }
    if bytes.len() < HEADER_LEN {
        return Err(DecodeError::TooShort);
    }
    if bytes[0..4] != MAGIC {
        return Err(DecodeError::BadMagic);
    }
    if bytes[4] != VERSION {
        return Err(DecodeError::UnsupportedVersion(bytes[4]));
    }
    let packet_type = PacketType::from_u8(bytes[5]).ok_or(DecodeError::UnknownType(bytes[5]))?;
    if bytes[6] != 0 || bytes[7] != 0 {
        return Err(DecodeError::ReservedBits);
    }
    let mut id = [0u8; 8];
    id.copy_from_slice(&bytes[8..16]);
    let mut seq = [0u8; 8];
    seq.copy_from_slice(&bytes[16..24]);
    Ok((
        Header {
            packet_type,
            sender_id: u64::from_le_bytes(id),
            seq: u64::from_le_bytes(seq),
        },
        &bytes[HEADER_LEN..],
    ))
}

/// Decodes an Events body into `out` (cleared first; its capacity is reused) and returns the
/// sequence number of the first event. On error `out` is left empty.
pub fn decode_events(body: &[u8], out: &mut Vec<TimedMessage>) -> Result<u64, DecodeError> {
    out.clear();
    let r = decode_events_inner(body, out);
    if r.is_err() {
        out.clear();
    }
    r
}

fn decode_events_inner(body: &[u8], out: &mut Vec<TimedMessage>) -> Result<u64, DecodeError> {
    let (prelude, mut rest): (EventsPrelude, _) =
        postcard::take_from_bytes(body).map_err(|_| DecodeError::Malformed)?;
    prelude
        .first_event_seq
        .checked_add(MAX_EVENTS_PER_DATAGRAM as u64)
        .ok_or(DecodeError::Malformed)?;
    while !rest.is_empty() {
        if out.len() == MAX_EVENTS_PER_DATAGRAM {
            return Err(DecodeError::TooManyEvents);
        }
        let (ev, tail): (WireEvent<'_>, _) =
            postcard::take_from_bytes(rest).map_err(|_| DecodeError::Malformed)?;
        rest = tail;
        let time_ns = prelude
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
    Ok(prelude.first_event_seq)
}

/// Decodes a Hello body: the sender's display name.
pub fn decode_hello(body: &[u8]) -> Result<&str, DecodeError> {
    let (hello, rest): (HelloBody<'_>, _) =
        postcard::take_from_bytes(body).map_err(|_| DecodeError::Malformed)?;
    if !rest.is_empty() {
        return Err(DecodeError::TrailingBytes);
    }
    if hello.name.len() > NAME_MAX {
        return Err(DecodeError::NameTooLong);
    }
    Ok(hello.name)
}

/// Checks a Bye body (empty in v1).
pub fn decode_bye(body: &[u8]) -> Result<(), DecodeError> {
    if body.is_empty() {
        Ok(())
    } else {
        Err(DecodeError::TrailingBytes)
    }
}

/// A datagram ready to send: a fixed buffer and its length. No allocation per datagram.
#[derive(Clone)]
pub struct Datagram {
    buf: [u8; MAX_DATAGRAM],
    len: usize,
}

impl Datagram {
    /// The bytes to send.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl std::fmt::Debug for Datagram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Datagram({} bytes)", self.len)
    }
}

/// Encodes as many of `events` as fit into one Events datagram and returns it with the number
/// of events it holds (at least one whenever `events` is not empty; 0 means nothing to send).
/// Events whose time lies more than ±2^62 ns from the first are impossible on one timeline and
/// are not handled specially.
pub fn encode_events(
    sender_id: u64,
    seq: u64,
    first_event_seq: u64,
    events: &[TimedMessage],
) -> (Datagram, usize) {
    let mut d = Datagram {
        buf: [0; MAX_DATAGRAM],
        len: HEADER_LEN,
    };
    let Some(first) = events.first() else {
        return (d, 0);
    };
    write_header(
        &mut d.buf,
        &Header {
            packet_type: PacketType::Events,
            sender_id,
            seq,
        },
    );
    let base_ns = first.time_ns;
    let prelude = EventsPrelude {
        base_ns,
        first_event_seq,
    };
    let used = postcard::to_slice(&prelude, &mut d.buf[HEADER_LEN..])
        .expect("the prelude (at most 20 bytes) fits in an empty datagram")
        .len();
    d.len += used;
    let mut n = 0;
    for ev in events.iter().take(MAX_EVENTS_PER_DATAGRAM) {
        let wire = WireEvent {
            dt_ns: ev.time_ns.wrapping_sub(base_ns) as i64,
            msg: WireMsg::from_msg(&ev.msg),
        };
        match postcard::to_slice(&wire, &mut d.buf[d.len..]) {
            Ok(written) => {
                d.len += written.len();
                n += 1;
            }
            // Does not fit: the rest goes into the next datagram.
            Err(_) => break,
        }
    }
    (d, n)
}

/// Encodes a Hello datagram. A name longer than [`NAME_MAX`] bytes is cut at a character
/// boundary.
pub fn encode_hello(sender_id: u64, seq: u64, name: &str) -> Datagram {
    let mut cut = name.len().min(NAME_MAX);
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut d = Datagram {
        buf: [0; MAX_DATAGRAM],
        len: HEADER_LEN,
    };
    write_header(
        &mut d.buf,
        &Header {
            packet_type: PacketType::Hello,
            sender_id,
            seq,
        },
    );
    let body = HelloBody { name: &name[..cut] };
    d.len += postcard::to_slice(&body, &mut d.buf[HEADER_LEN..])
        .expect("a 64-byte name fits in a datagram")
        .len();
    d
}

/// Encodes a Bye datagram.
pub fn encode_bye(sender_id: u64, seq: u64) -> Datagram {
    let mut d = Datagram {
        buf: [0; MAX_DATAGRAM],
        len: HEADER_LEN,
    };
    write_header(
        &mut d.buf,
        &Header {
            packet_type: PacketType::Bye,
            sender_id,
            seq,
        },
    );
    d
}

mod clock;
pub use clock::*;

#[cfg(test)]
#[path = "wire/tests.rs"]
mod tests;
