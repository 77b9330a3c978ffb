//! The Sender core alone, against hand-made replies, in virtual time.

use super::*;
use crate::proto::event::MidiMessage;
use crate::proto::reject::Reject;
use crate::proto::state::StateSnapshot;
use crate::proto::wire::{
    decode_body, decode_header, encode_refused, encode_time_reply, open_body, Body, PacketType,
    TimeReply, MAX_ACCEPTED_DATAGRAM,
};

const MS: u64 = 1_000_000;

fn key() -> RoomKey {
    RoomKey::from_bytes([3; 32])
}

fn note(on: bool, k: u8) -> MidiMessage {
    if on {
        MidiMessage::NoteOn {
            channel: Some(0),
            key: Some(k),
            velocity: 0.5,
            voice_id: None,
        }
    } else {
        MidiMessage::NoteOff {
            channel: Some(0),
            key: Some(k),
            velocity: 0.0,
            voice_id: None,
        }
    }
}

/// A decoded datagram: type, event numbers covered (Events), and the body's prelude.
#[derive(Debug, Clone, PartialEq)]
struct Out {
    ty: PacketType,
    sealed: bool,
    events: Vec<(u64, TimedMessage)>,
    state: Option<(u64, StateSnapshot)>,
    sent_ns: Option<u64>,
}

fn decode(d: &Datagram, key: Option<&RoomKey>) -> Out {
    let (h, _) = decode_header(d.as_bytes()).unwrap();
    let mut scratch = [0u8; MAX_ACCEPTED_DATAGRAM];
    let body = open_body(&h, d.as_bytes(), key, key.is_some(), &mut scratch).unwrap();
    let mut evs = Vec::new();
    let b = decode_body(&h, body, &mut evs).unwrap();
    let events = match b {
        Body::Events {
            first_event_seq, ..
        } => evs
            .iter()
            .enumerate()
            .map(|(i, e)| (first_event_seq + i as u64, *e))
            .collect(),
        _ => Vec::new(),
    };
    let state = match b {
        Body::State(s) => Some((s.as_of_seq, s.snapshot)),
        _ => None,
    };
    Out {
        ty: h.packet_type,
        sealed: h.sealed,
        events,
        state,
        sent_ns: b.prelude().map(|p| p.sent_ns),
    }
}

fn drain(s: &mut SenderCore, now: u64, key: Option<&RoomKey>) -> Vec<Out> {
    std::iter::from_fn(|| s.poll_transmit(now))
        .map(|d| decode(&d, key))
        .collect()
}

/// Answers the first pending TimeRequest of `out` (sent at `t1`) as a Receiver with `epoch`.
fn reply(s: &mut SenderCore, t1: u64, now: u64, epoch: u32, key: Option<&RoomKey>) {
    let p = Prelude {
        sent_ns: now - MS / 2,
        epoch,
    };
    let d = encode_time_reply(
        77,
        0,
        p,
        &TimeReply {
            t1,
            t2: t1 + MS / 2,
        },
    )
    .seal_with(key);
    s.handle_datagram(now, d.as_bytes()).unwrap();
}

/// A Sender that has heard from its Receiver at `t` (returns the time after).
fn connected(key: Option<RoomKey>) -> (SenderCore, u64) {
    let k = key.clone();
    let mut s = SenderCore::new(42, "alice", key);
    s.handle_timeout(1_000);
    let out = drain(&mut s, 1_000, k.as_ref());
    assert_eq!(
        out.len(),
        1,
        "only a clock request before the epoch is known"
    );
    assert_eq!(out[0].ty, PacketType::TimeRequest);
    reply(&mut s, 1_000, 2 * MS, 9, k.as_ref());
    assert_eq!(s.link(), Link::Connected);
    (s, 2 * MS)
}

#[test]
fn events_wait_for_the_epoch_then_go_sealed() {
    let k = key();
    let mut s = SenderCore::new(42, "alice", Some(k.clone()));
    s.handle_timeout(0);
    s.push_event(TimedMessage {
        time_ns: 10,
        msg: note(true, 60),
    });
    s.end_block();
    let out = drain(&mut s, 0, Some(&k));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].ty, PacketType::TimeRequest);
    assert!(out[0].sealed);
    assert_eq!(s.link(), Link::NoReply);
    reply(&mut s, 0, MS, 9, Some(&k));
    let out = drain(&mut s, MS, Some(&k));
    let kinds: Vec<_> = out.iter().map(|o| o.ty).collect();
    assert_eq!(
        kinds,
        vec![PacketType::Events, PacketType::State],
        "{out:?}"
    );
    assert_eq!(out[0].events.len(), 1);
    assert!(out.iter().all(|o| o.sealed));
}

#[test]
fn each_batch_repeats_the_previous_ones_and_a_tail_follows() {
    let (mut s, mut t) = connected(None);
    drain(&mut s, t, None);
    let mut n = 0u8;
    let mut datagrams = Vec::new();
    for _ in 0..4 {
        for _ in 0..2 {
            s.push_event(TimedMessage {
                time_ns: t,
                msg: note(true, n),
            });
            n += 1;
        }
        s.end_block();
        datagrams.extend(drain(&mut s, t, None));
        t += 5 * MS;
    }
    let events: Vec<_> = datagrams
        .iter()
        .filter(|d| d.ty == PacketType::Events)
        .map(|d| d.events.iter().map(|e| e.0).collect::<Vec<_>>())
        .collect();
    assert_eq!(
        events,
        vec![
            vec![0, 1],
            vec![0, 1, 2, 3],
            vec![0, 1, 2, 3, 4, 5],
            vec![2, 3, 4, 5, 6, 7]
        ]
    );
    // After the last batch: DEFAULT_REDUNDANCY repeat-only datagrams, TAIL_REPEAT_NS apart.
    let mut tail = Vec::new();
    for _ in 0..10 {
        t += TAIL_REPEAT_NS;
        s.handle_timeout(t);
        tail.extend(
            drain(&mut s, t, None)
                .into_iter()
                .filter(|d| d.ty == PacketType::Events),
        );
    }
    assert_eq!(tail.len(), DEFAULT_REDUNDANCY);
    for d in &tail {
        assert_eq!(
            d.events.iter().map(|e| e.0).collect::<Vec<_>>(),
            vec![4, 5, 6, 7]
        );
    }
    assert_eq!(s.stats().events_sent, 8);
}

#[test]
fn no_redundancy_sends_each_event_once() {
    let (mut s, t) = connected(None);
    s.set_redundancy(0);
    drain(&mut s, t, None);
    for i in 0..3 {
        s.push_event(TimedMessage {
            time_ns: t,
            msg: note(true, i),
        });
        s.end_block();
    }
    let out = drain(&mut s, t, None);
    let all: Vec<u64> = out
        .iter()
        .flat_map(|d| d.events.iter().map(|e| e.0))
        .collect();
    assert_eq!(all, vec![0, 1, 2]);
    s.handle_timeout(t + 100 * MS);
    assert!(drain(&mut s, t + 100 * MS, None)
        .iter()
        .all(|d| d.ty != PacketType::Events));
}

#[test]
fn big_blocks_split_with_consecutive_numbers() {
    let (mut s, t) = connected(None);
    drain(&mut s, t, None);
    for i in 0..400u64 {
        s.push_event(TimedMessage {
            time_ns: t + i,
            msg: MidiMessage::ControlChange {
                channel: 0,
                cc: 1,
                value: 0.5,
            },
        });
    }
    s.end_block();
    let out = drain(&mut s, t, None);
    let mut got = std::collections::BTreeSet::new();
    for d in &out {
        got.extend(d.events.iter().map(|e| e.0));
        assert!(d.events.windows(2).all(|w| w[1].0 == w[0].0 + 1));
    }
    assert_eq!(got, (0..400).collect());
    assert!(out.len() >= 2);
}

#[test]
fn heartbeat_snapshot_reflects_what_was_sent() {
    let (mut s, mut t) = connected(None);
    drain(&mut s, t, None);
    for (on, k) in [(true, 60), (true, 64), (false, 60)] {
        s.push_event(TimedMessage {
            time_ns: t,
            msg: note(on, k),
        });
    }
    s.end_block();
    drain(&mut s, t, None);
    t += IDLE_STATE_DELAY_NS;
    s.handle_timeout(t);
    let states: Vec<_> = drain(&mut s, t, None)
        .into_iter()
        .filter_map(|d| d.state)
        .collect();
    assert_eq!(states.len(), 1, "a snapshot soon after playing stops");
    let (as_of, snap) = states[0];
    assert_eq!(as_of, 3);
    assert_eq!(snap.channels[0].notes, 1 << 64);
    // And one a second while idle.
    let mut beats = 0;
    for _ in 0..30 {
        t += 100 * MS;
        s.handle_timeout(t);
        beats += drain(&mut s, t, None)
            .iter()
            .filter(|d| d.ty == PacketType::State)
            .count();
    }
    assert!((2..=4).contains(&beats), "{beats} heartbeats in 3 s");
}

#[test]
fn refused_then_connected_then_silent() {
    let k = key();
    let mut s = SenderCore::new(1, "", Some(k.clone()));
    s.handle_timeout(0);
    drain(&mut s, 0, Some(&k));
    s.handle_datagram(MS, encode_refused(77, 0).as_bytes())
        .unwrap();
    assert_eq!(s.link(), Link::Refused);
    assert_eq!(s.stats().refused, 1);
    // A reply sealed with another key does not count.
    let other = RoomKey::from_bytes([4; 32]);
    let p = Prelude {
        sent_ns: MS,
        epoch: 1,
    };
    let bad = encode_time_reply(77, 1, p, &TimeReply { t1: 0, t2: MS }).seal_with(Some(&other));
    assert!(s.handle_datagram(2 * MS, bad.as_bytes()).is_err());
    assert_eq!(s.link(), Link::Refused);
    // A reply to a request never sent does not count either.
    let stray = encode_time_reply(77, 2, p, &TimeReply { t1: 5, t2: MS }).seal_with(Some(&k));
    assert_eq!(
        s.handle_datagram(2 * MS, stray.as_bytes()),
        Err(Reject::Duplicate)
    );
    reply(&mut s, 0, 3 * MS, 1, Some(&k));
    assert_eq!(s.link(), Link::Connected);
    // The same reply again (a replay) is refused: its request was answered.
    s.handle_timeout(4 * MS + REPLY_TIMEOUT_NS);
    assert_eq!(s.link(), Link::NoReply);
}

#[test]
fn close_releases_what_is_held_then_says_bye() {
    let (mut s, t) = connected(None);
    drain(&mut s, t, None);
    s.push_event(TimedMessage {
        time_ns: t,
        msg: note(true, 60),
    });
    s.push_event(TimedMessage {
        time_ns: t,
        msg: MidiMessage::ControlChange {
            channel: 0,
            cc: 64,
            value: 1.0,
        },
    });
    s.end_block();
    drain(&mut s, t, None);
    s.close(t + MS);
    s.close(t + MS);
    s.push_event(TimedMessage {
        time_ns: t,
        msg: note(true, 61),
    });
    let out = drain(&mut s, t + MS, None);
    let kinds: Vec<_> = out.iter().map(|d| d.ty).collect();
    assert_eq!(kinds, vec![PacketType::Events, PacketType::Bye]);
    let new: Vec<_> = out[0]
        .events
        .iter()
        .filter(|e| e.0 >= 2)
        .map(|e| e.1.msg)
        .collect();
    assert_eq!(
        new,
        vec![
            note(false, 60),
            MidiMessage::ControlChange {
                channel: 0,
                cc: 64,
                value: 0.0
            }
        ]
    );
    assert_eq!(out[1].sent_ns, Some(t + MS));
    // The goodbye is repeated: the last batches (the note-offs among them) and the Bye,
    // BYE_SPACING_NS apart, BYE_ROUNDS times in all; then nothing.
    let mut at = t + MS;
    for _ in 1..BYE_ROUNDS {
        assert_eq!(s.poll_timeout(), Some(at + BYE_SPACING_NS));
        s.handle_timeout(at + BYE_SPACING_NS - 1);
        assert!(drain(&mut s, at + BYE_SPACING_NS - 1, None).is_empty());
        at += BYE_SPACING_NS;
        s.handle_timeout(at);
        let out = drain(&mut s, at, None);
        let kinds: Vec<_> = out.iter().map(|d| d.ty).collect();
        assert_eq!(kinds, vec![PacketType::Events, PacketType::Bye]);
        assert!(out[0].events.iter().any(|e| e.1.msg == note(false, 60)));
    }
    assert_eq!(s.poll_timeout(), None);
    s.handle_timeout(at + 100 * MS);
    assert!(drain(&mut s, at + 100 * MS, None).is_empty());
}

#[test]
fn without_redundancy_the_goodbye_still_repeats_the_note_offs() {
    let (mut s, t) = connected(None);
    s.set_redundancy(0);
    drain(&mut s, t, None);
    s.push_event(TimedMessage {
        time_ns: t,
        msg: note(true, 64),
    });
    s.end_block();
    drain(&mut s, t, None);
    s.close(t + MS);
    let mut offs = 0;
    let mut byes = 0;
    let mut at = t + MS;
    loop {
        for o in drain(&mut s, at, None) {
            offs += o
                .events
                .iter()
                .filter(|e| e.1.msg == note(false, 64))
                .count();
            byes += usize::from(o.ty == PacketType::Bye);
        }
        let Some(next) = s.poll_timeout() else { break };
        at = next;
        s.handle_timeout(at);
    }
    assert_eq!((offs, byes), (BYE_ROUNDS, BYE_ROUNDS));
    assert!(at - (t + MS) <= 2 * BYE_SPACING_NS);
}

#[test]
fn a_full_buffer_drops_the_newest_but_takes_note_offs() {
    let (mut s, t) = connected(None);
    drain(&mut s, t, None);
    let regular = MAX_PENDING - NOTE_OFF_RESERVE;
    // A block of more note-ons than fit (a host gone mad), then its note-offs.
    for i in 0..(regular + 10) {
        s.push_event(TimedMessage {
            time_ns: t + i as u64,
            msg: note(true, (i % 128) as u8),
        });
    }
    assert_eq!(s.stats().events_dropped, 10, "the newest ten");
    for k in 0..128 {
        s.push_event(TimedMessage {
            time_ns: t + MS,
            msg: note(false, k),
        });
    }
    assert_eq!(s.stats().events_dropped, 10, "every note-off taken");
    s.end_block();
    let mut sent: Vec<(u64, TimedMessage)> = drain(&mut s, t + MS, None)
        .into_iter()
        .flat_map(|o| o.events)
        .collect();
    // (Each datagram repeats the last batches.)
    sent.sort_by_key(|e| e.0);
    sent.dedup_by_key(|e| e.0);
    // The oldest went out first, numbered from 0; the note-offs last.
    assert_eq!(sent[0].0, 0);
    assert_eq!(sent[0].1.time_ns, t);
    assert_eq!(sent.len(), regular + 128);
    assert!(sent[regular..]
        .iter()
        .all(|e| e.1.msg == note(false, (e.0 - regular as u64) as u8)));
}

#[test]
fn events_held_without_a_receiver_are_not_sent_in_a_stale_burst() {
    // Nobody answers for 3 s while the player plays 300 notes; then the Receiver answers.
    let mut s = SenderCore::new(42, "alice", None);
    let mut now = 1_000;
    for i in 0..300u64 {
        now = 1_000 + i * 10 * MS;
        s.handle_timeout(now);
        for on in [true, false] {
            s.push_event(TimedMessage {
                time_ns: now,
                msg: note(on, (i % 100) as u8),
            });
        }
        s.end_block();
        let _ = drain(&mut s, now, None);
    }
    let t1 = s.outstanding[(s.outstanding_next + OUTSTANDING - 1) % OUTSTANDING];
    now += MS;
    reply(&mut s, t1, now, 9, None);
    s.handle_timeout(now);
    let out = drain(&mut s, now, None);
    let evs: Vec<&(u64, TimedMessage)> = out.iter().flat_map(|o| &o.events).collect();
    assert!(!evs.is_empty(), "the last second is sent");
    for (_, e) in &evs {
        assert!(
            now - e.time_ns <= MAX_PENDING_AGE_NS,
            "an event {} ms old went out",
            (now - e.time_ns) / MS
        );
    }
    let mut seqs: Vec<u64> = evs.iter().map(|e| e.0).collect();
    seqs.sort_unstable();
    seqs.dedup();
    assert!(seqs.len() <= 2 * 101, "{} events", seqs.len());
    assert!(s.stats().events_dropped >= 2 * 199);
}

#[test]
fn a_stale_note_off_of_a_sent_note_reaches_the_receiver_in_the_snapshot() {
    let (mut s, t) = connected(None);
    drain(&mut s, t, None);
    s.push_event(TimedMessage {
        time_ns: t,
        msg: note(true, 60),
    });
    s.end_block();
    let out = drain(&mut s, t, None);
    assert!(out.iter().any(|o| o.ty == PacketType::Events));
    // Its note-off is stamped, but its block never ends (the host's end-of-block message
    // was lost): it waits in the Sender for more than a second.
    s.push_event(TimedMessage {
        time_ns: t + 10 * MS,
        msg: note(false, 60),
    });
    let later = t + 10 * MS + MAX_PENDING_AGE_NS + MS;
    s.handle_timeout(later);
    let out = drain(&mut s, later, None);
    let (as_of, snap) = out
        .iter()
        .find_map(|o| o.state)
        .expect("a snapshot goes out at once");
    assert_eq!(snap.channels[0].notes, 0, "the note is released in it");
    assert_eq!(as_of, 2, "newer than the note-on and the note-off");
    assert!(out.iter().all(|o| o.events.is_empty()), "not sent late");
}

#[test]
fn nothing_follows_the_bye_not_even_a_late_clock_answer() {
    // Found by the `sender_receive` fuzz target: a clock answer that arrived after the Bye
    // queued a ClockReport, sent after the Bye; the Receiver, which had forgotten the
    // Sender, took it for a new one.
    let (mut s, t) = connected(None);
    drain(&mut s, t, None);
    let t1 = t + 100 * MS;
    s.handle_timeout(t1);
    let out = drain(&mut s, t1, None);
    assert!(
        out.iter().any(|o| o.ty == PacketType::TimeRequest),
        "{out:?}"
    );
    s.close(t1 + MS);
    let out = drain(&mut s, t1 + MS, None);
    assert_eq!(out.last().map(|o| o.ty), Some(PacketType::Bye));
    // NTP answers, then the Receiver's answer to the last request arrives: both would make
    // a report due.
    s.set_ntp(Some(NtpOffset {
        offset_ns: 5 * MS as i64,
        error_ns: 1_000,
    }));
    reply(&mut s, t1, t1 + 2 * MS, 9, None);
    s.handle_timeout(t1 + 3 * MS);
    assert_eq!(drain(&mut s, t1 + 3 * MS, None), Vec::new());
    // Nor with the goodbye's repeats: they are Byes alone (nothing was played).
    let mut at = t1 + MS;
    while let Some(next) = s.poll_timeout() {
        at = next;
        s.handle_timeout(at);
        let kinds: Vec<_> = drain(&mut s, at, None).iter().map(|o| o.ty).collect();
        assert_eq!(kinds, vec![PacketType::Bye]);
    }
    assert!(at > t1 + MS);
}

#[test]
fn a_jump_of_the_clock_estimate_across_2_63_is_measured_without_overflow() {
    // Seen while reading what the fuzz targets found in the clock code: how far a new
    // estimate moved was `a as i64 - b as i64` of two mapped times, which overflows when
    // they are more than 2^63 ns apart (a panic with overflow checks on).
    let mut s = SenderCore::new(42, "alice", None);
    let now = 1_000_000_000u64;
    s.set_ntp(Some(NtpOffset {
        offset_ns: ((1u64 << 63) - now) as i64,
        error_ns: 0,
    }));
    s.handle_timeout(now);
    let moved = NtpOffset {
        offset_ns: 1 - now as i64,
        error_ns: 0,
    };
    s.set_ntp(Some(moved));
    s.handle_timeout(now + 1);
    assert_eq!(
        s.report_pending.map(|r| r.offset_ns),
        Some(moved.offset_ns),
        "the move is reported at once"
    );
}
