//! The Sender's clock exchange with its Receiver: TimeRequests (NTP's four timestamps,
//! RFC 5905 §8) at a fast rate while converging and slower after, the replies that come
//! back (and the "Refused" notices), the epoch they tell, and the clock reports made from
//! the filtered estimate, or from NTP until it converges.

use super::{Link, SenderCore};
use crate::proto::receiver::NtpOffset;
use crate::proto::reject::Reject;
use crate::proto::wire::{self, Body, ClockReport, ClockSource, PacketType};

/// Time between clock-exchange requests once converged. The filter's accuracy comes from its
/// fastest samples, so the more samples, the closer the fastest ones are to the true minimum
/// delay: ten a second (about 750 bytes a second each way, sealed) bring the offset within
/// about 10 us within a minute even on a path with 4 ms of exponential jitter, and double as
/// keepalives.
pub const TIME_REQUEST_INTERVAL_NS: u64 = 100_000_000;
/// Time between requests while converging (the first [`FAST_REQUESTS`]).
pub const TIME_REQUEST_FAST_NS: u64 = 50_000_000;
/// Requests sent at the fast rate after start.
pub const FAST_REQUESTS: u32 = 40;
/// How often the Sender reports its clock estimate even when it has not changed.
pub const REPORT_INTERVAL_NS: u64 = 1_000_000_000;
/// A change of the estimate larger than this is reported at once, ns.
pub const REPORT_CHANGE_NS: i64 = 5_000;
/// No valid reply for this long: the link shows "no reply", ns.
pub const REPLY_TIMEOUT_NS: u64 = 2_000_000_000;
/// Requests remembered, to match replies (a reply to anything else is dropped).
pub(super) const OUTSTANDING: usize = 16;
/// Send times remembered, to recognise a restarted Receiver's epoch notice.
pub(super) const RECENT_SENDS: usize = 64;

/// The Sender's view of its clock against the Receiver's, for the editor.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ClockStatus {
    /// What the report to the Receiver is based on (`None`: nothing yet).
    pub source: Option<ClockSource>,
    /// Receiver (or UTC, for NTP) time minus ours, ns.
    pub offset_ns: i64,
    /// Error bound, ns.
    pub error_ns: u64,
    /// Best round trip to the Receiver, ns (0: no reply yet).
    pub rtt_ns: u64,
    /// Estimated rate difference, ppm.
    pub skew_ppm: f64,
}

impl SenderCore {
    /// Sets this machine's NTP offset (`None`: unknown).
    pub fn set_ntp(&mut self, ntp: Option<NtpOffset>) {
        self.ntp = ntp;
    }

    /// A datagram arrived at `now` from the Receiver's address.
    pub fn handle_datagram(&mut self, now: u64, bytes: &[u8]) -> Result<(), Reject> {
        let r = self.handle_inner(now, bytes);
        if r.is_err() {
            self.stats.rejected += 1;
        }
        r
    }

    fn handle_inner(&mut self, now: u64, bytes: &[u8]) -> Result<(), Reject> {
        let (h, _) = wire::decode_header(bytes).map_err(Reject::Decode)?;
        match h.packet_type {
            PacketType::Refused if !h.sealed && bytes.len() == wire::HEADER_LEN => {
                self.stats.refused += 1;
                self.link = Link::Refused;
                return Ok(());
            }
            PacketType::TimeReply => {}
            _ => return Err(Reject::Unexpected),
        }
        let mut scratch = [0u8; wire::MAX_ACCEPTED_DATAGRAM];
        let body = wire::open_body(
            &h,
            bytes,
            self.key.as_ref(),
            self.key.is_some(),
            &mut scratch,
        )
        .map_err(Reject::Open)?;
        let Body::TimeReply { prelude, reply } =
            wire::decode_body(&h, body, &mut Vec::new()).map_err(Reject::Decode)?
        else {
            return Err(Reject::Unexpected);
        };
        let Some(i) = self.outstanding.iter().position(|&t| t == reply.t1) else {
            if self.epoch != Some(prelude.epoch) && self.recent_sends.contains(&reply.t1) {
                // A restarted Receiver telling its new epoch in answer to something we just
                // sent: adopt it, and send again what it may have refused.
                self.epoch = Some(prelude.epoch);
                self.receiver_id = Some(h.sender_id);
                self.filter.reset();
                self.link = Link::Connected;
                self.last_reply = Some(now);
                self.resend_to_restarted(now);
                return Ok(());
            }
            // Not one of ours, or answered already (a duplicate or a replay).
            return Err(Reject::Duplicate);
        };
        self.outstanding[i] = u64::MAX;
        if self.receiver_id != Some(h.sender_id) {
            // Another Receiver (or the same one restarted): its clock is another clock.
            self.receiver_id = Some(h.sender_id);
            self.filter.reset();
        }
        if self.epoch.is_some_and(|e| e != prelude.epoch) {
            // The Receiver restarted while this request was out. What went out since under the
            // old epoch was refused, and the notices saying so will find the new epoch already
            // adopted here: send it again now, as when a notice comes first.
            self.resend_to_restarted(now);
        }
        self.epoch = Some(prelude.epoch);
        self.link = Link::Connected;
        self.last_reply = Some(now);
        self.stats.replies += 1;
        // A sample the filter finds implausible still proves the link.
        let _ = self
            .filter
            .add_sample(reply.t1, reply.t2, prelude.sent_ns, now);
        self.maybe_report(now);
        Ok(())
    }

    /// A restarted Receiver refused what was sent under its previous epoch: repeat the last
    /// batches at once (the tail) and send a State soon, under the new epoch.
    fn resend_to_restarted(&mut self, now: u64) {
        self.tail_left = self.redundancy.max(1);
        self.next_tail = now;
        self.next_state = None;
    }

    /// The clock estimate to report now: the direct exchange once converged, else NTP.
    fn current_report(&self, now: u64) -> Option<ClockReport> {
        if self.filter.is_converged() {
            let e = self.filter.estimate()?;
            let offset = self.filter.offset_at(now)?;
            return Some(ClockReport {
                source: ClockSource::Direct,
                ref_ns: now,
                offset_ns: offset,
                skew_ppb: (e.skew_ppm * 1000.0).round() as i64,
                error_ns: self.filter.error_bound_at(now).unwrap_or(e.error_bound_ns),
                rtt_ns: e.min_delay_ns,
            });
        }
        let n = self.ntp?;
        Some(ClockReport {
            source: ClockSource::Ntp,
            ref_ns: now,
            offset_ns: n.offset_ns,
            skew_ppb: 0,
            error_ns: n.error_ns,
            rtt_ns: self.filter.estimate().map_or(0, |e| e.min_delay_ns),
        })
    }

    /// Queues a report when the estimate moved or the last one is old.
    pub(super) fn maybe_report(&mut self, now: u64) {
        let Some(r) = self.current_report(now) else {
            return;
        };
        let due = match self.last_report {
            None => true,
            Some((at, last)) => {
                now >= at + REPORT_INTERVAL_NS
                    || last.source != r.source
                    || last.map(now).abs_diff(r.map(now)) > REPORT_CHANGE_NS as u64
            }
        };
        if due {
            self.report_pending = Some(r);
            self.last_report = Some((now, r));
        }
    }

    /// The clock as the Receiver is told about it.
    pub fn clock_status(&self, now: u64) -> ClockStatus {
        let e = self.filter.estimate();
        let rtt_ns = e.map_or(0, |e| e.min_delay_ns);
        match self.current_report(now) {
            Some(r) => ClockStatus {
                source: Some(r.source),
                offset_ns: r.offset_ns,
                error_ns: r.error_ns,
                rtt_ns,
                skew_ppm: r.skew_ppb as f64 / 1000.0,
            },
            None => ClockStatus {
                source: None,
                offset_ns: 0,
                error_ns: 0,
                rtt_ns,
                skew_ppm: 0.0,
            },
        }
    }
}
