//! The Receiver's audio-thread side: take scheduled events from the network thread, keep them
//! in time order, and emit each at its sample in the block where it falls due, merged with the
//! track's own MIDI (delayed by the same playout delay when "Align local input" is on).

use crate::bridge::ReceiverShared;
use crate::proto::event::{MidiMessage, SysEx};
use crate::proto::receiver::ScheduledEvent;
use crate::proto::schedule::{Full, Schedule, SCHEDULE_CAPACITY};
use crate::timing::host_clock::HostClock;
use nice_plug::prelude::*;
use std::sync::atomic::Ordering::Relaxed;

/// Peer number of the Receiver's own track in the schedule (network peers are `0..32`).
pub const LOCAL_PEER: u8 = u8::MAX;

/// The Receiver's per-activation audio state.
pub struct ReceiverAudio {
    /// Audio end of the queue from the network thread. Created in `initialize()`.
    queue: rtrb::Consumer<ScheduledEvent>,
    /// Events waiting for their sample. Allocated in `initialize()`, never grown.
    schedule: Schedule,
    /// Maps the host's sample counter to session time, smoothing the jitter of when the host
    /// calls `process()`.
    clock: HostClock,
    /// Sample rate of this activation, Hz.
    sample_rate: f64,
    /// The host said it renders offline (no wall clock to align to).
    offline: bool,
}

/// What `process()` needs besides the host context.
#[derive(Clone, Copy, Debug)]
pub struct BlockInput {
    /// Session time read at the start of `process()`.
    pub now_ns: u64,
    /// Samples in this block.
    pub n: u32,
    /// Playout delay D, ns.
    pub delay_ns: u64,
    /// Delay the track's own MIDI by D too.
    pub align_local: bool,
}

impl ReceiverAudio {
    /// Audio state for one activation.
    pub fn new(queue: rtrb::Consumer<ScheduledEvent>, sample_rate: f32, offline: bool) -> Self {
        Self {
            queue,
            schedule: Schedule::with_capacity(SCHEDULE_CAPACITY),
            clock: HostClock::new(),
            sample_rate: sample_rate as f64,
            offline,
        }
    }

    /// Host `reset()`: forgets the sample-clock mapping. Scheduled events are kept: they are
    /// notes already played remotely, and dropping their note-offs would leave notes hanging.
    /// Real-time safe.
    pub fn reset(&mut self) {
        self.clock.reset();
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
        // Offline rendering has no wall clock to align to: everything plays as it comes.
        let delay = if offline { 0 } else { input.delay_ns };
        if offline {
            shared.offline_blocks.fetch_add(1, Relaxed);
        }
        while let Ok(ev) = self.queue.pop() {
            let ev = if offline {
                ScheduledEvent { due_ns: 0, ..ev }
            } else {
                ev
            };
            self.insert(ev, shared, context);
        }
        while let Some(own) = context.next_event() {
            let mapped = MidiMessage::from_note_event(&own);
            match mapped {
                Some((k, msg)) if input.align_local && !offline => {
                    let due_ns = start + (k as f64 * nps).round() as u64;
                    self.insert(
                        ScheduledEvent {
                            due_ns,
                            peer: LOCAL_PEER,
                            msg,
                        },
                        shared,
                        context,
                    );
                }
                _ => {
                    // Not delayed: emit what is due up to this event, then the event itself.
                    let limit = Some(own.timing());
                    while let Some((off, ev, late)) =
                        self.schedule.pop_due(start, input.n, nps, delay, limit)
                    {
                        emit(off, &ev, late && !offline, shared, context);
                    }
                    if context.try_send_event(own).is_err() {
                        shared.host_refused.fetch_add(1, Relaxed);
                    }
                }
            }
        }
        while let Some((off, ev, late)) = self.schedule.pop_due(start, input.n, nps, delay, None) {
            emit(off, &ev, late && !offline, shared, context);
        }
    }

    /// Schedules `ev`; when the schedule is full a note-off plays at once (never dropped: a
    /// lost note-off hangs a note) and anything else is dropped and counted.
    fn insert<P, C>(&mut self, ev: ScheduledEvent, shared: &ReceiverShared, context: &mut C)
    where
        P: Plugin<SysExMessage = SysEx>,
        C: ProcessContext<P>,
    {
        if let Err(Full(ev)) = self.schedule.insert(ev) {
            if matches!(ev.msg, MidiMessage::NoteOff { .. }) {
                emit(0, &ev, true, shared, context);
            } else {
                shared.schedule_full.fetch_add(1, Relaxed);
            }
        }
    }
}

/// Sends one event to the host at `offset`.
fn emit<P, C>(
    offset: u32,
    ev: &ScheduledEvent,
    late: bool,
    shared: &ReceiverShared,
    context: &mut C,
) where
    P: Plugin<SysExMessage = SysEx>,
    C: ProcessContext<P>,
{
    if late {
        shared.late.fetch_add(1, Relaxed);
    }
    if context
        .try_send_event(ev.msg.to_note_event(offset))
        .is_err()
    {
        shared.host_refused.fetch_add(1, Relaxed);
    }
}
