//! From session snapshots to what the editors show: every text, and how alarming it is.
//!
//! Plain code with no egui in it, so each rule ("the slowest peer is highlighted", "a peer
//! silent for half the timeout is greyed out", "loss above 1 % is a warning") has a unit test.
//! The drawing code in [`super::receiver`] and [`super::sender`] only lays these strings out and
//! picks a colour for each [`Tone`].

use super::format::{self, UNKNOWN};
use crate::net::receiver_thread::REBIND_EVERY_NS;
use crate::status::{
    ClockSource, DelayStatus, LinkState, ListenState, PeerStatus, ReceiverStatus, SenderStatus,
};

/// How a value should strike the eye.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Tone {
    /// Ordinary text.
    #[default]
    Normal,
    /// Secondary text (units, hints, stale values).
    Weak,
    /// All is well.
    Good,
    /// Worth a look.
    Warn,
    /// Something is wrong.
    Bad,
}

/// A text and its tone.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cell {
    /// What is written.
    pub text: String,
    /// How it is coloured.
    pub tone: Tone,
}

impl Cell {
    /// A cell in the given tone.
    pub fn new(text: impl Into<String>, tone: Tone) -> Self {
        Self {
            text: text.into(),
            tone,
        }
    }

    /// An ordinary cell.
    pub fn normal(text: impl Into<String>) -> Self {
        Self::new(text, Tone::Normal)
    }
}

/// How long a silent peer is shown greyed out (stale) before it is forgotten: from half the
/// silence timeout (the Receiver's "Silence timeout" parameter) on, so that with any timeout a
/// peer that goes quiet is seen going stale for as long again before it leaves the table, ns.
pub fn stale_after(timeout_ns: u64) -> u64 {
    timeout_ns / 2
}
/// Loss or late share above this is a warning, percent.
pub const WARN_PCT: f64 = 1.0;
/// Loss or late share above this is bad, percent.
pub const BAD_PCT: f64 = 5.0;
/// A clock known to within this is "good", ns.
pub const CLOCK_GOOD_NS: u64 = 1_000_000;
/// A clock known to within this is "fair" (above: "poor"), ns.
pub const CLOCK_FAIR_NS: u64 = 5_000_000;

/// A percentage coloured by how bad it is.
fn pct_cell(p: f64) -> Cell {
    let tone = if !p.is_finite() {
        Tone::Weak
    } else if p > BAD_PCT {
        Tone::Bad
    } else if p > WARN_PCT {
        Tone::Warn
    } else {
        Tone::Normal
    };
    Cell::new(format::pct(p), tone)
}

/// Words for a clock source.
pub fn clock_source(c: ClockSource) -> &'static str {
    match c {
        ClockSource::None => "none",
        ClockSource::Direct => "direct",
        ClockSource::Ntp => "NTP",
    }
}

/// How good a clock estimate is, in a word, and its tone.
pub fn clock_quality(source: ClockSource, error_ns: u64) -> Cell {
    match source {
        ClockSource::None => Cell::new("not synced yet", Tone::Warn),
        _ if error_ns <= CLOCK_GOOD_NS => Cell::new("good", Tone::Good),
        _ if error_ns <= CLOCK_FAIR_NS => Cell::new("fair", Tone::Warn),
        _ => Cell::new("poor", Tone::Bad),
    }
}

/// One line of the Receiver's peer table.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PeerRow {
    /// Slot (for its colour in the graph and for "kick").
    pub slot: u8,
    /// Display name, or the address when the Sender gave none.
    pub name: String,
    /// Address and port it sends from.
    pub addr: String,
    /// Clock offset (its clock minus ours).
    pub offset: Cell,
    /// Error bound and source: `±0.4 ms · direct`.
    pub clock: Cell,
    /// Median one-way latency, ms.
    pub p50: Cell,
    /// 99th percentile one-way latency, ms.
    pub p99: Cell,
    /// Interarrival jitter, ms.
    pub jitter: Cell,
    /// Datagrams lost, percent.
    pub loss: Cell,
    /// Events played late, percent.
    pub late: Cell,
    /// Events per second.
    pub rate: Cell,
    /// Time since its last datagram.
    pub seen: Cell,
    /// It sets the playout delay.
    pub slowest: bool,
    /// Silent for [`stale_after`] the timeout or more.
    pub stale: bool,
    /// Hover text for the clock cells.
    pub clock_hint: String,
}

impl PeerRow {
    /// The row for one peer; it is stale once silent for `stale_ns` ([`stale_after`]).
    pub fn new(p: &PeerStatus, stale_ns: u64) -> Self {
        let stale = p.last_seen_ns >= stale_ns;
        let quality = clock_quality(p.clock, p.clock_error_ns);
        let (offset, clock) = match p.clock {
            ClockSource::None => (
                Cell::new(UNKNOWN, Tone::Weak),
                Cell::new("none", Tone::Warn),
            ),
            src => (
                Cell::normal(format::offset(p.clock_offset_ns)),
                Cell::new(
                    format!(
                        "{} · {}",
                        format::bound(p.clock_error_ns),
                        clock_source(src)
                    ),
                    quality.tone,
                ),
            ),
        };
        let clock_hint = match p.clock {
            ClockSource::None => "Clock not synced yet: its fastest transit so far counts as \
                                  zero latency."
                .to_string(),
            ClockSource::Direct => format!(
                "Clock from the direct exchange with this Sender: {} ({}).",
                format::bound(p.clock_error_ns),
                quality.text
            ),
            ClockSource::Ntp => format!(
                "Clock from both machines' NTP time: {} ({}).",
                format::bound(p.clock_error_ns),
                quality.text
            ),
        };
        let name = if p.name.trim().is_empty() {
            format!("Sender {}", p.slot + 1)
        } else {
            p.name.clone()
        };
        let latency = |v: Option<i64>| match v {
            Some(ns) => Cell::normal(format::ms(ns)),
            None => Cell::new(UNKNOWN, Tone::Weak),
        };
        let mut row = Self {
            slot: p.slot,
            name,
            addr: p.addr.to_string(),
            offset,
            clock,
            p50: latency(p.latency_p50_ns),
            p99: latency(p.latency_p99_ns),
            jitter: Cell::normal(format::ms(p.jitter_ns.min(i64::MAX as u64) as i64)),
            loss: pct_cell(p.loss_pct),
            late: pct_cell(p.late_pct),
            rate: Cell::normal(format::rate(p.events_per_s)),
            seen: Cell::new(
                format::age(p.last_seen_ns),
                if stale { Tone::Warn } else { Tone::Weak },
            ),
            slowest: p.slowest,
            stale,
            clock_hint,
        };
        if row.slowest {
            // The number that sets the delay stands out.
            row.p99.tone = Tone::Warn;
        }
        if stale {
            for c in [
                &mut row.offset,
                &mut row.p50,
                &mut row.p99,
                &mut row.jitter,
                &mut row.rate,
            ] {
                c.tone = Tone::Weak;
            }
        }
        row
    }
}

/// The peer table: one row per peer, by slot; stale once silent for `stale_ns`.
pub fn peer_rows(s: &ReceiverStatus, stale_ns: u64) -> Vec<PeerRow> {
    let mut rows: Vec<PeerRow> = s.peers.iter().map(|p| PeerRow::new(p, stale_ns)).collect();
    rows.sort_by_key(|r| r.slot);
    rows
}

/// The playout delay, in words.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DelayView {
    /// The delay in use: `130.6 ms`.
    pub total: String,
    /// How it is made: `slowest player 120.3 ms + block 5.3 ms + margin 5.0 ms` (the block:
    /// this host's block, which an event must beat).
    pub parts: String,
    /// Who the slowest player is, when one sets the delay.
    pub slowest_name: Option<String>,
    /// When the delay in use is moving towards a new target, what is going on.
    pub moving: Option<String>,
}

impl DelayView {
    /// The delay status, with the peers to name the slowest one.
    pub fn new(d: &DelayStatus, peers: &[PeerStatus]) -> Self {
        let margin = format::ms_unit(d.margin_ns);
        let slowest_name = match (d.fixed, d.slowest_ns) {
            (false, Some(_)) => peers.iter().find(|p| p.slowest).map(|p| {
                if p.name.trim().is_empty() {
                    p.addr.to_string()
                } else {
                    p.name.clone()
                }
            }),
            _ => None,
        };
        let parts = match (d.fixed, d.slowest_ns) {
            (true, _) => format!("fixed: Default delay {margin}"),
            (false, Some(slowest)) if d.block_ns > 0 => format!(
                "slowest player {} + block {} + margin {margin}",
                format::ms_unit(slowest),
                format::ms_unit(d.block_ns)
            ),
            (false, Some(slowest)) => format!(
                "slowest player {} + margin {margin}",
                format::ms_unit(slowest)
            ),
            (false, None) => format!("margin {margin} only: no player yet"),
        };
        let moving = if d.applied_ns == d.target_ns {
            None
        } else if d.applied_ns > d.target_ns {
            Some(format!(
                "lowering to {} at the next silence",
                format::ms_unit(d.target_ns)
            ))
        } else {
            Some(format!("rising to {}", format::ms_unit(d.target_ns)))
        };
        Self {
            total: format::ms_unit(d.applied_ns),
            parts,
            slowest_name,
            moving,
        }
    }
}

/// The Receiver's socket, in words.
pub fn listen(state: &ListenState, configured_port: u16) -> Cell {
    match state {
        ListenState::Stopped => Cell::new("Stopped: the plugin is not active", Tone::Weak),
        ListenState::Starting => {
            Cell::new(format!("Opening UDP port {configured_port}…"), Tone::Weak)
        }
        ListenState::Listening(p) if *p != configured_port => Cell::new(
            format!("Listening on UDP port {p}, moving to {configured_port}…"),
            Tone::Warn,
        ),
        ListenState::Listening(p) => Cell::new(format!("Listening on UDP port {p}"), Tone::Good),
        ListenState::PortInUse(p) => Cell::new(
            format!(
                "Port {p} is in use by another program; retrying {}",
                format::every(REBIND_EVERY_NS)
            ),
            Tone::Bad,
        ),
        ListenState::Error(e) => Cell::new(format!("Cannot listen: {e}; retrying"), Tone::Bad),
    }
}

/// This machine's NTP state, in words (shown after an "NTP" label).
pub fn ntp(ntp: Option<(i64, u64)>, server: &str) -> Cell {
    if server.trim().is_empty() {
        return Cell::new("off", Tone::Weak);
    }
    match ntp {
        Some((off, err)) => {
            let q = clock_quality(ClockSource::Ntp, err);
            Cell::new(
                format!(
                    "{} {} ({})",
                    format::offset(off),
                    format::bound(err),
                    q.text
                ),
                q.tone,
            )
        }
        None => Cell::new(format!("waiting for {}", server.trim()), Tone::Weak),
    }
}

/// Rejected datagrams worth showing: the reasons with a count, most frequent first.
pub fn rejected(s: &ReceiverStatus) -> Vec<(&'static str, String)> {
    let mut v: Vec<(&'static str, u64)> =
        s.rejected.iter().copied().filter(|&(_, n)| n > 0).collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    v.into_iter().map(|(l, n)| (l, format::count(n))).collect()
}

/// Events of accepted datagrams that were not played, when there are any: the total, and one
/// line per reason with a count (most frequent first), for a hover text.
pub fn events_dropped(s: &ReceiverStatus) -> Option<(String, String)> {
    let mut v: Vec<(&'static str, u64)> = s
        .events_dropped
        .iter()
        .copied()
        .filter(|&(_, n)| n > 0)
        .collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let total = format::count(v.iter().map(|&(_, n)| n).sum());
    let why: Vec<String> = v
        .iter()
        .map(|(l, n)| format!("{}: {}", l, format::count(*n)))
        .collect();
    Some((
        total,
        format!("Events received but not played\n{}", why.join("\n")),
    ))
}

/// The Sender's link, in words: a headline and a hint saying what to do about it.
pub fn link(s: &SenderStatus) -> (Cell, Option<String>) {
    let dest = s
        .destination
        .map(|d| d.to_string())
        .unwrap_or_else(|| "the Receiver".into());
    match &s.link {
        LinkState::Stopped => (
            Cell::new("Not running: the plugin is not active", Tone::Weak),
            None,
        ),
        LinkState::NoDestination(why) => (
            Cell::new(format!("No destination: {why}"), Tone::Bad),
            Some("Check the host name or address above.".into()),
        ),
        LinkState::NoReply => (
            Cell::new(format!("No reply from {dest}"), Tone::Warn),
            Some(
                "Is the Receiver running, is its UDP port forwarded to it, and are the \
                 address and port right?"
                    .into(),
            ),
        ),
        LinkState::Refused => (
            Cell::new("Refused: wrong room code", Tone::Bad),
            Some("Ask the host for the room code their Receiver shows.".into()),
        ),
        LinkState::BadRoomCode(why) => (
            Cell::new(
                format!("Not sending: room code unusable ({why})"),
                Tone::Bad,
            ),
            Some("Type the room code the host's Receiver shows, or leave it empty.".into()),
        ),
        LinkState::Connected => (Cell::new(format!("Connected to {dest}"), Tone::Good), None),
        // A state for "the room code is invalid: not sending" is to come from the network
        // thread; it belongs here, as a `Tone::Bad` headline with a hint to fix the code.
    }
}

/// The Sender's clock estimate, in words: offset and bound, and its quality with the source.
pub fn sender_clock(s: &SenderStatus) -> (String, Cell) {
    let q = clock_quality(s.clock, s.clock_error_ns);
    match s.clock {
        ClockSource::None => (UNKNOWN.into(), q),
        src => {
            let how = match src {
                ClockSource::Direct => "direct exchange",
                _ => "NTP",
            };
            (
                format!(
                    "{} {}",
                    format::offset(s.clock_offset_ns),
                    format::bound(s.clock_error_ns)
                ),
                Cell::new(format!("{}, {how}", q.text), q.tone),
            )
        }
    }
}

/// The MIDI activity light: lit for a moment whenever a count of events grows (the Sender's
/// editor feeds it the audio thread's count of queued events, every frame).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Activity {
    /// The count seen last frame.
    last: Option<u64>,
    /// Lit until this time, s (the editor's clock).
    lit_until: f64,
    /// Whether the last update left it lit.
    on: bool,
}

impl Activity {
    /// How long the light stays on after an event, s.
    pub const HOLD_S: f64 = 0.15;

    /// Takes this frame's count at time `now_s`; returns whether the light is on.
    pub fn update(&mut self, count: u64, now_s: f64) -> bool {
        if let Some(last) = self.last {
            if count > last {
                self.lit_until = now_s + Self::HOLD_S;
            }
        }
        self.last = Some(count);
        self.on = now_s < self.lit_until;
        self.on
    }

    /// Whether the last [`Activity::update`] left the light on.
    pub fn lit(&self) -> bool {
        self.on
    }

    /// While lit, how long until the light goes off, s.
    pub fn remaining(&self, now_s: f64) -> Option<f64> {
        (self.on && now_s < self.lit_until).then_some(self.lit_until - now_s)
    }
}

/// Events a Sender dropped unsent, in words, when there are any: `total` from the network
/// thread's snapshot (every reason), `queue_full` the audio thread's live count of events its
/// queue to the network thread could not take (one of those reasons).
pub fn dropped(total: u64, queue_full: u64) -> Option<Cell> {
    let total = total.max(queue_full);
    if total == 0 {
        return None;
    }
    let why = if queue_full == total {
        "the queue from the audio thread was full".to_string()
    } else if queue_full == 0 {
        "too many waited for the Receiver".to_string()
    } else {
        format!(
            "{} because the queue from the audio thread was full",
            format::count(queue_full)
        )
    };
    Some(Cell::new(
        format!("{} events ({why})", format::count(total)),
        Tone::Bad,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::editor::demo;

    /// The Receiver's default silence timeout, ns.
    const TIMEOUT_NS: u64 = 2_000_000_000;

    #[test]
    fn a_silent_peer_goes_stale_before_it_is_forgotten() {
        let mut p = demo::receiver_status().peers[0].clone();
        for timeout in [500_000_000, TIMEOUT_NS, 30_000_000_000] {
            let stale = stale_after(timeout);
            assert!(stale > 0 && stale < timeout, "{timeout}");
            p.last_seen_ns = stale - 1;
            assert!(!PeerRow::new(&p, stale).stale);
            p.last_seen_ns = stale;
            assert!(PeerRow::new(&p, stale).stale);
            // Still in the table (not forgotten) and already shown stale.
            p.last_seen_ns = timeout - 1;
            assert!(PeerRow::new(&p, stale).stale);
        }
    }

    #[test]
    fn peer_rows_follow_the_status() {
        let s = demo::receiver_status();
        let rows = peer_rows(&s, TIMEOUT_NS / 2);
        assert_eq!(rows.len(), 3);
        assert!(rows.windows(2).all(|w| w[0].slot < w[1].slot));
        let slowest: Vec<_> = rows.iter().filter(|r| r.slowest).collect();
        assert_eq!(slowest.len(), 1, "exactly one peer sets the delay");
        assert_eq!(slowest[0].p99.tone, Tone::Warn);
        assert!(rows.iter().all(|r| r.p50.text.parse::<f64>().is_ok()));
        let ntp = rows.iter().find(|r| r.clock.text.ends_with("NTP")).unwrap();
        assert!(ntp.clock.text.starts_with('±'));
        assert!(ntp.clock_hint.contains("NTP"));
    }

    #[test]
    fn unknown_values_show_a_dash_and_stale_peers_grey_out() {
        let mut p = demo::receiver_status().peers[0].clone();
        p.latency_p50_ns = None;
        p.latency_p99_ns = None;
        p.clock = ClockSource::None;
        p.name = "  ".into();
        p.last_seen_ns = stale_after(TIMEOUT_NS) + 1;
        let r = PeerRow::new(&p, stale_after(TIMEOUT_NS));
        assert_eq!(r.p50.text, UNKNOWN);
        assert_eq!(r.p99.text, UNKNOWN);
        assert_eq!(r.offset.text, UNKNOWN);
        assert_eq!(r.clock.text, "none");
        assert_eq!(r.clock.tone, Tone::Warn);
        assert_eq!(r.name, format!("Sender {}", p.slot + 1));
        assert!(r.stale);
        assert_eq!(r.seen.tone, Tone::Warn);
        assert_eq!(r.jitter.tone, Tone::Weak);
    }

    #[test]
    fn loss_and_lateness_are_graded() {
        let mut p = demo::receiver_status().peers[0].clone();
        for (pct, tone) in [
            (0.0, Tone::Normal),
            (1.0, Tone::Normal),
            (1.5, Tone::Warn),
            (5.0, Tone::Warn),
            (12.0, Tone::Bad),
        ] {
            p.loss_pct = pct;
            p.late_pct = pct;
            let r = PeerRow::new(&p, stale_after(TIMEOUT_NS));
            assert_eq!(r.loss.tone, tone, "{pct} %");
            assert_eq!(r.late.tone, tone, "{pct} %");
        }
    }

    #[test]
    fn clock_quality_thresholds() {
        assert_eq!(clock_quality(ClockSource::None, 0).text, "not synced yet");
        assert_eq!(clock_quality(ClockSource::Direct, 300_000).tone, Tone::Good);
        assert_eq!(clock_quality(ClockSource::Ntp, 3_000_000).tone, Tone::Warn);
        assert_eq!(clock_quality(ClockSource::Ntp, 30_000_000).text, "poor");
    }

    #[test]
    fn delay_is_broken_into_its_parts() {
        let s = demo::receiver_status();
        let v = DelayView::new(&s.delay, &s.peers);
        assert_eq!(v.total, "130.6 ms");
        assert_eq!(
            v.parts,
            "slowest player 120.3 ms + block 5.3 ms + margin 5.0 ms"
        );
        assert_eq!(v.slowest_name.as_deref(), Some("Chloé (Montréal)"));
        assert_eq!(v.moving, None);

        let fixed = DelayStatus {
            fixed: true,
            margin_ns: 50_000_000,
            block_ns: 0,
            slowest_ns: None,
            target_ns: 50_000_000,
            applied_ns: 50_000_000,
        };
        let v = DelayView::new(&fixed, &[]);
        assert_eq!(v.total, "50.0 ms");
        assert_eq!(v.parts, "fixed: Default delay 50.0 ms");
        assert_eq!(v.slowest_name, None);

        let alone = DelayStatus {
            fixed: false,
            margin_ns: 5_000_000,
            block_ns: 0,
            slowest_ns: None,
            target_ns: 5_000_000,
            applied_ns: 30_000_000,
        };
        let v = DelayView::new(&alone, &[]);
        assert_eq!(v.parts, "margin 5.0 ms only: no player yet");
        assert_eq!(
            v.moving.as_deref(),
            Some("lowering to 5.0 ms at the next silence")
        );
    }

    #[test]
    fn listen_state_in_words() {
        assert_eq!(
            listen(&ListenState::Listening(47800), 47800).tone,
            Tone::Good
        );
        assert_eq!(
            listen(&ListenState::Listening(47800), 47801).tone,
            Tone::Warn
        );
        let busy = listen(&ListenState::PortInUse(47800), 47800);
        assert_eq!(busy.tone, Tone::Bad);
        assert!(busy.text.contains("in use"));
        assert!(
            busy.text.ends_with(&format::every(REBIND_EVERY_NS)),
            "says how often it retries, as the network thread does: {}",
            busy.text
        );
        let err = listen(&ListenState::Error("permission denied".into()), 80);
        assert!(err.text.contains("permission denied"));
        assert_eq!(listen(&ListenState::Stopped, 1).tone, Tone::Weak);
    }

    #[test]
    fn ntp_in_words() {
        assert_eq!(ntp(Some((1, 2)), "").text, "off");
        assert_eq!(ntp(None, "pool.ntp.org").text, "waiting for pool.ntp.org");
        let c = ntp(Some((1_200_000, 3_000_000)), "pool.ntp.org");
        assert_eq!(c.text, "+1.2 ms ±3.0 ms (fair)");
    }

    #[test]
    fn dropped_events_total_and_reasons() {
        let mut s = ReceiverStatus::default();
        assert_eq!(events_dropped(&s), None);
        s.events_dropped = vec![("queue full", 0), ("out of time window", 0)];
        assert_eq!(events_dropped(&s), None);
        s.events_dropped = vec![("queue full", 2), ("out of time window", 1_500)];
        let (total, why) = events_dropped(&s).expect("some dropped");
        assert_eq!(total, format::count(1_502));
        assert_eq!(
            why,
            format!(
                "Events received but not played\nout of time window: {}\nqueue full: 2",
                format::count(1_500)
            )
        );
    }

    #[test]
    fn rejected_lists_nonzero_reasons_most_first() {
        let mut s = ReceiverStatus::default();
        assert!(rejected(&s).is_empty());
        s.rejected = vec![("bad magic", 3), ("duplicate", 0), ("too short", 12)];
        assert_eq!(
            rejected(&s),
            vec![
                ("too short", "12".to_string()),
                ("bad magic", "3".to_string())
            ]
        );
    }

    #[test]
    fn sender_link_and_clock_in_words() {
        let mut s = demo::sender_status();
        let (c, hint) = link(&s);
        assert_eq!(c.tone, Tone::Good);
        assert!(c.text.starts_with("Connected to "));
        assert!(hint.is_none());
        let (off, q) = sender_clock(&s);
        assert!(off.starts_with('+') || off.starts_with('-'));
        assert_eq!(q.text, "good, direct exchange");

        s.link = LinkState::Refused;
        let (c, hint) = link(&s);
        assert_eq!(c.text, "Refused: wrong room code");
        assert!(hint.unwrap().contains("room code"));
        s.link = LinkState::NoReply;
        assert_eq!(link(&s).0.tone, Tone::Warn);
        s.link = LinkState::NoDestination("no such host".into());
        assert!(link(&s).0.text.contains("no such host"));
        s.clock = ClockSource::None;
        assert_eq!(sender_clock(&s).0, UNKNOWN);
    }

    #[test]
    fn activity_light_blinks_on_new_events() {
        let mut a = Activity::default();
        assert!(!a.update(10, 0.0), "the first count only sets the baseline");
        assert!(!a.update(10, 0.1));
        assert_eq!(a.remaining(0.1), None);
        assert!(a.update(11, 0.2));
        assert!(a.lit());
        let left = a.remaining(0.2).unwrap();
        assert!((left - Activity::HOLD_S).abs() < 1e-9, "{left}");
        assert!(a.update(11, 0.3));
        assert!(!a.update(11, 0.2 + Activity::HOLD_S + 0.01));
        assert!(!a.lit());
    }

    #[test]
    fn dropped_events_say_why() {
        assert_eq!(dropped(0, 0), None);
        let d = dropped(12, 12).unwrap();
        assert_eq!(
            d.text,
            "12 events (the queue from the audio thread was full)"
        );
        assert_eq!(d.tone, Tone::Bad);
        assert_eq!(
            dropped(7, 0).unwrap().text,
            "7 events (too many waited for the Receiver)"
        );
        assert_eq!(
            dropped(10, 4).unwrap().text,
            "10 events (4 because the queue from the audio thread was full)"
        );
        // The live count can be ahead of the snapshot: never fewer in all than from the queue.
        assert_eq!(dropped(3, 5).unwrap().text, dropped(5, 5).unwrap().text);
    }
}
