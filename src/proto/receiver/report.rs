//! The Receiver core's state as the editor shows it ([`crate::status`]): plain arithmetic on
//! the peer table, run by the network thread a few times a second.

use super::{EventDrop, NtpOffset, ReceiverCore, RejectReason};
use crate::proto::peers::{ClockBasis, Peer};
use crate::status::{ClockSource, DelayStatus, HistoryPoint, PeerStatus, ReceiverStatus};
use crate::timing::playout::PlayoutMode;

/// How a peer's clock relates to ours at `now` (our clock): (source, its clock minus ours in
/// ns, error bound in ns).
pub fn peer_clock(p: &Peer, ntp: Option<NtpOffset>, now: u64) -> (ClockSource, i64, u64) {
    // The report's offset holds at its reference time; its skew carries it to the present.
    // (Wrapping arithmetic: the report's figures come from the network and can be anything.)
    let at_now = |c: &crate::proto::wire::ClockReport| {
        let t = now.wrapping_add_signed(c.offset_ns.wrapping_neg());
        c.map(t).wrapping_sub(t) as i64
    };
    match (p.basis, p.clock, ntp) {
        (ClockBasis::Direct, Some(c), _) => {
            (ClockSource::Direct, at_now(&c).wrapping_neg(), c.error_ns)
        }
        (ClockBasis::Ntp, Some(c), Some(own)) => (
            ClockSource::Ntp,
            // (UTC - ours) - (UTC - theirs).
            own.offset_ns.wrapping_sub(at_now(&c)),
            c.error_ns.saturating_add(own.error_ns),
        ),
        // Only the fastest transit plus the offset is known: the offset alone is not.
        _ => (
            ClockSource::None,
            p.base_offset.map_or(0, |m| m.get()).wrapping_neg(),
            u64::MAX,
        ),
    }
}

impl ReceiverCore {
    /// Fills `out` with the peers, the delay and the counters at `now`. `applied_ns` is the
    /// delay the audio thread uses (it lowers the target only into silences).
    pub fn report(&mut self, now: u64, applied_ns: i64, out: &mut ReceiverStatus) {
        let ntp = self.ntp;
        out.peers.clear();
        for (slot, p) in self.peers.iter_mut() {
            let (clock, clock_offset_ns, clock_error_ns) = peer_clock(p, ntp, now);
            let pct = p.latency.percentiles(now);
            let needs_ns = p.needs(now);
            out.peers.push(PeerStatus {
                slot: slot as u8,
                sender_id: p.sender_id,
                name: p.name.clone(),
                addr: p.addr,
                clock,
                clock_offset_ns,
                clock_error_ns,
                latency_p50_ns: pct.map(|x| x.p50),
                latency_p99_ns: pct.map(|x| x.p99),
                needs_ns,
                jitter_ns: p.jitter.get(),
                loss_pct: p.loss_pct(),
                late_pct: if p.events == 0 {
                    0.0
                } else {
                    100.0 * p.late as f64 / p.events as f64
                },
                events_per_s: p.events_per_s,
                last_seen_ns: now.saturating_sub(p.last_seen),
                held_notes: p.held_notes,
                slowest: false,
            });
        }
        let fixed = self.config.mode == PlayoutMode::Fixed;
        let slowest = out
            .peers
            .iter()
            .enumerate()
            .filter_map(|(i, p)| p.needs_ns.map(|n| (i, n)))
            .max_by_key(|&(_, n)| n);
        if let (Some((i, _)), false) = (slowest, fixed) {
            out.peers[i].slowest = true;
        }
        out.delay = DelayStatus {
            fixed,
            margin_ns: self.config.margin_ns,
            block_ns: if fixed { 0 } else { self.block_ns as i64 },
            slowest_ns: if fixed { None } else { slowest.map(|s| s.1) },
            target_ns: self.playout.current(),
            applied_ns,
        };
        out.rejected.clear();
        out.rejected.extend(
            RejectReason::ALL
                .iter()
                .map(|r| (r.label(), self.stats.rejected[*r as usize])),
        );
        out.events_dropped.clear();
        out.events_dropped.extend(
            EventDrop::ALL
                .iter()
                .map(|r| (r.label(), self.stats.dropped[*r as usize])),
        );
        out.datagrams = self.stats.datagrams;
        out.events = self.stats.events;
        out.ntp = ntp.map(|n| (n.offset_ns, n.error_ns));
    }
}

/// Appends a point to the history graph (keeping the last [`crate::status::HISTORY_LEN`]).
pub fn push_history(out: &mut ReceiverStatus, t_s: f32) {
    let mut p = HistoryPoint {
        t_s,
        delay_ms: out.delay.applied_ns as f32 / 1e6,
        p99_ms: [f32::NAN; crate::proto::peers::MAX_PEERS],
    };
    for peer in &out.peers {
        if let Some(v) = peer.latency_p99_ns {
            p.p99_ms[peer.slot as usize] = v as f32 / 1e6;
        }
    }
    if out.history.len() >= crate::status::HISTORY_LEN {
        out.history.remove(0);
    }
    out.history.push(p);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::receiver::ReceiverConfig;
    use crate::proto::wire::{ClockReport, ClockSource as WireSource};

    #[test]
    fn clock_sources_and_signs() {
        let mut core = ReceiverCore::new(ReceiverConfig::default());
        let addr = "192.0.2.1:5".parse().unwrap();
        let s = core.peers_mut().insert(1, addr, 0, true).unwrap();
        let p = core.peers_mut().get_mut(s).unwrap();
        // Nothing known: no source, no bound.
        let (src, _, err) = peer_clock(p, None, 0);
        assert_eq!((src, err), (ClockSource::None, u64::MAX));
        // Direct: the report says ours minus theirs is +3 ms, so theirs minus ours is -3 ms.
        p.clock = Some(ClockReport {
            source: WireSource::Direct,
            ref_ns: 0,
            offset_ns: 3_000_000,
            skew_ppb: 0,
            error_ns: 40_000,
            rtt_ns: 80_000,
        });
        p.basis = ClockBasis::Direct;
        assert_eq!(
            peer_clock(p, None, 10_000_000_000),
            (ClockSource::Direct, -3_000_000, 40_000)
        );
        // NTP: theirs is 2 ms behind UTC, ours 5 ms behind: theirs minus ours = +3 ms.
        p.clock = Some(ClockReport {
            source: WireSource::Ntp,
            offset_ns: 2_000_000,
            error_ns: 1_000,
            ..p.clock.unwrap()
        });
        p.basis = ClockBasis::Ntp;
        let ntp = NtpOffset {
            offset_ns: 5_000_000,
            error_ns: 500,
        };
        assert_eq!(
            peer_clock(p, Some(ntp), 10_000_000_000),
            (ClockSource::Ntp, 3_000_000, 1_500)
        );
    }

    #[test]
    fn any_clock_figures_from_the_network_are_shown_without_overflow() {
        // Found by the `receive` fuzz target: the offset at `now` was `a as i64 - b as i64`
        // of a report's mapping, and then negated, both of which overflow for some reports.
        let mut core = ReceiverCore::new(ReceiverConfig::default());
        let s = core
            .peers_mut()
            .insert(1, "192.0.2.1:5".parse().unwrap(), 0, true)
            .unwrap();
        let p = core.peers_mut().get_mut(s).unwrap();
        let ntp = NtpOffset {
            offset_ns: i64::MIN,
            error_ns: u64::MAX,
        };
        for offset_ns in [i64::MIN, i64::MIN + 1, -1, 0, 1, i64::MAX] {
            for now in [0, 1 << 62, (1 << 63) - 1, 1 << 63, u64::MAX] {
                for basis in [ClockBasis::Direct, ClockBasis::Ntp] {
                    p.clock = Some(ClockReport {
                        source: WireSource::Direct,
                        ref_ns: now,
                        offset_ns,
                        skew_ppb: 0,
                        error_ns: u64::MAX,
                        rtt_ns: 0,
                    });
                    p.basis = basis;
                    let _ = peer_clock(p, Some(ntp), now);
                }
            }
        }
        p.basis = ClockBasis::FastestTransit;
        p.datagram(0, 1, 1 << 63);
        assert_eq!(peer_clock(p, None, 0).1, i64::MIN);
    }

    #[test]
    fn report_marks_the_slowest_and_lists_every_reason() {
        let mut core = ReceiverCore::new(ReceiverConfig::default());
        for (id, lat) in [(1u64, 5_000_000i64), (2, 40_000_000), (3, 20_000_000)] {
            let s = core
                .peers_mut()
                .insert(id, "192.0.2.1:5".parse().unwrap(), 0, true)
                .unwrap();
            let p = core.peers_mut().get_mut(s).unwrap();
            p.latency.push(0, lat);
            p.events = 10;
            p.late = 1;
        }
        let mut st = ReceiverStatus::default();
        core.report(1_000, 45_000_000, &mut st);
        assert_eq!(st.peers.len(), 3);
        let slow: Vec<_> = st.peers.iter().filter(|p| p.slowest).collect();
        assert_eq!(slow.len(), 1);
        assert_eq!(slow[0].sender_id, 2);
        assert_eq!(st.delay.slowest_ns, Some(40_000_000));
        assert_eq!(st.delay.applied_ns, 45_000_000);
        assert!((st.peers[0].late_pct - 10.0).abs() < 1e-9);
        assert_eq!(st.rejected.len(), crate::proto::reject::REJECT_REASONS);
        assert_eq!(st.events_dropped.len(), crate::proto::reject::EVENT_DROPS);
        push_history(&mut st, 0.25);
        assert_eq!(st.history.len(), 1);
        assert!((st.history[0].p99_ms[1] - 40.0).abs() < 1e-3);
        assert!(st.history[0].p99_ms[7].is_nan());
    }
}
