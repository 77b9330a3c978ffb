//! The admission of datagrams: the checks every datagram goes through (in the order the
//! Receiver's module documentation lists them: authentication, replays, limits) before
//! anything it carries touches the Receiver's state. Clock requests are answered here,
//! without creating a peer; what passes is handed on by type.

use super::outbound::{Reply, MAX_PENDING_REPLIES};
use super::{to_receiver_time, LeaveReason, ReceiverCore, Reject, RejectReason};
use crate::proto::replay::Verdict;
use crate::proto::wire::{self, Body, OpenError, PacketType, MAX_ACCEPTED_DATAGRAM};
use std::net::SocketAddr;

/// "Refused" notices per second, all sources together, and their burst: enough for a
/// Sender with a wrong code to learn it within a second, too few to be worth forging.
pub(super) const REFUSALS_PER_S: f64 = 10.0;
/// Burst of [`REFUSALS_PER_S`].
pub(super) const REFUSAL_BURST: f64 = 10.0;
/// Clock requests answered for senders the peer table does not hold, remembered: a sender
/// sends several before its first answer comes back and it joins.
pub const ANSWERED_REQUESTS: usize = 256;

impl ReceiverCore {
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
                self.join(now, from, &h)?
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
            Body::State(s) => self.state(now, slot, &s),
            Body::ClockReport { report, .. } => self.clock_report(slot, prelude, report),
            Body::Bye { .. } => self.forget(slot, LeaveReason::Bye),
            Body::TimeRequest { .. } | Body::TimeReply { .. } | Body::Refused => {}
        }
        Ok(())
    }
}
