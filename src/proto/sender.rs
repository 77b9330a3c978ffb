//! The Sender's protocol state machine, sans-IO: it never touches a socket or reads a clock.
//!
//! The network thread feeds it the events the audio thread stamped ([`SenderCore::push_event`]),
//! tells it where each host block ends ([`SenderCore::end_block`]) and what time it is
//! ([`SenderCore::handle_timeout`]), hands it what arrives ([`SenderCore::handle_datagram`]),
//! and sends whatever [`SenderCore::poll_transmit`] returns, waking up again at
//! [`SenderCore::poll_timeout`].
//!
//! What it sends:
//! - **TimeRequests**, from the start: NTP's four-timestamp exchange (RFC 5905 §8) with the
//!   Receiver, filtered by [`ClockFilter`]. The first authenticated reply also tells the
//!   Receiver's epoch; nothing else is sent before it (events wait, up to [`MAX_PENDING`]).
//! - **Events**: the events of each host block, plus repeats of the last
//!   [`SenderCore::redundancy`] batches (redundancy, in the spirit of Network MIDI 2.0's
//!   forward error correction), and after the last batch a few datagrams of repeats only, so
//!   that a single loss never loses an event and no retransmission is ever waited for.
//! - **State**: name, timing needs and a snapshot of what is held (notes, pedal, bend,
//!   program), once a second and shortly after playing stops (RTP-MIDI's recovery journal
//!   idea, RFC 6295): the Receiver ends notes whose note-off was lost.
//! - **ClockReports**: the clock estimate (direct exchange once converged, else NTP).
//! - On [`SenderCore::close`]: note-offs for what it held, then **Bye**; then, [`BYE_SPACING_NS`]
//!   apart, the last batches and the Bye again, [`BYE_ROUNDS`] times in all, so that a burst
//!   of loss does not leave its notes to the Receiver's silence timeout.
//!
//! The core is one struct, [`SenderCore`]; this file holds it, its set-up and the calls that
//! drive it, and its work is spread over modules of their own: the pending events, their
//! batches and repeats (`batches`), the clock exchange with the Receiver and the replies it
//! sends (`clock`), and the State heartbeats and the goodbye (`presence`).

use super::event::TimedMessage;
use super::receiver::NtpOffset;
use super::seal::RoomKey;
use super::state::HeldState;
use super::wire::{self, ClockReport, Datagram, Prelude};
use crate::timing::clock_filter::ClockFilter;
use crate::timing::windowed::WindowedMax;
use clock::{OUTSTANDING, RECENT_SENDS};
use std::collections::VecDeque;

mod batches;
mod clock;
mod presence;

pub use batches::{
    DEFAULT_REDUNDANCY, MAX_PENDING, MAX_PENDING_AGE_NS, MAX_REDUNDANCY, NOTE_OFF_RESERVE,
    TAIL_REPEAT_NS,
};
pub use clock::{
    ClockStatus, FAST_REQUESTS, REPLY_TIMEOUT_NS, REPORT_CHANGE_NS, REPORT_INTERVAL_NS,
    TIME_REQUEST_FAST_NS, TIME_REQUEST_INTERVAL_NS,
};
pub use presence::{
    BYE_ROUNDS, BYE_SPACING_NS, DEFAULT_HOLD_NS, IDLE_STATE_DELAY_NS, STATE_INTERVAL_NS,
};

/// Where the Sender stands with its Receiver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link {
    /// No authenticated reply (yet, or for [`REPLY_TIMEOUT_NS`]).
    NoReply,
    /// The Receiver answers.
    Connected,
    /// The Receiver said our datagrams fail authentication: the room code differs.
    Refused,
}

/// Counters of what the Sender did, for the editor and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SenderStats {
    /// Events sent (each counted once, repeats not included).
    pub events_sent: u64,
    /// Events dropped unsent (no Receiver for too long).
    pub events_dropped: u64,
    /// Datagrams produced.
    pub datagrams: u64,
    /// Bytes produced.
    pub bytes: u64,
    /// Clock-exchange replies accepted.
    pub replies: u64,
    /// Datagrams received that were not valid replies to us.
    pub rejected: u64,
    /// "Refused" notices received.
    pub refused: u64,
}

/// The Sender side of the protocol.
#[derive(Debug)]
pub struct SenderCore {
    /// Random id drawn when the network thread started; identifies this Sender.
    sender_id: u64,
    /// Display name sent in State.
    name: String,
    /// The room key, when a code is set (else datagrams go out plain, for open rooms).
    key: Option<RoomKey>,
    /// Sequence number of the next datagram.
    next_seq: u64,
    /// Events pushed but not sent yet; the first has number `pending_first`.
    pending: VecDeque<TimedMessage>,
    /// Event number of `pending[0]`.
    pending_first: u64,
    /// How many of `pending` belong to blocks that have ended (may be sent).
    sendable: usize,
    /// Events of the last `redundancy` datagrams, oldest first; the last has number
    /// `pending_first - 1`.
    sent: VecDeque<TimedMessage>,
    /// Number of new events in each of those datagrams, oldest first.
    sent_counts: VecDeque<usize>,
    /// Batches repeated in each datagram.
    redundancy: usize,
    /// Work space for building a batch.
    scratch: Vec<TimedMessage>,
    /// Repeat-only datagrams still to send after the last batch.
    tail_left: usize,
    /// When the next repeat-only datagram is due.
    next_tail: u64,
    /// A repeat-only datagram should go out.
    tail_pending: bool,
    /// State after every event sent (what the Receiver can know).
    sent_state: HeldState,
    /// State after every event pushed (what to release on close).
    pushed_state: HeldState,
    /// Latest origin time among the events sent.
    as_of_ns: Option<u64>,
    /// Largest `send time - origin` of recent events (`None` before the first).
    hold: Option<WindowedMax>,
    /// What to announce as the hold before any event was sent, ns.
    hold_hint: u64,
    /// The Receiver's epoch, once a reply told it.
    epoch: Option<u32>,
    /// The Receiver's id (from its replies).
    receiver_id: Option<u64>,
    /// Where we stand.
    link: Link,
    /// Time of the last valid reply.
    last_reply: Option<u64>,
    /// When the next heartbeat State is due (`None`: at once).
    next_state: Option<u64>,
    /// When a State is due because playing stopped.
    idle_state_at: Option<u64>,
    /// A State should go out.
    state_pending: bool,
    /// `close` was called.
    closed: bool,
    /// A Bye is to be sent now.
    bye_pending: bool,
    /// Goodbye rounds still to come after the first (see [`BYE_ROUNDS`]).
    bye_left: usize,
    /// When the next goodbye round is due.
    next_bye: u64,
    /// Filter of the direct clock exchange.
    filter: ClockFilter,
    /// `t1` of the last requests, to match replies.
    outstanding: [u64; OUTSTANDING],
    /// Send times of the last datagrams of any type: a Receiver that restarted answers one of
    /// them with its new epoch.
    recent_sends: [u64; RECENT_SENDS],
    /// Next slot of `recent_sends`.
    recent_next: usize,
    /// Next slot of `outstanding`.
    outstanding_next: usize,
    /// When the next TimeRequest is due.
    next_time_request: u64,
    /// A TimeRequest should be encoded by the next `poll_transmit` (so `t1` is its send time).
    request_pending: bool,
    /// Requests sent so far.
    requests_sent: u32,
    /// This machine's NTP offset, when known.
    ntp: Option<NtpOffset>,
    /// The last report sent, and when.
    last_report: Option<(u64, ClockReport)>,
    /// A report should go out.
    report_pending: Option<ClockReport>,
    /// Counters.
    stats: SenderStats,
}

impl SenderCore {
    /// A Sender with the given id, display name and room key.
    pub fn new(sender_id: u64, name: &str, key: Option<RoomKey>) -> Self {
        Self {
            sender_id,
            name: name.to_owned(),
            key,
            next_seq: 0,
            pending: VecDeque::with_capacity(MAX_PENDING),
            pending_first: 0,
            sendable: 0,
            sent: VecDeque::new(),
            sent_counts: VecDeque::new(),
            redundancy: DEFAULT_REDUNDANCY,
            scratch: Vec::with_capacity(MAX_PENDING),
            tail_left: 0,
            next_tail: 0,
            tail_pending: false,
            sent_state: HeldState::IDLE,
            pushed_state: HeldState::IDLE,
            as_of_ns: None,
            hold: None,
            hold_hint: DEFAULT_HOLD_NS,
            epoch: None,
            receiver_id: None,
            link: Link::NoReply,
            last_reply: None,
            next_state: None,
            idle_state_at: None,
            state_pending: false,
            closed: false,
            bye_pending: false,
            bye_left: 0,
            next_bye: 0,
            filter: ClockFilter::new(),
            outstanding: [u64::MAX; OUTSTANDING],
            recent_sends: [u64::MAX; RECENT_SENDS],
            recent_next: 0,
            outstanding_next: 0,
            next_time_request: 0,
            request_pending: false,
            requests_sent: 0,
            ntp: None,
            last_report: None,
            report_pending: None,
            stats: SenderStats::default(),
        }
    }

    /// This Sender's id.
    pub fn sender_id(&self) -> u64 {
        self.sender_id
    }

    /// Where we stand with the Receiver.
    pub fn link(&self) -> Link {
        self.link
    }

    /// Changes the room key (`None`: no code, plain datagrams).
    pub fn set_key(&mut self, key: Option<RoomKey>) {
        self.key = key;
        self.link = Link::NoReply;
        self.last_reply = None;
        // What went out under the old key may have been refused: repeat it.
        self.tail_left = self.redundancy.max(1);
        self.next_tail = 0;
    }

    fn prelude(&self, now: u64) -> Prelude {
        Prelude {
            sent_ns: now,
            epoch: self.epoch.unwrap_or(0),
        }
    }

    fn next_seq(&mut self) -> u64 {
        let s = self.next_seq;
        self.next_seq += 1;
        s
    }

    fn finish(&mut self, d: Datagram) -> Datagram {
        let d = d.seal_with(self.key.as_ref());
        self.stats.datagrams += 1;
        self.stats.bytes += d.as_bytes().len() as u64;
        d
    }

    /// Time has reached `now`: schedules heartbeats, repeats, clock requests and reports.
    pub fn handle_timeout(&mut self, now: u64) {
        if self.closed {
            if self.bye_left > 0 && now >= self.next_bye {
                // Another goodbye round: the last batches again, then Bye.
                self.bye_left -= 1;
                self.next_bye = now.saturating_add(BYE_SPACING_NS);
                self.tail_pending = true;
                self.bye_pending = true;
            }
            return;
        }
        self.drop_stale(now);
        if self.next_state.is_none_or(|t| now >= t) {
            self.state_pending = true;
            self.next_state = Some(now.saturating_add(STATE_INTERVAL_NS));
        }
        if self.idle_state_at.is_some_and(|t| now >= t) && self.sendable == 0 {
            self.state_pending = true;
            self.idle_state_at = None;
        }
        if self.tail_left > 0 && now >= self.next_tail && self.sendable == 0 {
            self.tail_pending = true;
            self.tail_left -= 1;
            self.next_tail = now.saturating_add(TAIL_REPEAT_NS);
        }
        if now >= self.next_time_request {
            self.request_pending = true;
            self.requests_sent += 1;
            self.next_time_request = now
                + if self.requests_sent < FAST_REQUESTS {
                    TIME_REQUEST_FAST_NS
                } else {
                    TIME_REQUEST_INTERVAL_NS
                };
        }
        if self.link == Link::Connected
            && self
                .last_reply
                .is_none_or(|t| now.saturating_sub(t) > REPLY_TIMEOUT_NS)
        {
            self.link = Link::NoReply;
        }
        self.maybe_report(now);
    }

    /// When `handle_timeout` wants to be called next.
    pub fn poll_timeout(&self) -> Option<u64> {
        if self.closed {
            return (self.bye_left > 0).then_some(self.next_bye);
        }
        let mut t = self.next_state.unwrap_or(0).min(self.next_time_request);
        if let Some(i) = self.idle_state_at {
            t = t.min(i);
        }
        if self.tail_left > 0 {
            t = t.min(self.next_tail);
        }
        if let Some((at, _)) = self.last_report {
            t = t.min(at + REPORT_INTERVAL_NS);
        }
        Some(t)
    }

    /// The next datagram to send, if any; `now` is its send time.
    pub fn poll_transmit(&mut self, now: u64) -> Option<Datagram> {
        let d = self.next_datagram(now)?;
        if self.recent_sends[(self.recent_next + RECENT_SENDS - 1) % RECENT_SENDS] != now {
            self.recent_sends[self.recent_next] = now;
            self.recent_next = (self.recent_next + 1) % RECENT_SENDS;
        }
        Some(d)
    }

    fn next_datagram(&mut self, now: u64) -> Option<Datagram> {
        if self.closed && !self.bye_pending {
            // The Bye went out: nothing follows it but its own repeats (a clock answer
            // arriving after it must not send a report, which the Receiver would take for a
            // new sender).
            return None;
        }
        if self.request_pending && !self.closed {
            self.request_pending = false;
            self.outstanding[self.outstanding_next] = now;
            self.outstanding_next = (self.outstanding_next + 1) % OUTSTANDING;
            let seq = self.next_seq();
            let d = wire::encode_time_request(self.sender_id, seq, self.prelude(now));
            return Some(self.finish(d));
        }
        // Nothing else goes out before the Receiver's epoch is known: it would be refused.
        self.epoch?;
        self.drop_stale(now);
        if self.sendable > 0 {
            return Some(self.events_datagram(now));
        }
        if self.tail_pending {
            self.tail_pending = false;
            if let Some(d) = self.tail_datagram(now) {
                return Some(d);
            }
        }
        if self.state_pending && !self.closed {
            self.state_pending = false;
            return Some(self.state_datagram(now));
        }
        if let Some(r) = self.report_pending.take().filter(|_| !self.closed) {
            let seq = self.next_seq();
            let d = wire::encode_clock_report(self.sender_id, seq, self.prelude(now), &r);
            return Some(self.finish(d));
        }
        if self.bye_pending {
            self.bye_pending = false;
            let seq = self.next_seq();
            let d = wire::encode_bye(self.sender_id, seq, self.prelude(now));
            return Some(self.finish(d));
        }
        None
    }

    /// Counters so far.
    pub fn stats(&self) -> SenderStats {
        self.stats
    }
}

#[cfg(test)]
mod tests;
