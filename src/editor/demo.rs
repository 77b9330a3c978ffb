//! A made-up session of three players, for the screenshots, the editor benchmark and the
//! tests: Ana in Lisbon (5 ms), Ben in Berlin (40 ms, clock through NTP) and Chloé in Montréal
//! (120 ms, losing a few datagrams), with a minute of history.

use crate::proto::peers::MAX_PEERS;
use crate::proto::reject::RejectReason;
use crate::settings::{ReceiverSettings, SenderSettings, DEFAULT_PORT};
use crate::status::{
    ClockSource, DelayStatus, HistoryPoint, LinkState, ListenState, PeerStatus, ReceiverStatus,
    SenderStatus, HISTORY_LEN,
};

/// Milliseconds to nanoseconds.
fn ms(v: f64) -> i64 {
    (v * 1e6).round() as i64
}

/// A smooth, repeatable wobble in [-1, 1] for made-up latencies.
fn wobble(t: f32, seed: f32) -> f32 {
    ((t * 0.37 + seed).sin() * 0.6 + (t * 1.71 + seed * 3.0).sin() * 0.4).clamp(-1.0, 1.0)
}

/// The three players' p99 latencies at time `t_s`, ms (Chloé joined 12 s into the minute).
fn p99s(t_s: f32, start: f32) -> [f32; 3] {
    let rel = t_s - start;
    let ana = 5.9 + 0.4 * wobble(t_s, 0.3);
    // Ben has a short burst of cross traffic half a minute ago.
    let burst = (-((rel - 30.0) / 2.5).powi(2)).exp() * 22.0;
    let ben = 41.2 + 1.5 * wobble(t_s, 1.1) + burst;
    let chloe = if rel < 12.0 {
        f32::NAN
    } else {
        118.8 + 1.5 * wobble(t_s, 2.4)
    };
    [ana, ben, chloe]
}

/// The Receiver's view of the made-up session.
pub fn receiver_status() -> ReceiverStatus {
    let start = 300.0_f32;
    let mut history: Vec<HistoryPoint> = (0..HISTORY_LEN)
        .map(|i| {
            let t_s = start + i as f32 * 0.25;
            let mut p99_ms = [f32::NAN; MAX_PEERS];
            let p = p99s(t_s, start);
            p99_ms[..3].copy_from_slice(&p);
            let slowest = p
                .iter()
                .copied()
                .filter(|v| v.is_finite())
                .fold(0.0, f32::max);
            HistoryPoint {
                t_s,
                delay_ms: slowest + 5.0,
                p99_ms,
            }
        })
        .collect();
    // The delay follows the slowest player up at once and comes down only slowly (into
    // silences), like the real one.
    let mut d = 0.0_f32;
    for p in &mut history {
        d = if p.delay_ms > d {
            p.delay_ms
        } else {
            d - (d - p.delay_ms) * 0.05
        };
        p.delay_ms = d;
    }
    let last = history.last().map_or(130.6, |p| p.delay_ms);
    // End exactly on the numbers of the table below.
    let shift = 130.6 - last;
    for p in &mut history {
        p.delay_ms += shift;
    }

    let peer = |slot: u8, name: &str, addr: &str| PeerStatus {
        slot,
        sender_id: 0x5eed_0000 + u64::from(slot),
        name: name.into(),
        addr: addr.parse().expect("a valid demo address"),
        clock: ClockSource::Direct,
        clock_offset_ns: 0,
        clock_error_ns: 0,
        latency_p50_ns: None,
        latency_p99_ns: None,
        needs_ns: None,
        jitter_ns: 0,
        loss_pct: 0.0,
        late_pct: 0.0,
        events_per_s: 0.0,
        last_seen_ns: 0,
        held_notes: 0,
        slowest: false,
    };
    let peers = vec![
        PeerStatus {
            clock_offset_ns: ms(-2.4),
            clock_error_ns: ms(0.3) as u64,
            latency_p50_ns: Some(ms(4.8)),
            latency_p99_ns: Some(ms(5.7)),
            needs_ns: Some(ms(5.7)),
            jitter_ns: ms(0.4) as u64,
            events_per_s: 18.5,
            last_seen_ns: ms(12.0) as u64,
            held_notes: 2,
            ..peer(0, "Ana (Lisbon)", "198.51.100.23:53012")
        },
        PeerStatus {
            clock: ClockSource::Ntp,
            clock_offset_ns: ms(13.9),
            clock_error_ns: ms(2.6) as u64,
            latency_p50_ns: Some(ms(38.6)),
            latency_p99_ns: Some(ms(41.9)),
            needs_ns: Some(ms(41.9)),
            jitter_ns: ms(1.2) as u64,
            loss_pct: 0.2,
            events_per_s: 42.0,
            last_seen_ns: ms(31.0) as u64,
            ..peer(1, "Ben (Berlin)", "203.0.113.40:61002")
        },
        PeerStatus {
            clock_offset_ns: ms(-57.2),
            clock_error_ns: ms(0.9) as u64,
            latency_p50_ns: Some(ms(112.4)),
            latency_p99_ns: Some(ms(120.3)),
            needs_ns: Some(ms(120.3)),
            jitter_ns: ms(2.1) as u64,
            loss_pct: 2.4,
            late_pct: 0.3,
            events_per_s: 7.5,
            last_seen_ns: ms(140.0) as u64,
            held_notes: 1,
            slowest: true,
            ..peer(2, "Chloé (Montréal)", "[2001:db8:4::7]:47801")
        },
    ];
    let rejected = RejectReason::ALL
        .iter()
        .map(|r| {
            let n = match r {
                RejectReason::Duplicate => 14,
                RejectReason::BadMagic => 3,
                RejectReason::TooShort => 1,
                _ => 0,
            };
            (r.label(), n)
        })
        .collect();
    ReceiverStatus {
        listen: ListenState::Listening(DEFAULT_PORT),
        peers,
        delay: DelayStatus {
            fixed: false,
            margin_ns: ms(5.0),
            block_ns: ms(5.3),
            slowest_ns: Some(ms(120.3)),
            target_ns: ms(130.6),
            applied_ns: ms(130.6),
        },
        history,
        rejected,
        events_dropped: vec![("queue full", 0), ("out of time window", 2)],
        datagrams: 18_412,
        events: 24_930,
        late: 21,
        offline_blocks: 0,
        offline: false,
        ntp: Some((ms(1.3), ms(2.2) as u64)),
    }
}

/// The Receiver's settings in the made-up session (a fixed room code, so screenshots are
/// repeatable).
pub fn receiver_settings() -> ReceiverSettings {
    ReceiverSettings {
        room: "7QF2-M9KD-XW3C-T0ZB".into(),
        ..ReceiverSettings::default()
    }
}

/// A Sender's view of the made-up session: Ana's, connected to the host.
pub fn sender_status() -> SenderStatus {
    SenderStatus {
        link: LinkState::Connected,
        destination: Some("203.0.113.7:47800".parse().expect("a valid demo address")),
        rtt_ns: Some(ms(9.8) as u64),
        clock: ClockSource::Direct,
        clock_offset_ns: ms(2.4),
        clock_error_ns: ms(0.3) as u64,
        skew_ppm: 1.7,
        ntp: Some((ms(-0.8), ms(1.9) as u64)),
        events_sent: 3_918,
        datagrams_sent: 2_206,
        events_dropped: 0,
    }
}

/// Ana's Sender settings in the made-up session.
pub fn sender_settings() -> SenderSettings {
    SenderSettings {
        host: "studio.example.org".into(),
        port: DEFAULT_PORT,
        name: "Ana (Lisbon)".into(),
        room: "7QF2-M9KD-XW3C-T0ZB".into(),
        ..SenderSettings::default()
    }
}
