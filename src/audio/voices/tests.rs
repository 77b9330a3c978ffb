//! The stuck-note guard, item by item.

use super::*;

fn on(k: u8) -> MidiMessage {
    MidiMessage::NoteOn {
        channel: Some(0),
        key: Some(k),
        velocity: 0.7,
        voice_id: None,
    }
}

fn off(k: u8) -> MidiMessage {
    note_off(0, k)
}

fn ev(peer: u8, gen: u64, seq: u64, item: Item) -> ScheduledEvent {
    ScheduledEvent {
        due_ns: 0,
        seq,
        peer,
        gen,
        item,
    }
}

/// Applies `items` to `v` and returns everything emitted.
fn run(v: &mut Voices, items: &[ScheduledEvent]) -> Vec<MidiMessage> {
    let mut out = Vec::new();
    for it in items {
        v.apply(it, |m| out.push(m));
    }
    out
}

#[test]
fn notes_are_counted_per_key() {
    let mut v = Voices::new();
    let got = run(
        &mut v,
        &[
            ev(0, 1, 0, Item::Midi(on(60))),
            ev(0, 1, 1, Item::Midi(on(60))), // a second voice on the same key
            ev(0, 1, 2, Item::Midi(off(60))),
            ev(0, 1, 3, Item::Midi(off(60))),
            ev(0, 1, 4, Item::Midi(off(60))), // nothing left to end: dropped
        ],
    );
    assert_eq!(got, vec![on(60), on(60), off(60), off(60)]);
    assert_eq!(v.held_notes(0), 0);
}

#[test]
fn a_late_old_note_event_never_cuts_a_newer_note() {
    let mut v = Voices::new();
    // on(1), off(2) lost in transit, on(3) played; off(2) arrives late.
    let got = run(
        &mut v,
        &[
            ev(0, 1, 1, Item::Midi(on(64))),
            ev(0, 1, 3, Item::Midi(on(64))),
            ev(0, 1, 2, Item::Midi(off(64))),
        ],
    );
    assert_eq!(got, vec![on(64), on(64)]);
    assert_eq!(v.held_notes(0), 1);
}

#[test]
fn a_snapshot_ends_what_was_released_and_fixes_pedal_and_bend() {
    let mut v = Voices::new();
    let pedal = MidiMessage::ControlChange {
        channel: 0,
        cc: CC_SUSTAIN,
        value: 1.0,
    };
    let bend = MidiMessage::PitchBend {
        channel: 0,
        value: 0.9,
    };
    run(
        &mut v,
        &[
            ev(0, 1, 0, Item::Midi(on(60))),
            ev(0, 1, 1, Item::Midi(on(62))),
            ev(0, 1, 2, Item::Midi(pedal)),
            ev(0, 1, 3, Item::Midi(bend)),
        ],
    );
    // The Sender released 60, lifted the pedal and centred the bend; those events were lost.
    let mut snap = StateSnapshot::IDLE;
    snap.channels[0].notes = 1 << 62;
    let got = run(&mut v, &[ev(0, 1, 8, Item::Reconcile(snap))]);
    assert_eq!(
        got,
        vec![
            off(60),
            MidiMessage::ControlChange {
                channel: 0,
                cc: CC_SUSTAIN,
                value: 0.0
            },
            MidiMessage::PitchBend {
                channel: 0,
                value: BEND_CENTRE
            },
        ]
    );
    assert_eq!(v.held_notes(0), 1);
    // The lost events turn up late: stale, dropped. An older snapshot changes nothing.
    let got = run(
        &mut v,
        &[
            ev(0, 1, 5, Item::Midi(off(60))),
            ev(0, 1, 6, Item::Midi(on(61))),
            ev(0, 1, 7, Item::Reconcile(StateSnapshot::IDLE)),
        ],
    );
    assert!(got.is_empty(), "{got:?}");
    // Newer events still play.
    assert_eq!(
        run(&mut v, &[ev(0, 1, 9, Item::Midi(off(62)))]),
        vec![off(62)]
    );
}

#[test]
fn a_note_played_after_the_snapshot_moment_is_not_ended_by_it() {
    let mut v = Voices::new();
    run(&mut v, &[ev(0, 1, 10, Item::Midi(on(70)))]);
    // A snapshot that covers events below 10 only: note 70 (event 10) is not its business.
    let got = run(
        &mut v,
        &[ev(0, 1, 10, Item::Reconcile(StateSnapshot::IDLE))],
    );
    assert!(got.is_empty());
    assert_eq!(v.held_notes(0), 1);
}

#[test]
fn a_leaving_peer_is_ended_and_its_stragglers_dropped() {
    let mut v = Voices::new();
    run(
        &mut v,
        &[
            ev(3, 7, 0, Item::Midi(on(40))),
            ev(3, 7, 1, Item::Midi(on(41))),
        ],
    );
    let got = run(&mut v, &[ev(3, 7, u64::MAX, Item::EndPeer)]);
    assert_eq!(got, vec![off(40), off(41)]);
    // Its late items, and a second end, do nothing.
    let got = run(
        &mut v,
        &[
            ev(3, 7, 2, Item::Midi(on(42))),
            ev(3, 7, u64::MAX, Item::EndPeer),
        ],
    );
    assert!(got.is_empty());
    // A new peer in the same slot plays from scratch.
    assert_eq!(
        run(&mut v, &[ev(3, 8, 0, Item::Midi(on(42)))]),
        vec![on(42)]
    );
}

#[test]
fn a_new_peer_in_a_slot_ends_what_the_old_one_left() {
    let mut v = Voices::new();
    run(&mut v, &[ev(5, 1, 0, Item::Midi(on(50)))]);
    // The old peer's end has not played yet (it is due later), but the new one starts.
    let got = run(&mut v, &[ev(5, 2, 0, Item::Midi(on(51)))]);
    assert_eq!(got, vec![off(50), on(51)]);
    // The old peer's end, and its stragglers, then do nothing.
    assert!(run(
        &mut v,
        &[
            ev(5, 1, u64::MAX, Item::EndPeer),
            ev(5, 1, 1, Item::Midi(on(52)))
        ]
    )
    .is_empty());
    assert_eq!(v.held_notes(5), 1);
}

#[test]
fn panic_ends_everything_everywhere() {
    let mut v = Voices::new();
    run(
        &mut v,
        &[
            ev(0, 1, 0, Item::Midi(on(60))),
            ev(9, 1, 0, Item::Midi(on(61))),
            ev(LOCAL_SLOT, 0, 0, Item::Midi(on(62))),
        ],
    );
    assert_eq!(v.total_held(), 3);
    let mut out = Vec::new();
    assert_eq!(v.panic(|m| out.push(m)), 3);
    assert_eq!(v.total_held(), 0);
    let all_off = out
        .iter()
        .filter(|m| {
            matches!(
                m,
                MidiMessage::ControlChange {
                    cc: CC_ALL_NOTES_OFF,
                    ..
                }
            )
        })
        .count();
    assert_eq!(all_off, CHANNELS);
    // The local slot keeps playing afterwards.
    assert_eq!(
        run(&mut v, &[ev(LOCAL_SLOT, 0, 1, Item::Midi(on(63)))]),
        vec![on(63)]
    );
}

#[test]
fn other_messages_pass_and_out_of_range_slots_are_dropped() {
    let mut v = Voices::new();
    let cc = MidiMessage::ControlChange {
        channel: 2,
        cc: 7,
        value: 0.5,
    };
    assert_eq!(run(&mut v, &[ev(0, 1, 0, Item::Midi(cc))]), vec![cc]);
    let out = v.apply(&ev(200, 1, 0, Item::Midi(cc)), |_| panic!("emitted"));
    assert!(out.dropped);
}

#[test]
fn the_end_of_a_newer_peer_ends_an_older_one_too() {
    // Peer 1 of slot 4 plays and leaves, then peer 2 takes the slot and leaves, before the
    // audio thread saw either end: the Receiver keeps one end per slot, the newest.
    let mut v = Voices::new();
    run(&mut v, &[ev(4, 1, 0, Item::Midi(on(30)))]);
    let got = run(&mut v, &[ev(4, 2, u64::MAX, Item::EndPeer)]);
    assert_eq!(got, vec![off(30)]);
    assert_eq!(v.held_notes(4), 0);
    // Stragglers of either are dropped.
    assert!(run(
        &mut v,
        &[
            ev(4, 1, 1, Item::Midi(on(31))),
            ev(4, 2, 5, Item::Midi(on(32)))
        ]
    )
    .is_empty());
}

#[test]
fn a_slot_reused_many_times_unseen_still_plays_its_newest_peer() {
    // 40,000 senders came and went through slot 6 while the audio thread saw none of them
    // (more than half of what a 16-bit generation tells apart): the next one still plays.
    let mut v = Voices::new();
    run(&mut v, &[ev(6, 1, 0, Item::Midi(on(20)))]);
    let got = run(&mut v, &[ev(6, 40_001, 0, Item::Midi(on(21)))]);
    assert_eq!(got, vec![off(20), on(21)]);
    // And the old one's stragglers do not.
    assert!(run(&mut v, &[ev(6, 1, 1, Item::Midi(on(22)))]).is_empty());
}

#[test]
fn wildcard_note_ons_are_never_played() {
    // Nothing could ever end them (the decoder refuses them; the guard does too).
    let mut v = Voices::new();
    let wild_on = MidiMessage::NoteOn {
        channel: None,
        key: Some(60),
        velocity: 0.5,
        voice_id: None,
    };
    let wild_pressure = MidiMessage::PolyPressure {
        channel: Some(0),
        key: None,
        pressure: 0.5,
        voice_id: None,
    };
    let got = run(
        &mut v,
        &[
            ev(0, 1, 0, Item::Midi(wild_on)),
            ev(0, 1, 1, Item::Midi(wild_pressure)),
        ],
    );
    assert!(got.is_empty());
    assert_eq!(v.held_notes(0), 0);
}
