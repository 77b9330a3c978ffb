//! The Receiver's audio-thread side: take scheduled events from the network thread, keep them
//! in time order, and emit each at its sample in the block where it falls due, merged with the
//! track's own MIDI.

use crate::bridge::ReceiverShared;
use crate::proto::event::SysEx;
use crate::proto::receiver::ScheduledEvent;
use crate::proto::schedule::{Schedule, SCHEDULE_CAPACITY};
use nice_plug::prelude::*;
use std::sync::atomic::Ordering::Relaxed;

/// The Receiver's per-activation audio state.
pub struct ReceiverAudio {
    /// Audio end of the queue from the network thread. Created in `initialize()`.
    queue: rtrb::Consumer<ScheduledEvent>,
    /// Events waiting for their sample. Allocated in `initialize()`, never grown.
    schedule: Schedule,
    /// Sample rate of this activation, Hz.
    sample_rate: f64,
}

/// Where an event due at `play_ns` falls in a block of `n` samples starting at `start_ns`:
/// `Ok(offset)` inside the block (`Ok(0)` and `late = true` when already past), `Err(())`
/// when it belongs to a later block.
fn offset_in_block(
    play_ns: u64,
    start_ns: u64,
    ns_per_sample: f64,
    n: u32,
) -> Result<(u32, bool), ()> {
    if play_ns < start_ns {
        return Ok((0, true));
    }
    let off = ((play_ns - start_ns) as f64 / ns_per_sample).floor();
    if off < n as f64 {
        Ok((off as u32, false))
    } else {
        Err(())
    }
}

impl ReceiverAudio {
    /// Audio state for one activation.
    pub fn new(queue: rtrb::Consumer<ScheduledEvent>, sample_rate: f32) -> Self {
        Self {
            queue,
            schedule: Schedule::with_capacity(SCHEDULE_CAPACITY),
            sample_rate: sample_rate as f64,
        }
    }

    /// Forgets every scheduled event (host `reset()`; real-time safe).
    pub fn reset(&mut self) {
        self.schedule.clear();
    }

    /// One host block of `n` samples that starts at `block_start_ns` (session time). Events
    /// play at `due + delay_ns`.
    pub fn process<P, C>(
        &mut self,
        block_start_ns: u64,
        n: u32,
        delay_ns: u64,
        shared: &ReceiverShared,
        context: &mut C,
    ) where
        P: Plugin<SysExMessage = SysEx>,
        C: ProcessContext<P>,
    {
        while let Ok(ev) = self.queue.pop() {
            if self.schedule.insert(ev).is_err() {
                shared.schedule_full.fetch_add(1, Relaxed);
            }
        }
        let ns_per_sample = 1e9 / self.sample_rate;
        // The track's own MIDI passes straight through, merged in time order with the
        // network's events.
        while let Some(own) = context.next_event() {
            self.emit_until(
                block_start_ns,
                n,
                delay_ns,
                ns_per_sample,
                Some(own.timing()),
                shared,
                context,
            );
            if context.try_send_event(own).is_err() {
                shared.host_refused.fetch_add(1, Relaxed);
            }
        }
        self.emit_until(
            block_start_ns,
            n,
            delay_ns,
            ns_per_sample,
            None,
            shared,
            context,
        );
    }

    /// Emits scheduled events due in this block at offsets up to `limit` (all of the block
    /// when `None`).
    #[allow(clippy::too_many_arguments)]
    fn emit_until<P, C>(
        &mut self,
        start_ns: u64,
        n: u32,
        delay_ns: u64,
        ns_per_sample: f64,
        limit: Option<u32>,
        shared: &ReceiverShared,
        context: &mut C,
    ) where
        P: Plugin<SysExMessage = SysEx>,
        C: ProcessContext<P>,
    {
        while let Some(ev) = self.schedule.peek() {
            let play = ev.due_ns.saturating_add(delay_ns);
            let Ok((offset, late)) = offset_in_block(play, start_ns, ns_per_sample, n) else {
                break;
            };
            if limit.is_some_and(|l| offset > l) {
                break;
            }
            let Some(ev) = self.schedule.pop() else { break };
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
    }
}

#[cfg(test)]
mod tests {
    use super::offset_in_block;

    #[test]
    fn offsets() {
        let nps = 1e9 / 48_000.0;
        let start = 1_000_000_000;
        assert_eq!(offset_in_block(start, start, nps, 512), Ok((0, false)));
        assert_eq!(offset_in_block(start - 1, start, nps, 512), Ok((0, true)));
        assert_eq!(
            offset_in_block(start + 20_834, start, nps, 512),
            Ok((1, false))
        );
        assert_eq!(
            offset_in_block(start + (511.5 * nps) as u64, start, nps, 512),
            Ok((511, false))
        );
        assert_eq!(
            offset_in_block(start + (512.0 * nps) as u64 + 1, start, nps, 512),
            Err(())
        );
    }
}
