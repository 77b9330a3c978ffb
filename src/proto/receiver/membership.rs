//! Peers joining and leaving: a new sender's admission to the peer table (at a limited
//! rate), its departure (goodbye, silence or a kick) with the end of its notes, the bans of
//! kicked senders, and the timer that forgets the silent ones.

use super::{Item, ReceiverCore, Reject, ScheduledEvent};
use crate::proto::peers::MAX_PEERS;
use crate::proto::wire::Header;
use std::net::SocketAddr;

/// New senders admitted per second, all together, and their burst: a whole room of
/// [`MAX_PEERS`] may join at once (a restarted Receiver), and then a few a second. Someone
/// churning fresh ids (join, leave, join...) in an open room moves the peer table and the
/// departed-sender rings no faster than this. (A token bucket, RFC 2697's shaping.)
pub const JOINS_PER_S: f64 = 4.0;
/// Burst of [`JOINS_PER_S`].
pub const JOIN_BURST: f64 = MAX_PEERS as f64;
/// Kicked sender ids remembered (a ring): far more than anyone kicks in a session.
pub const MAX_BANNED: usize = 1024;

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

impl ReceiverCore {
    /// Gives the sender of datagram `h`, heard from `from` at `now`, a slot of its own, while
    /// the table and the rate of joins allow it, and reports the join.
    pub(super) fn join(&mut self, now: u64, from: SocketAddr, h: &Header) -> Result<usize, Reject> {
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
        Ok(s)
    }

    /// Forgets the peer in `slot` and schedules the end of its notes after its last item
    /// (at once when kicked).
    pub(super) fn forget(&mut self, slot: usize, reason: LeaveReason) {
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
}
