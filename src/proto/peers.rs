//! The Receiver's table of senders, keyed by their random 64-bit sender id.
//!
//! Fixed capacity ([`MAX_PEERS`]): a new sender beyond it is refused and counted, so memory
//! stays bounded whatever arrives. Each peer has a small slot number (`0..MAX_PEERS`) that the
//! audio thread uses to refer to it without strings or maps.

use super::replay::ReplayWindow;
use super::wire::ClockReport;
use crate::timing::jitter::Jitter;
use crate::timing::latency::LatencyWindow;
use std::net::SocketAddr;

/// Most senders one Receiver tracks at once.
pub const MAX_PEERS: usize = 32;
/// A peer silent for this long is forgotten (ns). Senders send a Hello every second, so ten
/// missed heartbeats mean the sender is gone.
pub const PEER_TIMEOUT_NS: u64 = 10_000_000_000;

/// Minimum of `arrival - origin` over a sliding window of about 5 to 10 s, in ns.
///
/// Two buckets that rotate every [`Self::BUCKET_NS`] (the "two-window minimum" used by
/// LEDBAT, RFC 6817 §3.4.2, for its base delay): the minimum is that of the current and the
/// previous bucket, so an old, fast sample ages out and the estimate follows a route or clock
/// that changes, without storing every sample.
#[derive(Clone, Copy, Debug)]
pub struct WindowedMin {
    /// Start of the current bucket (ns, Receiver timeline).
    bucket_start: u64,
    /// Minimum of the current bucket.
    current: i64,
    /// Minimum of the previous bucket.
    previous: i64,
}

impl WindowedMin {
    /// Length of one bucket.
    pub const BUCKET_NS: u64 = 5_000_000_000;

    /// A window holding one sample.
    pub fn new(now: u64, sample: i64) -> Self {
        Self {
            bucket_start: now,
            current: sample,
            previous: i64::MAX,
        }
    }

    /// Adds a sample taken at `now`.
    pub fn push(&mut self, now: u64, sample: i64) {
        let age = now.saturating_sub(self.bucket_start);
        if age >= 2 * Self::BUCKET_NS {
            self.previous = i64::MAX;
            self.current = sample;
            self.bucket_start = now;
        } else if age >= Self::BUCKET_NS {
            self.previous = self.current;
            self.current = sample;
            self.bucket_start = now;
        } else {
            self.current = self.current.min(sample);
        }
    }

    /// The minimum over the window.
    pub fn get(&self) -> i64 {
        self.current.min(self.previous)
    }
}

/// What the Receiver knows of one sender.
#[derive(Clone, Debug)]
pub struct Peer {
    /// The sender's random id (from every datagram header).
    pub sender_id: u64,
    /// Where its last datagram came from (it may change: NAT rebinding, roaming).
    pub addr: SocketAddr,
    /// Display name from its Hello, at most 64 bytes.
    pub name: String,
    /// Receiver time of its last accepted datagram.
    pub last_seen: u64,
    /// Duplicate filter over datagram sequence numbers.
    pub window: ReplayWindow,
    /// `arrival - origin` minimum: the fastest transit seen plus the clock offset between the
    /// two machines. `None` until the first event.
    pub base_offset: Option<WindowedMin>,
    /// Next event sequence number expected (for loss counting).
    pub next_event_seq: Option<u64>,
    /// Events received.
    pub events: u64,
    /// Events missing from the sequence (lost or still on their way when counted).
    pub events_lost: u64,
    /// Datagrams accepted.
    pub datagrams: u64,
    /// The sender's latest clock estimate (direct exchange with us, or NTP).
    pub clock: Option<ClockReport>,
    /// How this peer's origin times are put on our timeline right now.
    pub basis: ClockBasis,
    /// One-way latency of its events (arrival minus origin, both on our timeline), ns.
    pub latency: LatencyWindow,
    /// RFC 3550 interarrival jitter of its events.
    pub jitter: Jitter,
    /// Events that arrived after their playout time.
    pub late: u64,
}

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

impl Peer {
    fn new(sender_id: u64, addr: SocketAddr, now: u64) -> Self {
        Self {
            sender_id,
            addr,
            name: String::new(),
            last_seen: now,
            window: ReplayWindow::new(),
            base_offset: None,
            next_event_seq: None,
            events: 0,
            events_lost: 0,
            datagrams: 0,
            clock: None,
            basis: ClockBasis::FastestTransit,
            latency: LatencyWindow::new(),
            jitter: Jitter::new(),
            late: 0,
        }
    }
}

/// Why a peer could not be added.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableFull;

/// The senders a Receiver currently hears, in [`MAX_PEERS`] fixed slots.
#[derive(Debug)]
pub struct PeerTable {
    /// Slot `i` holds the peer the audio thread knows as `i`.
    slots: Vec<Option<Peer>>,
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
        }
    }

    /// The slot of `sender_id`, if known.
    pub fn find(&self, sender_id: u64) -> Option<usize> {
        self.slots
            .iter()
            .position(|p| p.as_ref().is_some_and(|p| p.sender_id == sender_id))
    }

    /// The slot of `sender_id`, adding it when new.
    pub fn find_or_insert(
        &mut self,
        sender_id: u64,
        addr: SocketAddr,
        now: u64,
    ) -> Result<usize, TableFull> {
        if let Some(i) = self.find(sender_id) {
            return Ok(i);
        }
        let i = self
            .slots
            .iter()
            .position(Option::is_none)
            .ok_or(TableFull)?;
        self.slots[i] = Some(Peer::new(sender_id, addr, now));
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

    /// Forgets the peer in slot `i` and returns it.
    pub fn remove(&mut self, i: usize) -> Option<Peer> {
        self.slots.get_mut(i).and_then(Option::take)
    }

    /// Forgets peers silent since before `now - timeout` and returns how many went.
    pub fn expire(&mut self, now: u64, timeout: u64) -> usize {
        let mut n = 0;
        for s in &mut self.slots {
            if s.as_ref()
                .is_some_and(|p| now.saturating_sub(p.last_seen) > timeout)
            {
                *s = None;
                n += 1;
            }
        }
        n
    }

    /// The earliest time a peer may expire, for `poll_timeout`.
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
    fn capacity_is_bounded_and_slots_are_reused() {
        let mut t = PeerTable::new();
        for id in 0..MAX_PEERS as u64 {
            t.find_or_insert(id, addr(1), 0).unwrap();
        }
        assert_eq!(t.find_or_insert(999, addr(1), 0), Err(TableFull));
        assert_eq!(t.find_or_insert(5, addr(1), 0), Ok(5));
        let gone = t.remove(5).unwrap();
        assert_eq!(gone.sender_id, 5);
        assert_eq!(t.find_or_insert(999, addr(2), 0), Ok(5));
        assert_eq!(t.len(), MAX_PEERS);
    }

    #[test]
    fn silent_peers_expire() {
        let mut t = PeerTable::new();
        t.find_or_insert(1, addr(1), 0).unwrap();
        let j = t.find_or_insert(2, addr(2), 0).unwrap();
        t.get_mut(j).unwrap().last_seen = 5_000_000_000;
        assert_eq!(t.next_expiry(PEER_TIMEOUT_NS), Some(PEER_TIMEOUT_NS + 1));
        assert_eq!(t.expire(PEER_TIMEOUT_NS + 1, PEER_TIMEOUT_NS), 1);
        assert!(t.find(1).is_none());
        assert!(t.find(2).is_some());
    }

    #[test]
    fn windowed_min_ages_out() {
        let s = WindowedMin::BUCKET_NS;
        let mut m = WindowedMin::new(0, 100);
        m.push(1, 50);
        m.push(2, 70);
        assert_eq!(m.get(), 50);
        m.push(s, 80); // rotates: previous = 50
        assert_eq!(m.get(), 50);
        m.push(2 * s, 90); // rotates: previous = 80
        assert_eq!(m.get(), 80);
        m.push(5 * s, 120); // long silence: only the new sample counts
        assert_eq!(m.get(), 120);
    }
}
