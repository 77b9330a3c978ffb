//! The Receiver's protocol state machine, sans-IO: datagrams and the time go in, scheduled
//! events, replies and the playout delay come out. It never touches a socket or reads a clock.
//!
//! Alignment: every event's origin time is put on the Receiver's timeline with the best clock
//! information about its sender ([`ClockBasis`]): the Sender's direct clock exchange with us,
//! else both machines' NTP offsets, else the fastest transit seen. Its one-way latency is then
//! `arrival - origin`. The common playout delay `D` is the slowest active peer's p99 latency
//! plus the margin (or the margin alone in fixed mode), and every event plays at
//! `origin + D`: all players line up on the slowest one, and each keeps its own spacing.
//! The audio thread adds `D` at playout time, so a change of `D` moves every waiting event
//! together and never reorders or squeezes them.

use super::event::{MidiMessage, TimedMessage};
use super::peers::{ClockBasis, Peer, PeerTable, WindowedMin, MAX_PEERS, PEER_TIMEOUT_NS};
pub use super::reject::{Reject, RejectReason, REJECT_REASONS};
use super::replay::Verdict;
use super::wire::{self, ClockSource, Datagram, PacketType, TimeReply, MAX_EVENTS_PER_DATAGRAM};
use crate::timing::playout::{PlayoutDelay, PlayoutMode};
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

/// Most clock-exchange replies waiting to be sent; past it requests are not answered (a
/// flood of requests cannot grow memory).
pub const MAX_PENDING_REPLIES: usize = 256;

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
    /// Clock-exchange requests to answer: where, their `t1`, and our arrival time `t2`.
    replies: VecDeque<(SocketAddr, u64, u64)>,
    /// Random id of this Receiver, in the header of its replies.
    receiver_id: u64,
    /// Sequence number of our next datagram.
    next_seq: u64,
    /// This machine's NTP offset, when known.
    ntp: Option<NtpOffset>,
    /// The common playout delay controller.
    playout: PlayoutDelay,
    /// Safety margin added to the slowest peer's p99 (the "Default delay" parameter), ns.
    margin_ns: i64,
    /// Align to the slowest peer, or a fixed delay.
    mode: PlayoutMode,
    /// Counters.
    stats: ReceiverStats,
}

impl ReceiverCore {
    /// A Receiver with id `receiver_id` that knows no sender yet; `margin_ns` and `mode` are
    /// the initial playout settings (see [`ReceiverCore::set_playout`]).
    pub fn new(receiver_id: u64, margin_ns: i64, mode: PlayoutMode) -> Self {
        Self {
            peers: PeerTable::new(),
            scratch: Vec::with_capacity(MAX_EVENTS_PER_DATAGRAM),
            events: VecDeque::with_capacity(MAX_PENDING),
            peer_events: VecDeque::with_capacity(2 * MAX_PEERS),
            replies: VecDeque::with_capacity(MAX_PENDING_REPLIES),
            receiver_id,
            next_seq: 0,
            ntp: None,
            playout: PlayoutDelay::new(margin_ns),
            margin_ns,
            mode,
            stats: ReceiverStats::default(),
        }
    }

    /// Sets the margin (ns) and the mode of the playout delay.
    pub fn set_playout(&mut self, margin_ns: i64, mode: PlayoutMode) {
        self.margin_ns = margin_ns.max(0);
        self.mode = mode;
    }

    /// Sets this machine's NTP offset (`None`: unknown).
    pub fn set_ntp(&mut self, ntp: Option<NtpOffset>) {
        self.ntp = ntp;
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

    fn handle_inner(&mut self, now: u64, from: SocketAddr, bytes: &[u8]) -> Result<(), Reject> {
        let (h, body) = wire::decode_header(bytes).map_err(Reject::Decode)?;
        // Decode the whole body before touching any state, so a bad datagram changes nothing.
        let mut name = None;
        let mut first_event_seq = 0;
        let mut t1 = 0;
        let mut report = None;
        match h.packet_type {
            PacketType::Events => {
                first_event_seq =
                    wire::decode_events(body, &mut self.scratch).map_err(Reject::Decode)?
            }
            PacketType::Hello => name = Some(wire::decode_hello(body).map_err(Reject::Decode)?),
            PacketType::Bye => wire::decode_bye(body).map_err(Reject::Decode)?,
            PacketType::TimeRequest => {
                t1 = wire::decode_time_request(body).map_err(Reject::Decode)?
            }
            PacketType::ClockReport => {
                report = Some(wire::decode_clock_report(body).map_err(Reject::Decode)?)
            }
            // Only Receivers send replies; one arriving here is not for us.
            PacketType::TimeReply => return Err(Reject::Unexpected),
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
            PacketType::TimeReply => {}
            PacketType::TimeRequest => {
                if self.replies.len() < MAX_PENDING_REPLIES {
                    self.replies.push_back((from, t1, now));
                }
            }
            PacketType::ClockReport => {
                peer.clock = report;
            }
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
                let d = self.playout.current();
                let ntp = self.ntp;
                // The fastest transit first, over the whole datagram, so that all its events
                // are mapped with the same basis.
                for ev in &self.scratch {
                    observe_transit(peer, now, ev.time_ns);
                }
                for i in 0..self.scratch.len() {
                    let ev = self.scratch[i];
                    let origin = to_receiver_time(peer, ntp, ev.time_ns);
                    let latency = now as i64 - origin as i64;
                    peer.latency.push(now, latency);
                    peer.jitter.update(latency);
                    if latency > d {
                        peer.late += 1;
                    }
                    if self.events.len() == MAX_PENDING {
                        self.stats.rejected[RejectReason::QueueFull as usize] += 1;
                        continue;
                    }
                    // A datagram that was overtaken keeps its own times: the audio thread's
                    // schedule puts its events back in order.
                    self.events.push_back(ScheduledEvent {
                        due_ns: origin,
                        peer: slot as u8,
                        msg: ev.msg,
                    });
                    self.stats.events += 1;
                }
                self.update_playout(now);
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

    /// Recomputes the common playout delay from the active peers' p99 latencies.
    fn update_playout(&mut self, now: u64) {
        let mode = self.mode;
        let margin = self.margin_ns;
        let p99s = self
            .peers
            .iter_mut()
            .filter_map(|(_, p)| p.latency.p99(now));
        self.playout.update(now, p99s, margin, mode);
    }

    /// The next datagram to send (answers to clock-exchange requests), with its destination.
    /// `now` is the send time written into the answer.
    pub fn poll_transmit(&mut self, now: u64) -> Option<(SocketAddr, Datagram)> {
        let (to, t1, t2) = self.replies.pop_front()?;
        let seq = self.next_seq;
        self.next_seq += 1;
        let d = wire::encode_time_reply(self.receiver_id, seq, &TimeReply { t1, t2, t3: now });
        Some((to, d))
    }

    /// Time has reached `now`: forgets peers that went silent, updates the playout delay.
    pub fn handle_timeout(&mut self, now: u64) {
        self.update_playout(now);
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

    /// When `handle_timeout` wants to be called next: at the next peer expiry, and at least
    /// every 10 ms while the playout delay may still change.
    pub fn poll_timeout(&self, now: u64) -> Option<u64> {
        let expiry = self.peers.next_expiry(PEER_TIMEOUT_NS);
        let playout = (!self.peers.is_empty()).then_some(now + 10_000_000);
        expiry.into_iter().chain(playout).min()
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

/// Records the transit `now - t` of an event with origin `t` (sender timeline) that arrived
/// at `now`, for the fastest-transit basis.
fn observe_transit(peer: &mut Peer, now: u64, t: u64) {
    let transit = now.wrapping_sub(t) as i64;
    match &mut peer.base_offset {
        Some(m) => m.push(now, transit),
        None => peer.base_offset = Some(WindowedMin::new(now, transit)),
    }
}

/// Puts a peer's origin time `t` on our timeline with the best clock information there is,
/// and records which basis was used.
fn to_receiver_time(peer: &mut Peer, ntp: Option<NtpOffset>, t: u64) -> u64 {
    match (peer.clock, ntp) {
        (Some(c), _) if c.source == ClockSource::Direct => {
            peer.basis = ClockBasis::Direct;
            c.map(t)
        }
        (Some(c), Some(own)) if c.source == ClockSource::Ntp => {
            // Sender time -> UTC -> our time.
            peer.basis = ClockBasis::Ntp;
            c.map(t).wrapping_add_signed(own.offset_ns.wrapping_neg())
        }
        _ => {
            peer.basis = ClockBasis::FastestTransit;
            let base = peer.base_offset.map_or(0, |m| m.get());
            t.wrapping_add_signed(base)
        }
    }
}

#[cfg(test)]
#[path = "receiver/tests.rs"]
mod tests;
