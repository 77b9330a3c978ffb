//! The Receiver's protocol state machine, sans-IO: datagrams and the time go in, scheduled
//! events come out. It never touches a socket or reads a clock.
//!
//! Playout: an event from a peer is due at `origin + base_offset(peer)`, where `base_offset`
//! is the smallest `arrival - origin` seen from that peer over the last 5 to 10 s
//! ([`WindowedMin`]). That is the arrival time of the fastest datagram, so the event that
//! travelled fastest is due on arrival and every other one keeps its original distance to it:
//! the spacing of a peer's events is reproduced exactly, whatever the network jitter and the
//! offset between the two machines' clocks. The audio thread plays it at `due + delay`, the
//! "Default delay" parameter being the margin that absorbs jitter.

use super::event::{MidiMessage, TimedMessage};
use super::peers::{PeerTable, WindowedMin, MAX_PEERS, PEER_TIMEOUT_NS};
use super::replay::Verdict;
use super::wire::{self, DecodeError, PacketType, MAX_EVENTS_PER_DATAGRAM};
use std::collections::VecDeque;
use std::net::SocketAddr;

/// Most scheduled events waiting for the network thread to hand them to the audio thread.
/// Past it the newest are dropped and counted.
pub const MAX_PENDING: usize = 4096;

/// An event for the audio thread: what to play, from whom, and when.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ScheduledEvent {
    /// Receiver-timeline ns at which the event is due, before the playout delay.
    pub due_ns: u64,
    /// Slot of the peer in the [`PeerTable`] (`0..MAX_PEERS`).
    pub peer: u8,
    /// The message.
    pub msg: MidiMessage,
}

/// Why a datagram was dropped, for counting. Decode errors map one to one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reject {
    /// The datagram did not decode.
    Decode(DecodeError),
    /// Already received (network duplicate) or too old to tell.
    Duplicate,
    /// A new sender while [`MAX_PEERS`] are already known.
    TooManyPeers,
}

/// Number of distinct [`RejectReason`] values.
pub const REJECT_REASONS: usize = 16;

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
            },
            Reject::Duplicate => Self::Duplicate,
            Reject::TooManyPeers => Self::TooManyPeers,
        }
    }
}

/// Counters of what arrived.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReceiverStats {
    /// Datagrams accepted.
    pub datagrams: u64,
    /// Events scheduled.
    pub events: u64,
    /// Rejected datagrams (or dropped events, for `QueueFull`) by [`RejectReason`] index.
    pub rejected: [u64; REJECT_REASONS],
    /// Peers that left by Bye or went silent.
    pub peers_gone: u64,
}

/// What one peer changed, reported by [`ReceiverCore::poll_peer_event`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerEvent {
    /// A new sender took slot `slot`.
    Joined {
        /// Its slot.
        slot: u8,
        /// Its id.
        sender_id: u64,
    },
    /// The sender in `slot` said goodbye or went silent.
    Left {
        /// Its slot.
        slot: u8,
        /// Its id.
        sender_id: u64,
    },
}

/// The Receiver side of the protocol.
#[derive(Debug)]
pub struct ReceiverCore {
    /// Every sender heard recently.
    peers: PeerTable,
    /// Reused decode buffer.
    scratch: Vec<TimedMessage>,
    /// Events ready for the audio thread.
    events: VecDeque<ScheduledEvent>,
    /// Joins and leaves not yet polled.
    peer_events: VecDeque<PeerEvent>,
    /// Counters.
    stats: ReceiverStats,
}

impl Default for ReceiverCore {
    fn default() -> Self {
        Self::new()
    }
}

impl ReceiverCore {
    /// A Receiver that knows no sender yet.
    pub fn new() -> Self {
        Self {
            peers: PeerTable::new(),
            scratch: Vec::with_capacity(MAX_EVENTS_PER_DATAGRAM),
            events: VecDeque::with_capacity(MAX_PENDING),
            peer_events: VecDeque::with_capacity(2 * MAX_PEERS),
            stats: ReceiverStats::default(),
        }
    }

    /// A datagram `bytes` arrived from `from` at `now` (Receiver timeline, ns). Errors are
    /// counted and returned; nothing already received is affected by a bad datagram.
    pub fn handle_datagram(
        &mut self,
        now: u64,
        from: SocketAddr,
        bytes: &[u8],
    ) -> Result<(), Reject> {
        let r = self.handle_inner(now, from, bytes);
        if let Err(e) = r {
            self.stats.rejected[RejectReason::from(e) as usize] += 1;
        }
        r
    }

    fn handle_inner(&mut self, now: u64, from: SocketAddr, bytes: &[u8]) -> Result<(), Reject> {
        let (h, body) = wire::decode_header(bytes).map_err(Reject::Decode)?;
        // Decode the whole body before touching any state, so a bad datagram changes nothing.
        let mut name = None;
        let mut first_event_seq = 0;
        match h.packet_type {
            PacketType::Events => {
                first_event_seq =
                    wire::decode_events(body, &mut self.scratch).map_err(Reject::Decode)?
            }
            PacketType::Hello => name = Some(wire::decode_hello(body).map_err(Reject::Decode)?),
            PacketType::Bye => wire::decode_bye(body).map_err(Reject::Decode)?,
        }
        let slot = match self.peers.find(h.sender_id) {
            Some(s) => s,
            None => {
                if h.packet_type == PacketType::Bye {
                    // Goodbye from a stranger: nothing to forget.
                    return Ok(());
                }
                let s = self
                    .peers
                    .find_or_insert(h.sender_id, from, now)
                    .map_err(|_| Reject::TooManyPeers)?;
                self.peer_events.push_back(PeerEvent::Joined {
                    slot: s as u8,
                    sender_id: h.sender_id,
                });
                s
            }
        };
        let peer = self.peers.get_mut(slot).expect("slot was just found");
        if peer.window.accept(h.seq) != Verdict::New {
            return Err(Reject::Duplicate);
        }
        peer.addr = from;
        peer.last_seen = now;
        peer.datagrams += 1;
        self.stats.datagrams += 1;
        match h.packet_type {
            PacketType::Hello => {
                let name = name.unwrap_or_default();
                if peer.name != name {
                    peer.name.clear();
                    peer.name.push_str(name);
                }
            }
            PacketType::Bye => {
                self.forget(slot);
            }
            PacketType::Events => {
                let n = self.scratch.len() as u64;
                match peer.next_event_seq {
                    Some(next) if first_event_seq > next => {
                        peer.events_lost += first_event_seq - next;
                        peer.next_event_seq = Some(first_event_seq + n);
                    }
                    Some(next) if first_event_seq + n > next => {
                        peer.next_event_seq = Some(first_event_seq + n);
                    }
                    Some(_) => {
                        // An older datagram arriving late (reordered): it fills a gap.
                        peer.events_lost = peer.events_lost.saturating_sub(n);
                    }
                    None => peer.next_event_seq = Some(first_event_seq + n),
                }
                peer.events += n;
                for ev in &self.scratch {
                    let transit = now.wrapping_sub(ev.time_ns) as i64;
                    match &mut peer.base_offset {
                        Some(m) => m.push(now, transit),
                        None => peer.base_offset = Some(WindowedMin::new(now, transit)),
                    }
                }
                let base = peer.base_offset.map_or(0, |m| m.get());
                for ev in &self.scratch {
                    // A datagram that was overtaken keeps its own times: the audio thread's
                    // schedule puts its events back in order.
                    let due = ev.time_ns.wrapping_add_signed(base);
                    if self.events.len() == MAX_PENDING {
                        self.stats.rejected[RejectReason::QueueFull as usize] += 1;
                        continue;
                    }
                    self.events.push_back(ScheduledEvent {
                        due_ns: due,
                        peer: slot as u8,
                        msg: ev.msg,
                    });
                    self.stats.events += 1;
                }
            }
        }
        Ok(())
    }

    fn forget(&mut self, slot: usize) {
        if let Some(p) = self.peers.remove(slot) {
            self.stats.peers_gone += 1;
            self.peer_events.push_back(PeerEvent::Left {
                slot: slot as u8,
                sender_id: p.sender_id,
            });
        }
    }

    /// Time has reached `now`: forgets peers that went silent.
    pub fn handle_timeout(&mut self, now: u64) {
        for slot in 0..MAX_PEERS {
            if self
                .peers
                .get(slot)
                .is_some_and(|p| now.saturating_sub(p.last_seen) > PEER_TIMEOUT_NS)
            {
                self.forget(slot);
            }
        }
    }

    /// When `handle_timeout` wants to be called next.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.peers.next_expiry(PEER_TIMEOUT_NS)
    }

    /// The next event for the audio thread.
    pub fn poll_event(&mut self) -> Option<ScheduledEvent> {
        self.events.pop_front()
    }

    /// Puts back an event the caller could not hand on (its queue was full), so it is retried
    /// first next time instead of lost.
    pub fn unpoll_event(&mut self, ev: ScheduledEvent) {
        self.events.push_front(ev);
    }

    /// The next join or leave.
    pub fn poll_peer_event(&mut self) -> Option<PeerEvent> {
        self.peer_events.pop_front()
    }

    /// The senders heard recently.
    pub fn peers(&self) -> &PeerTable {
        &self.peers
    }

    /// Counters so far.
    pub fn stats(&self) -> &ReceiverStats {
        &self.stats
    }
}

#[cfg(test)]
#[path = "receiver/tests.rs"]
mod tests;
