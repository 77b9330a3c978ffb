//! The Sender's protocol state machine, sans-IO: it never touches a socket or reads a clock.
//!
//! The network thread feeds it the events the audio thread stamped ([`SenderCore::push_event`]),
//! tells it where each host block ends ([`SenderCore::end_block`]) and what time it is
//! ([`SenderCore::handle_timeout`]), and sends whatever [`SenderCore::poll_transmit`] returns,
//! waking up again at [`SenderCore::poll_timeout`].
//!
//! It also runs the Sender's half of the direct clock exchange (NTP's four timestamps, RFC 5905
//! §8) against its Receiver, filters the samples ([`ClockFilter`]) and reports the resulting
//! offset and skew to the Receiver, or its NTP offset while the exchange has not converged.

use super::event::TimedMessage;
use super::receiver::NtpOffset;
use super::wire::{self, ClockReport, ClockSource, Datagram, DecodeError, PacketType};
use crate::timing::clock_filter::ClockFilter;
use std::collections::VecDeque;

/// How often a Hello (name and heartbeat) goes out, in ns. The Receiver forgets a sender
/// after ten missed heartbeats (`peers::PEER_TIMEOUT_NS`).
pub const HELLO_INTERVAL_NS: u64 = 1_000_000_000;

/// Time between clock-exchange requests once the filter has converged: a few per second keep
/// the minimum-delay samples fresh (NTP's clock filter keeps its best of 8, RFC 5905 §10) at a
/// cost of about 100 bytes per request and reply.
pub const TIME_REQUEST_INTERVAL_NS: u64 = 250_000_000;
/// Time between requests while converging (the first [`FAST_REQUESTS`]).
pub const TIME_REQUEST_FAST_NS: u64 = 50_000_000;
/// Requests sent at the fast rate after start.
pub const FAST_REQUESTS: u32 = 40;
/// How often the Sender reports its clock estimate even when it has not changed.
pub const REPORT_INTERVAL_NS: u64 = 1_000_000_000;
/// A change of the estimate larger than this is reported at once, ns.
pub const REPORT_CHANGE_NS: i64 = 20_000;
/// Requests remembered, to match replies (a reply to anything else is dropped).
const OUTSTANDING: usize = 16;

/// Most events waiting for their block to end. The audio queue holds at most as many, so
/// this is only reached when blocks never end (a host that stops mid-block): then the oldest
/// are sent early rather than kept forever.
pub const MAX_BATCH: usize = 4096;

/// Counters of what the Sender did, for the editor and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SenderStats {
    /// Events handed to datagrams.
    pub events_sent: u64,
    /// Datagrams produced (events, hello and bye).
    pub datagrams: u64,
    /// Bytes produced.
    pub bytes: u64,
    /// Clock-exchange replies accepted.
    pub replies: u64,
    /// Datagrams received that were not a valid reply to us.
    pub rejected: u64,
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
    /// Random id chosen at instantiation; identifies this Sender to every Receiver.
    sender_id: u64,
    /// Display name sent in Hello.
    name: String,
    /// Sequence number of the next datagram.
    next_seq: u64,
    /// Sequence number of the next event.
    next_event_seq: u64,
    /// Events of the block in progress.
    batch: Vec<TimedMessage>,
    /// Datagrams ready to send.
    transmits: VecDeque<Datagram>,
    /// When the next Hello is due; `None` until the first `handle_timeout`.
    next_hello: Option<u64>,
    /// Whether `close` was called.
    closed: bool,
    /// Filter of the direct clock exchange.
    filter: ClockFilter,
    /// `t1` of the last requests, to match replies.
    outstanding: [u64; OUTSTANDING],
    /// Next slot of `outstanding`.
    outstanding_next: usize,
    /// When the next TimeRequest is due.
    next_time_request: u64,
    /// Whether a TimeRequest should be encoded by the next `poll_transmit` (so that `t1` is
    /// the real send time).
    request_pending: bool,
    /// Requests sent so far.
    requests_sent: u32,
    /// This machine's NTP offset, when known.
    ntp: Option<NtpOffset>,
    /// The last report sent, and when.
    last_report: Option<(u64, ClockReport)>,
    /// Counters.
    stats: SenderStats,
}

impl SenderCore {
    /// A Sender with the given id and display name.
    pub fn new(sender_id: u64, name: &str) -> Self {
        Self {
            sender_id,
            name: name.to_owned(),
            next_seq: 0,
            next_event_seq: 0,
            batch: Vec::with_capacity(MAX_BATCH),
            transmits: VecDeque::new(),
            next_hello: None,
            closed: false,
            filter: ClockFilter::new(),
            outstanding: [u64::MAX; OUTSTANDING],
            outstanding_next: 0,
            next_time_request: 0,
            request_pending: false,
            requests_sent: 0,
            ntp: None,
            last_report: None,
            stats: SenderStats::default(),
        }
    }

    /// This Sender's id.
    pub fn sender_id(&self) -> u64 {
        self.sender_id
    }

    /// Changes the display name; the next Hello, sent at once, carries it.
    pub fn set_name(&mut self, name: &str) {
        if self.name != name {
            self.name = name.to_owned();
            self.next_hello = None;
        }
    }

    /// Adds one stamped event to the block in progress.
    pub fn push_event(&mut self, ev: TimedMessage) {
        if self.closed {
            return;
        }
        if self.batch.len() == MAX_BATCH {
            self.flush();
        }
        self.batch.push(ev);
    }

    /// The host block in progress has ended: its events go out in as few datagrams as fit
    /// (one, unless the block holds more than about 1,100 bytes of events).
    pub fn end_block(&mut self) {
        self.flush();
    }

    fn flush(&mut self) {
        let mut done = 0;
        while done < self.batch.len() {
            let (d, n) = wire::encode_events(
                self.sender_id,
                self.next_seq,
                self.next_event_seq,
                &self.batch[done..],
            );
            if n == 0 {
                break;
            }
            self.next_seq += 1;
            self.next_event_seq += n as u64;
            self.stats.events_sent += n as u64;
            self.queue(d);
            done += n;
        }
        self.batch.clear();
    }

    fn queue(&mut self, d: Datagram) {
        self.stats.datagrams += 1;
        self.stats.bytes += d.as_bytes().len() as u64;
        self.transmits.push_back(d);
    }

    /// Sets this machine's NTP offset (`None`: unknown).
    pub fn set_ntp(&mut self, ntp: Option<NtpOffset>) {
        self.ntp = ntp;
    }

    /// Time has reached `now`: sends a Hello, a clock request or a clock report when due.
    pub fn handle_timeout(&mut self, now: u64) {
        if self.closed {
            return;
        }
        if self.next_hello.is_none_or(|t| now >= t) {
            let d = wire::encode_hello(self.sender_id, self.next_seq, &self.name);
            self.next_seq += 1;
            self.queue(d);
            self.next_hello = Some(now + HELLO_INTERVAL_NS);
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
        self.maybe_report(now);
    }

    /// When `handle_timeout` wants to be called next.
    pub fn poll_timeout(&self) -> Option<u64> {
        if self.closed {
            None
        } else {
            let hello = self.next_hello.unwrap_or(0);
            let report = self
                .last_report
                .map_or(u64::MAX, |(at, _)| at + REPORT_INTERVAL_NS);
            Some(hello.min(self.next_time_request).min(report))
        }
    }

    /// The next datagram to send, if any; `now` is the send time (a clock request carries it).
    pub fn poll_transmit(&mut self, now: u64) -> Option<Datagram> {
        if self.request_pending && !self.closed {
            self.request_pending = false;
            self.outstanding[self.outstanding_next] = now;
            self.outstanding_next = (self.outstanding_next + 1) % OUTSTANDING;
            let d = wire::encode_time_request(self.sender_id, self.next_seq, now);
            self.next_seq += 1;
            self.stats.datagrams += 1;
            self.stats.bytes += d.as_bytes().len() as u64;
            return Some(d);
        }
        self.transmits.pop_front()
    }

    /// A datagram arrived at `now` (a clock-exchange reply, normally).
    pub fn handle_datagram(&mut self, now: u64, bytes: &[u8]) -> Result<(), DecodeError> {
        let r = self.handle_inner(now, bytes);
        if r.is_err() {
            self.stats.rejected += 1;
        }
        r
    }

    fn handle_inner(&mut self, now: u64, bytes: &[u8]) -> Result<(), DecodeError> {
        let (h, body) = wire::decode_header(bytes)?;
        if h.packet_type != PacketType::TimeReply {
            return Err(DecodeError::UnknownType(h.packet_type as u8));
        }
        let r = wire::decode_time_reply(body)?;
        let Some(i) = self.outstanding.iter().position(|&t| t == r.t1) else {
            // Not one of ours, or answered already.
            return Err(DecodeError::InvalidField);
        };
        self.outstanding[i] = u64::MAX;
        if self.filter.add_sample(r.t1, r.t2, r.t3, now).is_err() {
            return Err(DecodeError::InvalidField);
        }
        self.stats.replies += 1;
        self.maybe_report(now);
        Ok(())
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
                error_ns: e.error_bound_ns,
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

    /// Sends a report when the estimate moved or the last one is old.
    fn maybe_report(&mut self, now: u64) {
        let Some(r) = self.current_report(now) else {
            return;
        };
        let due = match self.last_report {
            None => true,
            Some((at, last)) => {
                now >= at + REPORT_INTERVAL_NS
                    || last.source != r.source
                    || (last.map(now) as i64 - r.map(now) as i64).abs() > REPORT_CHANGE_NS
            }
        };
        if due {
            let d = wire::encode_clock_report(self.sender_id, self.next_seq, &r);
            self.next_seq += 1;
            self.queue(d);
            self.last_report = Some((now, r));
        }
    }

    /// The clock as the Receiver is told about it.
    pub fn clock_status(&self, now: u64) -> ClockStatus {
        let e = self.filter.estimate();
        match self.current_report(now) {
            Some(r) => ClockStatus {
                source: Some(r.source),
                offset_ns: r.offset_ns,
                error_ns: r.error_ns,
                rtt_ns: e.map_or(0, |e| e.min_delay_ns),
                skew_ppm: r.skew_ppb as f64 / 1000.0,
            },
            None => ClockStatus {
                source: None,
                offset_ns: 0,
                error_ns: 0,
                rtt_ns: e.map_or(0, |e| e.min_delay_ns),
                skew_ppm: 0.0,
            },
        }
    }

    /// The Sender is going away: flushes what is pending and says goodbye. Nothing more is
    /// produced after this.
    pub fn close(&mut self) {
        if self.closed {
            return;
        }
        self.flush();
        let d = wire::encode_bye(self.sender_id, self.next_seq);
        self.next_seq += 1;
        self.queue(d);
        self.closed = true;
    }

    /// Counters so far.
    pub fn stats(&self) -> SenderStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::event::MidiMessage;
    use crate::proto::wire::{decode_events, decode_header, PacketType};

    fn ev(t: u64) -> TimedMessage {
        TimedMessage {
            time_ns: t,
            msg: MidiMessage::ControlChange {
                channel: 0,
                cc: 1,
                value: 0.5,
            },
        }
    }

    /// Everything sent, but the clock exchange (tested on its own below).
    fn drain(s: &mut SenderCore) -> Vec<(PacketType, u64, Vec<TimedMessage>)> {
        let mut v = Vec::new();
        while let Some(d) = s.poll_transmit(0) {
            let (h, body) = decode_header(d.as_bytes()).unwrap();
            if matches!(
                h.packet_type,
                PacketType::TimeRequest | PacketType::ClockReport
            ) {
                continue;
            }
            let mut evs = Vec::new();
            if h.packet_type == PacketType::Events {
                decode_events(body, &mut evs).unwrap();
            }
            v.push((h.packet_type, h.seq, evs));
        }
        v
    }

    #[test]
    fn hello_first_then_one_datagram_per_block() {
        let mut s = SenderCore::new(42, "alice");
        assert_eq!(s.poll_timeout(), Some(0));
        s.handle_timeout(1000);
        s.push_event(ev(1));
        s.push_event(ev(2));
        s.end_block();
        s.end_block(); // an empty block sends nothing
        let out = drain(&mut s);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].0, PacketType::Hello);
        assert_eq!(out[1].0, PacketType::Events);
        assert_eq!(out[1].2, vec![ev(1), ev(2)]);
        assert!(out[0].1 < out[1].1);
        assert_eq!(s.poll_timeout(), Some(1000 + TIME_REQUEST_FAST_NS));
        s.handle_timeout(1000 + HELLO_INTERVAL_NS - 1);
        assert!(drain(&mut s).is_empty());
        s.handle_timeout(1000 + HELLO_INTERVAL_NS);
        assert_eq!(drain(&mut s)[0].0, PacketType::Hello);
    }

    #[test]
    fn big_blocks_split_and_sequence_numbers_are_consecutive() {
        let mut s = SenderCore::new(1, "");
        for i in 0..400 {
            s.push_event(ev(i));
        }
        s.end_block();
        let out = drain(&mut s);
        assert!(out.len() >= 2);
        let all: Vec<_> = out.iter().flat_map(|o| o.2.clone()).collect();
        assert_eq!(all, (0..400).map(ev).collect::<Vec<_>>());
        assert!(out.windows(2).all(|w| w[1].1 == w[0].1 + 1));
        assert_eq!(s.stats().events_sent, 400);
    }

    #[test]
    fn close_flushes_and_says_bye_once() {
        let mut s = SenderCore::new(1, "");
        s.push_event(ev(5));
        s.close();
        s.close();
        s.push_event(ev(6));
        s.handle_timeout(0);
        let kinds: Vec<_> = drain(&mut s).into_iter().map(|o| o.0).collect();
        assert_eq!(kinds, vec![PacketType::Events, PacketType::Bye]);
        assert_eq!(s.poll_timeout(), None);
    }
}
