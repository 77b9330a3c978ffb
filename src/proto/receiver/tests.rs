//! The Receiver core under simulated networks: virtual time, no sockets, no sleeps.

use super::*;
use crate::proto::sender::SenderCore;
use crate::proto::wire::{Datagram, DecodeError};

const MS: u64 = 1_000_000;

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([192, 0, 2, 1], port))
}

fn cc(value: u8) -> MidiMessage {
    MidiMessage::ControlChange {
        channel: 0,
        cc: 7,
        value: value as f32 / 127.0,
    }
}

/// Deterministic PRNG (SplitMix64, Steele et al. 2014) so tests need no crate and repeat.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A datagram in flight: arrival time, source, bytes.
type InFlight = (u64, SocketAddr, Datagram);

/// Runs one sender through a jittery path: `events` at sender times (its clock is `offset`
/// ns ahead of the Receiver's), one block every 10 ms, base latency `base` plus uniform
/// jitter `jitter`. Returns the datagrams in arrival order.
fn simulate(
    id: u64,
    port: u16,
    times: &[u64],
    offset: i64,
    base: u64,
    jitter: u64,
    seed: u64,
) -> Vec<InFlight> {
    let mut s = SenderCore::new(id, "sim");
    let mut rng = Rng(seed);
    let mut flight = Vec::new();
    let block = 10 * MS;
    let mut i = 0;
    let mut block_end = block;
    while i < times.len() {
        while i < times.len() && times[i] < block_end {
            let t_sender = times[i].wrapping_add_signed(offset);
            s.push_event(TimedMessage {
                time_ns: t_sender,
                msg: cc((i % 128) as u8),
            });
            i += 1;
        }
        s.end_block();
        while let Some(d) = s.poll_transmit(block_end) {
            // The first datagram takes the fastest path, so the base offset is known from the
            // start and every later spacing must be exact.
            let j = if flight.is_empty() {
                0
            } else {
                rng.below(jitter + 1)
            };
            let arrive = block_end + base + j;
            flight.push((arrive, addr(port), d));
        }
        block_end += block;
    }
    flight
}

#[test]
fn spacing_survives_jitter_and_clock_offset() {
    let times: Vec<u64> = (0..500).map(|i| 1_000 * MS + i * 7_300_001).collect();
    let mut flight = simulate(7, 1000, &times, -3_000_000_000, 40 * MS, 15 * MS, 1);
    flight.sort_by_key(|f| f.0);
    let mut r = ReceiverCore::new(7, 0, PlayoutMode::Fixed);
    for (t, from, d) in &flight {
        r.handle_datagram(*t, *from, d.as_bytes()).unwrap();
    }
    let mut dues = Vec::new();
    while let Some(e) = r.poll_event() {
        dues.push(e);
    }
    // The audio thread's schedule plays events in due-time order (stable).
    dues.sort_by_key(|e| e.due_ns);
    assert_eq!(dues.len(), times.len());
    // The base offset is learnt: it is the smallest transit seen so far, and the transit of an
    // event includes its wait for the end of its block. Once the fastest event has arrived,
    // the base is final and the spacing exact; before that, the error is at most one block
    // plus the jitter.
    let transit: Vec<i64> = {
        let mut t = Vec::new();
        for (arrive, _, d) in &flight {
            let (_, body) = wire::decode_header(d.as_bytes()).unwrap();
            let mut evs = Vec::new();
            wire::decode_events(body, &mut evs).unwrap();
            t.extend(evs.iter().map(|e| *arrive as i64 - e.time_ns as i64));
        }
        t
    };
    let best = *transit.iter().min().unwrap();
    let k = transit.iter().position(|&t| t == best).unwrap();
    let mut worst_before = 0i64;
    let mut worst_after = 0i64;
    for i in 1..dues.len() {
        let got = dues[i].due_ns as i64 - dues[i - 1].due_ns as i64;
        let want = times[i] as i64 - times[i - 1] as i64;
        let err = (got - want).abs();
        if i > k {
            worst_after = worst_after.max(err);
        } else {
            worst_before = worst_before.max(err);
        }
    }
    assert!(
        k < dues.len() - 100,
        "the fastest event came early enough to test ({k})"
    );
    assert_eq!(
        worst_after, 0,
        "spacing error after learning: {worst_after} ns"
    );
    assert!(
        worst_before <= (10 + 15) as i64 * MS as i64,
        "spacing error while learning: {worst_before} ns"
    );
    for (i, e) in dues.iter().enumerate() {
        assert_eq!(e.msg, cc((i % 128) as u8), "order kept");
    }
    assert_eq!(r.peers().get(0).unwrap().events_lost, 0);
}

#[test]
fn two_peers_with_different_latency_and_clocks() {
    let times: Vec<u64> = (0..200).map(|i| 500 * MS + i * 20 * MS).collect();
    let mut flight = simulate(1, 1, &times, 7_000_000_000, 5 * MS, 2 * MS, 2);
    flight.extend(simulate(2, 2, &times, -2_500_000_000, 120 * MS, 30 * MS, 3));
    flight.sort_by_key(|f| f.0);
    let mut r = ReceiverCore::new(7, 0, PlayoutMode::Fixed);
    for (t, from, d) in &flight {
        r.handle_datagram(*t, *from, d.as_bytes()).unwrap();
    }
    let mut per_peer = [Vec::new(), Vec::new()];
    while let Some(e) = r.poll_event() {
        per_peer[e.peer as usize].push((e.due_ns, e.msg));
    }
    assert_eq!(per_peer[0].len(), 200);
    assert_eq!(per_peer[1].len(), 200);
    for p in &mut per_peer {
        p.sort_by_key(|e| e.0);
        let msgs: Vec<_> = p.iter().map(|e| e.1).collect();
        let want: Vec<_> = (0..200).map(|i| cc((i % 128) as u8)).collect();
        assert_eq!(msgs, want, "per-peer order in due time");
    }
    assert_eq!(r.peers().len(), 2);
    let mut joins = 0;
    while let Some(ev) = r.poll_peer_event() {
        assert!(matches!(ev, PeerEvent::Joined { .. }));
        joins += 1;
    }
    assert_eq!(joins, 2);
}

#[test]
fn duplicates_and_reordering() {
    let times: Vec<u64> = (0..100).map(|i| i * 10 * MS).collect();
    let flight = simulate(9, 1, &times, 0, 10 * MS, 0, 4);
    let mut r = ReceiverCore::new(7, 0, PlayoutMode::Fixed);
    // Deliver in reverse pairs and every datagram twice.
    let mut order: Vec<usize> = (0..flight.len()).collect();
    for pair in order.chunks_mut(2) {
        pair.reverse();
    }
    let mut dup = 0;
    for &i in &order {
        let (t, from, d) = &flight[i];
        r.handle_datagram(*t, *from, d.as_bytes()).unwrap();
        assert_eq!(
            r.handle_datagram(*t, *from, d.as_bytes()),
            Err(Reject::Duplicate)
        );
        dup += 1;
    }
    let mut n = 0;
    while r.poll_event().is_some() {
        n += 1;
    }
    assert_eq!(n, 100);
    assert_eq!(
        r.stats().rejected[RejectReason::Duplicate as usize],
        dup as u64
    );
    assert_eq!(r.peers().get(0).unwrap().events_lost, 0);
}

#[test]
fn loss_is_counted() {
    let times: Vec<u64> = (0..100).map(|i| i * 10 * MS).collect();
    let flight = simulate(9, 1, &times, 0, 10 * MS, 0, 4);
    let mut r = ReceiverCore::new(7, 0, PlayoutMode::Fixed);
    let mut dropped_events = 0;
    for (k, (t, from, d)) in flight.iter().enumerate() {
        if k % 10 == 5 {
            let (h, body) = wire::decode_header(d.as_bytes()).unwrap();
            if h.packet_type == PacketType::Events {
                let mut v = Vec::new();
                wire::decode_events(body, &mut v).unwrap();
                dropped_events += v.len() as u64;
            }
            continue;
        }
        r.handle_datagram(*t, *from, d.as_bytes()).unwrap();
    }
    assert!(dropped_events > 0);
    assert_eq!(r.peers().get(0).unwrap().events_lost, dropped_events);
}

#[test]
fn garbage_changes_nothing_and_is_counted_by_reason() {
    let times: Vec<u64> = (0..10).map(|i| i * 10 * MS).collect();
    let flight = simulate(3, 1, &times, 0, 10 * MS, 0, 5);
    let mut r = ReceiverCore::new(7, 0, PlayoutMode::Fixed);
    let (t, from, d) = &flight[0];
    r.handle_datagram(*t, *from, d.as_bytes()).unwrap();
    let before = r.peers().get(0).unwrap().datagrams;
    let mut bad = d.as_bytes().to_vec();
    bad[0] = b'X';
    assert_eq!(
        r.handle_datagram(*t, *from, &bad),
        Err(Reject::Decode(DecodeError::BadMagic))
    );
    assert_eq!(
        r.handle_datagram(*t, *from, &d.as_bytes()[..10]),
        Err(Reject::Decode(DecodeError::TooShort))
    );
    let mut body_cut = d.as_bytes().to_vec();
    body_cut.truncate(body_cut.len() - 1);
    let _ = r.handle_datagram(*t, *from, &body_cut);
    assert_eq!(r.peers().get(0).unwrap().datagrams, before);
    assert_eq!(r.stats().rejected[RejectReason::BadMagic as usize], 1);
    assert_eq!(r.stats().rejected[RejectReason::TooShort as usize], 1);
    // The remaining valid datagrams are all still accepted.
    for (t, from, d) in &flight[1..] {
        r.handle_datagram(*t, *from, d.as_bytes()).unwrap();
    }
}

#[test]
fn peer_limit_bye_and_timeout() {
    let mut r = ReceiverCore::new(7, 0, PlayoutMode::Fixed);
    for id in 0..MAX_PEERS as u64 + 3 {
        let d = wire::encode_hello(id + 100, 0, "x");
        let res = r.handle_datagram(0, addr(id as u16), d.as_bytes());
        if id < MAX_PEERS as u64 {
            res.unwrap();
        } else {
            assert_eq!(res, Err(Reject::TooManyPeers));
        }
    }
    assert_eq!(r.stats().rejected[RejectReason::TooManyPeers as usize], 3);
    // A Bye frees a slot at once.
    r.handle_datagram(1, addr(0), wire::encode_bye(100, 1).as_bytes())
        .unwrap();
    assert_eq!(r.peers().len(), MAX_PEERS - 1);
    // A Hello keeps peer 101 alive; the rest time out.
    r.handle_datagram(
        5 * 1_000 * MS,
        addr(1),
        wire::encode_hello(101, 1, "y").as_bytes(),
    )
    .unwrap();
    assert_eq!(
        r.peers().next_expiry(PEER_TIMEOUT_NS),
        Some(PEER_TIMEOUT_NS + 1)
    );
    assert!(r
        .poll_timeout(5_000 * MS)
        .is_some_and(|t| t <= PEER_TIMEOUT_NS + 1));
    r.handle_timeout(PEER_TIMEOUT_NS + 1);
    assert_eq!(r.peers().len(), 1);
    assert_eq!(r.peers().iter().next().unwrap().1.name, "y");
    let mut left = 0;
    while let Some(e) = r.poll_peer_event() {
        if matches!(e, PeerEvent::Left { .. }) {
            left += 1;
        }
    }
    assert_eq!(left, MAX_PEERS - 1);
}
