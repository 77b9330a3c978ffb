use super::*;
use crate::proto::event::MidiMessage;
use crate::proto::receiver::Item;

fn ev(due: u64, tag: u8) -> ScheduledEvent {
    ScheduledEvent {
        due_ns: due,
        seq: tag as u64,
        peer: tag % 8,
        gen: 1,
        item: Item::Midi(MidiMessage::ProgramChange {
            channel: 0,
            program: tag,
        }),
    }
}

fn off(due: u64, peer: u8) -> ScheduledEvent {
    ScheduledEvent {
        due_ns: due,
        seq: 0,
        peer,
        gen: 1,
        item: Item::Midi(MidiMessage::NoteOff {
            channel: Some(0),
            key: Some(60),
            velocity: 0.0,
            voice_id: None,
        }),
    }
}

fn with_peer(mut e: ScheduledEvent, peer: u8) -> ScheduledEvent {
    e.peer = peer;
    e
}

#[test]
fn offsets() {
    let nps = 1e9 / 48_000.0;
    let start = 1_000_000_000;
    assert_eq!(offset_in_block(start, start, nps, 512), Some((0, false)));
    assert_eq!(
        offset_in_block(start - 1, start, nps, 512),
        Some((0, false))
    );
    assert_eq!(
        offset_in_block(start - 20_000, start, nps, 512),
        Some((0, true))
    );
    assert_eq!(
        offset_in_block(start + 20_834, start, nps, 512),
        Some((1, false))
    );
    assert_eq!(
        offset_in_block(start + (511.4 * nps) as u64, start, nps, 512),
        Some((511, false))
    );
    assert_eq!(
        offset_in_block(start + (511.6 * nps) as u64, start, nps, 512),
        None
    );
    // What the block before rounded into this one is on time at sample 0; earlier is late.
    assert_eq!(
        offset_in_block(start - (0.4 * nps) as u64, start, nps, 512),
        Some((0, false))
    );
    assert_eq!(
        offset_in_block(start - (0.6 * nps) as u64, start, nps, 512),
        Some((0, true))
    );
}

/// A time rounded to the next block at one block's end comes out at sample 0 of the next one,
/// on time, whatever the nanosecond rounding of the blocks' starts.
#[test]
fn the_last_half_sample_plays_at_the_next_block_on_time() {
    let nps = 1e9 / 48_000.0;
    let first = 5_000_000_000u64;
    for k in 0..200u64 {
        // A time between sample 511.5 and 512 of block 0.
        let play = first + ((511.5 + k as f64 / 400.0) * nps) as u64 + 1;
        assert_eq!(offset_in_block(play, first, nps, 512), None, "k = {k}");
        let second = first + (512.0 * nps).round() as u64;
        assert_eq!(
            offset_in_block(play, second, nps, 512),
            Some((0, false)),
            "k = {k}"
        );
    }
}

#[test]
fn pop_due_respects_block_limit_and_delay() {
    let nps = 1e9 / 48_000.0;
    let mut s = Schedule::with_capacity(8);
    let start = 10_000_000_000u64;
    let block = BlockSpan {
        start_ns: start,
        n: 512,
        ns_per_sample: nps,
        late_before_ns: start - 50_000,
    };
    s.insert(ev(start - 1000, 1)).unwrap(); // on time with the delay
    s.insert(ev(start + (100.0 * nps) as u64, 2)).unwrap();
    s.insert(ev(start + (300.0 * nps) as u64, 3)).unwrap();
    let delay = (50.0 * nps) as u64;
    assert_eq!(
        s.pop_due(&block, delay, None).map(|x| (x.0, x.2)),
        Some((50, false))
    );
    assert_eq!(s.pop_due(&block, delay, Some(149)), None);
    assert_eq!(s.pop_due(&block, delay, Some(150)).map(|x| x.0), Some(150));
    assert_eq!(s.pop_due(&block, delay, None).map(|x| x.0), Some(350));
    assert!(s.is_empty());
    s.insert(ev(start - 100_000, 4)).unwrap();
    assert_eq!(
        s.pop_due(&block, 0, None).map(|x| (x.0, x.2)),
        Some((0, true))
    );
    // In the gap between the previous block's end and this start: offset 0, not late.
    s.insert(ev(start - 30_000, 5)).unwrap();
    assert_eq!(
        s.pop_due(&block, 0, None).map(|x| (x.0, x.2)),
        Some((0, false))
    );
    // Nothing of a later block comes out.
    s.insert(ev(start + (600.0 * nps) as u64, 6)).unwrap();
    assert_eq!(s.pop_due(&block, 0, None), None);
    assert_eq!(s.len(), 1);
}

#[test]
fn sorted_and_stable() {
    let mut s = Schedule::with_limits(8, 0, 8);
    for (d, t) in [(5, 0), (3, 1), (5, 2), (1, 3), (5, 4)] {
        s.insert(with_peer(ev(d, t), 0)).unwrap();
    }
    let order: Vec<u64> = std::iter::from_fn(|| s.pop()).map(|e| e.seq).collect();
    assert_eq!(order, vec![3, 1, 0, 2, 4]);
    assert!(s.is_empty());
}

#[test]
fn full_hands_back_and_capacity_never_grows() {
    let mut s = Schedule::with_limits(4, 0, 4);
    let cap = s.capacity();
    for i in 0..cap {
        s.insert(with_peer(ev(i as u64, i as u8), 0)).unwrap();
    }
    let late = with_peer(ev(99, 99), 0);
    assert_eq!(s.insert(late), Err(Refused::Full(late)));
    assert_eq!(s.pop().unwrap().seq, 0);
    // Room again after a pop.
    s.insert(late).unwrap();
    assert_eq!(s.capacity(), cap);
    assert_eq!(s.len(), cap);
    s.clear();
    assert!(s.peek().is_none());
    // And the whole capacity again after a clear.
    for i in 0..cap {
        s.insert(with_peer(ev(i as u64, i as u8), 0)).unwrap();
    }
}

#[test]
fn the_reserve_is_kept_for_items_that_end_notes() {
    // 8 places, 3 reserved: 5 of anything, then only note-offs.
    let mut s = Schedule::with_limits(8, 3, 8);
    for i in 0..5 {
        s.insert(with_peer(ev(i, i as u8), 1)).unwrap();
    }
    let more = with_peer(ev(10, 10), 1);
    assert_eq!(s.insert(more), Err(Refused::Full(more)));
    for i in 0..3 {
        s.insert(off(20 + i, 1)).unwrap();
    }
    let last = off(30, 1);
    assert_eq!(s.insert(last), Err(Refused::Full(last)));
    assert_eq!(s.len(), 8);
    // Everything comes out in time order, note-offs included.
    let dues: Vec<u64> = std::iter::from_fn(|| s.pop()).map(|e| e.due_ns).collect();
    assert_eq!(dues, vec![0, 1, 2, 3, 4, 20, 21, 22]);
}

#[test]
fn one_slot_cannot_take_every_place() {
    let mut s = Schedule::with_capacity(SCHEDULE_CAPACITY);
    let mut taken = 0;
    for i in 0..SCHEDULE_CAPACITY as u64 {
        match s.insert(with_peer(ev(i, 0), 3)) {
            Ok(()) => taken += 1,
            Err(e) => {
                assert!(matches!(e, Refused::OverShare(_)));
                break;
            }
        }
    }
    assert_eq!(taken, SLOT_SHARE);
    // Another peer still gets its share, and note-offs of the first still get in.
    for i in 0..SLOT_SHARE as u64 {
        s.insert(with_peer(ev(i, 0), 4)).unwrap();
    }
    s.insert(off(5, 3)).unwrap();
    // A third peer finds no room outside the reserve: the two shares fill it.
    let third = with_peer(ev(1, 0), 5);
    assert_eq!(s.insert(third), Err(Refused::Full(third)));
    // Popping gives the share back.
    let first = s.pop().unwrap();
    assert_eq!(first.due_ns, 0);
    assert!(s.insert(with_peer(ev(7, 0), first.peer)).is_ok());
}

/// Inserts and pops interleaved at random, against a sorted list as the model: same order,
/// ties in arrival order.
#[test]
fn interleaved_insert_and_pop_matches_a_sorted_model() {
    let mut s = Schedule::with_limits(64, 0, 64);
    let mut model: Vec<(u64, u64)> = Vec::new();
    let mut x = 12345u64;
    for step in 0..20_000u64 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if !x.is_multiple_of(3) && model.len() < 64 {
            let due = x % 1000;
            let mut e = with_peer(ev(due, 0), 0);
            e.seq = step;
            s.insert(e).unwrap();
            let pos = model.partition_point(|m| m.0 <= due);
            model.insert(pos, (due, step));
        } else {
            let got = s.pop().map(|e| (e.due_ns, e.seq));
            let want = (!model.is_empty()).then(|| model.remove(0));
            assert_eq!(got, want);
        }
        assert_eq!(s.len(), model.len());
        assert_eq!(s.peek().map(|e| (e.due_ns, e.seq)), model.first().copied());
    }
}
