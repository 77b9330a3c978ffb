//! The Receiver's table of senders, keyed by their random 64-bit sender id.
//!
//! Fixed capacity ([`MAX_PEERS`]): a new sender beyond it is refused and counted, so memory
//! stays bounded whatever arrives. Each peer has a small slot number (`0..MAX_PEERS`) and a
//! generation (bumped each time the slot is given to a new sender) that the audio thread uses
//! to refer to it without strings or maps: an item of a peer that was ended is recognised by
//! its old generation and dropped. Generations are 64-bit and only grow, so however many
//! senders come and go while the audio thread is not looking, a newer one never looks older.
//! Senders that left are remembered in rings of [`TOMBSTONES`] ids, so that replaying their
//! datagrams cannot bring them back: one ring for senders that joined sealed (only holders of
//! the room code can push into it) and one for plain ones, so that strangers churning plain
//! ids through an open room cannot push a sealed sender's tombstone out.

use super::limit::TokenBucket;
use super::replay::ReplayWindow;
use super::seen::SeenEvents;
use super::wire::ClockReport;
use crate::timing::jitter::Jitter;
use crate::timing::latency::LatencyWindow;
use crate::timing::windowed::{WindowedMax, WindowedMin};
use std::net::SocketAddr;

/// Most senders one Receiver tracks at once.
pub const MAX_PEERS: usize = 32;
/// A peer silent for this long is forgotten and its notes ended, unless configured otherwise
/// (the Receiver's "Silence timeout" parameter), ns. Senders send at least ten datagrams a
/// second (clock requests), so this is eight missed in a row.
pub const DEFAULT_PEER_TIMEOUT_NS: u64 = 2_000_000_000;
/// Ids of departed senders remembered, in each of the two rings (sealed, plain).
pub const TOMBSTONES: usize = 256;
/// Datagrams per second one peer may send: a Sender at 64-sample blocks and 96 kHz sends 1,500
/// Events datagrams a second at most; honest ones send far fewer.
pub const PEER_RATE: f64 = 2000.0;
/// Burst allowance of that rate.
pub const PEER_BURST: f64 = 256.0;
/// Half-window of the fastest transit kept for senders without clock information, ns.
const BASE_BUCKET_NS: u64 = 5_000_000_000;
/// Half-window of the largest hold kept, ns.
const HOLD_BUCKET_NS: u64 = 5_000_000_000;
/// Longest wait of an event in its Sender that counts towards the delay, ns.
pub const MAX_HOLD_NS: i64 = 100_000_000;
/// Most a single peer can ask of the common playout delay, ns: a player whose path needs more
/// (or who claims to) cannot drag everybody's delay past 2 s; their events then arrive late
/// (and past [`MAX_LATE_NS`](super::receiver::MAX_LATE_NS), out of the window). Two seconds
/// covers any terrestrial path and a geostationary satellite hop (about 0.6 s) with room.
pub const MAX_NEED_NS: i64 = 2_000_000_000;
/// The placement shift a mapping change may cause at most, ns (see [`Peer::place`]): a clock
/// basis change moves a peer's timeline by its path's delay at most; more is a gross clock
/// error, not worth holding its events back for.
pub const MAX_SHIFT_NS: u64 = 500_000_000;
/// The placement shift shrinks by this fraction of the time between consecutive events: the
/// spacing of notes is kept within 5 %, the limit [`crate::timing::playout`] also keeps when
/// the delay falls (after Ramjee, Kurose, Towsley and Schulzrinne, INFOCOM 1994).
pub const SHIFT_SLEW: u64 = 20;
/// Events in the latency window from which their p99 alone sets a peer's need.
pub const MIN_EVENT_SAMPLES: usize = 32;
/// Window of the events-per-second figure, ns.
const RATE_WINDOW_NS: u64 = 2_000_000_000;

/// How a peer's origin times are converted to the Receiver's timeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClockBasis {
    /// The direct clock exchange between that Sender and this Receiver.
    Direct,
    /// Both machines' NTP offsets to UTC.
    Ntp,
    /// No clock information: the fastest transit seen stands for "latency zero". Latency is then
    /// the excess over the fastest datagram: jitter, not true one-way delay.
    FastestTransit,
}

/// What the Receiver knows of one sender.
#[derive(Clone, Debug)]
pub struct Peer {
    /// The sender's random id (from every datagram header).
    pub sender_id: u64,
    /// Generation of its slot (see the module documentation).
    pub gen: u64,
    /// Whether it joined with a sealed datagram (authenticated with the room key): its later
    /// datagrams must be sealed too, so that in an open room nobody can speak in its name.
    pub sealed: bool,
    /// Where its last datagram came from (it may change: NAT rebinding, roaming).
    pub addr: SocketAddr,
    /// Display name from its State, at most 64 bytes.
    pub name: String,
    /// Receiver time of its first and last accepted datagram.
    pub joined_at: u64,
    /// Receiver time of its last accepted datagram.
    pub last_seen: u64,
    /// Duplicate filter over datagram sequence numbers.
    pub window: ReplayWindow,
    /// Duplicate filter and loss count over event numbers.
    pub seen: SeenEvents,
    /// Its datagram rate limit.
    pub limiter: TokenBucket,
    /// Lowest and highest datagram sequence number accepted (for the loss figure).
    pub seq_range: Option<(u64, u64)>,
    /// Datagrams accepted.
    pub datagrams: u64,
    /// Distinct events received.
    pub events: u64,
    /// Its events the audio thread played after their time (from the audio thread's count of
    /// its slot, [`crate::bridge::ReceiverShared::late_by_slot`], minus `late_base`).
    pub late: u64,
    /// The audio thread's late count of its slot when it joined.
    pub late_base: u64,
    /// Events received in the current rate window, and when it began.
    pub rate_window: (u64, u64),
    /// Events per second over the last complete rate window.
    pub events_per_s: f64,
    /// `arrival - send time` minimum over its datagrams: the fastest transit plus the clock
    /// offset between the two machines. `None` until the first datagram.
    pub base_offset: Option<WindowedMin>,
    /// The sender's latest clock estimate (direct exchange with us, or NTP).
    pub clock: Option<ClockReport>,
    /// How this peer's origin times are put on our timeline right now.
    pub basis: ClockBasis,
    /// One-way latency of its events (arrival minus origin, both on our timeline), ns.
    pub latency: LatencyWindow,
    /// One-way latency of its datagrams (arrival minus send time), ns.
    pub net: LatencyWindow,
    /// RFC 3550 interarrival jitter of its datagrams.
    pub jitter: Jitter,
    /// Longest wait of its events in the Sender, as it announces it, ns.
    pub hold_announced: Option<u64>,
    /// Longest wait of its events in the Sender, as measured (send time - origin), ns.
    pub hold_seen: Option<WindowedMax>,
    /// Latest due time of anything forwarded to the audio thread (its end goes after it).
    pub last_due: u64,
    /// The latest event placed so far: its origin (the Sender's clock) and the due time it
    /// was given. The next events are placed no earlier (see [`Peer::place`]).
    pub anchor: Option<(u64, u64)>,
    /// How much later than the clock mapping says its events are placed right now, ns: set
    /// when the mapping moves earlier (a better clock basis, a corrected estimate), so that
    /// nothing plays before what was placed already, and let go of gradually.
    pub shift_ns: u64,
    /// Event number of the newest snapshot forwarded.
    pub reconciled: Option<u64>,
    /// Notes it holds, from its latest snapshot.
    pub held_notes: u32,
}

impl Peer {
    fn new(sender_id: u64, gen: u64, addr: SocketAddr, now: u64, sealed: bool) -> Self {
        Self {
            sender_id,
            gen,
            sealed,
            addr,
            name: String::with_capacity(super::wire::NAME_MAX),
            joined_at: now,
            last_seen: now,
            window: ReplayWindow::new(),
            seen: SeenEvents::new(),
            limiter: TokenBucket::new(PEER_RATE, PEER_BURST),
            seq_range: None,
            datagrams: 0,
            events: 0,
            late: 0,
            late_base: 0,
            rate_window: (now, 0),
            events_per_s: 0.0,
            base_offset: None,
            clock: None,
            basis: ClockBasis::FastestTransit,
            latency: LatencyWindow::new(),
            net: LatencyWindow::new(),
            jitter: Jitter::new(),
            hold_announced: None,
            hold_seen: None,
            last_due: 0,
            anchor: None,
            shift_ns: 0,
            reconciled: None,
            held_notes: 0,
        }
    }

    /// Records an accepted datagram with sequence number `seq`, sent at `sent` (its clock),
    /// arriving at `now`.
    pub fn datagram(&mut self, now: u64, seq: u64, sent: u64) {
        self.last_seen = now;
        self.datagrams += 1;
        self.seq_range = Some(match self.seq_range {
            None => (seq, seq),
            Some((lo, hi)) => (lo.min(seq), hi.max(seq)),
        });
        let transit = now.wrapping_sub(sent) as i64;
        match &mut self.base_offset {
            Some(m) => m.push(now, transit),
            None => self.base_offset = Some(WindowedMin::new(BASE_BUCKET_NS, now, transit)),
        }
        self.jitter.update(transit);
    }

    /// Records `n` new events arriving at `now`.
    pub fn count_events(&mut self, now: u64, n: u64) {
        self.events += n;
        let (start, count) = self.rate_window;
        if now.saturating_sub(start) >= RATE_WINDOW_NS {
            self.events_per_s = count as f64 * 1e9 / now.saturating_sub(start).max(1) as f64;
            self.rate_window = (now, n);
        } else {
            self.rate_window.1 += n;
        }
    }

    /// Records how long an event waited in the Sender (send time - origin), ns. A wait longer
    /// than [`MAX_HOLD_NS`] is not the Sender's usual pace (it had no Receiver to send to, or
    /// its host stalled) and is left out.
    pub fn hold(&mut self, now: u64, hold_ns: i64) {
        if hold_ns > MAX_HOLD_NS {
            return;
        }
        match &mut self.hold_seen {
            Some(m) => m.push(now, hold_ns),
            None => self.hold_seen = Some(WindowedMax::new(HOLD_BUCKET_NS, now, hold_ns)),
        }
    }

    /// The due time of an event with origin `origin` (the Sender's clock) whose origin on our
    /// timeline is `mapped` by the current clock mapping (`map` maps any Sender time the same
    /// way). Never earlier than an event with an earlier origin was placed, so that when the
    /// mapping moves earlier (a fastest-transit estimate replaced by the direct exchange, NTP
    /// by the direct exchange, a restarted filter, a corrected estimate) nothing already
    /// queued is overtaken: the events are placed later by the move, and the shift is then let
    /// go of by 1/[`SHIFT_SLEW`] of the time between events, so their spacing stays within
    /// 5 %. A move later applies at once (it only leaves a gap).
    pub fn place(&mut self, origin: u64, mapped: u64, map: impl Fn(u64) -> u64) -> u64 {
        if let Some((a_origin, a_due)) = self.anchor {
            let a_now = map(a_origin).saturating_add(self.shift_ns);
            if a_now < a_due {
                self.shift_ns = (self.shift_ns + (a_due - a_now)).min(MAX_SHIFT_NS);
            } else {
                self.shift_ns = self.shift_ns.saturating_sub(a_now - a_due);
            }
            if origin > a_origin {
                self.shift_ns = self
                    .shift_ns
                    .saturating_sub((origin - a_origin) / SHIFT_SLEW);
            }
        }
        let due = mapped.saturating_add(self.shift_ns);
        if self.anchor.is_none_or(|(a, _)| origin >= a) {
            self.anchor = Some((origin, due));
        }
        due
    }

    /// Share of its datagrams that never arrived, percent.
    pub fn loss_pct(&self) -> f64 {
        match self.seq_range {
            Some((lo, hi)) => {
                // (In f64: the numbers come from the network, and 0 to u64::MAX is 2^64.)
                let expected = (hi - lo) as f64 + 1.0;
                (100.0 * (expected - self.datagrams as f64) / expected).max(0.0)
            }
            None => 0.0,
        }
    }

    /// What this peer needs of the playout delay at `now`, ns: the p99 of its events'
    /// latency; while it has played too little in the last ten seconds for that to mean much,
    /// at least the p99 of its datagrams' network latency plus the longest time its events
    /// wait in the Sender. So the delay is right before anyone plays. Never more than
    /// [`MAX_NEED_NS`].
    pub fn needs(&mut self, now: u64) -> Option<i64> {
        self.needs_uncapped(now).map(|n| n.min(MAX_NEED_NS))
    }

    fn needs_uncapped(&mut self, now: u64) -> Option<i64> {
        let events = self.latency.p99(now);
        if self.latency.len(now) >= MIN_EVENT_SAMPLES {
            return events;
        }
        let hold = self
            .hold_seen
            .map(|m| m.get())
            .max(self.hold_announced.map(|h| h.min(i64::MAX as u64) as i64))
            .unwrap_or(0)
            .max(0);
        let net = self.net.p99(now).map(|n| n.saturating_add(hold));
        events.max(net)
    }
}

/// Why a peer could not be added.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableFull;

/// A departed sender, remembered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Tombstone {
    /// Its id.
    sender_id: u64,
    /// The highest datagram number accepted from it.
    top: u64,
    /// It said goodbye: nothing more of it is accepted, whatever its number. (A sender
    /// forgotten for silence may come back with higher numbers; a kicked one is kept out by
    /// the Receiver's bans.)
    last_word: bool,
}

/// A ring of [`TOMBSTONES`] departed senders, allocated once.
#[derive(Debug)]
struct Tombstones {
    /// The departed, at most [`TOMBSTONES`].
    ring: Vec<Tombstone>,
    /// Next ring position to overwrite once full.
    next: usize,
}

impl Tombstones {
    fn new() -> Self {
        Self {
            ring: Vec::with_capacity(TOMBSTONES),
            next: 0,
        }
    }

    fn push(&mut self, t: Tombstone) {
        if self.ring.len() < TOMBSTONES {
            self.ring.push(t);
        } else {
            self.ring[self.next] = t;
        }
        self.next = (self.next + 1) % TOMBSTONES;
    }

    fn is_gone(&self, sender_id: u64, seq: u64) -> bool {
        self.ring
            .iter()
            .any(|t| t.sender_id == sender_id && (t.last_word || seq <= t.top))
    }
}

/// The senders a Receiver currently hears, in [`MAX_PEERS`] fixed slots.
#[derive(Debug)]
pub struct PeerTable {
    /// Slot `i` holds the peer the audio thread knows as `i`.
    slots: Vec<Option<Peer>>,
    /// Generation of each slot: bumped when the slot gets a new peer.
    gens: [u64; MAX_PEERS],
    /// Departed senders that had joined sealed (index 0) and plain (index 1).
    tombstones: [Tombstones; 2],
}

impl Default for PeerTable {
    fn default() -> Self {
        Self::new()
    }
}

impl PeerTable {
    /// An empty table with all its slots allocated.
    pub fn new() -> Self {
        Self {
            slots: (0..MAX_PEERS).map(|_| None).collect(),
            gens: [0; MAX_PEERS],
            tombstones: [Tombstones::new(), Tombstones::new()],
        }
    }

    /// The slot of `sender_id`, if known.
    pub fn find(&self, sender_id: u64) -> Option<usize> {
        self.slots
            .iter()
            .position(|p| p.as_ref().is_some_and(|p| p.sender_id == sender_id))
    }

    /// Whether a datagram numbered `seq` from `sender_id` belongs to a sender that left (or
    /// was forgotten) recently: a replay. A sender that was forgotten after a silence (a
    /// network outage longer than the timeout) and is still there sends higher numbers, and
    /// is welcome back; one that said goodbye or was kicked is not.
    pub fn is_gone(&self, sender_id: u64, seq: u64) -> bool {
        self.tombstones.iter().any(|t| t.is_gone(sender_id, seq))
    }

    /// Adds a new sender, which joins with a `sealed` datagram or a plain one, and returns
    /// its slot.
    pub fn insert(
        &mut self,
        sender_id: u64,
        addr: SocketAddr,
        now: u64,
        sealed: bool,
    ) -> Result<usize, TableFull> {
        let i = self
            .slots
            .iter()
            .position(Option::is_none)
            .ok_or(TableFull)?;
        // (2^64 joins: never.)
        self.gens[i] += 1;
        self.slots[i] = Some(Peer::new(sender_id, self.gens[i], addr, now, sealed));
        Ok(i)
    }

    /// The peer in slot `i`.
    pub fn get(&self, i: usize) -> Option<&Peer> {
        self.slots.get(i).and_then(Option::as_ref)
    }

    /// The peer in slot `i`, mutably.
    pub fn get_mut(&mut self, i: usize) -> Option<&mut Peer> {
        self.slots.get_mut(i).and_then(Option::as_mut)
    }

    /// Forgets the peer in slot `i`, remembers its id as departed, and returns it. After its
    /// `last_word` (a goodbye) nothing more of it is accepted; otherwise it may come back
    /// with higher numbers.
    pub fn remove(&mut self, i: usize, last_word: bool) -> Option<Peer> {
        let p = self.slots.get_mut(i).and_then(Option::take)?;
        self.tombstones[usize::from(!p.sealed)].push(Tombstone {
            sender_id: p.sender_id,
            top: p.window.top().unwrap_or(0),
            last_word,
        });
        Some(p)
    }

    /// Departed senders remembered (both rings).
    pub fn tombstones(&self) -> usize {
        self.tombstones.iter().map(|t| t.ring.len()).sum()
    }

    /// Slots of peers silent since before `now - timeout`.
    pub fn silent(&self, now: u64, timeout: u64) -> impl Iterator<Item = usize> + '_ {
        self.iter()
            .filter(move |(_, p)| now.saturating_sub(p.last_seen) > timeout)
            .map(|(i, _)| i)
    }

    /// The earliest time a peer may time out, for `poll_timeout`.
    pub fn next_expiry(&self, timeout: u64) -> Option<u64> {
        self.iter().map(|(_, p)| p.last_seen + timeout + 1).min()
    }

    /// Occupied slots and their peers.
    pub fn iter(&self) -> impl Iterator<Item = (usize, &Peer)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, p)| p.as_ref().map(|p| (i, p)))
    }

    /// Occupied slots and their peers, mutably.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (usize, &mut Peer)> {
        self.slots
            .iter_mut()
            .enumerate()
            .filter_map(|(i, p)| p.as_mut().map(|p| (i, p)))
    }

    /// Number of peers.
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// Whether no peer is known.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn capacity_generations_and_tombstones() {
        let mut t = PeerTable::new();
        for id in 0..MAX_PEERS as u64 {
            assert_eq!(t.insert(id, addr(1), 0, true), Ok(id as usize));
        }
        assert_eq!(t.insert(999, addr(1), 0, true), Err(TableFull));
        assert_eq!(t.find(5), Some(5));
        let g = t.get(5).unwrap().gen;
        t.get_mut(5).unwrap().window.accept(40);
        let gone = t.remove(5, false).unwrap();
        assert_eq!(gone.sender_id, 5);
        assert!(t.is_gone(5, 40));
        assert!(t.is_gone(5, 3));
        assert!(
            !t.is_gone(5, 41),
            "a forgotten sender that goes on is welcome back"
        );
        assert_eq!(t.insert(999, addr(2), 0, true), Ok(5));
        assert_ne!(
            t.get(5).unwrap().gen,
            g,
            "a reused slot has a new generation"
        );
        assert_eq!(t.len(), MAX_PEERS);
        // The rings of departed ids are bounded.
        for id in 0..(TOMBSTONES as u64 + 10) {
            let s = t.insert(10_000 + id, addr(3), 0, true).unwrap_or_else(|_| {
                t.remove(0, false);
                t.insert(10_000 + id, addr(3), 0, true).unwrap()
            });
            t.remove(s, false);
        }
        assert!(t.tombstones() <= 2 * TOMBSTONES);
        assert!(t.is_gone(10_000 + TOMBSTONES as u64 + 9, 0));
        // After a goodbye, higher numbers do not bring a sender back either.
        let s = t.insert(77, addr(4), 0, true).unwrap();
        t.get_mut(s).unwrap().window.accept(3);
        t.remove(s, true);
        assert!(t.is_gone(77, 4) && t.is_gone(77, u64::MAX));
    }

    #[test]
    fn plain_churn_cannot_push_out_a_sealed_tombstone() {
        let mut t = PeerTable::new();
        let s = t.insert(1, addr(1), 0, true).unwrap();
        t.get_mut(s).unwrap().window.accept(50);
        t.remove(s, false);
        for id in 0..10 * TOMBSTONES as u64 {
            let s = t.insert(1_000 + id, addr(2), 0, false).unwrap();
            t.remove(s, false);
        }
        assert!(
            t.is_gone(1, 50),
            "the sealed sender's replays are still refused"
        );
        assert!(t.tombstones() <= 2 * TOMBSTONES);
    }

    #[test]
    fn generations_only_grow() {
        let mut t = PeerTable::new();
        let mut last = 0;
        // More joins of one slot than a 16-bit generation can tell apart.
        for id in 0..70_000u64 {
            let s = t.insert(id, addr(1), 0, false).unwrap();
            assert_eq!(s, 0);
            let g = t.get(s).unwrap().gen;
            assert!(g > last);
            last = g;
            t.remove(s, false);
        }
    }

    #[test]
    fn silent_peers_and_loss() {
        let mut t = PeerTable::new();
        t.insert(1, addr(1), 0, true).unwrap();
        let j = t.insert(2, addr(2), 0, true).unwrap();
        let p = t.get_mut(j).unwrap();
        for seq in [0, 1, 2, 4, 5, 9] {
            p.datagram(5_000_000_000, seq, 4_990_000_000);
        }
        assert!((p.loss_pct() - 40.0).abs() < 1e-9);
        assert_eq!(
            t.next_expiry(DEFAULT_PEER_TIMEOUT_NS),
            Some(DEFAULT_PEER_TIMEOUT_NS + 1)
        );
        let silent: Vec<_> = t
            .silent(DEFAULT_PEER_TIMEOUT_NS + 1, DEFAULT_PEER_TIMEOUT_NS)
            .collect();
        assert_eq!(silent, vec![0]);
    }

    #[test]
    fn loss_over_the_whole_range_of_numbers() {
        // Found by the `receive` fuzz target: datagrams numbered 0 and u64::MAX overflowed
        // the count of datagrams expected.
        let mut t = PeerTable::new();
        let i = t.insert(1, addr(1), 0, true).unwrap();
        let p = t.get_mut(i).unwrap();
        p.datagram(1, 0, 0);
        p.datagram(2, u64::MAX, 1);
        let loss = p.loss_pct();
        assert!(loss > 99.999 && loss <= 100.0 + 1e-9, "{loss}");
    }

    #[test]
    fn needs_covers_the_idle_case() {
        let mut t = PeerTable::new();
        let i = t.insert(1, addr(1), 0, true).unwrap();
        let p = t.get_mut(i).unwrap();
        assert_eq!(p.needs(0), None);
        p.net.push(0, 40_000_000);
        p.hold_announced = Some(2_000_000);
        assert_eq!(p.needs(0), Some(42_000_000));
        p.latency.push(0, 45_000_000);
        assert_eq!(p.needs(0), Some(45_000_000));
    }
}
