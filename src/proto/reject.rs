//! Why a datagram, or one event of an accepted datagram, was dropped: one counter per reason,
//! for the editors and the tests. Every rejection is counted; none is silent. Datagrams
//! ([`RejectReason`]) and events ([`EventDrop`]) are counted apart: an accepted datagram may
//! still have events that are not played.

use super::wire::{DecodeError, OpenError};

/// Why a datagram was dropped. Decode and open errors map one to one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reject {
    /// The datagram did not decode.
    Decode(DecodeError),
    /// Its body could not be opened (unsealed in a room with a code, wrong key, forged).
    Open(OpenError),
    /// Already received (network duplicate or replay) or too old to tell.
    Duplicate,
    /// A packet type this side never receives (a reply sent to a Receiver).
    Unexpected,
    /// Made for an earlier run of this Receiver (its epoch differs): stale or replayed.
    StaleEpoch,
    /// From a Sender this Receiver has already forgotten (it left or timed out): a replay.
    Gone,
    /// A new sender while [`MAX_PEERS`](super::peers::MAX_PEERS) are already known.
    TooManyPeers,
    /// A new sender while others joined at more than
    /// [`JOINS_PER_S`](super::receiver::JOINS_PER_S) (someone churning fresh ids).
    TooManyJoins,
    /// The sender exceeds its datagram rate.
    RateLimited,
    /// From a sender the user kicked: kept out for the rest of the run (or until the room
    /// code changes).
    Kicked,
    /// Plain under the id of a sender that joined sealed (anyone can send that in an open
    /// room), or sealed under the id of one that joined plain.
    SealMismatch,
    /// A goodbye from a sender this Receiver does not know.
    UnknownSender,
    /// A clock request while [`MAX_PENDING_REPLIES`](super::receiver::MAX_PENDING_REPLIES)
    /// answers wait to be sent.
    Busy,
}

/// Number of distinct [`RejectReason`] values.
pub const REJECT_REASONS: usize = 28;

/// A flat reason index for counters, stable for the editor and tests. Each variant is
/// described by [`RejectReason::label`] and by the error of the same name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum RejectReason {
    /// Shorter than a header (or than a sealed body's tag).
    TooShort,
    /// Longer than the largest datagram read.
    TooLong,
    /// Not `UMID`: not UDP MIDI at all.
    BadMagic,
    /// Another protocol version.
    UnsupportedVersion,
    /// A packet type this version does not have.
    UnknownType,
    /// Reserved header bits set.
    ReservedBits,
    /// A body that does not decode.
    Malformed,
    /// Bytes left after the body.
    TrailingBytes,
    /// An event out of MIDI 1.0's ranges.
    InvalidEvent,
    /// A time that overflows 64 bits.
    TimeOverflow,
    /// More events than a datagram may carry.
    TooManyEvents,
    /// A display name over 64 bytes.
    NameTooLong,
    /// An Events datagram with no event.
    Empty,
    /// A field out of range (a skew, a channel count...).
    InvalidField,
    /// Plain in a room with a code.
    Unsealed,
    /// Sealed with another key, or forged.
    AuthFailed,
    /// Sealed, while this Receiver has no key.
    NoKey,
    /// [`Reject::Unexpected`].
    Unexpected,
    /// [`Reject::Duplicate`].
    Duplicate,
    /// [`Reject::StaleEpoch`].
    StaleEpoch,
    /// [`Reject::Gone`].
    Gone,
    /// [`Reject::TooManyPeers`].
    TooManyPeers,
    /// [`Reject::TooManyJoins`].
    TooManyJoins,
    /// [`Reject::RateLimited`].
    RateLimited,
    /// [`Reject::Kicked`].
    Kicked,
    /// [`Reject::SealMismatch`].
    SealMismatch,
    /// [`Reject::UnknownSender`].
    UnknownSender,
    /// [`Reject::Busy`].
    Busy,
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
        Self::Unsealed,
        Self::AuthFailed,
        Self::NoKey,
        Self::Unexpected,
        Self::Duplicate,
        Self::StaleEpoch,
        Self::Gone,
        Self::TooManyPeers,
        Self::TooManyJoins,
        Self::RateLimited,
        Self::Kicked,
        Self::SealMismatch,
        Self::UnknownSender,
        Self::Busy,
    ];

    /// A short label for logs and the editor.
    pub fn label(self) -> &'static str {
        match self {
            Self::TooShort => "too short",
            Self::TooLong => "too long",
            Self::BadMagic => "not UDP MIDI",
            Self::UnsupportedVersion => "other version",
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
            Self::Unsealed => "no room code",
            Self::AuthFailed => "wrong code / forged",
            Self::NoKey => "sealed, no key",
            Self::Unexpected => "unexpected type",
            Self::Duplicate => "duplicate / replay",
            Self::StaleEpoch => "stale session",
            Self::Gone => "sender gone",
            Self::TooManyPeers => "too many peers",
            Self::TooManyJoins => "too many joins",
            Self::RateLimited => "rate limited",
            Self::Kicked => "kicked",
            Self::SealMismatch => "not sealed as it joined",
            Self::UnknownSender => "bye from a stranger",
            Self::Busy => "replies full",
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
            Reject::Open(e) => match e {
                OpenError::Unsealed => Self::Unsealed,
                OpenError::AuthFailed => Self::AuthFailed,
                OpenError::NoKey => Self::NoKey,
                OpenError::TooShort => Self::TooShort,
            },
            Reject::Duplicate => Self::Duplicate,
            Reject::Unexpected => Self::Unexpected,
            Reject::StaleEpoch => Self::StaleEpoch,
            Reject::Gone => Self::Gone,
            Reject::TooManyPeers => Self::TooManyPeers,
            Reject::TooManyJoins => Self::TooManyJoins,
            Reject::RateLimited => Self::RateLimited,
            Reject::Kicked => Self::Kicked,
            Reject::SealMismatch => Self::SealMismatch,
            Reject::UnknownSender => Self::UnknownSender,
            Reject::Busy => Self::Busy,
        }
    }
}

/// Why an event (or another item for the audio thread) of an accepted datagram was not
/// handed on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum EventDrop {
    /// The queue to the audio thread is full, or this peer has its share of it (the audio
    /// thread is not taking items, or one peer sends far more than the others).
    QueueFull,
    /// Its origin time, on the Receiver's timeline, is too far in the future or too late to
    /// play ([`MAX_EARLY_NS`](super::receiver::MAX_EARLY_NS),
    /// [`MAX_LATE_NS`](super::receiver::MAX_LATE_NS)); what ends a note is never dropped
    /// for this.
    OutOfWindow,
}

/// Number of distinct [`EventDrop`] values.
pub const EVENT_DROPS: usize = 2;

impl EventDrop {
    /// Every reason, in index order.
    pub const ALL: [EventDrop; EVENT_DROPS] = [Self::QueueFull, Self::OutOfWindow];

    /// A short label for logs and the editor.
    pub fn label(self) -> &'static str {
        match self {
            Self::QueueFull => "queue full",
            Self::OutOfWindow => "out of time window",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_and_labels_are_distinct() {
        for (i, r) in RejectReason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
        }
        let mut labels: Vec<_> = RejectReason::ALL.iter().map(|r| r.label()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), REJECT_REASONS);
        for (i, r) in EventDrop::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
        }
        let mut labels: Vec<_> = EventDrop::ALL.iter().map(|r| r.label()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), EVENT_DROPS);
    }
}
