//! Limits and hostile input: garbage, floods, too many peers, churned ids, times and error
//! bounds from anywhere, events outside the time window and a peer that would raise the
//! delay: every table and queue stays within its bound, and each rejection is counted.

use super::*;

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
