//! The Receiver's protocol state machine, sans-IO: datagrams and the time go in, scheduled
//! items for the audio thread, replies and the playout delay come out. It never touches a
//! socket or reads a clock.
//!
//! Checks, in order (each failure counted by reason, nothing already received affected):
//! header; seal (a room with a code takes only datagrams sealed with its key, and answers the
//! others with a bare "Refused", rate-limited); body; departed sender (a replay); epoch (a
//! datagram made for an earlier run of this Receiver); duplicate datagram (sliding window, which
//! a joining sender's window starts with the clock requests it made before joining); rate; then
//! duplicate events (each event arrives several times, by design).
//!
//! Alignment: every event's origin time is put on the Receiver's timeline with the best clock
//! information about its sender ([`ClockBasis`](super::peers::ClockBasis)): the Sender's
//! direct clock exchange with us, else both machines' NTP offsets, else the fastest transit
//! seen. Its one-way latency is then `arrival - origin`. The common playout delay `D` is the
//! largest need of the active peers plus the margin (or the margin alone in fixed mode), and
//! every event plays at `origin + D`: all players line up on the slowest one, and each keeps
//! its own spacing.
//! The audio thread adds `D` at playout time ([`crate::timing::playout::PlayoutGate`]).
//!
//! The core is one struct, [`ReceiverCore`], whose work is spread over modules of their own:
//! the admission of datagrams (`admission`), the peers joining and leaving and the timer
//! (`membership`), the placement of events on our timeline and the playout delay
//! (`placement`), what leaves the core, for the audio thread and the network (`outbound`),
//! and the editor's view of it all (`report`).

use super::event::TimedMessage;
use super::limit::TokenBucket;
use super::peers::{PeerTable, DEFAULT_PEER_TIMEOUT_NS, MAX_PEERS};
pub use super::reject::{EventDrop, Reject, RejectReason, EVENT_DROPS, REJECT_REASONS};
use super::seal::RoomKey;
use super::wire::MAX_EVENTS_PER_DATAGRAM;
use crate::timing::playout::{PlayoutDelay, PlayoutMode};
use admission::{REFUSALS_PER_S, REFUSAL_BURST};
use outbound::Reply;
use std::collections::VecDeque;

mod admission;
mod membership;
mod outbound;
mod placement;
mod report;

pub use admission::ANSWERED_REQUESTS;
pub use membership::{LeaveReason, PeerEvent, JOINS_PER_S, JOIN_BURST, MAX_BANNED};
pub use outbound::{
    Item, ScheduledEvent, END_RESERVE, MAX_PEER_EVENTS, MAX_PENDING, MAX_PENDING_REPLIES,
};
pub(crate) use placement::to_receiver_time;
pub use placement::{NtpOffset, MAX_EARLY_NS, MAX_LATE_NS};
pub use report::{peer_clock, push_history};

/// Counters of what arrived.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReceiverStats {
    /// Datagrams accepted.
    pub datagrams: u64,
    /// Distinct events scheduled.
    pub events: u64,
    /// Repeated copies of events already received (redundancy at work).
    pub repeats: u64,
    /// Rejected datagrams by [`RejectReason`] index.
    pub rejected: [u64; REJECT_REASONS],
    /// Events (and other items) of accepted datagrams not handed on, by [`EventDrop`] index.
    pub dropped: [u64; EVENT_DROPS],
    /// "Refused" notices sent.
    pub refusals: u64,
    /// Peers that left by Bye, went silent or were kicked.
    pub peers_gone: u64,
}

/// How a Receiver is set up.
#[derive(Clone, Debug)]
pub struct ReceiverConfig {
    /// Random id of this Receiver, in the header of its replies.
    pub receiver_id: u64,
    /// Random epoch of this run; Senders must echo it.
    pub epoch: u32,
    /// The room key.
    pub key: Option<RoomKey>,
    /// Accept plain (unsealed) datagrams too.
    pub open_room: bool,
    /// Safety margin of the playout delay, ns.
    pub margin_ns: i64,
    /// Align to the slowest peer, or a fixed delay.
    pub mode: PlayoutMode,
    /// A peer silent this long is forgotten, ns.
    pub timeout_ns: u64,
}

impl Default for ReceiverConfig {
    fn default() -> Self {
        Self {
            receiver_id: 0,
            epoch: 0,
            key: None,
            open_room: true,
            margin_ns: 5_000_000,
            mode: PlayoutMode::Adaptive,
            timeout_ns: DEFAULT_PEER_TIMEOUT_NS,
        }
    }
}

/// The Receiver side of the protocol.
#[derive(Debug)]
pub struct ReceiverCore {
    /// Set-up (key, margin, mode, timeout change at run time).
    config: ReceiverConfig,
    /// Every sender heard recently.
    peers: PeerTable,
    /// Reused decode buffer for events.
    scratch: Vec<TimedMessage>,
    /// Items ready for the audio thread.
    out: VecDeque<ScheduledEvent>,
    /// Joins and leaves not yet polled.
    peer_events: VecDeque<PeerEvent>,
    /// Datagrams to send.
    replies: VecDeque<Reply>,
    /// Limits "Refused" notices.
    refusals: TokenBucket,
    /// The audio thread's count of late events per slot, as last told
    /// ([`ReceiverCore::set_audio_late`]).
    audio_late: [u64; MAX_PEERS],
    /// Ids of the senders the user kicked, a ring of [`MAX_BANNED`]: none of their datagrams
    /// is taken again, whatever its number, until the room code changes.
    banned: Vec<u64>,
    /// Next ring position of `banned`.
    banned_next: usize,
    /// Limits how fast new senders are admitted.
    joins: TokenBucket,
    /// Items of each slot waiting in `out`, ends excepted (for the fair shares).
    queued: [u16; MAX_PEERS],
    /// Whether an end (`Item::EndPeer`) of each slot waits in `out`: a slot has at most one
    /// (a newer end replaces it), so ends are bounded by the slots however many senders come
    /// and go while the audio thread is not taking items.
    end_pending: [bool; MAX_PEERS],
    /// (sender id, sequence number, sealed) of the clock requests answered for senders the table
    /// does not hold, a ring of [`ANSWERED_REQUESTS`]. An exact copy of one is a replay (or a
    /// network duplicate), and a sender that joins takes them into its replay window: they
    /// came before its first datagram there, which would otherwise let the window accept them
    /// once more.
    /// (Sealed or plain: a plain request under a sealed sender's id, which anyone can send
    /// in an open room, must not use up that sender's numbers.)
    answered: Vec<(u64, u64, bool)>,
    /// Next ring position of `answered`.
    answered_next: usize,
    /// Sequence number of our next datagram.
    next_seq: u64,
    /// This machine's NTP offset, when known.
    ntp: Option<NtpOffset>,
    /// The common playout delay controller.
    playout: PlayoutDelay,
    /// Longest recent host block of the Receiver, ns.
    block_ns: u64,
    /// Time of the first call (this run's start): events from before it were meant for an
    /// earlier run and are not played.
    started_ns: Option<u64>,
    /// Counters.
    stats: ReceiverStats,
}

impl ReceiverCore {
    /// A Receiver that knows no sender yet.
    pub fn new(config: ReceiverConfig) -> Self {
        Self {
            playout: PlayoutDelay::new(config.margin_ns),
            block_ns: 0,
            started_ns: None,
            config,
            peers: PeerTable::new(),
            scratch: Vec::with_capacity(MAX_EVENTS_PER_DATAGRAM),
            out: VecDeque::with_capacity(MAX_PENDING),
            peer_events: VecDeque::with_capacity(MAX_PEER_EVENTS),
            replies: VecDeque::with_capacity(MAX_PENDING_REPLIES),
            refusals: TokenBucket::new(REFUSALS_PER_S, REFUSAL_BURST),
            joins: TokenBucket::new(JOINS_PER_S, JOIN_BURST),
            audio_late: [0; MAX_PEERS],
            banned: Vec::with_capacity(MAX_BANNED),
            banned_next: 0,
            end_pending: [false; MAX_PEERS],
            queued: [0; MAX_PEERS],
            answered: Vec::with_capacity(ANSWERED_REQUESTS),
            answered_next: 0,
            next_seq: 0,
            ntp: None,
            stats: ReceiverStats::default(),
        }
    }

    /// Sets the margin (ns) and the mode of the playout delay.
    pub fn set_playout(&mut self, margin_ns: i64, mode: PlayoutMode) {
        self.config.margin_ns = margin_ns.max(0);
        self.config.mode = mode;
    }

    /// Sets the silence timeout, ns.
    pub fn set_timeout(&mut self, timeout_ns: u64) {
        self.config.timeout_ns = timeout_ns;
    }

    /// Sets the room key and whether plain datagrams are accepted too.
    pub fn set_room(&mut self, key: Option<RoomKey>, open_room: bool) {
        self.config.key = key;
        self.config.open_room = open_room;
    }

    /// Sets this machine's NTP offset (`None`: unknown).
    pub fn set_ntp(&mut self, ntp: Option<NtpOffset>) {
        self.ntp = ntp;
    }

    /// This machine's NTP offset, when known.
    pub fn ntp(&self) -> Option<NtpOffset> {
        self.ntp
    }

    /// The set-up in force.
    pub fn config(&self) -> &ReceiverConfig {
        &self.config
    }

    /// The common playout delay `D` in ns: every event plays at its origin time plus this.
    pub fn playout_delay(&self) -> i64 {
        self.playout.current()
    }

    /// Sets the longest recent block of the Receiver's host, ns: an event must arrive before
    /// the block that holds its sample starts, so a peer needs that much more delay.
    pub fn set_block(&mut self, block_ns: u64) {
        self.block_ns = block_ns;
    }

    /// The longest recent block of the Receiver's host, as last set, ns.
    pub fn block_ns(&self) -> u64 {
        self.block_ns
    }

    /// The senders heard recently.
    pub fn peers(&self) -> &PeerTable {
        &self.peers
    }

    /// The senders heard recently, mutably (for their statistics).
    pub fn peers_mut(&mut self) -> &mut PeerTable {
        &mut self.peers
    }

    /// Counters so far.
    pub fn stats(&self) -> &ReceiverStats {
        &self.stats
    }
}

#[cfg(test)]
mod tests;
