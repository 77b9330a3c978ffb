//! The Receiver's audio-thread side: take scheduled items from the network thread, keep them
//! in time order, and play each at its sample in the block where it falls due, through the
//! stuck-note guard ([`Voices`]), merged with the track's own MIDI (delayed by the same playout
//! delay when "Align local input" is on).

use super::voices::{Voices, LOCAL_SLOT};
use crate::bridge::ReceiverShared;
use crate::proto::event::{MidiMessage, SysEx};
use crate::proto::receiver::{Item, ScheduledEvent};
use crate::proto::schedule::{ends_notes, BlockSpan, Schedule, SCHEDULE_CAPACITY};
use crate::timing::host_clock::HostClock;
use crate::timing::playout::PlayoutGate;
use nice_plug::prelude::*;
use std::sync::atomic::Ordering::Relaxed;

/// Window over which the longest block is kept, ns.
const BLOCK_WINDOW_NS: u64 = 2_000_000_000;

/// The Receiver's per-activation audio state.
pub struct ReceiverAudio {
    /// Audio end of the queue from the network thread. Created in `initialize()`.
    queue: rtrb::Consumer<ScheduledEvent>,
    /// Items waiting for their sample. Allocated in `initialize()`, never grown.
    schedule: Schedule,
    /// Maps the host's sample counter to session time, smoothing the jitter of when the host
    /// calls `process()`.
    clock: HostClock,
    /// Applies the playout delay: rises at once, falls only into silences.
    gate: PlayoutGate,
    /// What is sounding at the output, per peer (outlives activations: see `into_voices`).
    voices: Voices,
    /// Sample rate of this activation, Hz.
    sample_rate: f64,
    /// The host said it renders offline (no wall clock to align to).
    offline: bool,
    /// Event number of the next item of the track's own MIDI.
    local_seq: u64,
    /// Panic requests already served.
    panic_seen: u64,
    /// End everything at the next block (after a reset, or a reactivation with notes held).
    end_all: bool,
    /// Session time just after the previous block's last sample (0 before the first).
    prev_end_ns: u64,
    /// Longest block over the last second or so, ns (it adds to the delay the network needs),
    /// and when that window began.
    block_max: (u64, u64),
}

/// What `process()` needs besides the host context.
#[derive(Clone, Copy, Debug)]
pub struct BlockInput {
    /// Session time read at the start of `process()`.
    pub now_ns: u64,
    /// Samples in this block.
    pub n: u32,
    /// Playout delay the network thread (or the fixed-mode parameter) asks for, ns.
    pub target_delay_ns: i64,
    /// Delay the track's own MIDI by D too.
    pub align_local: bool,
}

impl ReceiverAudio {
    /// Audio state for one activation. `voices` comes from the previous activation (its notes
    /// are ended at the first block) or is new.
    pub fn new(
        queue: rtrb::Consumer<ScheduledEvent>,
        sample_rate: f32,
        offline: bool,
        voices: Voices,
        panic_seen: u64,
    ) -> Self {
        // What the last activation left sounding ends at the first block; then the table
        // starts afresh, as the new network thread numbers peers and events afresh.
        let end_all = true;
        Self {
            queue,
            schedule: Schedule::with_capacity(SCHEDULE_CAPACITY),
            clock: HostClock::new(),
            gate: PlayoutGate::new(),
            voices,
            sample_rate: sample_rate as f64,
            offline,
            local_seq: 0,
            panic_seen,
            end_all,
            prev_end_ns: 0,
            block_max: (0, 0),
        }
    }

    /// Gives back the output state when the activation ends, so the next one can end what
    /// was left sounding.
    pub fn into_voices(self) -> Voices {
        self.voices
    }

    /// Host `reset()`: forgets the sample-clock mapping, keeps the delay in use (see
    /// [`PlayoutGate::reset`]), and ends every note at the next block. Scheduled items are kept (they are notes already played
    /// remotely). Real-time safe.
    pub fn reset(&mut self) {
        self.clock.reset();
        self.gate.reset();
        self.end_all = true;
    }

    /// One host block.
    pub fn process<P, C>(&mut self, input: BlockInput, shared: &ReceiverShared, context: &mut C)
    where
        P: Plugin<SysExMessage = SysEx>,
        C: ProcessContext<P>,
    {
        let timing = self.clock.update(input.now_ns, input.n, self.sample_rate);
        let offline = self.offline || self.clock.is_offline();
        let (start, nps) = (timing.start_ns, timing.ns_per_sample);
        if offline {
            shared.offline_blocks.fetch_add(1, Relaxed);
        }
        if timing.relocked {
            shared.clock_relocks.fetch_add(1, Relaxed);
        }
        let panic = shared.panic_requests.load(Relaxed);
        if panic != self.panic_seen {
            self.panic_seen = panic;
            self.end_all = false;
            let ended = self
                .voices
                .panic(|m| send(context, shared, m.to_note_event(0)));
            shared.notes_ended.fetch_add(ended as u64, Relaxed);
        } else if self.end_all {
            self.end_all = false;
            let ended = self
                .voices
                .release_all(|m| send(context, shared, m.to_note_event(0)));
            self.voices.forget_peers();
            shared.notes_ended.fetch_add(ended as u64, Relaxed);
        }
        while let Ok(ev) = self.queue.pop() {
            let ev = if offline {
                ScheduledEvent { due_ns: 0, ..ev }
            } else {
                ev
            };
            self.insert(ev, shared, context);
        }
        // Offline rendering has no wall clock to align to: everything plays as it comes.
        let delay = if offline {
            0
        } else {
            let next_due = self.schedule.peek().map(|e| e.due_ns);
            self.gate.apply(input.target_delay_ns, start, next_due)
        };
        shared.applied_delay_ns.store(delay, Relaxed);
        let delay = delay.max(0) as u64;
        let block = BlockSpan {
            start_ns: start,
            n: input.n,
            ns_per_sample: nps,
            late_before_ns: if self.prev_end_ns == 0 || timing.relocked {
                start
            } else {
                start.min(self.prev_end_ns)
            },
        };
        self.prev_end_ns = start + (input.n as f64 * nps).round() as u64;
        // An event must be here when the block that holds its sample starts: the longest
        // recent block adds to the delay the network thread asks for.
        let block_ns = (input.n as f64 * nps) as u64;
        if start.saturating_sub(self.block_max.1) > BLOCK_WINDOW_NS {
            self.block_max = (block_ns, start);
        } else {
            self.block_max.0 = self.block_max.0.max(block_ns);
        }
        shared.block_ns.store(self.block_max.0, Relaxed);
        while let Some(own) = context.next_event() {
            let mapped = MidiMessage::from_note_event(&own);
            match mapped {
                Some((k, msg)) if input.align_local && !offline => {
                    let due_ns = start + (k as f64 * nps).round() as u64;
                    let seq = self.local_seq;
                    self.local_seq += 1;
                    let ev = ScheduledEvent {
                        due_ns,
                        seq,
                        peer: LOCAL_SLOT,
                        gen: 0,
                        item: Item::Midi(msg),
                    };
                    self.insert(ev, shared, context);
                }
                _ => {
                    // Not delayed: play what is due up to this event, then the event itself.
                    let limit = Some(own.timing());
                    while let Some((off, ev, late)) = self.schedule.pop_due(&block, delay, limit) {
                        self.play(off, &ev, late && !offline, start, nps, shared, context);
                    }
                    send(context, shared, own);
                }
            }
        }
        while let Some((off, ev, late)) = self.schedule.pop_due(&block, delay, None) {
            self.play(off, &ev, late && !offline, start, nps, shared, context);
        }
    }

    /// Schedules `ev`. An item the schedule refuses (full, or its peer over its share) is
    /// dropped and counted, unless it ends notes: those have a reserve of their own, and when
    /// even that is taken they play at once (a lost note-off hangs a note; one played early
    /// at worst shortens it).
    fn insert<P, C>(&mut self, ev: ScheduledEvent, shared: &ReceiverShared, context: &mut C)
    where
        P: Plugin<SysExMessage = SysEx>,
        C: ProcessContext<P>,
    {
        if let Err(refused) = self.schedule.insert(ev) {
            let ev = refused.into_inner();
            if ends_notes(&ev.item) {
                self.voices
                    .apply(&ev, |m| send(context, shared, m.to_note_event(0)));
            } else {
                shared.schedule_full.fetch_add(1, Relaxed);
            }
        }
    }

    /// Plays one due item at `offset` through the guard.
    #[allow(clippy::too_many_arguments)]
    fn play<P, C>(
        &mut self,
        offset: u32,
        ev: &ScheduledEvent,
        late: bool,
        start: u64,
        nps: f64,
        shared: &ReceiverShared,
        context: &mut C,
    ) where
        P: Plugin<SysExMessage = SysEx>,
        C: ProcessContext<P>,
    {
        let out = self
            .voices
            .apply(ev, |m| send(context, shared, m.to_note_event(offset)));
        if out.dropped {
            shared.stale.fetch_add(1, Relaxed);
        }
        shared.notes_ended.fetch_add(out.ended as u64, Relaxed);
        if out.emitted > 0 {
            if late && matches!(ev.item, Item::Midi(_)) {
                shared.count_late(ev.peer);
            }
            self.gate
                .played(start + (offset as f64 * nps).round() as u64);
        }
    }
}

/// Sends one event to the host, counting a refusal (its output buffer is full).
fn send<P, C>(context: &mut C, shared: &ReceiverShared, ev: NoteEvent<SysEx>)
where
    P: Plugin<SysExMessage = SysEx>,
    C: ProcessContext<P>,
{
    if context.try_send_event(ev).is_err() {
        shared.host_refused.fetch_add(1, Relaxed);
    }
}
