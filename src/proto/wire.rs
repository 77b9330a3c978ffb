//! Wire format v2: byte layout, encoder and decoder. `docs/protocol.md` is the specification;
//! this file implements it and must change with it.
//!
//! A datagram is a fixed 24-byte header read by hand (so that magic, version, type and flags
//! are checked before anything else is touched), then a body encoded with `postcard` (varints,
//! little-endian floats). In a room with a code the body is sealed with XChaCha20-Poly1305
//! ([`super::seal`]): encrypted, followed by a 16-byte tag, the header being the associated
//! data. Every body starts with the same [`Prelude`]: the sender's clock when it sent the
//! datagram, and the Receiver's epoch.
//!
//! Decoding never panics and never allocates beyond the caller's reused buffers: every
//! failure is a [`DecodeError`] or an [`OpenError`].

mod clock;
mod events;
mod state;

pub use clock::*;
pub use events::*;
pub use state::*;

use super::event::TimedMessage;
use super::seal::{RoomKey, TAG_LEN};
use serde::{Deserialize, Serialize};

/// The first four bytes of every datagram: ASCII `UMID`.
pub const MAGIC: [u8; 4] = *b"UMID";
/// The protocol version this build speaks.
pub const VERSION: u8 = 2;
/// Size of the fixed header in bytes.
pub const HEADER_LEN: usize = 24;
/// Largest datagram the encoder writes, tag included. 1,200 bytes is the budget QUIC uses
/// (RFC 9000 §14) so that a datagram crosses any IPv6 path (minimum MTU 1,280, RFC 8200 §5)
/// and common tunnels without IP fragmentation.
pub const MAX_DATAGRAM: usize = 1200;
/// Largest datagram the decoder accepts. Anything larger is not ours: rejected unread.
pub const MAX_ACCEPTED_DATAGRAM: usize = 1472;
/// Longest display name in bytes (UTF-8).
pub const NAME_MAX: usize = 64;
/// Header flag: the body is sealed (encrypted and followed by a tag).
pub const FLAG_SEALED: u8 = 0x01;

/// What a datagram carries (header byte 5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum PacketType {
    /// Sender to Receiver: a batch of timestamped MIDI events (new ones, and repeats of the
    /// last few batches).
    Events = 1,
    /// Sender to Receiver: name, timing needs and a snapshot of what is held; the heartbeat.
    State = 2,
    /// Sender to Receiver: the Sender is leaving (after releasing what it held).
    Bye = 3,
    /// Sender to Receiver: first half of a clock exchange.
    TimeRequest = 4,
    /// Receiver to Sender: second half of a clock exchange, with the Receiver's epoch.
    TimeReply = 5,
    /// Sender to Receiver: the Sender's current clock estimate.
    ClockReport = 6,
    /// Receiver to Sender, never sealed: "your datagram failed authentication".
    Refused = 7,
}

impl PacketType {
    fn from_u8(b: u8) -> Option<Self> {
        match b {
            1 => Some(Self::Events),
            2 => Some(Self::State),
            3 => Some(Self::Bye),
            4 => Some(Self::TimeRequest),
            5 => Some(Self::TimeReply),
            6 => Some(Self::ClockReport),
            7 => Some(Self::Refused),
            _ => None,
        }
    }
}

/// The fixed header of every datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// What the body holds.
    pub packet_type: PacketType,
    /// Whether the body is sealed.
    pub sealed: bool,
    /// Random 64-bit id the sender drew when its network thread started.
    pub sender_id: u64,
    /// Datagram sequence number, per sender id, starting at 0, +1 per datagram.
    pub seq: u64,
}

/// Why a datagram did not decode. Every variant is counted separately by the Receiver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Shorter than the header (or than header and tag, when sealed).
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
    /// A field out of its documented range (clock source, padding, snapshot channel, ...).
    InvalidField,
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::TooShort => write!(f, "datagram shorter than its header"),
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

/// Why a body could not be opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenError {
    /// The room needs sealed datagrams and this one is not.
    Unsealed,
    /// Sealed, but this side has no key (an open room, or a Sender without a code).
    NoKey,
    /// The tag does not match: another room's code, or a forged or damaged datagram.
    AuthFailed,
    /// Sealed, but too short to hold a tag.
    TooShort,
}

/// The start of every body.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Prelude {
    /// The sender's session time when it sent the datagram, ns.
    pub sent_ns: u64,
    /// The Receiver's epoch: drawn by the Receiver when its network thread starts, learnt by
    /// Senders from its TimeReplies and echoed in everything else they send (0 before).
    pub epoch: u32,
}

/// A decoded body.
// Inline on purpose: decoding allocates nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Body<'a> {
    /// Events (in the caller's buffer) numbered from `first_event_seq`.
    Events {
        /// The prelude.
        prelude: Prelude,
        /// Event sequence number of the first event.
        first_event_seq: u64,
    },
    /// A heartbeat with the Sender's state.
    State(StateBody<'a>),
    /// The Sender leaves.
    Bye {
        /// The prelude.
        prelude: Prelude,
    },
    /// A clock-exchange request, sent at `prelude.sent_ns`.
    TimeRequest {
        /// The prelude.
        prelude: Prelude,
    },
    /// A clock-exchange answer.
    TimeReply {
        /// The prelude (`sent_ns` is `t3`, `epoch` the Receiver's).
        prelude: Prelude,
        /// `t1` and `t2`.
        reply: TimeReply,
    },
    /// A clock estimate.
    ClockReport {
        /// The prelude.
        prelude: Prelude,
        /// The estimate.
        report: ClockReport,
    },
    /// Authentication failed at the Receiver.
    Refused,
}

impl Body<'_> {
    /// The prelude, for every type that has one.
    pub fn prelude(&self) -> Option<Prelude> {
        match *self {
            Self::Events { prelude, .. }
            | Self::Bye { prelude }
            | Self::TimeRequest { prelude }
            | Self::TimeReply { prelude, .. }
            | Self::ClockReport { prelude, .. } => Some(prelude),
            Self::State(s) => Some(s.prelude),
            Self::Refused => None,
        }
    }
}

/// A datagram ready to send: a fixed buffer and its length. No allocation per datagram.
#[derive(Clone)]
pub struct Datagram {
    /// The bytes, of which the first `len` are the datagram.
    buf: [u8; MAX_DATAGRAM],
    /// Length of the datagram, bytes.
    len: usize,
}

impl std::fmt::Debug for Datagram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Datagram({} bytes)", self.len)
    }
}

/// A body did not fit the datagram budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NoRoom;

impl Datagram {
    /// A datagram holding only `header` (the sealed flag is set by [`Datagram::seal`]).
    pub fn new(packet_type: PacketType, sender_id: u64, seq: u64) -> Self {
        let mut d = Self {
            buf: [0; MAX_DATAGRAM],
            len: HEADER_LEN,
        };
        d.buf[0..4].copy_from_slice(&MAGIC);
        d.buf[4] = VERSION;
        d.buf[5] = packet_type as u8;
        d.buf[8..16].copy_from_slice(&sender_id.to_le_bytes());
        d.buf[16..24].copy_from_slice(&seq.to_le_bytes());
        d
    }

    /// The bytes to send.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// Bytes of body written so far.
    pub fn body_len(&self) -> usize {
        self.len - HEADER_LEN
    }

    /// Appends one postcard value to the body, leaving room for a tag; on failure nothing is
    /// appended.
    pub fn push<T: Serialize>(&mut self, v: &T) -> Result<(), NoRoom> {
        let end = MAX_DATAGRAM - TAG_LEN;
        if self.len > end {
            return Err(NoRoom);
        }
        match postcard::to_slice(v, &mut self.buf[self.len..end]) {
            Ok(b) => {
                self.len += b.len();
                Ok(())
            }
            Err(_) => Err(NoRoom),
        }
    }

    /// Appends raw bytes to the body, leaving room for a tag.
    pub fn push_bytes(&mut self, b: &[u8]) -> Result<(), NoRoom> {
        if self.len + b.len() > MAX_DATAGRAM - TAG_LEN {
            return Err(NoRoom);
        }
        self.buf[self.len..self.len + b.len()].copy_from_slice(b);
        self.len += b.len();
        Ok(())
    }

    /// Seals the body under `key`: sets the sealed flag, encrypts the body with the header as
    /// associated data, and appends the tag. Call once, last.
    pub fn seal(&mut self, key: &RoomKey) {
        self.buf[6] |= FLAG_SEALED;
        let (header, rest) = self.buf.split_at_mut(HEADER_LEN);
        let body_len = self.len - HEADER_LEN;
        let mut id = [0u8; 8];
        id.copy_from_slice(&header[8..16]);
        let mut seq = [0u8; 8];
        seq.copy_from_slice(&header[16..24]);
        let tag = key.seal(
            u64::from_le_bytes(id),
            u64::from_le_bytes(seq),
            header,
            &mut rest[..body_len],
        );
        rest[body_len..body_len + TAG_LEN].copy_from_slice(&tag);
        self.len += TAG_LEN;
    }

    /// Seals the body when there is a key.
    pub fn seal_with(mut self, key: Option<&RoomKey>) -> Self {
        if let Some(k) = key {
            self.seal(k);
        }
        self
    }
}

/// Reads and checks the fixed header; returns it with what follows.
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
    if bytes[6] & !FLAG_SEALED != 0 || bytes[7] != 0 {
        return Err(DecodeError::ReservedBits);
    }
    let mut id = [0u8; 8];
    id.copy_from_slice(&bytes[8..16]);
    let mut seq = [0u8; 8];
    seq.copy_from_slice(&bytes[16..24]);
    Ok((
        Header {
            packet_type,
            sealed: bytes[6] & FLAG_SEALED != 0,
            sender_id: u64::from_le_bytes(id),
            seq: u64::from_le_bytes(seq),
        },
        &bytes[HEADER_LEN..],
    ))
}

/// Copies the body of `datagram` (whose header `h` was decoded) into `scratch` and, when it is
/// sealed, authenticates and decrypts it there. `key` is this side's room key (`None`: no
/// code); `require_sealed` refuses plain bodies (a room with a code). Returns the plain body.
pub fn open_body<'s>(
    h: &Header,
    datagram: &[u8],
    key: Option<&RoomKey>,
    require_sealed: bool,
    scratch: &'s mut [u8; MAX_ACCEPTED_DATAGRAM],
) -> Result<&'s [u8], OpenError> {
    let body = datagram.get(HEADER_LEN..).ok_or(OpenError::TooShort)?;
    if !h.sealed {
        if require_sealed {
            return Err(OpenError::Unsealed);
        }
        let out = scratch.get_mut(..body.len()).ok_or(OpenError::TooShort)?;
        out.copy_from_slice(body);
        return Ok(out);
    }
    let key = key.ok_or(OpenError::NoKey)?;
    let n = body.len().checked_sub(TAG_LEN).ok_or(OpenError::TooShort)?;
    let mut tag = [0u8; TAG_LEN];
    tag.copy_from_slice(&body[n..]);
    let out = scratch.get_mut(..n).ok_or(OpenError::TooShort)?;
    out.copy_from_slice(&body[..n]);
    key.open(h.sender_id, h.seq, &datagram[..HEADER_LEN], out, &tag)
        .map_err(|_| OpenError::AuthFailed)?;
    Ok(out)
}

/// Decodes a plain body of type `h.packet_type`. Events go into `events` (cleared first, its
/// capacity reused; left empty on error).
pub fn decode_body<'a>(
    h: &Header,
    body: &'a [u8],
    events: &mut Vec<TimedMessage>,
) -> Result<Body<'a>, DecodeError> {
    events.clear();
    if h.packet_type == PacketType::Refused {
        return if body.is_empty() {
            Ok(Body::Refused)
        } else {
            Err(DecodeError::TrailingBytes)
        };
    }
    let (prelude, rest): (Prelude, _) =
        postcard::take_from_bytes(body).map_err(|_| DecodeError::Malformed)?;
    let r = match h.packet_type {
        // No `?` here: an error must reach the clearing below.
        PacketType::Events => decode_events(rest, events).map(|first_event_seq| Body::Events {
            prelude,
            first_event_seq,
        }),
        PacketType::State => decode_state(prelude, rest).map(Body::State),
        PacketType::Bye => finish(rest).map(|_| Body::Bye { prelude }),
        PacketType::TimeRequest => decode_time_request(rest).map(|_| Body::TimeRequest { prelude }),
        PacketType::TimeReply => {
            decode_time_reply(rest).map(|reply| Body::TimeReply { prelude, reply })
        }
        PacketType::ClockReport => {
            decode_clock_report(rest).map(|report| Body::ClockReport { prelude, report })
        }
        PacketType::Refused => Ok(Body::Refused),
    };
    if r.is_err() {
        events.clear();
    }
    r
}

/// Checks that nothing is left of a body.
fn finish(rest: &[u8]) -> Result<(), DecodeError> {
    if rest.is_empty() {
        Ok(())
    } else {
        Err(DecodeError::TrailingBytes)
    }
}

/// Decodes a body rest that is exactly one postcard value.
fn decode_one<'a, T: Deserialize<'a>>(rest: &'a [u8]) -> Result<T, DecodeError> {
    let (v, tail) = postcard::take_from_bytes(rest).map_err(|_| DecodeError::Malformed)?;
    finish(tail)?;
    Ok(v)
}

/// Encodes a Bye.
pub fn encode_bye(sender_id: u64, seq: u64, prelude: Prelude) -> Datagram {
    let mut d = Datagram::new(PacketType::Bye, sender_id, seq);
    let _ = d.push(&prelude);
    d
}

/// Encodes a Refused notice (header only; never sealed).
pub fn encode_refused(receiver_id: u64, seq: u64) -> Datagram {
    Datagram::new(PacketType::Refused, receiver_id, seq)
}

#[cfg(test)]
#[path = "wire/tests.rs"]
mod tests;
