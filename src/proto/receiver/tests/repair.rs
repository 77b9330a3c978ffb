//! Repeats, snapshots and the queue to the audio thread: each event is handed on once,
//! snapshots become reconcile items in order, what did not fit is taken from its repeat or
//! the next heartbeat, note-offs keep places of their own, each peer keeps its share, and
//! the late figures are the audio thread's.

use super::*;

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
