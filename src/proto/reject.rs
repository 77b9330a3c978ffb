//! Why a datagram (or an event) was dropped: one counter per reason, for the editors and the
//! tests. Every rejection is counted; none is silent.

use super::wire::DecodeError;

/// Why a datagram was dropped, for counting. Decode errors map one to one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reject {
    /// The datagram did not decode.
    Decode(DecodeError),
    /// Already received (network duplicate) or too old to tell.
    Duplicate,
    /// A packet type this side never receives (a reply sent to a Receiver).
    Unexpected,
    /// A new sender while [`MAX_PEERS`](super::peers::MAX_PEERS) are already known.
    TooManyPeers,
}

/// Number of distinct [`RejectReason`] values.
pub const REJECT_REASONS: usize = 18;

/// A flat reason index for counters, stable for the editor and tests. Each variant is
/// described by [`RejectReason::label`] and by the [`DecodeError`] of the same name.
#[allow(missing_docs)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum RejectReason {
    TooShort,
    TooLong,
    BadMagic,
    UnsupportedVersion,
    UnknownType,
    ReservedBits,
    Malformed,
    TrailingBytes,
    InvalidEvent,
    TimeOverflow,
    TooManyEvents,
    NameTooLong,
    Empty,
    InvalidField,
    Unexpected,
    Duplicate,
    TooManyPeers,
    QueueFull,
}

impl RejectReason {
    /// Every reason, in index order.
    pub const ALL: [RejectReason; REJECT_REASONS] = [
        Self::TooShort,
        Self::TooLong,
        Self::BadMagic,
        Self::UnsupportedVersion,
        Self::UnknownType,
        Self::ReservedBits,
        Self::Malformed,
        Self::TrailingBytes,
        Self::InvalidEvent,
        Self::TimeOverflow,
        Self::TooManyEvents,
        Self::NameTooLong,
        Self::Empty,
        Self::InvalidField,
        Self::Unexpected,
        Self::Duplicate,
        Self::TooManyPeers,
        Self::QueueFull,
    ];

    /// A short label for logs and the editor.
    pub fn label(self) -> &'static str {
        match self {
            Self::TooShort => "too short",
            Self::TooLong => "too long",
            Self::BadMagic => "bad magic",
            Self::UnsupportedVersion => "unsupported version",
            Self::UnknownType => "unknown type",
            Self::ReservedBits => "reserved bits",
            Self::Malformed => "malformed",
            Self::TrailingBytes => "trailing bytes",
            Self::InvalidEvent => "invalid event",
            Self::TimeOverflow => "time overflow",
            Self::TooManyEvents => "too many events",
            Self::NameTooLong => "name too long",
            Self::Empty => "empty",
            Self::InvalidField => "invalid field",
            Self::Unexpected => "unexpected type",
            Self::Duplicate => "duplicate",
            Self::TooManyPeers => "too many peers",
            Self::QueueFull => "queue full",
        }
    }
}

impl From<Reject> for RejectReason {
    fn from(r: Reject) -> Self {
        match r {
            Reject::Decode(e) => match e {
                DecodeError::TooShort => Self::TooShort,
                DecodeError::TooLong => Self::TooLong,
                DecodeError::BadMagic => Self::BadMagic,
                DecodeError::UnsupportedVersion(_) => Self::UnsupportedVersion,
                DecodeError::UnknownType(_) => Self::UnknownType,
                DecodeError::ReservedBits => Self::ReservedBits,
                DecodeError::Malformed => Self::Malformed,
                DecodeError::TrailingBytes => Self::TrailingBytes,
                DecodeError::InvalidEvent => Self::InvalidEvent,
                DecodeError::TimeOverflow => Self::TimeOverflow,
                DecodeError::TooManyEvents => Self::TooManyEvents,
                DecodeError::NameTooLong => Self::NameTooLong,
                DecodeError::Empty => Self::Empty,
                DecodeError::InvalidField => Self::InvalidField,
            },
            Reject::Duplicate => Self::Duplicate,
            Reject::Unexpected => Self::Unexpected,
            Reject::TooManyPeers => Self::TooManyPeers,
        }
    }
}
