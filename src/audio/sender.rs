//! The Sender's audio-thread side: stamp each host event with its session time and queue it
//! for the network thread.

use crate::bridge::{SenderMsg, SenderShared};
use crate::proto::event::{MidiMessage, SysEx, TimedMessage};
use nice_plug::prelude::*;
use std::sync::atomic::Ordering::Relaxed;

/// The Sender's per-activation audio state.
pub struct SenderAudio {
    /// Audio end of the queue to the network thread. Created in `initialize()`.
    queue: rtrb::Producer<SenderMsg>,
    /// Sample rate of this activation, Hz.
    sample_rate: f64,
}

impl SenderAudio {
    /// Audio state for one activation.
    pub fn new(queue: rtrb::Producer<SenderMsg>, sample_rate: f32) -> Self {
        Self {
            queue,
            sample_rate: sample_rate as f64,
        }
    }

    /// One host block that started at `block_start_ns` (session time): each event is stamped
    /// `block_start + timing / sample_rate` and queued; with `thru`, it is also passed on to
    /// the track's output unchanged.
    pub fn process<P, C>(
        &mut self,
        block_start_ns: u64,
        thru: bool,
        shared: &SenderShared,
        context: &mut C,
    ) where
        P: Plugin<SysExMessage = SysEx>,
        C: ProcessContext<P>,
    {
        let ns_per_sample = 1e9 / self.sample_rate;
        let mut queued = false;
        while let Some(ev) = context.next_event() {
            if let Some((timing, msg)) = MidiMessage::from_note_event(&ev) {
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
