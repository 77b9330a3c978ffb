//! The placement of events on the Receiver's timeline: the clock basis of each peer and the
//! mapping of its times onto ours, the time window, the per-peer order of what it queues,
//! the moment a snapshot is applied, the clock reports that change the mapping, and the
//! common playout delay that follows the peers' needs.

use super::{EventDrop, Item, ReceiverCore, ScheduledEvent};
use crate::proto::peers::{ClockBasis, Peer};
use crate::proto::seen::Seen;
use crate::proto::wire::{self, ClockReport, ClockSource, Prelude, StateBody};

/// An event whose origin, on our timeline, is more than this after its arrival is dropped
/// ("out of time window"), ns. Honest clocks are never that far off: the direct exchange is
/// within its error bound (microseconds to a few milliseconds), NTP within its own (tens of
/// milliseconds on the open internet, RFC 5905), and the fastest-transit estimate places
/// events at most one jitter early. Half a second is ten times the worst of those, and keeps
/// a peer from filling the schedule with far-future events.
pub const MAX_EARLY_NS: i64 = 500_000_000;
/// An event arriving more than this after its playout time (origin + D) is dropped ("out of
/// time window"), ns: later than the Sender ever holds an event (it drops those waiting over
/// 1 s), than the repeats and any reordering span (tens of milliseconds), and as long as the
/// default silence timeout, after which its player would have been taken for gone. Played,
/// it would only be a burst of stale notes. What ends a note is never dropped for this.
pub const MAX_LATE_NS: i64 = 2_000_000_000;
/// How long after the moment it describes a snapshot is applied, ns: later than any event it
/// covers, whatever small corrections of the clock estimate came between, and still soon.
const RECONCILE_AFTER_NS: u64 = 2_000_000;
/// A clock report that moves a peer's mapping by more than this (and more than twice the
/// error bounds) restarts its latency statistics, ns.
const CLOCK_JUMP_NS: u64 = 1_000_000;

/// This machine's NTP offset, as the network shell measured it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NtpOffset {
    /// UTC minus session time, ns.
    pub offset_ns: i64,
    /// Error bound, ns.
    pub error_ns: u64,
}

impl ReceiverCore {
    /// Schedules the new events of an Events datagram from the peer in `slot`.
    pub(super) fn events(&mut self, now: u64, slot: usize, prelude: Prelude, first: u64) {
        let d = self.playout.current();
        // (Minus 100 ms: the fastest-transit estimate of a new peer's clock can place its
        // first events a little early, by its jitter.)
        let started = self.started_ns.unwrap_or(0).saturating_sub(100_000_000);
        let ntp = self.ntp;
        let mut fresh = 0;
        for i in 0..self.scratch.len() {
            let ev = self.scratch[i];
            let seq = first + i as u64;
            let peer = self.peers.get_mut(slot).expect("slot is occupied");
            match peer.seen.check(seq) {
                Seen::New => {}
                Seen::Duplicate | Seen::TooOld => {
                    self.stats.repeats += 1;
                    continue;
                }
            }
            let origin = to_receiver_time(peer, ntp, ev.time_ns);
            let peer_clock = Mapping::of(peer, ntp);
            if origin < started {
                // Repeated to us after we restarted: it was played (or not) by our last run.
                peer.seen.accept(seq);
                self.stats.repeats += 1;
                continue;
            }
            // Differences of two times, on the wrapping 64-bit timeline like the transit in
            // `Peer::datagram`: the times come from the network and can be anything.
            let latency = now.wrapping_sub(origin) as i64;
            let in_window =
                (-MAX_EARLY_NS..=d.max(0).saturating_add(MAX_LATE_NS)).contains(&latency);
            let due = if in_window {
                // In order with what this peer has queued, whatever the clock did since.
                peer.place(ev.time_ns, origin, |t| map_time(peer_clock, ntp, t))
            } else if ev.msg.ends_something() {
                // What ends a note is never dropped: a late one plays at once, one from the
                // far future no later than the window's edge.
                if latency < 0 {
                    now.saturating_add(MAX_EARLY_NS as u64)
                } else {
                    origin
                }
            } else {
                // Decided for good: its repeats are duplicates now.
                peer.seen.accept(seq);
                self.stats.dropped[EventDrop::OutOfWindow as usize] += 1;
                continue;
            };
            let item = ScheduledEvent {
                due_ns: due,
                seq,
                peer: slot as u8,
                gen: peer.gen,
                item: Item::Midi(ev.msg),
            };
            // Recorded as seen only once it is on its way: the same event comes again in the
            // next datagrams (repeats), and a copy of one that did not fit must still be new.
            if !self.forward(slot, item) {
                continue;
            }
            fresh += 1;
            let peer = self.peers.get_mut(slot).expect("slot is occupied");
            peer.seen.accept(seq);
            if in_window {
                // (Only times inside the window count towards the delay.)
                peer.latency.push(now, latency);
                peer.hold(now, prelude.sent_ns.wrapping_sub(ev.time_ns) as i64);
            }
        }
        if let Some(p) = self.peers.get_mut(slot) {
            p.count_events(now, fresh);
        }
    }

    /// Takes a State datagram `s` of the peer in `slot`: its name and needs, and its snapshot,
    /// scheduled as a `Reconcile` item once each.
    pub(super) fn state(&mut self, now: u64, slot: usize, s: &StateBody) {
        let ntp = self.ntp;
        let peer = self.peers.get_mut(slot).expect("slot is occupied");
        if peer.name != s.name {
            peer.name.clear();
            peer.name.push_str(s.name);
        }
        peer.hold_announced = Some(s.hold_ns);
        peer.held_notes = s.snapshot.held_notes();
        if peer.reconciled.is_none_or(|r| s.as_of_seq > r) {
            // After every event it covers (see `docs/protocol.md`, "State"), even
            // if the clock estimate moves a little before they arrive.
            // (No later than the time window reaches: the time comes from the network.)
            let due = to_receiver_time(peer, ntp, s.as_of_ns)
                .saturating_add(peer.shift_ns)
                .saturating_add(RECONCILE_AFTER_NS)
                .min(now.saturating_add(MAX_EARLY_NS as u64))
                .max(peer.last_due.saturating_add(1));
            let item = ScheduledEvent {
                due_ns: due,
                seq: s.as_of_seq,
                peer: slot as u8,
                gen: peer.gen,
                item: Item::Reconcile(s.snapshot),
            };
            // Marked as applied only once it is on its way: the Sender repeats the
            // same snapshot with every heartbeat until it plays again, so one that did
            // not fit now is taken from the next.
            if self.forward(slot, item) {
                let peer = self.peers.get_mut(slot).expect("slot is occupied");
                peer.reconciled = Some(s.as_of_seq);
            }
        }
    }

    /// Takes the clock report of the peer in `slot`, sent with `prelude`: a new basis, or a
    /// correction larger than the error bounds, restarts its latency statistics.
    pub(super) fn clock_report(&mut self, slot: usize, prelude: Prelude, report: ClockReport) {
        let ntp = self.ntp;
        let peer = self.peers.get_mut(slot).expect("slot is occupied");
        let before = peer.basis;
        let moved = peer.clock.is_some_and(|old| {
            // How far the new estimate moves the Sender's present onto our timeline.
            let t = prelude.sent_ns;
            let jump = old.map(t).abs_diff(report.map(t));
            // (The error bounds come from the network: any value.)
            let bound = old.error_ns.max(report.error_ns).saturating_mul(2);
            jump > CLOCK_JUMP_NS.max(bound)
        });
        peer.clock = Some(report);
        let after = basis_of(peer, ntp);
        if after != before || moved {
            // Latencies measured on another basis, or before a correction larger than
            // the error bounds, are not comparable with the new ones.
            peer.latency.clear();
            peer.net.clear();
            peer.jitter.restart();
            peer.basis = after;
        }
    }

    /// Recomputes the common playout delay from the active peers' needs.
    pub(super) fn update_playout(&mut self, now: u64) {
        let (margin, mode) = (self.config.margin_ns, self.config.mode);
        let block = self.block_ns.min(i64::MAX as u64) as i64;
        let needs = self
            .peers
            .iter_mut()
            .filter_map(|(_, p)| p.needs(now))
            .map(|n| n.saturating_add(block));
        self.playout.update(now, needs, margin, mode);
    }
}

/// Which clock information puts this peer's times on our timeline.
fn basis_of(peer: &Peer, ntp: Option<NtpOffset>) -> ClockBasis {
    match (peer.clock, ntp) {
        (Some(c), _) if c.source == ClockSource::Direct => ClockBasis::Direct,
        (Some(c), Some(_)) if c.source == ClockSource::Ntp => ClockBasis::Ntp,
        _ => ClockBasis::FastestTransit,
    }
}

/// Puts a peer's time `t` (its clock) on our timeline with the best clock information there
/// is, and records which basis was used.
pub(crate) fn to_receiver_time(peer: &mut Peer, ntp: Option<NtpOffset>, t: u64) -> u64 {
    let basis = basis_of(peer, ntp);
    if basis != peer.basis {
        peer.latency.clear();
        peer.net.clear();
        peer.jitter.restart();
        peer.basis = basis;
    }
    map_time(Mapping::of(peer, ntp), ntp, t)
}

/// What maps a peer's times onto our timeline, copied out of the peer.
#[derive(Clone, Copy, Debug)]
struct Mapping {
    /// The basis in use.
    basis: ClockBasis,
    /// The peer's clock report, if any.
    clock: Option<wire::ClockReport>,
    /// Its fastest transit (arrival - send time), for [`ClockBasis::FastestTransit`].
    base: i64,
}

impl Mapping {
    fn of(peer: &Peer, ntp: Option<NtpOffset>) -> Self {
        Self {
            basis: basis_of(peer, ntp),
            clock: peer.clock,
            base: peer.base_offset.map_or(0, |m| m.get()),
        }
    }
}

/// Puts time `t` of a peer's clock on our timeline with mapping `m`.
fn map_time(m: Mapping, ntp: Option<NtpOffset>, t: u64) -> u64 {
    match (m.basis, m.clock, ntp) {
        (ClockBasis::Direct, Some(c), _) => c.map(t),
        (ClockBasis::Ntp, Some(c), Some(own)) => {
            // Sender time -> UTC -> our time.
            c.map(t).wrapping_add_signed(own.offset_ns.wrapping_neg())
        }
        _ => t.wrapping_add_signed(m.base),
    }
}
