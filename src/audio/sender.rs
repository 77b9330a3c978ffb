//! The Sender's audio-thread side: stamp each host event with its session time and queue it
//! for the network thread.

use crate::bridge::{SenderMsg, SenderShared};
use crate::proto::event::{MidiMessage, SysEx, TimedMessage};
use crate::timing::host_clock::HostClock;
use nice_plug::prelude::*;
use std::sync::atomic::Ordering::Relaxed;

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
}

impl SenderAudio {
    /// Audio state for one activation.
    pub fn new(queue: rtrb::Producer<SenderMsg>, sample_rate: f32, offline: bool) -> Self {
        Self {
            queue,
            clock: HostClock::new(),
            sample_rate: sample_rate as f64,
            offline,
        }
    }

    /// Host `reset()`: forgets the sample-clock mapping (real-time safe).
    pub fn reset(&mut self) {
        self.clock.reset();
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
        let mut queued = false;
        while let Some(ev) = context.next_event() {
            if let Some((timing, msg)) = MidiMessage::from_note_event(&ev).filter(|_| send) {
                if msg.is_valid() {
                    let time_ns = block_start_ns + (timing as f64 * ns_per_sample).round() as u64;
                    let m = SenderMsg::Event(TimedMessage { time_ns, msg });
                    if self.queue.push(m).is_ok() {
                        queued = true;
                        shared.events_queued.fetch_add(1, Relaxed);
                    } else {
                        shared.events_dropped.fetch_add(1, Relaxed);
                    }
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
