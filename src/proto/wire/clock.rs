//! Clock-exchange bodies: TimeRequest, TimeReply and ClockReport (`docs/protocol.md`, "Clock
//! exchange").
//!
//! The exchange is NTP's on-wire protocol (RFC 5905 §8) reduced to its four timestamps: the
//! Sender sends at `t1` (the prelude's send time), the Receiver answers with `t1`, its receive
//! time `t2` and its send time `t3` (its prelude's send time), and the Sender notes `t4` when
//! the answer arrives.

use super::{decode_one, Datagram, DecodeError, PacketType, Prelude};
use serde::{Deserialize, Serialize};

/// Padding a TimeRequest carries so that it is never smaller than the TimeReply it asks for:
/// the Receiver then cannot be used to amplify traffic towards a forged source address (the
/// rule QUIC follows for its handshake, RFC 9000 §8).
pub const TIME_REQUEST_PADDING: usize = 24;

/// Body rest of a TimeRequest.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct TimeRequestBody<'a> {
    /// [`TIME_REQUEST_PADDING`] zero bytes (at least).
    pad: &'a [u8],
}

/// A Receiver's answer to a TimeRequest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeReply {
    /// Copied from the request: the Sender's send time.
    pub t1: u64,
    /// Receiver's session time when the request arrived.
    pub t2: u64,
}

/// Wire form of [`TimeReply`]; field order is the wire format.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct TimeReplyBody {
    /// The request's send time, copied.
    t1: u64,
    /// The Receiver's time when the request arrived.
    t2: u64,
}

/// Where a Sender's clock estimate comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClockSource {
    /// Direct exchange with this Receiver: `offset_ns` maps the Sender's timeline to the
    /// Receiver's.
    Direct,
    /// NTP: `offset_ns` maps the Sender's timeline to UTC.
    Ntp,
}

/// A Sender's clock estimate, sent to the Receiver whenever it changes noticeably and at least
/// once a second.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClockReport {
    /// What the estimate is relative to.
    pub source: ClockSource,
    /// Sender time at which `offset_ns` holds.
    pub ref_ns: u64,
    /// Target time minus Sender time at `ref_ns`, ns.
    pub offset_ns: i64,
    /// Rate difference, parts per billion: the offset grows by `skew_ppb` ns per second.
    pub skew_ppb: i64,
    /// Bound on the error of the offset, ns.
    pub error_ns: u64,
    /// Best recent round trip to the Receiver, ns (0 when unknown).
    pub rtt_ns: u64,
}

impl ClockReport {
    /// Target-timeline time of Sender time `t`: `t + offset + skew * (t - ref)`.
    pub fn map(&self, t: u64) -> u64 {
        let dt = t.wrapping_sub(self.ref_ns) as i64 as i128;
        let drift = dt * self.skew_ppb as i128 / 1_000_000_000;
        (t as i128 + self.offset_ns as i128 + drift).clamp(0, u64::MAX as i128) as u64
    }
}

/// Wire form of [`ClockReport`]; field order is the wire format.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct ClockReportBody {
    /// 1: direct exchange, 2: NTP.
    source: u8,
    /// Sender time at which the offset holds, ns.
    ref_ns: u64,
    /// Target time minus Sender time at `ref_ns`, ns.
    offset_ns: i64,
    /// Rate difference, parts per billion.
    skew_ppb: i64,
    /// Bound on the offset's error, ns.
    error_ns: u64,
    /// Best recent round trip, ns (0: unknown).
    rtt_ns: u64,
}

/// Largest skew a report may claim: 1,000 ppm. Crystal oscillators are within ±100 ppm; a
/// larger figure is a broken estimate or a forged datagram.
pub const MAX_SKEW_PPB: i64 = 1_000_000;

/// Encodes a TimeRequest (unsealed); `prelude.sent_ns` is its `t1`.
pub fn encode_time_request(sender_id: u64, seq: u64, prelude: Prelude) -> Datagram {
    let pad = [0u8; TIME_REQUEST_PADDING];
    let mut d = Datagram::new(PacketType::TimeRequest, sender_id, seq);
    let _ = d.push(&prelude);
    let _ = d.push(&TimeRequestBody { pad: &pad });
    d
}

/// Checks the rest of a TimeRequest body.
pub(super) fn decode_time_request(rest: &[u8]) -> Result<(), DecodeError> {
    let b: TimeRequestBody<'_> = decode_one(rest)?;
    if b.pad.len() < TIME_REQUEST_PADDING || b.pad.iter().any(|&x| x != 0) {
        return Err(DecodeError::InvalidField);
    }
    Ok(())
}

/// Encodes a TimeReply (unsealed); `prelude.sent_ns` is its `t3`.
pub fn encode_time_reply(receiver_id: u64, seq: u64, prelude: Prelude, r: &TimeReply) -> Datagram {
    let mut d = Datagram::new(PacketType::TimeReply, receiver_id, seq);
    let _ = d.push(&prelude);
    let _ = d.push(&TimeReplyBody { t1: r.t1, t2: r.t2 });
    d
}

/// Decodes the rest of a TimeReply body.
pub(super) fn decode_time_reply(rest: &[u8]) -> Result<TimeReply, DecodeError> {
    let b: TimeReplyBody = decode_one(rest)?;
    Ok(TimeReply { t1: b.t1, t2: b.t2 })
}

/// Encodes a ClockReport (unsealed).
pub fn encode_clock_report(
    sender_id: u64,
    seq: u64,
    prelude: Prelude,
    r: &ClockReport,
) -> Datagram {
    let mut d = Datagram::new(PacketType::ClockReport, sender_id, seq);
    let _ = d.push(&prelude);
    let _ = d.push(&ClockReportBody {
        source: match r.source {
            ClockSource::Direct => 1,
            ClockSource::Ntp => 2,
        },
        ref_ns: r.ref_ns,
        offset_ns: r.offset_ns,
        skew_ppb: r.skew_ppb,
        error_ns: r.error_ns,
        rtt_ns: r.rtt_ns,
    });
    d
}

/// Decodes the rest of a ClockReport body.
pub(super) fn decode_clock_report(rest: &[u8]) -> Result<ClockReport, DecodeError> {
    let b: ClockReportBody = decode_one(rest)?;
    let source = match b.source {
        1 => ClockSource::Direct,
        2 => ClockSource::Ntp,
        _ => return Err(DecodeError::InvalidField),
    };
    // (Not `abs()`: i64::MIN has no absolute value, and would pass unchecked.)
    if !(-MAX_SKEW_PPB..=MAX_SKEW_PPB).contains(&b.skew_ppb) {
        return Err(DecodeError::InvalidField);
    }
    Ok(ClockReport {
        source,
        ref_ns: b.ref_ns,
        offset_ns: b.offset_ns,
        skew_ppb: b.skew_ppb,
        error_ns: b.error_ns,
        rtt_ns: b.rtt_ns,
    })
}

#[cfg(test)]
mod tests {
    use super::super::{decode_body, decode_header, Body};
    use super::*;
    use proptest::prelude::*;

    fn body_of(d: &Datagram) -> Body<'_> {
        let (h, body) = decode_header(d.as_bytes()).unwrap();
        decode_body(&h, body, &mut Vec::new()).unwrap()
    }

    proptest! {
        #[test]
        fn round_trips(t1 in any::<u64>(), t2 in any::<u64>(), t3 in any::<u64>(),
                       epoch in any::<u32>(),
                       off in any::<i64>(), skew in -MAX_SKEW_PPB..=MAX_SKEW_PPB,
                       err in any::<u64>(), rtt in any::<u64>(), direct in any::<bool>()) {
            let p1 = Prelude { sent_ns: t1, epoch };
            let d = encode_time_request(1, 2, p1);
            prop_assert_eq!(body_of(&d), Body::TimeRequest { prelude: p1 });

            let r = TimeReply { t1, t2 };
            let p3 = Prelude { sent_ns: t3, epoch: u32::MAX };
            let d2 = encode_time_reply(3, 4, p3, &r);
            prop_assert!(d2.as_bytes().len() <= d.as_bytes().len(), "no amplification");
            prop_assert_eq!(body_of(&d2), Body::TimeReply { prelude: p3, reply: r });

            let c = ClockReport {
                source: if direct { ClockSource::Direct } else { ClockSource::Ntp },
                ref_ns: t2, offset_ns: off, skew_ppb: skew, error_ns: err, rtt_ns: rtt,
            };
            let d3 = encode_clock_report(5, 6, p1, &c);
            prop_assert_eq!(body_of(&d3), Body::ClockReport { prelude: p1, report: c });
        }

        #[test]
        fn garbage(rest in proptest::collection::vec(any::<u8>(), 0..80)) {
            let _ = decode_time_request(&rest);
            let _ = decode_time_reply(&rest);
            if let Ok(c) = decode_clock_report(&rest) {
                prop_assert!(c.skew_ppb.unsigned_abs() <= MAX_SKEW_PPB as u64);
            }
        }
    }

    #[test]
    fn bad_padding() {
        let pad = [0u8; TIME_REQUEST_PADDING];
        let mut b = [0u8; 64];
        let n = postcard::to_slice(&TimeRequestBody { pad: &pad }, &mut b)
            .unwrap()
            .len();
        assert_eq!(decode_time_request(&b[..n]), Ok(()));
        b[n - 1] = 1;
        assert_eq!(decode_time_request(&b[..n]), Err(DecodeError::InvalidField));
        b[n - 1] = 0;
        assert_eq!(
            decode_time_request(&b[..n - 1]),
            Err(DecodeError::Malformed)
        );
        assert_eq!(
            decode_time_request(&b[..n + 1]),
            Err(DecodeError::TrailingBytes)
        );
        let short = [0u8; TIME_REQUEST_PADDING - 1];
        let n = postcard::to_slice(&TimeRequestBody { pad: &short }, &mut b)
            .unwrap()
            .len();
        assert_eq!(decode_time_request(&b[..n]), Err(DecodeError::InvalidField));
    }

    #[test]
    fn skews_out_of_range_are_refused_even_the_most_negative() {
        // Found by the `decode` fuzz target: the check was `skew.abs() > MAX`, which
        // overflows for i64::MIN (a panic with overflow checks on; without them i64::MIN
        // stays negative and the report was accepted).
        let mut b = [0u8; 64];
        for (skew, ok) in [
            (i64::MIN, false),
            (-MAX_SKEW_PPB - 1, false),
            (-MAX_SKEW_PPB, true),
            (MAX_SKEW_PPB, true),
            (MAX_SKEW_PPB + 1, false),
            (i64::MAX, false),
        ] {
            let body = ClockReportBody {
                source: 1,
                ref_ns: 0,
                offset_ns: 0,
                skew_ppb: skew,
                error_ns: 0,
                rtt_ns: 0,
            };
            let n = postcard::to_slice(&body, &mut b).unwrap().len();
            let r = decode_clock_report(&b[..n]);
            assert_eq!(r.is_ok(), ok, "{skew}: {r:?}");
            if !ok {
                assert_eq!(r, Err(DecodeError::InvalidField));
            }
        }
    }

    #[test]
    fn map_applies_offset_and_skew() {
        let c = ClockReport {
            source: ClockSource::Direct,
            ref_ns: 10_000_000_000,
            offset_ns: -5_000,
            skew_ppb: 100_000, // 100 ppm
            error_ns: 0,
            rtt_ns: 0,
        };
        assert_eq!(c.map(10_000_000_000), 9_999_995_000);
        // One second later the offset has grown by 100 us.
        assert_eq!(c.map(11_000_000_000), 11_000_095_000);
        assert_eq!(c.map(9_000_000_000), 8_999_895_000);
    }
}
