//! The Receiver core against real Sender cores and hostile input, in virtual time: no
//! sockets, no sleeps. This file holds what the tests share (a Sender and the Receiver on a
//! simulated path, datagrams made by hand); the tests themselves are in the modules below,
//! by topic.

use super::*;
use crate::proto::event::{MidiMessage, TimedMessage};
use crate::proto::peers::{ClockBasis, DEFAULT_PEER_TIMEOUT_NS, MAX_PEERS};
use crate::proto::seal::RoomKey;
use crate::proto::sender::SenderCore;
use crate::proto::state::StateSnapshot;
use crate::proto::wire::{
    self, encode_events, ClockSource, Datagram, DecodeError, OpenError, PacketType, Prelude,
};
use crate::testkit::Rng;
use crate::timing::playout::PlayoutMode;
use std::net::SocketAddr;

mod bounds;
mod handshake;
mod repair;
mod security;

const MS: u64 = 1_000_000;

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([192, 0, 2, 1], port))
}

fn key() -> RoomKey {
    RoomKey::from_bytes([9; 32])
}

fn secure() -> ReceiverConfig {
    ReceiverConfig {
        receiver_id: 7,
        epoch: 1234,
        key: Some(key()),
        open_room: false,
        margin_ns: 5 * MS as i64,
        mode: PlayoutMode::Adaptive,
        timeout_ns: DEFAULT_PEER_TIMEOUT_NS,
    }
}

fn cc(value: u8) -> MidiMessage {
    MidiMessage::ControlChange {
        channel: 0,
        cc: 7,
        value: value as f32 / 127.0,
    }
}

/// One Sender and the Receiver, a path of `base` ns plus up to `jitter` ns each way, the
/// Sender's clock `offset` ns from the Receiver's. Everything the Receiver schedules is
/// collected in `got`.
struct Pair {
    now: u64,
    sender: SenderCore,
    receiver: ReceiverCore,
    offset: i64,
    base: u64,
    jitter: u64,
    rng: Rng,
    port: u16,
    /// (arrival, to the receiver?, bytes)
    flight: Vec<(u64, bool, Vec<u8>)>,
    got: Vec<ScheduledEvent>,
    /// Every datagram the sender produced, for replays.
    sent: Vec<Vec<u8>>,
}

impl Pair {
    fn new(
        receiver: ReceiverCore,
        key: Option<RoomKey>,
        offset: i64,
        base: u64,
        jitter: u64,
    ) -> Self {
        Self {
            now: 10_000 * MS,
            sender: SenderCore::new(0xABCD, "pair", key),
            receiver,
            offset,
            base,
            jitter,
            rng: Rng(5),
            port: 4000,
            flight: Vec::new(),
            got: Vec::new(),
            sent: Vec::new(),
        }
    }

    fn sender_now(&self) -> u64 {
        self.now.wrapping_add_signed(self.offset)
    }

    fn delay(&mut self) -> u64 {
        self.base + self.rng.below(self.jitter + 1)
    }

    /// Runs for `dt` ns in 1 ms steps.
    fn run(&mut self, dt: u64) {
        let end = self.now + dt;
        while self.now < end {
            self.now += MS;
            let t = self.sender_now();
            self.sender.handle_timeout(t);
            while let Some(d) = self.sender.poll_transmit(t) {
                let at = self.now + self.delay();
                self.sent.push(d.as_bytes().to_vec());
                self.flight.push((at, true, d.as_bytes().to_vec()));
            }
            self.receiver.handle_timeout(self.now);
            self.deliver();
        }
    }

    fn deliver(&mut self) {
        let now = self.now;
        let (due, rest): (Vec<_>, Vec<_>) = self.flight.drain(..).partition(|f| f.0 <= now);
        self.flight = rest;
        for (at, up, bytes) in due {
            if up {
                let _ = self.receiver.handle_datagram(at, addr(self.port), &bytes);
                while let Some((to, d)) = self.receiver.poll_transmit(at) {
                    assert_eq!(to, addr(self.port));
                    let back = at + self.delay();
                    self.flight.push((back, false, d.as_bytes().to_vec()));
                }
                while let Some(e) = self.receiver.poll_event() {
                    self.got.push(e);
                }
            } else {
                let t = at.wrapping_add_signed(self.offset);
                let _ = self.sender.handle_datagram(t, &bytes);
            }
        }
    }

    /// Plays `msg` now, as one block.
    fn play(&mut self, msg: MidiMessage) {
        let t = self.sender_now();
        self.sender.push_event(TimedMessage { time_ns: t, msg });
        self.sender.end_block();
    }

    fn midi(&self) -> Vec<(u64, u64, MidiMessage)> {
        self.got
            .iter()
            .filter_map(|e| match e.item {
                Item::Midi(m) => Some((e.seq, e.due_ns, m)),
                _ => None,
            })
            .collect()
    }
}

/// Sends `msgs` from sender `id` in plain datagrams (an open room, epoch 0) starting with
/// datagram `*seq` and event number `first`, all stamped `t`, arriving at `now`; returns how
/// many datagrams were accepted.
fn send_plain(
    r: &mut ReceiverCore,
    now: u64,
    id: u64,
    seq: &mut u64,
    first: u64,
    msgs: &[MidiMessage],
) -> usize {
    let evs: Vec<TimedMessage> = msgs
        .iter()
        .map(|&msg| TimedMessage { time_ns: now, msg })
        .collect();
    let prelude = Prelude {
        sent_ns: now,
        epoch: 0,
    };
    let mut done = 0;
    let mut ok = 0;
    while done < evs.len() {
        let (d, n) = encode_events(id, *seq, prelude, first + done as u64, &evs[done..]);
        *seq += 1;
        done += n;
        ok += usize::from(r.handle_datagram(now, addr(1), d.as_bytes()).is_ok());
    }
    ok
}

fn note_off(key: u8) -> MidiMessage {
    MidiMessage::NoteOff {
        channel: Some(0),
        key: Some(key),
        velocity: 0.0,
        voice_id: None,
    }
}

/// A plain ClockReport from `id` that puts its clock `offset_ns` ahead of ours (Direct).
fn direct_report(id: u64, seq: u64, sent_ns: u64, offset_ns: i64) -> Datagram {
    let report = wire::ClockReport {
        source: ClockSource::Direct,
        ref_ns: sent_ns,
        offset_ns,
        skew_ppb: 0,
        error_ns: 1_000,
        rtt_ns: 1_000,
    };
    wire::encode_clock_report(id, seq, Prelude { sent_ns, epoch: 0 }, &report)
}
