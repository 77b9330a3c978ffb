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
//! information about its sender ([`ClockBasis`]): the Sender's direct clock exchange with us,
//! else both machines' NTP offsets, else the fastest transit seen. Its one-way latency is then
//! `arrival - origin`. The common playout delay `D` is the largest need of the active peers
//! plus the margin (or the margin alone in fixed mode), and every event plays at
//! `origin + D`: all players line up on the slowest one, and each keeps its own spacing.
//! The audio thread adds `D` at playout time ([`crate::timing::playout::PlayoutGate`]).

use super::event::{MidiMessage, TimedMessage};
use super::limit::TokenBucket;
use super::peers::{ClockBasis, Peer, PeerTable, DEFAULT_PEER_TIMEOUT_NS, MAX_PEERS};
pub use super::reject::{EventDrop, Reject, RejectReason, EVENT_DROPS, REJECT_REASONS};
use super::replay::Verdict;
use super::seal::RoomKey;
use super::seen::Seen;
use super::state::StateSnapshot;
use super::wire::{
    self, Body, ClockSource, Datagram, OpenError, PacketType, Prelude, TimeReply,
    MAX_ACCEPTED_DATAGRAM, MAX_EVENTS_PER_DATAGRAM,
};
use crate::timing::playout::{PlayoutDelay, PlayoutMode};
use std::collections::VecDeque;
use std::net::SocketAddr;

/// Most items waiting for the network thread to hand them to the audio thread (when the
/// audio thread does not take them: a stalled or stopped host). Past it the newest are
/// dropped and counted; the last places are kept for what ends notes (see [`END_RESERVE`]),
/// and [`MAX_PEERS`] of them for the ends of departed peers.
pub const MAX_PENDING: usize = 4096;
/// Places of the queue to the audio thread that only items ending notes may take (note-offs,
/// pedal up, snapshots): a queue full of note-ons must still take the note-offs that end
/// them. 512 is more than all the keys of four channels.
pub const END_RESERVE: usize = 512;
/// Most replies waiting to be sent; past it requests are not answered (a flood of requests
/// cannot grow memory).
pub const MAX_PENDING_REPLIES: usize = 256;
/// "Refused" notices per second, all sources together, and their burst: enough for a
/// Sender with a wrong code to learn it within a second, too few to be worth forging.
const REFUSALS_PER_S: f64 = 10.0;
/// An event whose origin, on our timeline, is more than this after its arrival is dropped
/// ("out of time window"), ns. Honest clocks are never that far off: the direct exchange is
/// within its error bound (microseconds to a few milliseconds), NTP within its own (tens of
/// milliseconds on the open internet, RFC 5905), and the fastest-transit estimate places
/// events at most one jitter early. Half a second is ten times the worst of those, and keeps
/// a peer from filling the schedule with far-future events.
pub const MAX_EARLY_NS: i64 = 500_000_000;
/// An event arriving more than this after its playout time (origin + D) is dropped ("out of
/// time window"), ns: later than the Sender ever holds an event (it drops those waiting over
/// 1 s), than the repeats and any reordering span (tens of milliseconds), and as long as the
/// default silence timeout, after which its player would have been taken for gone. Played,
/// it would only be a burst of stale notes. What ends a note is never dropped for this.
pub const MAX_LATE_NS: i64 = 2_000_000_000;
/// How long after the moment it describes a snapshot is applied, ns: later than any event it
/// covers, whatever small corrections of the clock estimate came between, and still soon.
const RECONCILE_AFTER_NS: u64 = 2_000_000;
/// A clock report that moves a peer's mapping by more than this (and more than twice the
/// error bounds) restarts its latency statistics, ns.
const CLOCK_JUMP_NS: u64 = 1_000_000;
const REFUSAL_BURST: f64 = 10.0;
/// Clock requests answered for senders the peer table does not hold, remembered: a sender
/// sends several before its first answer comes back and it joins.
pub const ANSWERED_REQUESTS: usize = 256;
/// New senders admitted per second, all together, and their burst: a whole room of
/// [`MAX_PEERS`] may join at once (a restarted Receiver), and then a few a second. Someone
/// churning fresh ids (join, leave, join...) in an open room moves the peer table and the
/// departed-sender rings no faster than this. (A token bucket, RFC 2697's shaping.)
pub const JOINS_PER_S: f64 = 4.0;
/// Burst of [`JOINS_PER_S`].
pub const JOIN_BURST: f64 = MAX_PEERS as f64;
/// Kicked sender ids remembered (a ring): far more than anyone kicks in a session.
pub const MAX_BANNED: usize = 1024;
/// Joins and leaves kept for [`ReceiverCore::poll_peer_event`]; past it new ones are not
/// kept (they are only reports: the peer table is the truth).
pub const MAX_PEER_EVENTS: usize = 4 * MAX_PEERS;

/// What the audio thread does with a scheduled item.
#[derive(Clone, Copy, Debug, PartialEq)]
// Inline and `Copy` on purpose: boxing would allocate on the audio thread.
#[allow(clippy::large_enum_variant)]
pub enum Item {
    /// Play this message.
    Midi(MidiMessage),
    /// The peer's state as of event `seq`: end what it no longer holds.
    Reconcile(StateSnapshot),
    /// The peer is gone: end everything it holds, drop anything of it still scheduled.
    EndPeer,
}

/// An item for the audio thread: what, from whom, and when.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ScheduledEvent {
    /// Receiver-timeline ns at which the item is due, before the playout delay.
    pub due_ns: u64,
    /// Event number of the item in its peer's stream (for `Reconcile`, the first number the
    /// snapshot does not cover).
    pub seq: u64,
    /// Slot of the peer (`0..MAX_PEERS`, or the audio thread's own local slot).
    pub peer: u8,
    /// Generation of the slot (only grows: see [`crate::proto::peers`]).
    pub gen: u64,
    /// What to do.
    pub item: Item,
}

/// This machine's NTP offset, as the network shell measured it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NtpOffset {
    /// UTC minus session time, ns.
    pub offset_ns: i64,
    /// Error bound, ns.
    pub error_ns: u64,
}

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

/// Why a peer left, reported by [`ReceiverCore::poll_peer_event`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaveReason {
    /// It said goodbye.
    Bye,
    /// It was silent for longer than the timeout.
    Silent,
    /// The user kicked it.
    Kicked,
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
    /// The sender in `slot` left.
    Left {
        /// Its slot.
        slot: u8,
        /// Its id.
        sender_id: u64,
        /// Why.
        reason: LeaveReason,
    },
}

/// A datagram to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reply {
    /// Answer a clock request: its `t1` and our arrival time `t2`, sealed when the datagram
    /// it answers was (in an open room, a Sender without the code can read the answer to
    /// its plain request, and the answer stays no larger than the request).
    Time {
        /// Where the request came from.
        to: SocketAddr,
        /// The request's send time.
        t1: u64,
        /// Our time when it arrived.
        t2: u64,
        /// Whether the request was sealed.
        sealed: bool,
    },
    /// Tell `to` its datagram failed authentication.
    Refused { to: SocketAddr },
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

    /// Remembers that a stranger's request (`sealed` or plain) was answered; `false` if it
    /// already was (a copy).
    fn remember_answered(&mut self, sender_id: u64, seq: u64, sealed: bool) -> bool {
        let entry = (sender_id, seq, sealed);
        if self.answered.contains(&entry) {
            return false;
        }
        if self.answered.len() < ANSWERED_REQUESTS {
            self.answered.push(entry);
        } else {
            self.answered[self.answered_next] = entry;
            self.answered_next = (self.answered_next + 1) % ANSWERED_REQUESTS;
        }
        true
    }

    fn refuse(&mut self, now: u64, to: SocketAddr, len: usize) {
        // Never larger than what provoked it (a bare header), and rate-limited overall.
        if len >= wire::HEADER_LEN
            && self.replies.len() < MAX_PENDING_REPLIES
            && self.refusals.take(now)
        {
            self.replies.push_back(Reply::Refused { to });
        }
    }

    fn handle_inner(&mut self, now: u64, from: SocketAddr, bytes: &[u8]) -> Result<(), Reject> {
        self.started_ns.get_or_insert(now);
        let (h, _) = wire::decode_header(bytes).map_err(Reject::Decode)?;
        if matches!(h.packet_type, PacketType::TimeReply | PacketType::Refused) {
            // Only Receivers send these; one arriving here is not for us.
            return Err(Reject::Unexpected);
        }
        let require_sealed = !self.config.open_room;
        let mut buf = [0u8; MAX_ACCEPTED_DATAGRAM];
        let body = match wire::open_body(
            &h,
            bytes,
            self.config.key.as_ref(),
            require_sealed,
            &mut buf,
        ) {
            Ok(b) => b,
            Err(e) => {
                if matches!(e, OpenError::Unsealed | OpenError::AuthFailed) {
                    self.refuse(now, from, bytes.len());
                }
                return Err(Reject::Open(e));
            }
        };
        // Decode the whole body before touching any state, so a bad datagram changes nothing.
        let body = wire::decode_body(&h, body, &mut self.scratch).map_err(Reject::Decode)?;
        if self.banned.contains(&h.sender_id) {
            return Err(Reject::Kicked);
        }
        if self.peers.find(h.sender_id).is_none() && self.peers.is_gone(h.sender_id, h.seq) {
            return Err(Reject::Gone);
        }
        let Some(prelude) = body.prelude() else {
            return Err(Reject::Unexpected);
        };
        if let Body::TimeRequest { prelude } = body {
            // Answered without creating a peer: a request proves nothing yet. It refreshes a
            // known peer once (a replayed request refreshes nothing); a stranger's is
            // remembered, so that it is answered once too.
            if self.replies.len() >= MAX_PENDING_REPLIES {
                // Nobody sends our answers (the shell is not polling): nothing is changed.
                return Err(Reject::Busy);
            }
            if let Some(slot) = self.peers.find(h.sender_id) {
                let p = self.peers.get_mut(slot).expect("slot was just found");
                if p.sealed != h.sealed {
                    return Err(Reject::SealMismatch);
                }
                if p.window.accept(h.seq) != Verdict::New {
                    return Err(Reject::Duplicate);
                }
                if !p.limiter.take(now) {
                    return Err(Reject::RateLimited);
                }
                p.datagram(now, h.seq, prelude.sent_ns);
                p.addr = from;
            } else if !self.remember_answered(h.sender_id, h.seq, h.sealed) {
                return Err(Reject::Duplicate);
            }
            self.replies.push_back(Reply::Time {
                to: from,
                t1: prelude.sent_ns,
                t2: now,
                sealed: h.sealed,
            });
            self.stats.datagrams += 1;
            return Ok(());
        }
        if prelude.epoch != self.config.epoch {
            // A Sender that knew an earlier run of this Receiver: tell it the epoch now (an
            // answer to the datagram's send time, which it recognises), instead of letting it
            // find out at its next clock request.
            if self.replies.len() < MAX_PENDING_REPLIES && self.refusals.take(now) {
                self.replies.push_back(Reply::Time {
                    to: from,
                    t1: prelude.sent_ns,
                    t2: now,
                    sealed: h.sealed,
                });
            }
            return Err(Reject::StaleEpoch);
        }
        let mut joined = false;
        let slot = match self.peers.find(h.sender_id) {
            Some(s) => s,
            None => {
                joined = true;
                if matches!(body, Body::Bye { .. }) {
                    // Goodbye from a stranger: nothing to forget (its tombstone has rotated
                    // out, or it never joined).
                    return Err(Reject::UnknownSender);
                }
                if self.peers.len() >= MAX_PEERS {
                    return Err(Reject::TooManyPeers);
                }
                if !self.joins.take(now) {
                    return Err(Reject::TooManyJoins);
                }
                let s = self
                    .peers
                    .insert(h.sender_id, from, now, h.sealed)
                    .map_err(|_| Reject::TooManyPeers)?;
                self.report_peer(PeerEvent::Joined {
                    slot: s as u8,
                    sender_id: h.sender_id,
                });
                if let Some(p) = self.peers.get_mut(s) {
                    p.late_base = self.audio_late[s];
                }
                s
            }
        };
        let peer = self.peers.get_mut(slot).expect("slot was just found");
        if peer.sealed != h.sealed {
            // Plain under the id of a peer that joined sealed (anyone can send that in an
            // open room), or the other way round: not that peer speaking.
            return Err(Reject::SealMismatch);
        }
        if peer.window.accept(h.seq) != Verdict::New {
            return Err(Reject::Duplicate);
        }
        if joined {
            // The requests it made before this datagram were answered: copies of them are
            // replays now.
            for &(id, seq, sealed) in &self.answered {
                if id == h.sender_id && sealed == h.sealed {
                    peer.window.accept(seq);
                }
            }
        }
        if !peer.limiter.take(now) {
            return Err(Reject::RateLimited);
        }
        peer.addr = from;
        peer.datagram(now, h.seq, prelude.sent_ns);
        self.stats.datagrams += 1;
        let ntp = self.ntp;
        let net = now.wrapping_sub(to_receiver_time(peer, ntp, prelude.sent_ns)) as i64;
        peer.net.push(now, net);
        match body {
            Body::Events {
                first_event_seq, ..
            } => self.events(now, slot, prelude, first_event_seq),
            Body::State(s) => {
                let peer = self.peers.get_mut(slot).expect("slot is occupied");
                if peer.name != s.name {
                    peer.name.clear();
                    peer.name.push_str(s.name);
                }
                peer.hold_announced = Some(s.hold_ns);
                peer.held_notes = s.snapshot.held_notes();
                if peer.reconciled.is_none_or(|r| s.as_of_seq > r) {
                    // After every event it covers (see `docs/protocol.md`, "State"), even
                    // if the clock estimate moves a little before they arrive.
                    // (No later than the time window reaches: the time comes from the network.)
                    let due = to_receiver_time(peer, ntp, s.as_of_ns)
                        .saturating_add(peer.shift_ns)
                        .saturating_add(RECONCILE_AFTER_NS)
                        .min(now.saturating_add(MAX_EARLY_NS as u64))
                        .max(peer.last_due.saturating_add(1));
                    let item = ScheduledEvent {
                        due_ns: due,
                        seq: s.as_of_seq,
                        peer: slot as u8,
                        gen: peer.gen,
                        item: Item::Reconcile(s.snapshot),
                    };
                    // Marked as applied only once it is on its way: the Sender repeats the
                    // same snapshot with every heartbeat until it plays again, so one that did
                    // not fit now is taken from the next.
                    if self.forward(slot, item) {
                        let peer = self.peers.get_mut(slot).expect("slot is occupied");
                        peer.reconciled = Some(s.as_of_seq);
                    }
                }
            }
            Body::ClockReport { report, .. } => {
                let peer = self.peers.get_mut(slot).expect("slot is occupied");
                let before = peer.basis;
                let moved = peer.clock.is_some_and(|old| {
                    // How far the new estimate moves the Sender's present onto our timeline.
                    let t = prelude.sent_ns;
                    let jump = old.map(t).abs_diff(report.map(t));
                    // (The error bounds come from the network: any value.)
                    let bound = old.error_ns.max(report.error_ns).saturating_mul(2);
                    jump > CLOCK_JUMP_NS.max(bound)
                });
                peer.clock = Some(report);
                let after = basis_of(peer, ntp);
                if after != before || moved {
                    // Latencies measured on another basis, or before a correction larger than
                    // the error bounds, are not comparable with the new ones.
                    peer.latency.clear();
                    peer.net.clear();
                    peer.jitter.restart();
                    peer.basis = after;
                }
            }
            Body::Bye { .. } => self.forget(slot, LeaveReason::Bye),
            Body::TimeRequest { .. } | Body::TimeReply { .. } | Body::Refused => {}
        }
        Ok(())
    }

    /// Schedules the new events of an Events datagram from the peer in `slot`.
    fn events(&mut self, now: u64, slot: usize, prelude: Prelude, first: u64) {
        let d = self.playout.current();
        // (Minus 100 ms: the fastest-transit estimate of a new peer's clock can place its
        // first events a little early, by its jitter.)
        let started = self.started_ns.unwrap_or(0).saturating_sub(100_000_000);
        let ntp = self.ntp;
        let mut fresh = 0;
        for i in 0..self.scratch.len() {
            let ev = self.scratch[i];
            let seq = first + i as u64;
            let peer = self.peers.get_mut(slot).expect("slot is occupied");
            match peer.seen.check(seq) {
                Seen::New => {}
                Seen::Duplicate | Seen::TooOld => {
                    self.stats.repeats += 1;
                    continue;
                }
            }
            let origin = to_receiver_time(peer, ntp, ev.time_ns);
            let peer_clock = Mapping::of(peer, ntp);
            if origin < started {
                // Repeated to us after we restarted: it was played (or not) by our last run.
                peer.seen.accept(seq);
                self.stats.repeats += 1;
                continue;
            }
            // Differences of two times, on the wrapping 64-bit timeline like the transit in
            // `Peer::datagram`: the times come from the network and can be anything.
            let latency = now.wrapping_sub(origin) as i64;
            let in_window =
                (-MAX_EARLY_NS..=d.max(0).saturating_add(MAX_LATE_NS)).contains(&latency);
            let due = if in_window {
                // In order with what this peer has queued, whatever the clock did since.
                peer.place(ev.time_ns, origin, |t| map_time(peer_clock, ntp, t))
            } else if ev.msg.ends_something() {
                // What ends a note is never dropped: a late one plays at once, one from the
                // far future no later than the window's edge.
                if latency < 0 {
                    now.saturating_add(MAX_EARLY_NS as u64)
                } else {
                    origin
                }
            } else {
                // Decided for good: its repeats are duplicates now.
                peer.seen.accept(seq);
                self.stats.dropped[EventDrop::OutOfWindow as usize] += 1;
                continue;
            };
            let item = ScheduledEvent {
                due_ns: due,
                seq,
                peer: slot as u8,
                gen: peer.gen,
                item: Item::Midi(ev.msg),
            };
            // Recorded as seen only once it is on its way: the same event comes again in the
            // next datagrams (repeats), and a copy of one that did not fit must still be new.
            if !self.forward(slot, item) {
                continue;
            }
            fresh += 1;
            let peer = self.peers.get_mut(slot).expect("slot is occupied");
            peer.seen.accept(seq);
            if in_window {
                // (Only times inside the window count towards the delay.)
                peer.latency.push(now, latency);
                peer.hold(now, prelude.sent_ns.wrapping_sub(ev.time_ns) as i64);
            }
        }
        if let Some(p) = self.peers.get_mut(slot) {
            p.count_events(now, fresh);
        }
    }

    /// Whether the queue to the audio thread has a place for `item` of the peer in `slot`:
    /// each peer has an equal share of it, and of each share the last places are kept for
    /// what ends notes.
    fn admits(&self, slot: usize, item: &Item) -> bool {
        let ends = match item {
            Item::Midi(m) => m.ends_something(),
            Item::Reconcile(_) | Item::EndPeer => true,
        };
        let cap = MAX_PENDING - MAX_PEERS - if ends { 0 } else { END_RESERVE };
        let share = cap / self.peers.len().max(1);
        self.out.len() < cap && self.queued.get(slot).is_some_and(|&q| (q as usize) < share)
    }

    /// Queues an item of the peer in `slot` for the audio thread; when there is no place for
    /// it, counts it dropped and returns `false`.
    fn forward(&mut self, slot: usize, item: ScheduledEvent) -> bool {
        if !self.admits(slot, &item.item) {
            self.stats.dropped[EventDrop::QueueFull as usize] += 1;
            return false;
        }
        self.queued[slot] += 1;
        if let Some(p) = self.peers.get_mut(slot) {
            p.last_due = p.last_due.max(item.due_ns);
        }
        if matches!(item.item, Item::Midi(_)) {
            self.stats.events += 1;
        }
        self.out.push_back(item);
        true
    }

    /// Keeps a join or leave for [`ReceiverCore::poll_peer_event`], while there is room.
    fn report_peer(&mut self, e: PeerEvent) {
        if self.peer_events.len() < MAX_PEER_EVENTS {
            self.peer_events.push_back(e);
        }
    }

    /// Forgets the peer in `slot` and schedules the end of its notes after its last item
    /// (at once when kicked).
    fn forget(&mut self, slot: usize, reason: LeaveReason) {
        // After a goodbye nothing more of it is taken; a kicked one is kept out by the bans
        // (which a new room code lifts), a silent one may come back.
        let Some(p) = self.peers.remove(slot, reason == LeaveReason::Bye) else {
            return;
        };
        self.stats.peers_gone += 1;
        let mut due = if reason == LeaveReason::Kicked {
            0
        } else {
            p.last_due
        };
        if self.end_pending[slot] {
            // The end of an earlier peer of this slot still waits: this one replaces it (the
            // audio thread ends whatever the slot holds, of any older generation, when it
            // sees an end of a newer one), later in the queue than anything of either.
            if let Some(i) = self
                .out
                .iter()
                .rposition(|e| e.peer as usize == slot && e.item == Item::EndPeer)
            {
                let old = self.out.remove(i).expect("just found");
                if reason != LeaveReason::Kicked {
                    due = due.max(old.due_ns);
                }
            }
        }
        let end = ScheduledEvent {
            due_ns: due,
            seq: u64::MAX,
            peer: slot as u8,
            gen: p.gen,
            item: Item::EndPeer,
        };
        // The end of a peer is never dropped (it may be the only way its notes stop): its
        // place is one of the `MAX_PEERS` kept for ends.
        self.out.push_back(end);
        self.end_pending[slot] = true;
        self.report_peer(PeerEvent::Left {
            slot: slot as u8,
            sender_id: p.sender_id,
            reason,
        });
    }

    /// Forgets the peer in `slot` now and ends its notes at once (the editor's "kick"), and
    /// keeps it out: nothing more from its id is taken until the room code changes
    /// ([`ReceiverCore::forgive_kicked`]). (A kicked player who starts their Sender again
    /// has a new id: a new room code is what keeps them out for good.)
    pub fn kick(&mut self, slot: usize) {
        let Some(id) = self.peers.get(slot).map(|p| p.sender_id) else {
            return;
        };
        if self.banned.len() < MAX_BANNED {
            self.banned.push(id);
        } else {
            self.banned[self.banned_next] = id;
            self.banned_next = (self.banned_next + 1) % MAX_BANNED;
        }
        self.forget(slot, LeaveReason::Kicked);
    }

    /// Lets the kicked senders in again: the room has a new code.
    pub fn forgive_kicked(&mut self) {
        self.banned.clear();
        self.banned_next = 0;
    }

    /// Recomputes the common playout delay from the active peers' needs.
    fn update_playout(&mut self, now: u64) {
        let (margin, mode) = (self.config.margin_ns, self.config.mode);
        let block = self.block_ns.min(i64::MAX as u64) as i64;
        let needs = self
            .peers
            .iter_mut()
            .filter_map(|(_, p)| p.needs(now))
            .map(|n| n.saturating_add(block));
        self.playout.update(now, needs, margin, mode);
    }

    /// Tells the audio thread's count of events played late, per slot
    /// ([`crate::bridge::ReceiverShared::late_by_slot`]): each peer's late figure is what its
    /// slot counted since it joined. Only the audio thread knows what was late: that depends
    /// on the delay it applied and on its blocks, not on the delay the network asked for.
    pub fn set_audio_late(&mut self, late: [u64; MAX_PEERS]) {
        self.audio_late = late;
        for (slot, p) in self.peers.iter_mut() {
            p.late = late[slot].saturating_sub(p.late_base);
        }
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

    /// The next datagram to send (answers to clock requests, refusals), with its
    /// destination. `now` is the send time written into an answer.
    pub fn poll_transmit(&mut self, now: u64) -> Option<(SocketAddr, Datagram)> {
        let r = self.replies.pop_front()?;
        let seq = self.next_seq;
        self.next_seq += 1;
        Some(match r {
            Reply::Time { to, t1, t2, sealed } => {
                let prelude = Prelude {
                    sent_ns: now,
                    epoch: self.config.epoch,
                };
                let d = wire::encode_time_reply(
                    self.config.receiver_id,
                    seq,
                    prelude,
                    &TimeReply { t1, t2 },
                );
                let key = self.config.key.as_ref().filter(|_| sealed);
                (to, d.seal_with(key))
            }
            Reply::Refused { to } => {
                self.stats.refusals += 1;
                (to, wire::encode_refused(self.config.receiver_id, seq))
            }
        })
    }

    /// Time has reached `now`: forgets peers that went silent, updates the playout delay.
    pub fn handle_timeout(&mut self, now: u64) {
        self.started_ns.get_or_insert(now);
        self.update_playout(now);
        let timeout = self.config.timeout_ns;
        for slot in 0..MAX_PEERS {
            if self
                .peers
                .get(slot)
                .is_some_and(|p| now.saturating_sub(p.last_seen) > timeout)
            {
                self.forget(slot, LeaveReason::Silent);
            }
        }
    }

    /// When `handle_timeout` wants to be called next: at the next peer expiry, and at least
    /// every 10 ms while there are peers (the playout delay follows them).
    pub fn poll_timeout(&self, now: u64) -> Option<u64> {
        let expiry = self.peers.next_expiry(self.config.timeout_ns);
        let playout = (!self.peers.is_empty()).then_some(now.saturating_add(10_000_000));
        expiry.into_iter().chain(playout).min()
    }

    /// Items waiting for the audio thread.
    pub fn pending_items(&self) -> usize {
        self.out.len()
    }

    /// The next item for the audio thread.
    pub fn poll_event(&mut self) -> Option<ScheduledEvent> {
        let ev = self.out.pop_front()?;
        let slot = ev.peer as usize;
        if ev.item == Item::EndPeer {
            if let Some(p) = self.end_pending.get_mut(slot) {
                *p = false;
            }
        } else if let Some(q) = self.queued.get_mut(slot) {
            *q = q.saturating_sub(1);
        }
        Some(ev)
    }

    /// Puts back an item the caller could not hand on (its queue was full), so it is retried
    /// first next time instead of lost.
    pub fn unpoll_event(&mut self, ev: ScheduledEvent) {
        let slot = ev.peer as usize;
        if ev.item == Item::EndPeer {
            if let Some(p) = self.end_pending.get_mut(slot) {
                *p = true;
            }
        } else if let Some(q) = self.queued.get_mut(slot) {
            *q += 1;
        }
        self.out.push_front(ev);
    }

    /// The next join or leave.
    pub fn poll_peer_event(&mut self) -> Option<PeerEvent> {
        self.peer_events.pop_front()
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

/// Which clock information puts this peer's times on our timeline.
fn basis_of(peer: &Peer, ntp: Option<NtpOffset>) -> ClockBasis {
    match (peer.clock, ntp) {
        (Some(c), _) if c.source == ClockSource::Direct => ClockBasis::Direct,
        (Some(c), Some(_)) if c.source == ClockSource::Ntp => ClockBasis::Ntp,
        _ => ClockBasis::FastestTransit,
    }
}

/// Puts a peer's time `t` (its clock) on our timeline with the best clock information there
/// is, and records which basis was used.
pub(crate) fn to_receiver_time(peer: &mut Peer, ntp: Option<NtpOffset>, t: u64) -> u64 {
    let basis = basis_of(peer, ntp);
    if basis != peer.basis {
        peer.latency.clear();
        peer.net.clear();
        peer.jitter.restart();
        peer.basis = basis;
    }
    map_time(Mapping::of(peer, ntp), ntp, t)
}

/// What maps a peer's times onto our timeline, copied out of the peer.
#[derive(Clone, Copy, Debug)]
struct Mapping {
    /// The basis in use.
    basis: ClockBasis,
    /// The peer's clock report, if any.
    clock: Option<wire::ClockReport>,
    /// Its fastest transit (arrival - send time), for [`ClockBasis::FastestTransit`].
    base: i64,
}

impl Mapping {
    fn of(peer: &Peer, ntp: Option<NtpOffset>) -> Self {
        Self {
            basis: basis_of(peer, ntp),
            clock: peer.clock,
            base: peer.base_offset.map_or(0, |m| m.get()),
        }
    }
}

/// Puts time `t` of a peer's clock on our timeline with mapping `m`.
fn map_time(m: Mapping, ntp: Option<NtpOffset>, t: u64) -> u64 {
    match (m.basis, m.clock, ntp) {
        (ClockBasis::Direct, Some(c), _) => c.map(t),
        (ClockBasis::Ntp, Some(c), Some(own)) => {
            // Sender time -> UTC -> our time.
            c.map(t).wrapping_add_signed(own.offset_ns.wrapping_neg())
        }
        _ => t.wrapping_add_signed(m.base),
    }
}

mod report;
pub use report::{peer_clock, push_history};

#[cfg(test)]
#[path = "receiver/tests.rs"]
mod tests;
