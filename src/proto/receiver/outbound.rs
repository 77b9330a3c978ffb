//! What leaves the Receiver core: the queue of items for the audio thread (each peer's
//! equal share of it, the places kept for what ends notes and for the ends of departed
//! peers), the datagrams to send, the joins and leaves to report, and the calls that take them.

use super::{EventDrop, PeerEvent, ReceiverCore};
use crate::proto::event::MidiMessage;
use crate::proto::peers::MAX_PEERS;
use crate::proto::state::StateSnapshot;
use crate::proto::wire::{self, Datagram, Prelude, TimeReply};
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

/// A datagram to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Reply {
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
    Refused {
        /// Where the datagram came from.
        to: SocketAddr,
    },
}

impl ReceiverCore {
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
    pub(super) fn forward(&mut self, slot: usize, item: ScheduledEvent) -> bool {
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
    pub(super) fn report_peer(&mut self, e: PeerEvent) {
        if self.peer_events.len() < MAX_PEER_EVENTS {
            self.peer_events.push_back(e);
        }
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
}
