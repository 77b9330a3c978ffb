//! What the Sender says about itself: State heartbeats (its name, its hold and a snapshot of
//! what it holds, once a second and shortly after playing stops, so that the Receiver ends
//! notes whose note-off was lost), and the goodbye when it closes.

use super::SenderCore;
use crate::proto::event::TimedMessage;
use crate::proto::state::StateSnapshot;
use crate::proto::wire::{self, Datagram, StateBody};

/// Heartbeat period: a State datagram (snapshot included) at least this often, ns.
pub const STATE_INTERVAL_NS: u64 = 1_000_000_000;
/// A State goes out this long after the last Events datagram, ns: a lost final note-off is
/// repaired about this soon after playing stops.
pub const IDLE_STATE_DELAY_NS: u64 = 50_000_000;
/// Times the goodbye (the last batches, then Bye) is sent when the Sender closes: a burst of
/// loss shorter than the rounds' span cannot take them all.
pub const BYE_ROUNDS: usize = 3;
/// Time between the goodbye's rounds, ns: the rounds span 20 ms, so the network thread still
/// stops promptly (it waits at most 50 ms for them).
pub const BYE_SPACING_NS: u64 = 10_000_000;
/// Hold announced before any event was sent, ns: the network thread's 1 ms poll plus the
/// host's usual lateness.
pub const DEFAULT_HOLD_NS: u64 = 2_000_000;
/// Window over which the largest hold is kept, ns (two buckets of half of it).
pub(super) const HOLD_WINDOW_NS: u64 = 10_000_000_000;

impl SenderCore {
    /// Changes the display name; the next State, sent at once, carries it.
    pub fn set_name(&mut self, name: &str) {
        if self.name != name {
            self.name = name.to_owned();
            self.next_state = None;
        }
    }

    /// The longest an event may wait between its origin and its sending, ns, as the caller
    /// knows it: announced until events have been sent and the wait is measured. The plugin's
    /// events wait for its network thread's poll only ([`DEFAULT_HOLD_NS`]); a Sender that
    /// sends at block ends waits up to a block.
    pub fn set_hold_hint(&mut self, ns: u64) {
        self.hold_hint = ns;
    }

    /// What is held, after every event pushed so far.
    pub fn held(&self) -> &StateSnapshot {
        self.pushed_state.snapshot()
    }

    /// Encodes a State datagram: the name, the hold, and the snapshot after every event sent.
    pub(super) fn state_datagram(&mut self, now: u64) -> Datagram {
        let seq = self.next_seq();
        let body = StateBody {
            prelude: self.prelude(now),
            name: &self.name,
            hold_ns: self.hold.map_or(self.hold_hint, |w| w.get().max(0) as u64),
            as_of_seq: self.pending_first,
            as_of_ns: self.as_of_ns.unwrap_or(now),
            snapshot: *self.sent_state.snapshot(),
        };
        let d = wire::encode_state(self.sender_id, seq, &body);
        self.finish(d)
    }

    /// The Sender is going away at `now`: releases what it holds (note-offs, pedal up, bend
    /// centred, stamped `now`), sends what is pending and says goodbye, then repeats the last
    /// batches and the goodbye at [`SenderCore::poll_timeout`] ([`BYE_ROUNDS`] rounds,
    /// [`BYE_SPACING_NS`] apart). Nothing else is produced after this.
    pub fn close(&mut self, now: u64) {
        if self.closed {
            return;
        }
        let held = self.pushed_state.clone();
        held.release_all(|msg| self.push_event(TimedMessage { time_ns: now, msg }));
        self.end_block();
        // The final batch is repeated in the later rounds even without redundancy.
        self.redundancy = self.redundancy.max(1);
        self.closed = true;
        self.bye_pending = true;
        self.bye_left = BYE_ROUNDS - 1;
        self.next_bye = now.saturating_add(BYE_SPACING_NS);
        self.state_pending = false;
        self.tail_left = 0;
        self.tail_pending = false;
    }
}
