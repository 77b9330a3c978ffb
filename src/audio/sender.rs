//! The Sender's audio-thread side: stamp each host event with its session time and queue it
//! for the network thread.
//!
//! A full queue drops the newest event and counts it, except a note-off: dropping one would
//! leave its note sounding at the Receiver (and held in every snapshot, since the network
//! thread never saw it released). Note-offs that find the queue full are remembered in a
//! fixed bitmap ([`UnsentOffs`]) and queued at the start of the next block, before its own
//! events.

use crate::bridge::{SenderMsg, SenderShared};
use crate::proto::event::{MidiMessage, SysEx, TimedMessage};
use crate::proto::state::CHANNELS;
use crate::timing::host_clock::HostClock;
use nice_plug::prelude::*;
use std::sync::atomic::Ordering::Relaxed;

/// Note-offs the queue could not take: one bit per channel and key, and the wildcard forms
/// CLAP hosts send. Fixed size, no allocation. Release velocity and voice id are not kept: a
/// late note-off only has to end its note.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UnsentOffs {
    /// Bit `k` of channel `c`: a note-off of channel `c`, key `k`.
    keys: [u128; CHANNELS],
    /// Bit `c`: a note-off of every key of channel `c`.
    any_key: u16,
    /// Bit `k`: a note-off of key `k` on every channel.
    any_channel: u128,
    /// A note-off of every key on every channel.
    all: bool,
}

impl UnsentOffs {
    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Remembers a note-off of `channel` and `key` (`None`: any).
    pub fn add(&mut self, channel: Option<u8>, key: Option<u8>) {
        match (channel, key) {
            (Some(c), Some(k)) => self.keys[c as usize % CHANNELS] |= 1 << (k & 127),
            (Some(c), None) => self.any_key |= 1 << (c as usize % CHANNELS),
            (None, Some(k)) => self.any_channel |= 1 << (k & 127),
            (None, None) => self.all = true,
        }
    }

    /// Whether a waiting note-off would end a note of channel `c`, key `k`.
    pub fn covers(&self, c: u8, k: u8) -> bool {
        let (c, k) = (c as usize % CHANNELS, k & 127);
        self.all
            || self.any_key & (1 << c) != 0
            || self.any_channel & (1 << k) != 0
            || self.keys[c] & (1 << k) != 0
    }

    /// Offers each waiting note-off to `push`, in channel and key order, and forgets those it
    /// takes; stops at the first it refuses. Returns how many it took.
    pub fn retry(&mut self, mut push: impl FnMut(MidiMessage) -> bool) -> u32 {
        let off = |channel, key| MidiMessage::NoteOff {
            channel,
            key,
            velocity: 0.0,
            voice_id: None,
        };
        let mut taken = 0;
        if self.all {
            if !push(off(None, None)) {
                return taken;
            }
            self.all = false;
            taken += 1;
        }
        while self.any_key != 0 {
            let c = self.any_key.trailing_zeros() as u8;
            if !push(off(Some(c), None)) {
                return taken;
            }
            self.any_key &= !(1 << c);
            taken += 1;
        }
        while self.any_channel != 0 {
            let k = self.any_channel.trailing_zeros() as u8;
            if !push(off(None, Some(k))) {
                return taken;
            }
            self.any_channel &= !(1 << k);
            taken += 1;
        }
        for c in 0..CHANNELS {
            while self.keys[c] != 0 {
                let k = self.keys[c].trailing_zeros() as u8;
                if !push(off(Some(c as u8), Some(k))) {
                    return taken;
                }
                self.keys[c] &= !(1 << k);
                taken += 1;
            }
        }
        taken
    }
}

/// The Sender's per-activation audio state.
pub struct SenderAudio {
    /// Audio end of the queue to the network thread. Created in `initialize()`.
    queue: rtrb::Producer<SenderMsg>,
    /// Maps the host's sample counter to session time, so stamps do not inherit the jitter
    /// of when the host calls `process()`.
    clock: HostClock,
    /// Sample rate of this activation, Hz.
    sample_rate: f64,
    /// The host said it renders offline: a bounce, not a performance to send.
    offline: bool,
    /// Note-offs the queue could not take, queued again at the next block (audio thread).
    unsent: UnsentOffs,
}

impl SenderAudio {
    /// Audio state for one activation.
    pub fn new(queue: rtrb::Producer<SenderMsg>, sample_rate: f32, offline: bool) -> Self {
        Self {
            queue,
            clock: HostClock::new(),
            sample_rate: sample_rate as f64,
            offline,
            unsent: UnsentOffs::default(),
        }
    }

    /// Host `reset()`: forgets the sample-clock mapping (real-time safe).
    pub fn reset(&mut self) {
        self.clock.reset();
    }

    /// Queues the note-offs that did not fit before, stamped `time_ns` (the start of this
    /// block: they are late by the blocks they waited). Returns whether any was queued.
    fn retry_offs(&mut self, time_ns: u64, shared: &SenderShared) -> bool {
        if self.unsent.is_empty() {
            return false;
        }
        let queue = &mut self.queue;
        let taken = self.unsent.retry(|msg| {
            queue
                .push(SenderMsg::Event(TimedMessage { time_ns, msg }))
                .is_ok()
        });
        shared.events_queued.fetch_add(taken as u64, Relaxed);
        taken > 0
    }

    /// Queues one stamped event. A note-off that does not fit waits for the next block; any
    /// other event that does not fit is dropped and counted, and so is a note-on of a key
    /// whose earlier note-off still waits (the note-off, sent later, would end it). Returns
    /// whether it was queued.
    fn queue_event(&mut self, ev: TimedMessage, shared: &SenderShared) -> bool {
        if let MidiMessage::NoteOn {
            channel: Some(c),
            key: Some(k),
            ..
        } = ev.msg
        {
            if self.unsent.covers(c, k) {
                self.retry_offs(ev.time_ns, shared);
                if self.unsent.covers(c, k) {
                    shared.events_dropped.fetch_add(1, Relaxed);
                    return false;
                }
            }
        }
        if self.queue.push(SenderMsg::Event(ev)).is_ok() {
            shared.events_queued.fetch_add(1, Relaxed);
            return true;
        }
        match ev.msg {
            MidiMessage::NoteOff { channel, key, .. } => {
                self.unsent.add(channel, key);
                shared.note_offs_deferred.fetch_add(1, Relaxed);
            }
            MidiMessage::NoteOn {
                channel,
                key,
                velocity,
                ..
            } if velocity <= 0.0 => {
                self.unsent.add(channel, key);
                shared.note_offs_deferred.fetch_add(1, Relaxed);
            }
            _ => {
                shared.events_dropped.fetch_add(1, Relaxed);
            }
        }
        false
    }

    /// One host block of `n` samples; `now_ns` is the session time read at the start of
    /// `process()`. Each event is stamped `block time + timing / sample_rate` on the filtered
    /// host clock and queued; with `thru`, it is also passed on to the track's output unchanged.
    pub fn process<P, C>(
        &mut self,
        now_ns: u64,
        n: u32,
        thru: bool,
        shared: &SenderShared,
        context: &mut C,
    ) where
        P: Plugin<SysExMessage = SysEx>,
        C: ProcessContext<P>,
    {
        let timing = self.clock.update(now_ns, n, self.sample_rate);
        let (block_start_ns, ns_per_sample) = (timing.start_ns, timing.ns_per_sample);
        // An offline bounce is not a performance: its events have no moment in real time to
        // be stamped with, and the session should not hear it. The track still passes through.
        let send = !(self.offline || self.clock.is_offline());
        if !send {
            shared.offline_blocks.fetch_add(1, Relaxed);
        }
        // Note-offs that did not fit before go first.
        let mut queued = send && self.retry_offs(block_start_ns, shared);
        while let Some(ev) = context.next_event() {
            if let Some((timing, msg)) = MidiMessage::from_note_event(&ev).filter(|_| send) {
                if msg.is_valid() {
                    let time_ns = block_start_ns + (timing as f64 * ns_per_sample).round() as u64;
                    queued |= self.queue_event(TimedMessage { time_ns, msg }, shared);
                }
            }
            if thru {
                // A full host buffer cannot be waited for: the event is dropped there.
                let _ = context.try_send_event(ev);
            }
        }
        if queued {
            // If even this does not fit, the events go out with the next block's.
            let _ = self.queue.push(SenderMsg::EndBlock);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn off(c: u8, k: u8) -> MidiMessage {
        MidiMessage::NoteOff {
            channel: Some(c),
            key: Some(k),
            velocity: 0.3,
            voice_id: Some(9),
        }
    }

    fn on(c: u8, k: u8) -> MidiMessage {
        MidiMessage::NoteOn {
            channel: Some(c),
            key: Some(k),
            velocity: 0.8,
            voice_id: None,
        }
    }

    fn cc() -> MidiMessage {
        MidiMessage::ControlChange {
            channel: 0,
            cc: 1,
            value: 0.5,
        }
    }

    /// What the network thread finds in the queue.
    fn drain(c: &mut rtrb::Consumer<SenderMsg>) -> Vec<MidiMessage> {
        std::iter::from_fn(|| c.pop().ok())
            .filter_map(|m| match m {
                SenderMsg::Event(e) => Some(e.msg),
                SenderMsg::EndBlock => None,
            })
            .collect()
    }

    #[test]
    fn a_note_off_the_full_queue_refused_is_queued_at_the_next_block() {
        let (p, mut c) = rtrb::RingBuffer::new(2);
        let mut a = SenderAudio::new(p, 48_000.0, false);
        let shared = SenderShared::default();
        let at = |t, msg| TimedMessage { time_ns: t, msg };
        assert!(a.queue_event(at(1, on(0, 60)), &shared));
        assert!(a.queue_event(at(2, on(3, 61)), &shared));
        // Full: a control change is dropped and counted; the note-offs wait.
        assert!(!a.queue_event(at(3, cc()), &shared));
        assert!(!a.queue_event(at(4, off(0, 60)), &shared));
        assert!(!a.queue_event(at(5, off(3, 61)), &shared));
        assert_eq!(shared.events_dropped.load(Relaxed), 1);
        assert_eq!(shared.note_offs_deferred.load(Relaxed), 2);
        assert_eq!(drain(&mut c), vec![on(0, 60), on(3, 61)]);
        // The next block: they go first.
        assert!(a.retry_offs(100, &shared));
        let got = drain(&mut c);
        assert_eq!(got.len(), 2);
        for (m, (ch, k)) in got.iter().zip([(0, 60), (3, 61)]) {
            assert!(matches!(
                *m,
                MidiMessage::NoteOff { channel: Some(x), key: Some(y), .. } if (x, y) == (ch, k)
            ));
        }
        assert!(a.unsent.is_empty());
    }

    #[test]
    fn a_note_on_never_overtakes_a_waiting_note_off_of_its_key() {
        let (p, mut c) = rtrb::RingBuffer::new(2);
        let mut a = SenderAudio::new(p, 48_000.0, false);
        let shared = SenderShared::default();
        let at = |t, msg| TimedMessage { time_ns: t, msg };
        assert!(a.queue_event(at(1, on(0, 60)), &shared));
        assert!(a.queue_event(at(1, on(1, 1)), &shared));
        assert!(!a.queue_event(at(2, off(0, 60)), &shared));
        // Still full: the key's new note-on is dropped (its note-off, sent later, would end
        // it at once).
        assert!(!a.queue_event(at(3, on(0, 60)), &shared));
        assert_eq!(shared.events_dropped.load(Relaxed), 1);
        drain(&mut c);
        // Room again: the waiting note-off goes first, then the note-on.
        assert!(a.queue_event(at(4, on(0, 60)), &shared));
        let got = drain(&mut c);
        assert_eq!(got.len(), 2);
        assert!(matches!(
            got[0],
            MidiMessage::NoteOff {
                channel: Some(0),
                key: Some(60),
                ..
            }
        ));
        assert_eq!(got[1], on(0, 60));
    }

    #[test]
    fn wildcards_wait_too() {
        let mut u = UnsentOffs::default();
        u.add(None, None);
        u.add(Some(2), None);
        u.add(None, Some(5));
        assert!(u.covers(7, 9) && u.covers(2, 100) && u.covers(0, 5));
        let mut got = Vec::new();
        assert_eq!(
            u.retry(|m| {
                got.push(m);
                true
            }),
            3
        );
        assert!(u.is_empty());
        // Refused half way: what was not taken stays.
        u.add(Some(0), Some(1));
        u.add(Some(0), Some(2));
        let mut n = 0;
        assert_eq!(
            u.retry(|_| {
                n += 1;
                n == 1
            }),
            1
        );
        assert!(!u.covers(0, 1) && u.covers(0, 2));
    }
}
