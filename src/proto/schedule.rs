//! The audio thread's playout schedule: events waiting for their sample, in time order.
//!
//! Fixed capacity, allocated once; inserting, peeking and popping never allocate, lock or
//! block, so this is safe inside `process()`. Events are kept sorted by due time, ties in
//! arrival order (a stable insert), so one peer's events never swap. Events mostly arrive in
//! time order, so an insert is usually an append at the back of a ring; an event that arrives
//! out of order moves the events after it (or before it, whichever are fewer).

use super::receiver::ScheduledEvent;
use std::collections::VecDeque;

/// Default capacity: about 20 s of dense playing (200 events/s) from 20 players.
pub const SCHEDULE_CAPACITY: usize = 4096;

/// Where a host block lies on the session timeline, for [`Schedule::pop_due`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockSpan {
    /// Session time of the block's first sample, ns.
    pub start_ns: u64,
    /// Samples in the block.
    pub n: u32,
    /// Duration of one sample, ns.
    pub ns_per_sample: f64,
    /// Events due before this are late: the block's start, or the previous block's end when
    /// that was earlier (the line moved forward between the two: what falls in the gap is
    /// played at offset 0 but is not late).
    pub late_before_ns: u64,
}

/// A full schedule hands the event back, as `rtrb` does with a full queue.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Full(pub ScheduledEvent);

/// Events waiting to be played, earliest first.
#[derive(Debug)]
pub struct Schedule {
    /// Sorted by `due_ns`, stable; a ring that never grows past its initial capacity.
    events: VecDeque<ScheduledEvent>,
    /// Most events held (the ring's capacity when it was made).
    capacity: usize,
}

impl Schedule {
    /// An empty schedule holding at most `capacity` events.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            events: VecDeque::with_capacity(capacity),
            capacity,
        }
    }

    /// Number of waiting events.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Most events it can hold.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Adds an event in time order, or hands it back when full.
    // The event is handed back by value, as `rtrb` does: no allocation on the audio thread.
    #[allow(clippy::result_large_err)]
    pub fn insert(&mut self, ev: ScheduledEvent) -> Result<(), Full> {
        if self.events.len() >= self.capacity {
            return Err(Full(ev));
        }
        // Usually the latest: a look at the back first, a binary search otherwise.
        if self.events.back().is_none_or(|b| b.due_ns <= ev.due_ns) {
            self.events.push_back(ev);
        } else {
            // First position whose due time is later than ours: after every equal one.
            let pos = self.events.partition_point(|e| e.due_ns <= ev.due_ns);
            self.events.insert(pos, ev);
        }
        Ok(())
    }

    /// The earliest waiting event.
    pub fn peek(&self) -> Option<&ScheduledEvent> {
        self.events.front()
    }

    /// Removes and returns the earliest waiting event.
    pub fn pop(&mut self) -> Option<ScheduledEvent> {
        self.events.pop_front()
    }

    /// Forgets every waiting event (no deallocation).
    pub fn clear(&mut self) {
        self.events.clear();
    }

    /// Pops the earliest event if it plays in `block`, at an offset no later than `limit`. An
    /// event plays at `due_ns + delay_ns`; its offset is that time's sample in the block, or 0
    /// when that time has already passed (then `late` is true, unless it fell between the
    /// previous block's end and this block's start, where the host clock's line moved).
    /// Returns `(offset, event, late)`.
    pub fn pop_due(
        &mut self,
        block: &BlockSpan,
        delay_ns: u64,
        limit: Option<u32>,
    ) -> Option<(u32, ScheduledEvent, bool)> {
        let ev = self.peek()?;
        let play = ev.due_ns.saturating_add(delay_ns);
        let (offset, late) = offset_in_block(play, block.start_ns, block.ns_per_sample, block.n)?;
        if limit.is_some_and(|l| offset > l) {
            return None;
        }
        let ev = self.pop()?;
        Some((offset, ev, late && play < block.late_before_ns))
    }
}

/// Where a time `play_ns` falls in a block of `n` samples starting at `start_ns`: `Some((offset,
/// late))` inside the block (offset 0 and `late` when already past), `None` when it belongs
/// to a later block. The offset is the nearest sample, so a time stamped at sample `k` of some
/// block comes back as exactly `k` despite nanosecond rounding.
pub fn offset_in_block(
    play_ns: u64,
    start_ns: u64,
    ns_per_sample: f64,
    n: u32,
) -> Option<(u32, bool)> {
    if play_ns < start_ns {
        return Some((0, true));
    }
    let off = ((play_ns - start_ns) as f64 / ns_per_sample).round();
    (off < n as f64).then_some((off as u32, false))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets() {
        let nps = 1e9 / 48_000.0;
        let start = 1_000_000_000;
        assert_eq!(offset_in_block(start, start, nps, 512), Some((0, false)));
        assert_eq!(offset_in_block(start - 1, start, nps, 512), Some((0, true)));
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
            late_before_ns: start - 500,
        };
        s.insert(ev(start - 1000, 1)).unwrap(); // late
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
        s.insert(ev(start - 1000, 4)).unwrap();
        assert_eq!(
            s.pop_due(&block, 0, None).map(|x| (x.0, x.2)),
            Some((0, true))
        );
        // In the gap between the previous block's end and this start: offset 0, not late.
        s.insert(ev(start - 100, 5)).unwrap();
        assert_eq!(
            s.pop_due(&block, 0, None).map(|x| (x.0, x.2)),
            Some((0, false))
        );
    }
    use crate::proto::event::MidiMessage;
    use crate::proto::receiver::Item;

    fn ev(due: u64, tag: u8) -> ScheduledEvent {
        ScheduledEvent {
            due_ns: due,
            seq: tag as u64,
            peer: tag,
            gen: 1,
            item: Item::Midi(MidiMessage::ProgramChange {
                channel: 0,
                program: tag,
            }),
        }
    }

    #[test]
    fn sorted_and_stable() {
        let mut s = Schedule::with_capacity(8);
        for (d, t) in [(5, 0), (3, 1), (5, 2), (1, 3), (5, 4)] {
            s.insert(ev(d, t)).unwrap();
        }
        let order: Vec<u8> = std::iter::from_fn(|| s.pop()).map(|e| e.peer).collect();
        assert_eq!(order, vec![3, 1, 0, 2, 4]);
        assert!(s.is_empty());
    }

    #[test]
    fn full_hands_back_and_capacity_never_grows() {
        let mut s = Schedule::with_capacity(4);
        let cap = s.capacity();
        for i in 0..cap {
            s.insert(ev(i as u64, i as u8)).unwrap();
        }
        assert_eq!(s.insert(ev(99, 99)), Err(Full(ev(99, 99))));
        assert_eq!(s.pop().unwrap().peer, 0);
        // Room again after a pop (the played prefix is reclaimed).
        s.insert(ev(99, 99)).unwrap();
        assert_eq!(s.capacity(), cap);
        assert_eq!(s.len(), cap);
        s.clear();
        assert!(s.peek().is_none());
    }

    #[test]
    fn interleaved_insert_and_pop_matches_a_sorted_model() {
        let mut s = Schedule::with_capacity(64);
        let mut model: Vec<(u64, u8)> = Vec::new();
        let mut x = 12345u64;
        for step in 0..5000u32 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if !x.is_multiple_of(3) && model.len() < 64 {
                let due = x % 1000;
                let tag = (step % 251) as u8;
                s.insert(ev(due, tag)).unwrap();
                let pos = model.partition_point(|m| m.0 <= due);
                model.insert(pos, (due, tag));
            } else {
                let got = s.pop().map(|e| (e.due_ns, e.peer));
                let want = (!model.is_empty()).then(|| model.remove(0));
                assert_eq!(got, want);
            }
        }
    }
}
