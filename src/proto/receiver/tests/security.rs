//! Authentication and replays: strangers and wrong codes are refused (and told, within a
//! limit), stale epochs, replayed datagrams and departed senders are rejected, clock requests
//! are answered once, kicked senders stay out, and in an open room nobody speaks plain for a
//! sealed peer.

use super::*;

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
