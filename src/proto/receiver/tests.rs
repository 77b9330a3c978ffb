//! The Receiver core against real Sender cores and hostile input, in virtual time: no
//! sockets, no sleeps.

use super::*;
use crate::proto::event::{MidiMessage, TimedMessage};
use crate::proto::peers::{ClockBasis, DEFAULT_PEER_TIMEOUT_NS, MAX_PEERS};
use crate::proto::seal::RoomKey;
use crate::proto::sender::SenderCore;
use crate::proto::state::StateSnapshot;
use crate::proto::wire::{
    self, encode_events, ClockSource, Datagram, DecodeError, OpenError, PacketType, Prelude,
};
use crate::timing::playout::PlayoutMode;
use std::net::SocketAddr;

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

use crate::testkit::Rng;

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

#[test]
fn handshake_then_events_keep_their_spacing_through_jitter_and_clock_offset() {
    let mut p = Pair::new(
        ReceiverCore::new(secure()),
        Some(key()),
        -3_000_000_000,
        40 * MS,
        15 * MS,
    );
    p.run(3_000 * MS);
    assert_eq!(p.sender.link(), crate::proto::sender::Link::Connected);
    let times: Vec<u64> = (0..200)
        .map(|i| i * 7_300_001 % 11 * MS + i * 10 * MS)
        .collect();
    let mut last = 0;
    let mut origins = Vec::new();
    for (i, &t) in times.iter().enumerate() {
        p.run(t.max(last) - last + MS);
        last = t.max(last) + MS;
        origins.push(p.sender_now());
        p.play(cc((i % 128) as u8));
    }
    p.run(2_000 * MS);
    let midi = p.midi();
    assert_eq!(midi.len(), times.len(), "each event once, repeats removed");
    let seqs: Vec<u64> = midi.iter().map(|m| m.0).collect();
    let mut sorted = seqs.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), times.len());
    // Spacing: due times differ exactly as the origin times did, but where the clock mapping
    // (the direct exchange's) moved between two events.
    let mut by_seq = midi.clone();
    by_seq.sort_by_key(|m| m.0);
    let mut changes: Vec<i64> = by_seq
        .windows(2)
        .zip(origins.windows(2))
        .map(|(d, o)| {
            let due = d[1].1 as i64 - d[0].1 as i64;
            let origin = o[1] as i64 - o[0] as i64;
            (due - origin).abs()
        })
        .collect();
    changes.sort_unstable();
    let (median, worst) = (changes[changes.len() / 2], changes[changes.len() - 1]);
    eprintln!("spacing: median change {median} ns, worst {worst} ns");
    // Between two moves of the estimate the spacing is exact but for the skew estimated (a few
    // ppm of a 10 ms gap: tens of ns); a move (a new clock report, through 15 ms of jitter
    // after 3 s of exchange) changes one gap by tens of us, under 5 samples at 48 kHz.
    assert!(
        median <= 1_000,
        "spacing changed by {median} ns in the median"
    );
    assert!(worst <= 100_000, "spacing changed by up to {worst} ns");
    assert!(
        p.receiver.stats().repeats > 0,
        "redundancy delivered repeats"
    );
    let peer = p.receiver.peers().iter().next().unwrap().1;
    assert_eq!(peer.basis, ClockBasis::Direct);
    // The Sender's clock is 3 s behind: its origins were mapped onto ours.
    for m in &by_seq {
        assert!(
            m.1 > 10_000 * MS && m.1 < p.now,
            "due {} now {}",
            m.1,
            p.now
        );
    }
}

#[test]
fn the_delay_is_known_before_anyone_plays() {
    let mut p = Pair::new(ReceiverCore::new(secure()), Some(key()), 0, 40 * MS, 2 * MS);
    p.run(4_000 * MS);
    let d = p.receiver.playout_delay();
    // 40-42 ms network, a 2 ms hold announced, 5 ms margin.
    assert!(
        (45 * MS as i64..=52 * MS as i64).contains(&d),
        "D = {} ms",
        d as f64 / 1e6
    );
}

#[test]
fn strangers_are_refused_and_counted() {
    let mut r = ReceiverCore::new(secure());
    // A plain datagram in a room with a code.
    let mut s = SenderCore::new(1, "", None);
    s.handle_timeout(0);
    let d = s.poll_transmit(0).unwrap();
    assert_eq!(
        r.handle_datagram(0, addr(1), d.as_bytes()),
        Err(Reject::Open(OpenError::Unsealed))
    );
    // Another room's key.
    let mut s = SenderCore::new(2, "", Some(RoomKey::from_bytes([1; 32])));
    s.handle_timeout(0);
    let d = s.poll_transmit(0).unwrap();
    assert_eq!(
        r.handle_datagram(0, addr(2), d.as_bytes()),
        Err(Reject::Open(OpenError::AuthFailed))
    );
    // Both were told, with a bare header, and nothing else.
    let replies: Vec<_> = std::iter::from_fn(|| r.poll_transmit(1)).collect();
    assert_eq!(replies.len(), 2);
    for (_, d) in &replies {
        assert_eq!(d.as_bytes().len(), wire::HEADER_LEN);
        assert_eq!(d.as_bytes()[5], PacketType::Refused as u8);
    }
    // A flood of bad datagrams gets at most the refusal burst back, and no state.
    for i in 0..1000u64 {
        let _ = r.handle_datagram(2 + i, addr(3), d.as_bytes());
    }
    let more = std::iter::from_fn(|| r.poll_transmit(1)).count();
    assert!(more <= REFUSAL_BURST as usize, "{more} refusals");
    assert!(r.peers().is_empty());
    assert_eq!(r.stats().rejected[RejectReason::AuthFailed as usize], 1001);
    assert_eq!(r.stats().rejected[RejectReason::Unsealed as usize], 1);
}

#[test]
fn stale_epochs_replays_and_departed_senders_are_rejected() {
    let mut p = Pair::new(ReceiverCore::new(secure()), Some(key()), 0, 5 * MS, 0);
    p.run(500 * MS);
    p.play(cc(1));
    p.run(100 * MS);
    assert_eq!(p.midi().len(), 1);
    let events_dgram = p
        .sent
        .iter()
        .find(|b| b[5] == PacketType::Events as u8)
        .unwrap()
        .clone();
    // A replay of an accepted datagram.
    assert_eq!(
        p.receiver.handle_datagram(p.now, addr(4000), &events_dgram),
        Err(Reject::Duplicate)
    );
    // The same Sender's datagrams to a Receiver restarted with a new epoch.
    let mut restarted = ReceiverCore::new(ReceiverConfig {
        epoch: 99,
        ..secure()
    });
    assert_eq!(
        restarted.handle_datagram(p.now, addr(4000), &events_dgram),
        Err(Reject::StaleEpoch)
    );
    // After its Bye, nothing of that Sender is accepted again.
    p.sender.close(p.sender_now());
    p.run(100 * MS);
    assert!(p.receiver.peers().is_empty());
    let first_state = p
        .sent
        .iter()
        .find(|b| b[5] == PacketType::State as u8)
        .unwrap()
        .clone();
    assert_eq!(
        p.receiver.handle_datagram(p.now, addr(4000), &first_state),
        Err(Reject::Gone)
    );
    // Its notes were ended after its last item.
    let end = p.got.iter().find(|e| e.item == Item::EndPeer).unwrap();
    assert!(end.due_ns >= p.midi()[0].1);
}

#[test]
fn bit_flipped_sealed_datagrams_are_all_rejected() {
    let mut p = Pair::new(ReceiverCore::new(secure()), Some(key()), 0, 5 * MS, 0);
    p.run(300 * MS);
    p.play(cc(5));
    p.run(MS);
    let d = p.sender.poll_transmit(p.sender_now());
    let bytes = match d {
        Some(d) => d.as_bytes().to_vec(),
        None => p.sent.last().unwrap().clone(),
    };
    let before = p.receiver.stats().rejected;
    for bit in 0..bytes.len() * 8 {
        let mut b = bytes.clone();
        b[bit / 8] ^= 1 << (bit % 8);
        assert!(
            p.receiver.handle_datagram(p.now, addr(4000), &b).is_err(),
            "bit {bit}"
        );
    }
    let after = p.receiver.stats().rejected;
    let total: u64 = (0..REJECT_REASONS).map(|i| after[i] - before[i]).sum();
    assert_eq!(total, bytes.len() as u64 * 8, "every one counted");
}

#[test]
fn garbage_changes_nothing_and_is_counted_by_reason() {
    let mut r = ReceiverCore::new(ReceiverConfig::default());
    let from = addr(1);
    assert_eq!(
        r.handle_datagram(0, from, b"GET / HTTP/1.1\r\n\r\n......"),
        Err(Reject::Decode(DecodeError::BadMagic))
    );
    assert_eq!(
        r.handle_datagram(0, from, &[0x55, 0x4d]),
        Err(Reject::Decode(DecodeError::TooShort))
    );
    let (d, _) = encode_events(
        1,
        0,
        Prelude::default(),
        0,
        &[TimedMessage {
            time_ns: 5,
            msg: cc(1),
        }],
    );
    let mut cut = d.as_bytes().to_vec();
    cut.truncate(cut.len() - 1);
    assert!(r.handle_datagram(0, from, &cut).is_err());
    assert!(r.peers().is_empty());
    assert_eq!(r.stats().rejected[RejectReason::BadMagic as usize], 1);
    assert_eq!(r.stats().rejected[RejectReason::TooShort as usize], 1);
    // An open room takes the whole datagram.
    assert_eq!(r.handle_datagram(0, from, d.as_bytes()), Ok(()));
    assert_eq!(r.poll_event().map(|e| e.seq), Some(0));
}

#[test]
fn repeats_and_reordering_deliver_each_event_once_and_loss_is_counted() {
    let mut r = ReceiverCore::new(ReceiverConfig::default());
    let ev = |i: u64| TimedMessage {
        time_ns: 1_000 + i,
        msg: cc((i % 128) as u8),
    };
    let batch = |seq: u64, first: u64, n: u64| -> Datagram {
        let evs: Vec<_> = (first..first + n).map(ev).collect();
        encode_events(1, seq, Prelude::default(), first, &evs).0
    };
    // Batches cover 0-3, 2-5, 4-7 (each repeating the previous), delivered out of order.
    for (seq, first) in [(2, 4), (0, 0), (1, 2)] {
        r.handle_datagram(10, addr(1), batch(seq, first, 4).as_bytes())
            .unwrap();
    }
    let seqs: Vec<u64> = std::iter::from_fn(|| r.poll_event())
        .map(|e| e.seq)
        .collect();
    let mut sorted = seqs.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..8).collect::<Vec<_>>());
    assert_eq!(r.stats().repeats, 4);
    // Events 8..12 never come; 2,000 later ones push them out of the window: lost.
    r.handle_datagram(20, addr(1), batch(3, 12, 4).as_bytes())
        .unwrap();
    r.handle_datagram(30, addr(1), batch(4, 3000, 1).as_bytes())
        .unwrap();
    let p = r.peers().iter().next().unwrap().1;
    assert!(p.seen.lost() >= 4);
}

#[test]
fn peer_limit_timeout_kick_and_generations() {
    let mut r = ReceiverCore::new(ReceiverConfig::default());
    let state = |id: u64, seq: u64| {
        let b = wire::StateBody {
            prelude: Prelude::default(),
            name: "x",
            hold_ns: 0,
            as_of_seq: 0,
            as_of_ns: 0,
            snapshot: StateSnapshot::IDLE,
        };
        wire::encode_state(id, seq, &b)
    };
    for id in 0..MAX_PEERS as u64 + 3 {
        let res = r.handle_datagram(0, addr(id as u16), state(id + 100, 0).as_bytes());
        if id < MAX_PEERS as u64 {
            res.unwrap();
        } else {
            assert_eq!(res, Err(Reject::TooManyPeers));
        }
    }
    assert_eq!(r.stats().rejected[RejectReason::TooManyPeers as usize], 3);
    // Peer 101 keeps talking; the rest go silent and are ended.
    r.handle_datagram(1_500 * MS, addr(1), state(101, 1).as_bytes())
        .unwrap();
    r.handle_timeout(DEFAULT_PEER_TIMEOUT_NS + 1);
    assert_eq!(r.peers().len(), 1);
    let ends: Vec<_> = std::iter::from_fn(|| r.poll_event())
        .filter(|e| e.item == Item::EndPeer)
        .collect();
    assert_eq!(ends.len(), MAX_PEERS - 1);
    // A kick ends at once; the slot's next peer has another generation.
    let slot = r.peers().find(101).unwrap();
    let gen = r.peers().get(slot).unwrap().gen;
    r.kick(slot);
    let end = std::iter::from_fn(|| r.poll_event()).last().unwrap();
    assert_eq!((end.item, end.due_ns, end.gen), (Item::EndPeer, 0, gen));
    r.handle_datagram(3_000 * MS, addr(9), state(555, 0).as_bytes())
        .unwrap();
    let s = r.peers().find(555).unwrap();
    assert!(r
        .peers()
        .iter()
        .all(|(i, p)| i != s || p.gen != gen || s != slot));
    let mut left = 0;
    while let Some(e) = r.poll_peer_event() {
        if matches!(e, PeerEvent::Left { .. }) {
            left += 1;
        }
    }
    assert_eq!(left, MAX_PEERS);
}

#[test]
fn one_peer_cannot_flood() {
    let mut r = ReceiverCore::new(ReceiverConfig::default());
    let mut ok = 0;
    for seq in 0..10_000u64 {
        let (d, _) = encode_events(
            1,
            seq,
            Prelude::default(),
            seq,
            &[TimedMessage {
                time_ns: 1,
                msg: cc(1),
            }],
        );
        // 10,000 datagrams within 100 ms.
        if r.handle_datagram(seq * 10_000, addr(1), d.as_bytes())
            .is_ok()
        {
            ok += 1;
        }
    }
    assert!(
        ok <= crate::proto::peers::PEER_BURST as usize + 250,
        "{ok} accepted"
    );
    assert!(r.stats().rejected[RejectReason::RateLimited as usize] > 9_000);
}

#[test]
fn snapshots_become_reconcile_items_once_each_in_order() {
    let mut p = Pair::new(ReceiverCore::new(secure()), Some(key()), 0, 5 * MS, 0);
    p.run(300 * MS);
    p.play(MidiMessage::NoteOn {
        channel: Some(0),
        key: Some(60),
        velocity: 0.5,
        voice_id: None,
    });
    p.run(3_000 * MS);
    let recs: Vec<_> = p
        .got
        .iter()
        .filter_map(|e| match e.item {
            Item::Reconcile(s) => Some((e.seq, e.due_ns, s)),
            _ => None,
        })
        .collect();
    assert!(!recs.is_empty());
    // Each newer than the last; the one after the note holds it.
    assert!(recs.windows(2).all(|w| w[1].0 > w[0].0));
    let after = recs.iter().find(|r| r.0 >= 1).unwrap();
    assert_eq!(after.2.channels[0].notes, 1 << 60);
    let note_due = p.midi()[0].1;
    assert!(
        after.1 > note_due,
        "the reconcile comes after the note it covers"
    );
}

#[test]
fn a_restarted_receiver_gets_the_events_of_its_first_moments() {
    let mut p = Pair::new(ReceiverCore::new(secure()), Some(key()), 0, 2 * MS, 0);
    p.run(2_000 * MS);
    // The Receiver restarts (a new run, a new epoch); the Sender plays 20 ms later.
    p.receiver = ReceiverCore::new(ReceiverConfig {
        epoch: 4321,
        receiver_id: 8,
        ..secure()
    });
    p.got.clear();
    p.run(20 * MS);
    p.play(cc(9));
    p.run(300 * MS);
    let midi = p.midi();
    assert_eq!(midi.len(), 1, "{:?}", p.receiver.stats());
}

#[test]
fn clock_requests_from_before_the_join_are_not_accepted_again() {
    // A Sender's first clock requests are answered before it has a place at the Receiver (it
    // joins with its first datagram after the answer). An exact copy of one, sent from
    // anywhere right after the join, is a replay: refused like any other, it must not be
    // answered, refresh the peer, move its address or widen its loss figure.
    let mut p = Pair::new(ReceiverCore::new(secure()), Some(key()), 0, 60 * MS, 0);
    p.run(400 * MS);
    let slot = p.receiver.peers().find(0xABCD).expect("the Sender joined");
    let requests: Vec<Vec<u8>> = p
        .sent
        .iter()
        .filter(|b| b[5] == PacketType::TimeRequest as u8)
        .cloned()
        .collect();
    let seq = |b: &[u8]| u64::from_le_bytes(b[16..24].try_into().unwrap());
    let joined_at = p.receiver.peers().get(slot).unwrap().seq_range.unwrap().0;
    let early: Vec<&Vec<u8>> = requests.iter().filter(|b| seq(b) < joined_at).collect();
    assert!(
        early.len() >= 2,
        "requests before the join: {}",
        early.len()
    );
    let before = p.receiver.peers().get(slot).unwrap().clone();
    let rejected = p.receiver.stats().rejected[RejectReason::Duplicate as usize];
    for b in &early {
        assert_eq!(
            p.receiver.handle_datagram(p.now, addr(6666), b),
            Err(Reject::Duplicate)
        );
        assert!(
            p.receiver.poll_transmit(p.now).is_none(),
            "a replay answered"
        );
    }
    let after = p.receiver.peers().get(slot).unwrap();
    assert_eq!(after.addr, before.addr, "the peer's address moved");
    assert_eq!(after.last_seen, before.last_seen, "the peer was refreshed");
    assert_eq!(after.seq_range, before.seq_range, "the loss figure moved");
    assert_eq!(
        p.receiver.stats().rejected[RejectReason::Duplicate as usize],
        rejected + early.len() as u64
    );
}

#[test]
fn a_stranger_request_is_answered_once_and_a_late_one_still_is() {
    let mut r = ReceiverCore::new(secure());
    let k = key();
    let request = |seq: u64| {
        wire::encode_time_request(0xABCD, seq, Prelude::default())
            .seal_with(Some(&k))
            .as_bytes()
            .to_vec()
    };
    let answers = |r: &mut ReceiverCore| std::iter::from_fn(|| r.poll_transmit(0)).count();
    // A stranger's request is answered; a copy of it is not.
    r.handle_datagram(0, addr(1), &request(0)).unwrap();
    assert_eq!(answers(&mut r), 1);
    assert_eq!(
        r.handle_datagram(MS, addr(2), &request(0)),
        Err(Reject::Duplicate)
    );
    assert_eq!(answers(&mut r), 0);
    // It joins with datagram 2 while its request 1 is still on its way (reordered): that one
    // is answered when it comes, and only once.
    let state = wire::encode_state(
        0xABCD,
        2,
        &wire::StateBody {
            prelude: Prelude {
                sent_ns: 0,
                epoch: secure().epoch,
            },
            name: "x",
            hold_ns: 0,
            as_of_seq: 0,
            as_of_ns: 0,
            snapshot: StateSnapshot::IDLE,
        },
    )
    .seal_with(Some(&k));
    r.handle_datagram(2 * MS, addr(1), state.as_bytes())
        .unwrap();
    assert_eq!(r.peers().len(), 1);
    r.handle_datagram(3 * MS, addr(1), &request(1)).unwrap();
    assert_eq!(answers(&mut r), 1);
    assert_eq!(
        r.handle_datagram(4 * MS, addr(3), &request(1)),
        Err(Reject::Duplicate)
    );
    assert_eq!(
        r.handle_datagram(4 * MS, addr(3), &request(0)),
        Err(Reject::Duplicate)
    );
    assert_eq!(answers(&mut r), 0);
}

/// The Receiver restarts while a clock request of the Sender is out, and the Sender plays before
/// the answer comes back: the answer tells the new epoch before the notices that refuse the
/// notes sent under the old one, and the notes must still arrive. One-way delay 15 ms, so the
/// answer comes after the Sender's tail of repeats (two, 10 ms apart); the restart is swept
/// over 100 ms, a whole period of the clock requests, so that every phase between them occurs.
#[test]
fn a_restarted_receiver_gets_the_events_sent_while_a_clock_request_was_out() {
    let mut lost = Vec::new();
    for phase in 0..100u64 {
        let mut p = Pair::new(ReceiverCore::new(secure()), Some(key()), 0, 15 * MS, 0);
        p.run((2_000 + phase) * MS);
        p.receiver = ReceiverCore::new(ReceiverConfig {
            epoch: 4321,
            receiver_id: 8,
            ..secure()
        });
        p.got.clear();
        p.run(5 * MS);
        p.play(cc(9));
        p.run(300 * MS);
        if p.midi().len() != 1 {
            lost.push(phase);
        }
    }
    assert!(
        lost.is_empty(),
        "the note was lost when the Receiver restarted {lost:?} ms into the period"
    );
}

#[test]
fn clock_answers_take_the_form_of_the_request_and_are_never_larger() {
    // Found by the `receive` fuzz target: in an open room the Receiver sealed its answers
    // to plain requests, so a Sender without the code could not read them (it never learnt
    // the epoch, and so never played), and each answer was larger than its request.
    let now = 1_795_500_000_000_000_000; // Unix-epoch nanoseconds: the longest varints.
    let mut r = ReceiverCore::new(ReceiverConfig {
        open_room: true,
        epoch: u32::MAX,
        ..secure()
    });
    for (id, k) in [(1, None), (2, Some(key()))] {
        let mut s = SenderCore::new(id, "", k.clone());
        s.handle_timeout(0);
        let request = s.poll_transmit(0).unwrap();
        r.handle_datagram(now, addr(1), request.as_bytes()).unwrap();
        let (_, answer) = r.poll_transmit(now).unwrap();
        assert_eq!(answer.as_bytes()[6] & wire::FLAG_SEALED != 0, k.is_some());
        assert!(
            answer.as_bytes().len() <= request.as_bytes().len(),
            "a {}-byte answer to a {}-byte request",
            answer.as_bytes().len(),
            request.as_bytes().len()
        );
        s.handle_datagram(1_000, answer.as_bytes()).unwrap();
        assert_eq!(s.link(), crate::proto::sender::Link::Connected);
    }
}

#[test]
fn a_sender_without_the_code_plays_in_an_open_room() {
    let open = ReceiverConfig {
        open_room: true,
        ..secure()
    };
    let mut p = Pair::new(ReceiverCore::new(open), None, 0, 10 * MS, MS);
    p.run(500 * MS);
    assert_eq!(p.sender.link(), crate::proto::sender::Link::Connected);
    p.play(cc(5));
    p.run(200 * MS);
    assert_eq!(p.midi().len(), 1);
}

#[test]
fn send_and_event_times_from_anywhere_on_the_timeline_are_taken() {
    // Found by the `receive` fuzz target: the latency and hold of an event were computed as
    // `a as i64 - b as i64` of times from the network, which overflows (a panic where
    // overflow checks are on) when the two are more than 2^63 ns apart.
    let mut r = ReceiverCore::new(secure());
    let k = key();
    let half = 1u64 << 63;
    let pairs = [
        (half - 1, half),
        (half, half - 1),
        (0, u64::MAX),
        (u64::MAX, 0),
        (half, 0),
        (0, half),
    ];
    for (seq, (sent_ns, time_ns)) in pairs.into_iter().enumerate() {
        let prelude = Prelude {
            sent_ns,
            epoch: 1234,
        };
        let ev = [TimedMessage {
            time_ns,
            msg: cc(1),
        }];
        let (d, n) = encode_events(9, seq as u64, prelude, seq as u64, &ev);
        assert_eq!(n, 1);
        let d = d.seal_with(Some(&k));
        assert_eq!(
            r.handle_datagram(10_000 * MS, addr(9), d.as_bytes()),
            Ok(())
        );
    }
    assert_eq!(r.stats().datagrams, pairs.len() as u64);
}

#[test]
fn clock_reports_with_any_error_bound_are_taken() {
    // Found by the `receive` fuzz target: twice the error bound of a report overflowed.
    let mut r = ReceiverCore::new(secure());
    let k = key();
    for (seq, error_ns) in [u64::MAX, u64::MAX / 2 + 1].into_iter().enumerate() {
        let report = wire::ClockReport {
            source: ClockSource::Direct,
            ref_ns: 0,
            offset_ns: seq as i64 * 1_000_000_000,
            skew_ppb: 0,
            error_ns,
            rtt_ns: 0,
        };
        let prelude = Prelude {
            sent_ns: 5,
            epoch: 1234,
        };
        let d = wire::encode_clock_report(9, seq as u64, prelude, &report).seal_with(Some(&k));
        assert_eq!(
            r.handle_datagram(10_000 * MS, addr(9), d.as_bytes()),
            Ok(())
        );
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

/// Fills the queue to the audio thread (nobody takes from it: a stalled host) with control
/// changes, then its reserve with note-offs; returns the next datagram and event numbers.
fn fill_queue(r: &mut ReceiverCore, now: u64) -> (u64, u64) {
    let mut seq = 0;
    let regular = MAX_PENDING - MAX_PEERS - END_RESERVE;
    let ccs: Vec<MidiMessage> = (0..regular).map(|i| cc((i % 128) as u8)).collect();
    send_plain(r, now, 1, &mut seq, 0, &ccs);
    let offs: Vec<MidiMessage> = (0..END_RESERVE)
        .map(|i| note_off((i % 128) as u8))
        .collect();
    send_plain(r, now, 1, &mut seq, regular as u64, &offs);
    assert_eq!(r.pending_items(), MAX_PENDING - MAX_PEERS, "full");
    (seq, (regular + END_RESERVE) as u64)
}

#[test]
fn a_note_off_that_did_not_fit_is_taken_from_its_repeat() {
    let mut r = ReceiverCore::new(ReceiverConfig::default());
    let now = 10_000 * MS;
    let (mut seq, next) = fill_queue(&mut r, now);
    let rejected = r.stats().rejected;
    // The note-off numbered `next` finds no place: dropped, and counted as an event dropped,
    // not as a rejected datagram (the datagram was fine).
    assert_eq!(
        send_plain(&mut r, now, 1, &mut seq, next, &[note_off(60)]),
        1
    );
    assert_eq!(r.stats().dropped[EventDrop::QueueFull as usize], 1);
    assert_eq!(r.stats().rejected, rejected);
    // The audio thread takes everything; the next datagram repeats the note-off.
    while r.poll_event().is_some() {}
    assert_eq!(
        send_plain(&mut r, now + MS, 1, &mut seq, next, &[note_off(60)]),
        1
    );
    let got: Vec<_> = std::iter::from_fn(|| r.poll_event()).collect();
    assert_eq!(got.len(), 1, "the repeat is handed on");
    assert_eq!((got[0].seq, got[0].item), (next, Item::Midi(note_off(60))));
    // And only once.
    send_plain(&mut r, now + 2 * MS, 1, &mut seq, next, &[note_off(60)]);
    assert!(r.poll_event().is_none());
}

#[test]
fn a_snapshot_that_did_not_fit_is_taken_from_the_next_heartbeat() {
    let mut r = ReceiverCore::new(ReceiverConfig::default());
    let now = 10_000 * MS;
    let (seq, next) = fill_queue(&mut r, now);
    let state = |seq: u64| {
        let mut snapshot = StateSnapshot::IDLE;
        snapshot.channels[0].notes = 1 << 61;
        wire::encode_state(
            1,
            seq,
            &wire::StateBody {
                prelude: Prelude {
                    sent_ns: now,
                    epoch: 0,
                },
                name: "x",
                hold_ns: 0,
                as_of_seq: next,
                as_of_ns: now,
                snapshot,
            },
        )
    };
    r.handle_datagram(now, addr(1), state(seq).as_bytes())
        .unwrap();
    assert_eq!(r.stats().dropped[EventDrop::QueueFull as usize], 1);
    while r.poll_event().is_some() {}
    // Idle heartbeats repeat the same snapshot (the same `as_of_seq`): the next one is taken.
    r.handle_datagram(now + MS, addr(1), state(seq + 1).as_bytes())
        .unwrap();
    let got: Vec<_> = std::iter::from_fn(|| r.poll_event()).collect();
    assert_eq!(got.len(), 1);
    assert!(matches!(got[0].item, Item::Reconcile(s) if s.channels[0].notes == 1 << 61));
    assert_eq!(got[0].seq, next);
    r.handle_datagram(now + 2 * MS, addr(1), state(seq + 2).as_bytes())
        .unwrap();
    assert!(r.poll_event().is_none(), "applied once");
}

#[test]
fn note_offs_keep_places_a_flood_of_note_ons_cannot_take() {
    let mut r = ReceiverCore::new(ReceiverConfig::default());
    let now = 10_000 * MS;
    let mut seq = 0;
    let on = |k: u8| MidiMessage::NoteOn {
        channel: Some(0),
        key: Some(k),
        velocity: 0.5,
        voice_id: None,
    };
    let ons: Vec<MidiMessage> = (0..MAX_PENDING).map(|i| on((i % 128) as u8)).collect();
    send_plain(&mut r, now, 1, &mut seq, 0, &ons);
    let regular = MAX_PENDING - MAX_PEERS - END_RESERVE;
    assert_eq!(r.pending_items(), regular);
    assert_eq!(
        r.stats().dropped[EventDrop::QueueFull as usize],
        (MAX_PENDING - regular) as u64
    );
    let offs: Vec<MidiMessage> = (0..128).map(note_off).collect();
    send_plain(&mut r, now, 1, &mut seq, MAX_PENDING as u64, &offs);
    assert_eq!(r.pending_items(), regular + 128, "every note-off queued");
}

/// A plain datagram of type ClockReport or Bye from `id`, numbered `seq` (an open room).
fn report_or_bye(id: u64, seq: u64, bye: bool, sent_ns: u64) -> Datagram {
    let prelude = Prelude { sent_ns, epoch: 0 };
    if bye {
        return wire::encode_bye(id, seq, prelude);
    }
    let report = wire::ClockReport {
        source: ClockSource::Direct,
        ref_ns: sent_ns,
        offset_ns: 0,
        skew_ppb: 0,
        error_ns: 1_000,
        rtt_ns: 1_000,
    };
    wire::encode_clock_report(id, seq, prelude, &report)
}

#[test]
fn memory_is_bounded_whatever_arrives_100k_ids_churned() {
    // A stranger in an open room makes up a new sender id for every pair of datagrams (a
    // ClockReport, which makes it join, then a Bye), 100,000 times, one pair every 100 us,
    // while the audio thread takes nothing (a stalled host): every queue and table stays
    // within its bound, and a real sender that joins afterwards still plays.
    let mut r = ReceiverCore::new(ReceiverConfig::default());
    let mut rng = Rng(77);
    let mut now = 10_000 * MS;
    let mut joined = 0u64;
    for _ in 0..100_000 {
        let id = rng.next_u64();
        now += MS / 10;
        if r.handle_datagram(now, addr(9), report_or_bye(id, 0, false, now).as_bytes())
            .is_ok()
        {
            joined += 1;
        }
        let _ = r.handle_datagram(now, addr(9), report_or_bye(id, 1, true, now).as_bytes());
        r.handle_timeout(now);
        assert!(r.pending_items() <= MAX_PENDING);
        assert!(r.peers().len() <= MAX_PEERS);
        assert!(r.peers().tombstones() <= 2 * crate::proto::peers::TOMBSTONES);
    }
    let elapsed_s = (now - 10_000 * MS) as f64 / 1e9;
    let most = JOIN_BURST + JOINS_PER_S * elapsed_s;
    assert!(
        joined as f64 <= most + 1.0,
        "{joined} joins in {elapsed_s} s"
    );
    assert_eq!(
        r.stats().rejected[RejectReason::TooManyJoins as usize],
        100_000 - joined
    );
    // One end per slot at most is waiting, however many left.
    let ends = std::iter::from_fn(|| r.poll_event())
        .filter(|e| e.item == Item::EndPeer)
        .count();
    assert!(ends <= MAX_PEERS, "{ends} ends waiting");
    let reports = std::iter::from_fn(|| r.poll_peer_event()).count();
    assert!(reports <= MAX_PEER_EVENTS);
    assert_eq!(r.stats().peers_gone, joined);
    // A real sender joins (once the joins allow it) and plays.
    now += 1_000 * MS;
    let mut seq = 0;
    assert_eq!(send_plain(&mut r, now, 4242, &mut seq, 0, &[cc(3)]), 1);
    let got: Vec<_> = std::iter::from_fn(|| r.poll_event()).collect();
    assert_eq!(got.len(), 1);
    assert!(matches!(got[0].item, Item::Midi(_)));
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

#[test]
fn events_outside_the_time_window_are_dropped_but_note_offs_are_not() {
    let mut r = ReceiverCore::new(ReceiverConfig::default());
    let now = 100_000 * MS;
    // (Running since long before: events older than its start belong to an earlier run.)
    r.handle_timeout(MS);
    // The Sender's clock is ours exactly (a Direct report).
    r.handle_datagram(now, addr(1), direct_report(1, 0, now, 0).as_bytes())
        .unwrap();
    let at = |time_ns: u64, msg: MidiMessage| TimedMessage { time_ns, msg };
    let evs = [
        at(now + 10 * MS, cc(1)),               // a little ahead: fine (clock error)
        at(now + 600 * MS, cc(2)),              // 0.6 s in the future: dropped
        at(now - 10_000 * MS, cc(3)),           // 10 s late: dropped
        at(now - 10_000 * MS, note_off(60)),    // 10 s late, but it ends a note: kept
        at(now + 3_600_000 * MS, note_off(61)), // an hour ahead, ends a note: at the edge
        at(now - 1_000 * MS, cc(4)),            // 1 s late: still inside
    ];
    let prelude = Prelude {
        sent_ns: now,
        epoch: 0,
    };
    let (d, n) = encode_events(1, 1, prelude, 0, &evs);
    assert_eq!(n, evs.len());
    r.handle_datagram(now, addr(1), d.as_bytes()).unwrap();
    let got: Vec<_> = std::iter::from_fn(|| r.poll_event()).collect();
    let seqs: Vec<u64> = got.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, vec![0, 3, 4, 5]);
    assert_eq!(r.stats().dropped[EventDrop::OutOfWindow as usize], 2);
    assert_eq!(
        got[2].due_ns,
        now + MAX_EARLY_NS as u64,
        "clamped to the edge"
    );
    // Their repeats are not counted again.
    let (d, _) = encode_events(1, 2, prelude, 0, &evs);
    r.handle_datagram(now, addr(1), d.as_bytes()).unwrap();
    assert!(r.poll_event().is_none());
    assert_eq!(r.stats().dropped[EventDrop::OutOfWindow as usize], 2);
}

#[test]
fn one_peer_cannot_raise_the_delay_past_its_cap() {
    // A peer whose clock report makes everything it sends look 5 s old (a broken clock, or
    // someone who wants the whole room to wait): D stays within the cap.
    let mut r = ReceiverCore::new(ReceiverConfig::default());
    let mut now = 100_000 * MS;
    r.handle_timeout(MS);
    for seq in 0..200u64 {
        now += 10 * MS;
        let sent = now - 5_000 * MS;
        let d = if seq == 0 {
            direct_report(1, seq, sent, 0)
        } else {
            encode_events(
                1,
                seq,
                Prelude {
                    sent_ns: sent,
                    epoch: 0,
                },
                seq,
                &[TimedMessage {
                    time_ns: sent,
                    msg: cc(1),
                }],
            )
            .0
        };
        r.handle_datagram(now, addr(1), d.as_bytes()).unwrap();
        r.handle_timeout(now);
        while r.poll_event().is_some() {}
    }
    let d = r.playout_delay();
    let cap = crate::proto::peers::MAX_NEED_NS + ReceiverConfig::default().margin_ns;
    assert!(d <= cap, "D = {} ms", d as f64 / 1e6);
    assert!(
        d >= crate::proto::peers::MAX_NEED_NS,
        "D = {} ms",
        d as f64 / 1e6
    );
    assert!(r.stats().dropped[EventDrop::OutOfWindow as usize] > 100);
}

#[test]
fn a_flooding_peer_leaves_the_others_their_share_of_the_queue() {
    let mut r = ReceiverCore::new(ReceiverConfig::default());
    let now = 10_000 * MS;
    let (mut a, mut b) = (0, 0);
    let flood: Vec<MidiMessage> = (0..3_000).map(|i| cc((i % 128) as u8)).collect();
    send_plain(&mut r, now, 1, &mut a, 0, &flood);
    // Another player joins; the first goes on flooding; nobody takes from the queue.
    send_plain(&mut r, now, 2, &mut b, 0, &[cc(1)]);
    send_plain(&mut r, now, 1, &mut a, 3_000, &flood);
    let theirs: Vec<MidiMessage> = (0..100).map(|i| cc(i as u8)).collect();
    send_plain(&mut r, now, 2, &mut b, 1, &theirs);
    let mut per_peer = [0usize; 2];
    while let Some(e) = r.poll_event() {
        per_peer[usize::from(e.peer != 0)] += 1;
    }
    assert_eq!(per_peer[1], 101, "the second player's events all queued");
    assert_eq!(per_peer[0], 3_000, "the flood stopped at its share");
}

#[test]
fn a_better_clock_basis_mid_phrase_never_reorders_a_peer() {
    // A peer with no clock information yet (fastest transit: its events are placed as if
    // the 40 ms path took no time) plays a note every 10 ms; 200 ms in, its direct clock
    // exchange converges and its report places its times 40 ms earlier. Nothing may play
    // before what was queued already, and the spacing then stays within 5 %, until the
    // placement has caught up with the better clock.
    let mut r = ReceiverCore::new(ReceiverConfig::default());
    r.handle_timeout(MS);
    let path = 40 * MS;
    let mut seq = 0;
    let mut got = Vec::new();
    for i in 0..300u64 {
        let t = 100_000 * MS + i * 10 * MS;
        if i == 20 {
            r.handle_datagram(t + path, addr(1), direct_report(1, seq, t, 0).as_bytes())
                .unwrap();
            seq += 1;
        }
        let prelude = Prelude {
            sent_ns: t,
            epoch: 0,
        };
        let ev = [TimedMessage {
            time_ns: t,
            msg: cc((i % 128) as u8),
        }];
        let (d, _) = encode_events(1, seq, prelude, i, &ev);
        seq += 1;
        r.handle_datagram(t + path, addr(1), d.as_bytes()).unwrap();
        got.extend(std::iter::from_fn(|| r.poll_event()).map(|e| (e.seq, e.due_ns)));
    }
    assert_eq!(got.len(), 300);
    let peer = r.peers().iter().next().unwrap().1;
    assert_eq!(peer.basis, ClockBasis::Direct);
    for w in got.windows(2) {
        let gap = w[1].1 as i64 - w[0].1 as i64;
        assert!(
            (9_500_000..=10_000_000).contains(&gap),
            "events {} and {}: {gap} ns apart",
            w[0].0,
            w[1].0
        );
    }
    // By the end the direct exchange places them exactly (origin + 0).
    let last = got.last().unwrap();
    assert_eq!(last.1, 100_000 * MS + 299 * 10 * MS);
}

#[test]
fn a_peers_late_figure_is_what_the_audio_thread_counted_for_its_slot() {
    let mut r = ReceiverCore::new(ReceiverConfig::default());
    r.handle_timeout(MS);
    // An earlier peer of slot 0 had 7 events played late.
    let mut late = [0u64; MAX_PEERS];
    late[0] = 7;
    r.set_audio_late(late);
    let now = 100_000 * MS;
    r.handle_datagram(now, addr(1), direct_report(1, 0, now, 0).as_bytes())
        .unwrap();
    // Ten events that arrive 1.5 s after their origin, far later than the delay asked for:
    // whether they play late is for the audio thread to say (it may apply a longer delay).
    let evs: Vec<TimedMessage> = (0..10)
        .map(|i| TimedMessage {
            time_ns: now - 1_500 * MS + i,
            msg: cc(i as u8),
        })
        .collect();
    let (d, _) = encode_events(
        1,
        1,
        Prelude {
            sent_ns: now,
            epoch: 0,
        },
        0,
        &evs,
    );
    r.handle_datagram(now, addr(1), d.as_bytes()).unwrap();
    let mut st = crate::status::ReceiverStatus::default();
    r.report(now, 0, &mut st);
    assert_eq!(st.peers[0].late_pct, 0.0, "nothing played late yet");
    // The audio thread played two of them late.
    late[0] = 9;
    r.set_audio_late(late);
    r.report(now, 0, &mut st);
    assert!(
        (st.peers[0].late_pct - 20.0).abs() < 1e-9,
        "{}",
        st.peers[0].late_pct
    );
}

#[test]
fn a_kicked_sender_stays_out_until_the_code_changes() {
    let mut p = Pair::new(ReceiverCore::new(secure()), Some(key()), 0, 5 * MS, 0);
    p.run(500 * MS);
    let slot = p.receiver.peers().find(0xABCD).expect("joined");
    p.receiver.kick(slot);
    assert!(p.receiver.peers().is_empty());
    // It goes on sending (higher numbers): clock requests, heartbeats, notes. None is taken
    // or answered.
    p.got.clear();
    let before = p.receiver.stats().rejected[RejectReason::Kicked as usize];
    p.play(cc(1));
    p.run(2_000 * MS);
    assert!(p.receiver.peers().is_empty(), "welcomed back");
    assert!(p.midi().is_empty());
    let kicked = p.receiver.stats().rejected[RejectReason::Kicked as usize] - before;
    assert!(kicked >= 20, "{kicked} datagrams refused as kicked");
    assert_eq!(p.sender.link(), crate::proto::sender::Link::NoReply);
    // A new room code lets it in again.
    p.receiver.forgive_kicked();
    p.run(500 * MS);
    assert!(p.receiver.peers().find(0xABCD).is_some());
}

#[test]
fn in_an_open_room_nobody_speaks_plain_for_a_sealed_peer() {
    let open_with_key = ReceiverConfig {
        open_room: true,
        ..secure()
    };
    let mut p = Pair::new(
        ReceiverCore::new(open_with_key.clone()),
        Some(key()),
        0,
        5 * MS,
        0,
    );
    p.run(500 * MS);
    assert!(p.receiver.peers().find(0xABCD).is_some());
    let prelude = Prelude {
        sent_ns: p.now,
        epoch: 1234,
    };
    let forged = [
        encode_events(
            0xABCD,
            u64::MAX - 1,
            prelude,
            1_000,
            &[TimedMessage {
                time_ns: p.now,
                msg: cc(1),
            }],
        )
        .0,
        wire::encode_bye(0xABCD, 1_000_000, prelude),
        wire::encode_time_request(0xABCD, 1_000_001, prelude),
    ];
    for d in &forged {
        assert_eq!(
            p.receiver.handle_datagram(p.now, addr(666), d.as_bytes()),
            Err(Reject::SealMismatch)
        );
    }
    assert!(
        p.receiver.poll_transmit(p.now).is_none(),
        "nothing answered"
    );
    assert!(p.receiver.peers().find(0xABCD).is_some(), "still there");
    p.got.clear();
    p.play(cc(2));
    p.run(100 * MS);
    assert_eq!(p.midi().len(), 1, "the real peer still plays");

    // Before it joins: a plain request made up under its id and a number it will use does
    // not use that number up.
    let mut r = ReceiverCore::new(open_with_key);
    let k = key();
    let plain = wire::encode_time_request(77, 5, Prelude::default());
    r.handle_datagram(0, addr(666), plain.as_bytes()).unwrap();
    let state = |seq: u64| {
        wire::encode_state(
            77,
            seq,
            &wire::StateBody {
                prelude: Prelude {
                    sent_ns: 0,
                    epoch: 1234,
                },
                name: "x",
                hold_ns: 0,
                as_of_seq: 0,
                as_of_ns: 0,
                snapshot: StateSnapshot::IDLE,
            },
        )
        .seal_with(Some(&k))
    };
    r.handle_datagram(MS, addr(1), state(3).as_bytes()).unwrap();
    assert_eq!(
        r.handle_datagram(2 * MS, addr(1), state(5).as_bytes()),
        Ok(())
    );
}

#[test]
fn goodbyes_of_strangers_request_floods_and_unsent_answers_are_counted() {
    let mut r = ReceiverCore::new(ReceiverConfig::default());
    // A goodbye from a sender never heard of.
    assert_eq!(
        r.handle_datagram(
            0,
            addr(1),
            wire::encode_bye(5, 0, Prelude::default()).as_bytes()
        ),
        Err(Reject::UnknownSender)
    );
    assert_eq!(r.stats().rejected[RejectReason::UnknownSender as usize], 1);
    // A known peer's clock requests go through its rate limit like anything else.
    let mut seq = 0;
    send_plain(&mut r, 0, 6, &mut seq, 0, &[cc(1)]);
    let mut limited = 0;
    for i in 0..1_000u64 {
        let d = wire::encode_time_request(6, seq + i, Prelude::default());
        if r.handle_datagram(i * 1_000, addr(1), d.as_bytes()) == Err(Reject::RateLimited) {
            limited += 1;
        }
        // (The shell sends the answers.)
        while r.poll_transmit(0).is_some() {}
    }
    assert!(limited > 500, "{limited} rate limited");
    assert_eq!(
        r.stats().rejected[RejectReason::RateLimited as usize],
        limited
    );
    // Nobody sends the answers: once MAX_PENDING_REPLIES wait, requests are refused, counted.
    let mut busy = 0;
    for id in 0..(MAX_PENDING_REPLIES as u64 + 10) {
        let d = wire::encode_time_request(1_000 + id, 0, Prelude::default());
        if r.handle_datagram(MS, addr(2), d.as_bytes()) == Err(Reject::Busy) {
            busy += 1;
        }
    }
    assert_eq!(busy, 10);
    assert_eq!(r.stats().rejected[RejectReason::Busy as usize], 10);
    assert_eq!(
        std::iter::from_fn(|| r.poll_transmit(0)).count(),
        MAX_PENDING_REPLIES
    );
}
