//! The Sender's pending events, their batches and repeats: events wait in `pending` until
//! their host block ends (at most [`MAX_PENDING`], places kept for what ends notes, none older
//! than [`MAX_PENDING_AGE_NS`]), go out in Events datagrams with repeats of the last
//! [`SenderCore::redundancy`] batches, and after the last batch a few datagrams of repeats
//! only follow, [`TAIL_REPEAT_NS`] apart.

use super::presence::{HOLD_WINDOW_NS, IDLE_STATE_DELAY_NS};
use super::SenderCore;
use crate::proto::event::{MidiMessage, TimedMessage};
use crate::proto::wire::{self, Datagram};
use crate::timing::windowed::WindowedMax;

/// Spacing of the repeat-only datagrams after the last batch, ns.
pub const TAIL_REPEAT_NS: u64 = 10_000_000;
/// Batches repeated in each datagram unless configured otherwise.
pub const DEFAULT_REDUNDANCY: usize = 2;
/// Most batches that can be repeated.
pub const MAX_REDUNDANCY: usize = 8;
/// Most events waiting to be sent (no Receiver answering yet, or a huge burst). Past it the
/// newest are dropped and counted (the project's rule for every full queue), except that
/// the last [`NOTE_OFF_RESERVE`] places only take events that end notes.
pub const MAX_PENDING: usize = 4096;
/// Places of the pending events kept for note-offs (and pedal up, all notes off): a buffer
/// full of note-ons must still take the note-offs that end them.
pub const NOTE_OFF_RESERVE: usize = 1024;
/// An event that waited this long for a Receiver is not sent any more, ns: a second after the
/// player played it, it is no longer part of the performance, and sending every event held
/// while no Receiver answered would end in a burst of stale notes. Its lasting effect (a note
/// released, the pedal, the bend, the program) is folded into the snapshot the Receiver gets
/// next; a note-on that was never sent needs no note-off.
pub const MAX_PENDING_AGE_NS: u64 = 1_000_000_000;

impl SenderCore {
    /// Batches repeated in each Events datagram (0 to [`MAX_REDUNDANCY`]).
    pub fn set_redundancy(&mut self, r: usize) {
        self.redundancy = r.min(MAX_REDUNDANCY);
        while self.sent_counts.len() > self.redundancy {
            self.forget_oldest_batch();
        }
    }

    /// Batches repeated in each Events datagram.
    pub fn redundancy(&self) -> usize {
        self.redundancy
    }

    /// Adds one stamped event to the block in progress. When the pending events are full,
    /// it is dropped and counted (note-offs have places of their own).
    pub fn push_event(&mut self, ev: TimedMessage) {
        if self.closed {
            return;
        }
        let room = if ev.msg.ends_something() {
            MAX_PENDING
        } else {
            MAX_PENDING - NOTE_OFF_RESERVE
        };
        if self.pending.len() >= room {
            self.stats.events_dropped += 1;
            return;
        }
        self.pushed_state.apply(&ev.msg);
        self.pending.push_back(ev);
    }

    /// Takes out the pending events that waited longer than [`MAX_PENDING_AGE_NS`] at `now`:
    /// not sent, counted as dropped, and folded into the snapshot (a note-on excepted: it
    /// was never sent, so nothing needs ending). Their event numbers are used up, so that the
    /// next snapshot is newer than any the Receiver has, and it goes out at once.
    pub(super) fn drop_stale(&mut self, now: u64) {
        let mut folded = false;
        while let Some(ev) = self.pending.front() {
            if now.saturating_sub(ev.time_ns) <= MAX_PENDING_AGE_NS {
                break;
            }
            let ev = self.pending.pop_front().expect("just looked");
            self.sendable = self.sendable.saturating_sub(1);
            self.pending_first += 1;
            self.stats.events_dropped += 1;
            let note_on = matches!(ev.msg, MidiMessage::NoteOn { velocity, .. } if velocity > 0.0);
            if !note_on {
                self.sent_state.apply(&ev.msg);
                self.as_of_ns = Some(self.as_of_ns.map_or(ev.time_ns, |t| t.max(ev.time_ns)));
            }
            folded = true;
        }
        if folded {
            // The repeats number the events they carry back from `pending_first`: the last
            // batches are no longer next to it.
            self.sent.clear();
            self.sent_counts.clear();
            self.next_state = None;
        }
    }

    /// The host block in progress has ended: its events may go out.
    pub fn end_block(&mut self) {
        self.sendable = self.pending.len();
    }

    fn forget_oldest_batch(&mut self) {
        if let Some(n) = self.sent_counts.pop_front() {
            for _ in 0..n {
                self.sent.pop_front();
            }
        }
    }

    /// Encodes the next Events datagram: repeats of the last batches, then as many sendable
    /// events as fit (fewer repeats when they crowd the new events out).
    pub(super) fn events_datagram(&mut self, now: u64) -> Datagram {
        let seq = self.next_seq();
        let prelude = self.prelude(now);
        let mut repeats = self.sent.len();
        loop {
            self.scratch.clear();
            self.scratch
                .extend(self.sent.iter().skip(self.sent.len() - repeats));
            self.scratch.extend(self.pending.iter().take(self.sendable));
            let first = self.pending_first - repeats as u64;
            let (d, n) = wire::encode_events(self.sender_id, seq, prelude, first, &self.scratch);
            if n > repeats || repeats == 0 {
                let new = n.saturating_sub(repeats);
                self.mark_sent(now, new);
                return self.finish(d);
            }
            repeats /= 2;
        }
    }

    /// `n` pending events went out at `now`.
    fn mark_sent(&mut self, now: u64, n: usize) {
        if n == 0 {
            return;
        }
        let mut earliest = u64::MAX;
        for _ in 0..n {
            let Some(ev) = self.pending.pop_front() else {
                break;
            };
            self.sent_state.apply(&ev.msg);
            self.as_of_ns = Some(self.as_of_ns.map_or(ev.time_ns, |t| t.max(ev.time_ns)));
            earliest = earliest.min(ev.time_ns);
            self.sent.push_back(ev);
        }
        self.pending_first += n as u64;
        self.sendable -= n.min(self.sendable);
        self.stats.events_sent += n as u64;
        // (A wait for the Receiver's first answer is not the usual pace: left out.)
        let h = now.saturating_sub(earliest).min(i64::MAX as u64) as i64;
        if h <= crate::proto::peers::MAX_HOLD_NS {
            match &mut self.hold {
                Some(w) => w.push(now, h),
                None => self.hold = Some(WindowedMax::new(HOLD_WINDOW_NS / 2, now, h)),
            }
        }
        if self.redundancy > 0 {
            self.sent_counts.push_back(n);
            while self.sent_counts.len() > self.redundancy {
                self.forget_oldest_batch();
            }
            self.tail_left = self.redundancy;
            self.next_tail = now.saturating_add(TAIL_REPEAT_NS);
        } else {
            self.sent.clear();
        }
        self.idle_state_at = Some(now.saturating_add(IDLE_STATE_DELAY_NS));
    }

    /// A datagram repeating the last batches only (the newest that fit).
    pub(super) fn tail_datagram(&mut self, now: u64) -> Option<Datagram> {
        if self.sent.is_empty() {
            return None;
        }
        let seq = self.next_seq();
        let prelude = self.prelude(now);
        let mut skip = 0;
        loop {
            self.scratch.clear();
            self.scratch.extend(self.sent.iter().skip(skip));
            let first = self.pending_first - self.scratch.len() as u64;
            let (d, n) = wire::encode_events(self.sender_id, seq, prelude, first, &self.scratch);
            if n == self.scratch.len() || n == 0 {
                return (n > 0).then(|| self.finish(d));
            }
            skip += self.scratch.len() - n;
        }
    }
}
