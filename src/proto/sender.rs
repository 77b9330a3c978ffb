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

use super::event::{MidiMessage, TimedMessage};
use super::receiver::NtpOffset;
use super::reject::Reject;
use super::seal::RoomKey;
use super::state::{HeldState, StateSnapshot};
use super::wire::{self, Body, ClockReport, ClockSource, Datagram, PacketType, Prelude, StateBody};
use crate::timing::clock_filter::ClockFilter;
use crate::timing::windowed::WindowedMax;
use std::collections::VecDeque;

/// Heartbeat period: a State datagram (snapshot included) at least this often, ns.
pub const STATE_INTERVAL_NS: u64 = 1_000_000_000;
/// A State goes out this long after the last Events datagram, ns: a lost final note-off is
/// repaired about this soon after playing stops.
pub const IDLE_STATE_DELAY_NS: u64 = 50_000_000;
/// Spacing of the repeat-only datagrams after the last batch, ns.
pub const TAIL_REPEAT_NS: u64 = 10_000_000;
/// Times the goodbye (the last batches, then Bye) is sent when the Sender closes: a burst of
/// loss shorter than the rounds' span cannot take them all.
pub const BYE_ROUNDS: usize = 3;
/// Time between the goodbye's rounds, ns: the rounds span 20 ms, so the network thread still
/// stops promptly (it waits at most 50 ms for them).
pub const BYE_SPACING_NS: u64 = 10_000_000;
/// Batches repeated in each datagram unless configured otherwise.
pub const DEFAULT_REDUNDANCY: usize = 2;
/// Most batches that can be repeated.
pub const MAX_REDUNDANCY: usize = 8;
/// Time between clock-exchange requests once converged. The filter's accuracy comes from its
/// fastest samples, so the more samples, the closer the fastest ones are to the true minimum
/// delay: ten a second (about 750 bytes a second each way, sealed) bring the offset within
/// about 10 us within a minute even on a path with 4 ms of exponential jitter, and double as
/// keepalives.
pub const TIME_REQUEST_INTERVAL_NS: u64 = 100_000_000;
/// Time between requests while converging (the first [`FAST_REQUESTS`]).
pub const TIME_REQUEST_FAST_NS: u64 = 50_000_000;
/// Requests sent at the fast rate after start.
pub const FAST_REQUESTS: u32 = 40;
/// How often the Sender reports its clock estimate even when it has not changed.
pub const REPORT_INTERVAL_NS: u64 = 1_000_000_000;
/// A change of the estimate larger than this is reported at once, ns.
pub const REPORT_CHANGE_NS: i64 = 5_000;
/// No valid reply for this long: the link shows "no reply", ns.
pub const REPLY_TIMEOUT_NS: u64 = 2_000_000_000;
/// Requests remembered, to match replies (a reply to anything else is dropped).
const OUTSTANDING: usize = 16;
/// Send times remembered, to recognise a restarted Receiver's epoch notice.
const RECENT_SENDS: usize = 64;
/// Most events waiting to be sent (no Receiver answering yet, or a huge burst). Past it the
/// newest are dropped and counted (the project's rule for every full queue), except that
/// the last [`NOTE_OFF_RESERVE`] places only take events that end notes.
pub const MAX_PENDING: usize = 4096;
/// Places of the pending events kept for note-offs (and pedal up, all notes off): a buffer
/// full of note-ons must still take the note-offs that end them.
pub const NOTE_OFF_RESERVE: usize = 1024;
/// An event that waited this long for a Receiver is not sent any more, ns: a second after the
/// player played it, it is no longer part of the performance, and sending every event held
/// while no Receiver answered would end in a burst of stale notes. Its lasting effect (a note
/// released, the pedal, the bend, the program) is folded into the snapshot the Receiver gets
/// next; a note-on that was never sent needs no note-off.
pub const MAX_PENDING_AGE_NS: u64 = 1_000_000_000;
/// Hold announced before any event was sent, ns: the network thread's 1 ms poll plus the
/// host's usual lateness.
pub const DEFAULT_HOLD_NS: u64 = 2_000_000;
/// Window over which the largest hold is kept, ns (two buckets of half of it).
const HOLD_WINDOW_NS: u64 = 10_000_000_000;

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

/// The Sender's view of its clock against the Receiver's, for the editor.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ClockStatus {
    /// What the report to the Receiver is based on (`None`: nothing yet).
    pub source: Option<ClockSource>,
    /// Receiver (or UTC, for NTP) time minus ours, ns.
    pub offset_ns: i64,
    /// Error bound, ns.
    pub error_ns: u64,
    /// Best round trip to the Receiver, ns (0: no reply yet).
    pub rtt_ns: u64,
    /// Estimated rate difference, ppm.
    pub skew_ppm: f64,
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

    /// Changes the display name; the next State, sent at once, carries it.
    pub fn set_name(&mut self, name: &str) {
        if self.name != name {
            self.name = name.to_owned();
            self.next_state = None;
        }
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

    /// Batches repeated in each Events datagram (0 to [`MAX_REDUNDANCY`]).
    pub fn set_redundancy(&mut self, r: usize) {
        self.redundancy = r.min(MAX_REDUNDANCY);
        while self.sent_counts.len() > self.redundancy {
            self.forget_oldest_batch();
        }
    }

    /// Batches repeated in each Events datagram.
    pub fn redundancy(&self) -> usize {
        self.redundancy
    }

    /// Sets this machine's NTP offset (`None`: unknown).
    pub fn set_ntp(&mut self, ntp: Option<NtpOffset>) {
        self.ntp = ntp;
    }

    /// The longest an event may wait between its origin and its sending, ns, as the caller
    /// knows it: announced until events have been sent and the wait is measured. The plugin's
    /// events wait for its network thread's poll only ([`DEFAULT_HOLD_NS`]); a Sender that
    /// sends at block ends waits up to a block.
    pub fn set_hold_hint(&mut self, ns: u64) {
        self.hold_hint = ns;
    }

    /// What is held, after every event pushed so far.
    pub fn held(&self) -> &StateSnapshot {
        self.pushed_state.snapshot()
    }

    /// Adds one stamped event to the block in progress. When the pending events are full,
    /// it is dropped and counted (note-offs have places of their own).
    pub fn push_event(&mut self, ev: TimedMessage) {
        if self.closed {
            return;
        }
        let room = if ev.msg.ends_something() {
            MAX_PENDING
        } else {
            MAX_PENDING - NOTE_OFF_RESERVE
        };
        if self.pending.len() >= room {
            self.stats.events_dropped += 1;
            return;
        }
        self.pushed_state.apply(&ev.msg);
        self.pending.push_back(ev);
    }

    /// Takes out the pending events that waited longer than [`MAX_PENDING_AGE_NS`] at `now`:
    /// not sent, counted as dropped, and folded into the snapshot (a note-on excepted: it
    /// was never sent, so nothing needs ending). Their event numbers are used up, so that the
    /// next snapshot is newer than any the Receiver has, and it goes out at once.
    fn drop_stale(&mut self, now: u64) {
        let mut folded = false;
        while let Some(ev) = self.pending.front() {
            if now.saturating_sub(ev.time_ns) <= MAX_PENDING_AGE_NS {
                break;
            }
            let ev = self.pending.pop_front().expect("just looked");
            self.sendable = self.sendable.saturating_sub(1);
            self.pending_first += 1;
            self.stats.events_dropped += 1;
            let note_on = matches!(ev.msg, MidiMessage::NoteOn { velocity, .. } if velocity > 0.0);
            if !note_on {
                self.sent_state.apply(&ev.msg);
                self.as_of_ns = Some(self.as_of_ns.map_or(ev.time_ns, |t| t.max(ev.time_ns)));
            }
            folded = true;
        }
        if folded {
            // The repeats number the events they carry back from `pending_first`: the last
            // batches are no longer next to it.
            self.sent.clear();
            self.sent_counts.clear();
            self.next_state = None;
        }
    }

    /// The host block in progress has ended: its events may go out.
    pub fn end_block(&mut self) {
        self.sendable = self.pending.len();
    }

    fn forget_oldest_batch(&mut self) {
        if let Some(n) = self.sent_counts.pop_front() {
            for _ in 0..n {
                self.sent.pop_front();
            }
        }
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

    /// Encodes the next Events datagram: repeats of the last batches, then as many sendable
    /// events as fit (fewer repeats when they crowd the new events out).
    fn events_datagram(&mut self, now: u64) -> Datagram {
        let seq = self.next_seq();
        let prelude = self.prelude(now);
        let mut repeats = self.sent.len();
        loop {
            self.scratch.clear();
            self.scratch
                .extend(self.sent.iter().skip(self.sent.len() - repeats));
            self.scratch.extend(self.pending.iter().take(self.sendable));
            let first = self.pending_first - repeats as u64;
            let (d, n) = wire::encode_events(self.sender_id, seq, prelude, first, &self.scratch);
            if n > repeats || repeats == 0 {
                let new = n.saturating_sub(repeats);
                self.mark_sent(now, new);
                return self.finish(d);
            }
            repeats /= 2;
        }
    }

    /// `n` pending events went out at `now`.
    fn mark_sent(&mut self, now: u64, n: usize) {
        if n == 0 {
            return;
        }
        let mut earliest = u64::MAX;
        for _ in 0..n {
            let Some(ev) = self.pending.pop_front() else {
                break;
            };
            self.sent_state.apply(&ev.msg);
            self.as_of_ns = Some(self.as_of_ns.map_or(ev.time_ns, |t| t.max(ev.time_ns)));
            earliest = earliest.min(ev.time_ns);
            self.sent.push_back(ev);
        }
        self.pending_first += n as u64;
        self.sendable -= n.min(self.sendable);
        self.stats.events_sent += n as u64;
        // (A wait for the Receiver's first answer is not the usual pace: left out.)
        let h = now.saturating_sub(earliest).min(i64::MAX as u64) as i64;
        if h <= crate::proto::peers::MAX_HOLD_NS {
            match &mut self.hold {
                Some(w) => w.push(now, h),
                None => self.hold = Some(WindowedMax::new(HOLD_WINDOW_NS / 2, now, h)),
            }
        }
        if self.redundancy > 0 {
            self.sent_counts.push_back(n);
            while self.sent_counts.len() > self.redundancy {
                self.forget_oldest_batch();
            }
            self.tail_left = self.redundancy;
            self.next_tail = now.saturating_add(TAIL_REPEAT_NS);
        } else {
            self.sent.clear();
        }
        self.idle_state_at = Some(now.saturating_add(IDLE_STATE_DELAY_NS));
    }

    /// A datagram repeating the last batches only (the newest that fit).
    fn tail_datagram(&mut self, now: u64) -> Option<Datagram> {
        if self.sent.is_empty() {
            return None;
        }
        let seq = self.next_seq();
        let prelude = self.prelude(now);
        let mut skip = 0;
        loop {
            self.scratch.clear();
            self.scratch.extend(self.sent.iter().skip(skip));
            let first = self.pending_first - self.scratch.len() as u64;
            let (d, n) = wire::encode_events(self.sender_id, seq, prelude, first, &self.scratch);
            if n == self.scratch.len() || n == 0 {
                return (n > 0).then(|| self.finish(d));
            }
            skip += self.scratch.len() - n;
        }
    }

    fn state_datagram(&mut self, now: u64) -> Datagram {
        let seq = self.next_seq();
        let body = StateBody {
            prelude: self.prelude(now),
            name: &self.name,
            hold_ns: self.hold.map_or(self.hold_hint, |w| w.get().max(0) as u64),
            as_of_seq: self.pending_first,
            as_of_ns: self.as_of_ns.unwrap_or(now),
            snapshot: *self.sent_state.snapshot(),
        };
        let d = wire::encode_state(self.sender_id, seq, &body);
        self.finish(d)
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

    /// A datagram arrived at `now` from the Receiver's address.
    pub fn handle_datagram(&mut self, now: u64, bytes: &[u8]) -> Result<(), Reject> {
        let r = self.handle_inner(now, bytes);
        if r.is_err() {
            self.stats.rejected += 1;
        }
        r
    }

    fn handle_inner(&mut self, now: u64, bytes: &[u8]) -> Result<(), Reject> {
        let (h, _) = wire::decode_header(bytes).map_err(Reject::Decode)?;
        match h.packet_type {
            PacketType::Refused if !h.sealed && bytes.len() == wire::HEADER_LEN => {
                self.stats.refused += 1;
                self.link = Link::Refused;
                return Ok(());
            }
            PacketType::TimeReply => {}
            _ => return Err(Reject::Unexpected),
        }
        let mut scratch = [0u8; wire::MAX_ACCEPTED_DATAGRAM];
        let body = wire::open_body(
            &h,
            bytes,
            self.key.as_ref(),
            self.key.is_some(),
            &mut scratch,
        )
        .map_err(Reject::Open)?;
        let Body::TimeReply { prelude, reply } =
            wire::decode_body(&h, body, &mut Vec::new()).map_err(Reject::Decode)?
        else {
            return Err(Reject::Unexpected);
        };
        let Some(i) = self.outstanding.iter().position(|&t| t == reply.t1) else {
            if self.epoch != Some(prelude.epoch) && self.recent_sends.contains(&reply.t1) {
                // A restarted Receiver telling its new epoch in answer to something we just
                // sent: adopt it, and send again what it may have refused.
                self.epoch = Some(prelude.epoch);
                self.receiver_id = Some(h.sender_id);
                self.filter.reset();
                self.link = Link::Connected;
                self.last_reply = Some(now);
                self.resend_to_restarted(now);
                return Ok(());
            }
            // Not one of ours, or answered already (a duplicate or a replay).
            return Err(Reject::Duplicate);
        };
        self.outstanding[i] = u64::MAX;
        if self.receiver_id != Some(h.sender_id) {
            // Another Receiver (or the same one restarted): its clock is another clock.
            self.receiver_id = Some(h.sender_id);
            self.filter.reset();
        }
        if self.epoch.is_some_and(|e| e != prelude.epoch) {
            // The Receiver restarted while this request was out. What went out since under the
            // old epoch was refused, and the notices saying so will find the new epoch already
            // adopted here: send it again now, as when a notice comes first.
            self.resend_to_restarted(now);
        }
        self.epoch = Some(prelude.epoch);
        self.link = Link::Connected;
        self.last_reply = Some(now);
        self.stats.replies += 1;
        // A sample the filter finds implausible still proves the link.
        let _ = self
            .filter
            .add_sample(reply.t1, reply.t2, prelude.sent_ns, now);
        self.maybe_report(now);
        Ok(())
    }

    /// A restarted Receiver refused what was sent under its previous epoch: repeat the last
    /// batches at once (the tail) and send a State soon, under the new epoch.
    fn resend_to_restarted(&mut self, now: u64) {
        self.tail_left = self.redundancy.max(1);
        self.next_tail = now;
        self.next_state = None;
    }

    /// The clock estimate to report now: the direct exchange once converged, else NTP.
    fn current_report(&self, now: u64) -> Option<ClockReport> {
        if self.filter.is_converged() {
            let e = self.filter.estimate()?;
            let offset = self.filter.offset_at(now)?;
            return Some(ClockReport {
                source: ClockSource::Direct,
                ref_ns: now,
                offset_ns: offset,
                skew_ppb: (e.skew_ppm * 1000.0).round() as i64,
                error_ns: self.filter.error_bound_at(now).unwrap_or(e.error_bound_ns),
                rtt_ns: e.min_delay_ns,
            });
        }
        let n = self.ntp?;
        Some(ClockReport {
            source: ClockSource::Ntp,
            ref_ns: now,
            offset_ns: n.offset_ns,
            skew_ppb: 0,
            error_ns: n.error_ns,
            rtt_ns: self.filter.estimate().map_or(0, |e| e.min_delay_ns),
        })
    }

    /// Queues a report when the estimate moved or the last one is old.
    fn maybe_report(&mut self, now: u64) {
        let Some(r) = self.current_report(now) else {
            return;
        };
        let due = match self.last_report {
            None => true,
            Some((at, last)) => {
                now >= at + REPORT_INTERVAL_NS
                    || last.source != r.source
                    || last.map(now).abs_diff(r.map(now)) > REPORT_CHANGE_NS as u64
            }
        };
        if due {
            self.report_pending = Some(r);
            self.last_report = Some((now, r));
        }
    }

    /// The clock as the Receiver is told about it.
    pub fn clock_status(&self, now: u64) -> ClockStatus {
        let e = self.filter.estimate();
        let rtt_ns = e.map_or(0, |e| e.min_delay_ns);
        match self.current_report(now) {
            Some(r) => ClockStatus {
                source: Some(r.source),
                offset_ns: r.offset_ns,
                error_ns: r.error_ns,
                rtt_ns,
                skew_ppm: r.skew_ppb as f64 / 1000.0,
            },
            None => ClockStatus {
                source: None,
                offset_ns: 0,
                error_ns: 0,
                rtt_ns,
                skew_ppm: 0.0,
            },
        }
    }

    /// The Sender is going away at `now`: releases what it holds (note-offs, pedal up, bend
    /// centred, stamped `now`), sends what is pending and says goodbye, then repeats the last
    /// batches and the goodbye at [`SenderCore::poll_timeout`] ([`BYE_ROUNDS`] rounds,
    /// [`BYE_SPACING_NS`] apart). Nothing else is produced after this.
    pub fn close(&mut self, now: u64) {
        if self.closed {
            return;
        }
        let held = self.pushed_state.clone();
        held.release_all(|msg| self.push_event(TimedMessage { time_ns: now, msg }));
        self.end_block();
        // The final batch is repeated in the later rounds even without redundancy.
        self.redundancy = self.redundancy.max(1);
        self.closed = true;
        self.bye_pending = true;
        self.bye_left = BYE_ROUNDS - 1;
        self.next_bye = now.saturating_add(BYE_SPACING_NS);
        self.state_pending = false;
        self.tail_left = 0;
        self.tail_pending = false;
    }

    /// Counters so far.
    pub fn stats(&self) -> SenderStats {
        self.stats
    }
}

#[cfg(test)]
#[path = "sender/tests.rs"]
mod tests;
