//! The audio thread's playout schedule: events waiting for their sample, in time order.
//!
//! Fixed capacity, allocated once; inserting, peeking and popping never allocate, lock or
//! block, so this is safe inside `process()`.
//!
//! The items themselves are large (a [`ScheduledEvent`] carries SysEx and snapshots inline, so
//! that nothing is ever boxed) and never move once stored: they sit in a slab of fixed places,
//! taken in turn (the free places are a ring), so consecutive arrivals sit next to each other
//! and `process()` reads them as a stream. The time order is kept by a ring of small keys (due
//! time and place: 16 bytes), sorted: what the network delivers in order (most of it: each
//! peer's events, the host's own track) is an append and a pop at the ends, and what it
//! delivers out of order (peers with different latencies interleave) moves keys, never items:
//! at most half the ring, 32 KiB at the default capacity, where a ring of the items themselves
//! moves up to 1.1 MiB. Ties in due time keep their arrival order (an insert goes after every
//! equal key), so one peer's events never swap.
//!
//! `cargo bench --features baseline --bench process -- schedule` compares it with a ring of
//! the items kept sorted by insertion: the indirection costs a few tens of ns per event in
//! order, and saves most of the cost when three peers interleave (README, "Measured"). A
//! binary heap of the keys, tried too, cost twice as much as this in order.
//!
//! Admission rules, so that no one can starve the rest (see docs/alignment.md):
//! - items that do not end notes may fill all but [`RESERVED_FOR_ENDINGS`] places; items
//!   that end notes (note-offs, snapshots, the end of a peer) may take any place: a flood of
//!   note-ons or controllers can never leave a note-off without one;
//! - one slot (one peer, or the Receiver's own track) holds at most [`SLOT_SHARE`] items that
//!   do not end notes, so one busy or hostile peer leaves room for the others.

use super::peers::MAX_PEERS;
use super::receiver::{Item, ScheduledEvent};
use crate::proto::event::MidiMessage;
use std::collections::VecDeque;

/// Default capacity: about 20 s of dense playing (200 events/s) from 20 players, or more than
/// 4 s of the densest a MIDI 1.0 cable carries (about 1,000 events/s) from one.
pub const SCHEDULE_CAPACITY: usize = 4096;
/// Places that only items ending notes may take, at the default capacity.
pub const RESERVED_FOR_ENDINGS: usize = 512;
/// Most items that do not end notes one slot may hold, at the default capacity: half of what
/// is left after the reserve, so a second peer always finds room.
pub const SLOT_SHARE: usize = (SCHEDULE_CAPACITY - RESERVED_FOR_ENDINGS) / 2;
/// Slots tracked for the share: every network peer and the Receiver's own track.
const SLOTS: usize = MAX_PEERS + 1;

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

/// Why an item was refused; the item is handed back, as `rtrb` does with a full queue.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Refused {
    /// Every place is taken, or (for an item that does not end notes) every place outside the
    /// reserve is taken by such items.
    Full(ScheduledEvent),
    /// The item's slot already holds its share of items that do not end notes.
    OverShare(ScheduledEvent),
}

impl Refused {
    /// The item that was refused.
    pub fn into_inner(self) -> ScheduledEvent {
        match self {
            Self::Full(ev) | Self::OverShare(ev) => ev,
        }
    }
}

/// Whether an item ends notes (a note-off, a snapshot that may end notes, the end of a peer):
/// those are admitted into the reserve, since losing one leaves a note hanging.
pub fn ends_notes(item: &Item) -> bool {
    match item {
        Item::Midi(MidiMessage::NoteOff { .. }) => true,
        Item::Midi(_) => false,
        Item::Reconcile(_) | Item::EndPeer => true,
    }
}

/// What a free place of the slab holds until it is taken.
const PLACEHOLDER: ScheduledEvent = ScheduledEvent {
    due_ns: 0,
    seq: 0,
    peer: 0,
    gen: 0,
    item: Item::EndPeer,
};

/// The ring's key for one stored item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Key {
    /// When the item is due, before the playout delay, ns.
    due_ns: u64,
    /// Where the item is stored in the slab.
    idx: u16,
}

/// Events waiting to be played, earliest first. Created in `initialize()`; used only by the
/// audio thread.
#[derive(Debug)]
pub struct Schedule {
    /// Stored items (a free place holds whatever was last there: the keys say which places
    /// are taken). Never grows.
    slab: Box<[ScheduledEvent]>,
    /// Free places of `slab`, a ring (preallocated to the capacity): a place is taken again
    /// only after every other free one, so the items of consecutive arrivals sit next to each
    /// other, in arrival order, and `process()` reads them as a stream.
    free: VecDeque<u16>,
    /// Keys of the stored items, sorted by due time, stable (preallocated to the capacity: an
    /// insert never reallocates because there are never more keys than places).
    keys: VecDeque<Key>,
    /// Items that do not end notes, per slot (indexed by `ScheduledEvent::peer`).
    per_slot: [u32; SLOTS],
    /// Items that do not end notes, in all.
    non_ending: usize,
    /// Places only items ending notes may take.
    reserve: usize,
    /// Most items not ending notes per slot.
    share: usize,
}

impl Schedule {
    /// An empty schedule of `capacity` places, with the default proportions of reserve and
    /// share ([`RESERVED_FOR_ENDINGS`] and [`SLOT_SHARE`] at the default capacity).
    pub fn with_capacity(capacity: usize) -> Self {
        let reserve = capacity * RESERVED_FOR_ENDINGS / SCHEDULE_CAPACITY;
        Self::with_limits(capacity, reserve, (capacity - reserve) / 2)
    }

    /// An empty schedule of `capacity` places (at most 65,536), `reserve` of them for items
    /// ending notes, at most `share` items not ending notes per slot.
    pub fn with_limits(capacity: usize, reserve: usize, share: usize) -> Self {
        let capacity = capacity.min(u16::MAX as usize + 1);
        Self {
            slab: vec![PLACEHOLDER; capacity].into_boxed_slice(),
            free: (0..capacity).map(|i| i as u16).collect(),
            keys: VecDeque::with_capacity(capacity),
            per_slot: [0; SLOTS],
            non_ending: 0,
            reserve: reserve.min(capacity),
            share,
        }
    }

    /// Number of waiting events.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Most events it can hold.
    pub fn capacity(&self) -> usize {
        self.slab.len()
    }

    /// Adds an event in time order, or hands it back (see the module's admission rules).
    // The event is handed back by value, as `rtrb` does: no allocation on the audio thread.
    #[allow(clippy::result_large_err)]
    pub fn insert(&mut self, ev: ScheduledEvent) -> Result<(), Refused> {
        let ending = ends_notes(&ev.item);
        let others_full = self.non_ending + self.reserve >= self.capacity();
        if self.len() >= self.capacity() || (!ending && others_full) {
            return Err(Refused::Full(ev));
        }
        let slot = ev.peer as usize % SLOTS;
        if !ending && self.per_slot[slot] as usize >= self.share {
            return Err(Refused::OverShare(ev));
        }
        let Some(idx) = self.free.pop_front() else {
            return Err(Refused::Full(ev));
        };
        if !ending {
            self.per_slot[slot] += 1;
            self.non_ending += 1;
        }
        self.slab[idx as usize] = ev;
        let key = Key {
            due_ns: ev.due_ns,
            idx,
        };
        // Usually the latest: a look at the back first, a binary search otherwise, after
        // every equal key.
        if self.keys.back().is_none_or(|b| b.due_ns <= key.due_ns) {
            self.keys.push_back(key);
        } else {
            let pos = self.keys.partition_point(|k| k.due_ns <= key.due_ns);
            self.keys.insert(pos, key);
        }
        Ok(())
    }

    /// The earliest waiting event.
    pub fn peek(&self) -> Option<&ScheduledEvent> {
        let key = self.keys.front()?;
        self.slab.get(key.idx as usize)
    }

    /// Removes and returns the earliest waiting event.
    pub fn pop(&mut self) -> Option<ScheduledEvent> {
        let key = self.keys.pop_front()?;
        let ev = *self.slab.get(key.idx as usize)?;
        self.free.push_back(key.idx);
        if !ends_notes(&ev.item) {
            let slot = ev.peer as usize % SLOTS;
            self.per_slot[slot] = self.per_slot[slot].saturating_sub(1);
            self.non_ending = self.non_ending.saturating_sub(1);
        }
        Some(ev)
    }

    /// Forgets every waiting event (no deallocation).
    pub fn clear(&mut self) {
        while self.pop().is_some() {}
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
        let due = self.keys.front()?.due_ns;
        let play = due.saturating_add(delay_ns);
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
/// block comes back as exactly `k` despite nanosecond rounding; a time in the last half sample
/// before a block belongs to its sample 0 (the previous block left it there: nearer to the
/// next block's first sample than to its own last), and is on time.
pub fn offset_in_block(
    play_ns: u64,
    start_ns: u64,
    ns_per_sample: f64,
    n: u32,
) -> Option<(u32, bool)> {
    if play_ns < start_ns {
        let early = (start_ns - play_ns) as f64;
        return Some((0, early > ns_per_sample / 2.0));
    }
    let off = ((play_ns - start_ns) as f64 / ns_per_sample).round();
    (off < n as f64).then_some((off as u32, false))
}

#[cfg(test)]
#[path = "schedule/tests.rs"]
mod tests;
