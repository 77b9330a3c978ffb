//! The Sender's protocol state machine, sans-IO: it never touches a socket or reads a clock.
//!
//! The network thread feeds it the events the audio thread stamped ([`SenderCore::push_event`]),
//! tells it where each host block ends ([`SenderCore::end_block`]) and what time it is
//! ([`SenderCore::handle_timeout`]), and sends whatever [`SenderCore::poll_transmit`] returns,
//! waking up again at [`SenderCore::poll_timeout`].

use super::event::TimedMessage;
use super::wire::{self, Datagram};
use std::collections::VecDeque;

/// How often a Hello (name and heartbeat) goes out, in ns. The Receiver forgets a sender
/// after ten missed heartbeats (`peers::PEER_TIMEOUT_NS`).
pub const HELLO_INTERVAL_NS: u64 = 1_000_000_000;

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

    /// Time has reached `now`: sends a Hello when one is due.
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
    }

    /// When `handle_timeout` wants to be called next.
    pub fn poll_timeout(&self) -> Option<u64> {
        if self.closed {
            None
        } else {
            Some(self.next_hello.unwrap_or(0))
        }
    }

    /// The next datagram to send, if any.
    pub fn poll_transmit(&mut self) -> Option<Datagram> {
        self.transmits.pop_front()
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

    fn drain(s: &mut SenderCore) -> Vec<(PacketType, u64, Vec<TimedMessage>)> {
        let mut v = Vec::new();
        while let Some(d) = s.poll_transmit() {
            let (h, body) = decode_header(d.as_bytes()).unwrap();
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
        assert_eq!((out[0].1, out[1].1), (0, 1));
        assert_eq!(s.poll_timeout(), Some(1000 + HELLO_INTERVAL_NS));
        s.handle_timeout(1000 + HELLO_INTERVAL_NS - 1);
        assert!(s.poll_transmit().is_none());
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
        for (i, o) in out.iter().enumerate() {
            assert_eq!(o.1, i as u64);
        }
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
