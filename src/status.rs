//! What the editors show: a snapshot of the session, published by the network thread and read
//! by the editor (GUI thread), and the commands the editor sends back.
//!
//! The audio thread never touches any of this. Nothing here takes a lock, so neither side can
//! ever make the other wait:
//!
//! - [`Published`] holds the latest snapshot behind an atomically swapped `Arc` (the
//!   `arc-swap` crate): the network thread builds a fresh copy a few times per second
//!   ([`PUBLISH_EVERY_NS`]) and swaps it in with [`Published::publish`] (it may allocate; it is
//!   not the audio thread); the editor takes the latest with [`Published::load`] once per frame,
//!   which copies nothing. A reader still holding an older snapshot keeps it alive, and whoever
//!   drops the last reference frees it. Both operations are lock-free (arc-swap's
//!   `docs::performance`: readers wait-free in all but pathological cases, writers lock-free).
//! - [`Commands`] are a bit per peer slot to kick and a panic counter, in atomics.
//!
//! Closing or opening the editor changes nothing in the session.

use arc_swap::ArcSwap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// How often the network threads publish a fresh snapshot for the editor, ns; the Receiver
/// also adds a point to its history graph each time. (The network threads should take it from
/// here: `net/receiver_thread.rs` and `net/sender_thread.rs` each still have a copy of it.)
pub const PUBLISH_EVERY_NS: u64 = 250_000_000;

/// How far back the Receiver's history graph goes, s.
pub const HISTORY_S: u64 = 60;

/// Points kept in the history graph: one per publish for [`HISTORY_S`].
pub const HISTORY_LEN: usize = (HISTORY_S * 1_000_000_000 / PUBLISH_EVERY_NS) as usize;

/// A value one thread publishes and others read, with no lock on either side.
#[derive(Debug)]
pub struct Published<T> {
    /// The latest snapshot. Swapped whole by the publisher (network thread), loaded by readers
    /// (the editor on the GUI thread, tests).
    value: ArcSwap<T>,
    /// Bumped after every publish (network thread), read by anyone who wants to know whether
    /// something new came.
    generation: AtomicU64,
}

impl<T: Default> Default for Published<T> {
    fn default() -> Self {
        Self {
            value: ArcSwap::from_pointee(T::default()),
            generation: AtomicU64::new(0),
        }
    }
}

impl<T> Published<T> {
    /// Replaces the snapshot with `v`, moved in. Never waits for a reader: one that still
    /// holds the previous snapshot keeps it until it lets go.
    pub fn publish_owned(&self, v: T) {
        self.value.store(Arc::new(v));
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// The latest snapshot, shared, not copied: what the editor draws a frame from.
    pub fn load(&self) -> Arc<T> {
        self.value.load_full()
    }

    /// Changes whenever a snapshot is published.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }
}

impl<T: Clone> Published<T> {
    /// Replaces the snapshot with a copy of `v` (the copy allocates: call it from the network
    /// thread, never from the audio thread). Never waits for a reader.
    pub fn publish(&self, v: &T) {
        self.publish_owned(v.clone());
    }

    /// A copy of the latest snapshot (see [`Published::load`] to avoid the copy).
    pub fn read(&self) -> T {
        T::clone(&self.value.load())
    }
}

/// How a peer's origin times are put on the Receiver's timeline.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ClockSource {
    /// Nothing known yet: the fastest transit seen stands for latency zero.
    #[default]
    None,
    /// The direct clock exchange between that Sender and this Receiver.
    Direct,
    /// Both machines' NTP offsets to UTC.
    Ntp,
}

/// The Receiver's listening socket.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ListenState {
    /// The plugin is not active.
    #[default]
    Stopped,
    /// Binding the port.
    Starting,
    /// Receiving on this port.
    Listening(u16),
    /// Another program holds the port; retrying every second.
    PortInUse(u16),
    /// Some other error, in words; retrying.
    Error(String),
}

/// One Sender as the Receiver sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct PeerStatus {
    /// Slot in the peer table (what "kick" refers to).
    pub slot: u8,
    /// The Sender's random id.
    pub sender_id: u64,
    /// Display name from its State heartbeats (may be empty).
    pub name: String,
    /// Where its datagrams come from.
    pub addr: SocketAddr,
    /// How its clock is known.
    pub clock: ClockSource,
    /// Its clock minus ours, ns (as used to place its events).
    pub clock_offset_ns: i64,
    /// Bound on that offset's error, ns.
    pub clock_error_ns: u64,
    /// Median one-way latency of its events over the last 10 s, ns.
    pub latency_p50_ns: Option<i64>,
    /// 99th percentile of the same, ns.
    pub latency_p99_ns: Option<i64>,
    /// What this peer needs of the playout delay, ns (its p99, or its network p99 plus the
    /// time its events wait in the Sender, while it plays nothing).
    pub needs_ns: Option<i64>,
    /// RFC 3550 interarrival jitter, ns.
    pub jitter_ns: u64,
    /// Share of its datagrams lost, percent (over the session).
    pub loss_pct: f64,
    /// Share of its events that arrived after their playout time, percent.
    pub late_pct: f64,
    /// Events per second, over the last few seconds.
    pub events_per_s: f64,
    /// Time since its last datagram, ns.
    pub last_seen_ns: u64,
    /// Notes it holds down right now.
    pub held_notes: u32,
    /// It sets the playout delay (the slowest peer).
    pub slowest: bool,
}

/// The playout delay and its parts.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct DelayStatus {
    /// Fixed mode (`D` = the margin) rather than aligned to the slowest peer.
    pub fixed: bool,
    /// The margin ("Default delay"), ns.
    pub margin_ns: i64,
    /// The Receiver host's longest recent block, ns: events must be there when the block that
    /// plays them starts, so it is part of the delay (not in fixed mode).
    pub block_ns: i64,
    /// The slowest peer's need, ns (none without peers or in fixed mode).
    pub slowest_ns: Option<i64>,
    /// The delay the network thread aims at, ns.
    pub target_ns: i64,
    /// The delay the audio thread uses now, ns (it lowers the target only into silences).
    pub applied_ns: i64,
}

/// One point of the latency history graph.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct HistoryPoint {
    /// Seconds since the Receiver started.
    pub t_s: f32,
    /// The delay in use, ms.
    pub delay_ms: f32,
    /// Each slot's p99 latency, ms (NaN when the slot is empty).
    pub p99_ms: [f32; crate::proto::peers::MAX_PEERS],
}

/// The Receiver's session, for its editor.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ReceiverStatus {
    /// The listening socket.
    pub listen: ListenState,
    /// Every Sender heard recently.
    pub peers: Vec<PeerStatus>,
    /// The playout delay.
    pub delay: DelayStatus,
    /// Latency and delay over the last minute, oldest first.
    pub history: Vec<HistoryPoint>,
    /// Rejected datagrams by reason: `(label, count)`, every reason listed.
    pub rejected: Vec<(&'static str, u64)>,
    /// Events of accepted datagrams that were not played, by reason: `(label, count)`, every
    /// reason listed (a full queue to the audio thread, an origin time outside the window).
    pub events_dropped: Vec<(&'static str, u64)>,
    /// Datagrams accepted.
    pub datagrams: u64,
    /// Events handed to the audio thread.
    pub events: u64,
    /// Events played after their time.
    pub late: u64,
    /// Blocks rendered offline (unaligned).
    pub offline_blocks: u64,
    /// The host is rendering offline right now (blocks were rendered offline since the last
    /// snapshot): events pass through unaligned.
    pub offline: bool,
    /// NTP: this machine's offset to UTC and its error bound, ns, when known.
    pub ntp: Option<(i64, u64)>,
}

/// Where a Sender stands with its Receiver.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum LinkState {
    /// The plugin is not active.
    #[default]
    Stopped,
    /// No destination set, or it does not resolve (the text says why).
    NoDestination(String),
    /// Sending, but no answer from the Receiver yet.
    NoReply,
    /// The Receiver refused us: the room code differs.
    Refused,
    /// The room code set cannot be used (it does not parse, or no key could be derived from
    /// it; the text says why): nothing is sent until it is corrected.
    BadRoomCode(String),
    /// The Receiver answers.
    Connected,
}

/// The Sender's session, for its editor.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SenderStatus {
    /// Link to the Receiver.
    pub link: LinkState,
    /// The resolved destination.
    pub destination: Option<SocketAddr>,
    /// Best recent round trip to the Receiver, ns.
    pub rtt_ns: Option<u64>,
    /// What our clock estimate is based on.
    pub clock: ClockSource,
    /// Receiver (or UTC, for NTP) time minus ours, ns.
    pub clock_offset_ns: i64,
    /// Bound on that offset's error, ns.
    pub clock_error_ns: u64,
    /// Measured drift against the Receiver, ppm.
    pub skew_ppm: f64,
    /// NTP: this machine's offset to UTC and its error bound, ns, when known.
    pub ntp: Option<(i64, u64)>,
    /// Events sent.
    pub events_sent: u64,
    /// Datagrams sent.
    pub datagrams_sent: u64,
    /// Events the audio thread could not queue (queue full).
    pub events_dropped: u64,
}

/// What an editor asks of its plugin's network thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// Forget the peer in this slot now, ending its notes (Receiver).
    Kick(u8),
    /// End every note now (Receiver).
    Panic,
}

/// Commands from the editor, waiting for the network thread: which peer slots to kick and
/// whether to end every note, in atomics. A command given again before the network thread took
/// the first one is the same command (a slot is kicked once, notes end once), so nothing grows
/// however often the user clicks.
#[derive(Debug, Default)]
pub struct Commands {
    /// Bit `s` set: kick slot `s`. Set by the GUI thread, taken (swapped to 0) by the network
    /// thread.
    kicks: AtomicU64,
    /// Panic requests not yet taken. Incremented by the GUI thread, taken (swapped to 0) by
    /// the network thread.
    panics: AtomicU64,
}

// One bit per slot.
const _: () = assert!(crate::proto::peers::MAX_PEERS <= 64);

impl Commands {
    /// Most commands [`Commands::drain_into`] hands over at once: a kick per slot and a panic.
    pub const CAPACITY: usize = crate::proto::peers::MAX_PEERS + 1;

    /// Queues a command (GUI thread). Returns `false` for a slot no peer can have.
    pub fn push(&self, c: Command) -> bool {
        match c {
            Command::Kick(slot) if (slot as usize) < crate::proto::peers::MAX_PEERS => {
                self.kicks.fetch_or(1 << slot, Ordering::AcqRel);
                true
            }
            Command::Kick(_) => false,
            Command::Panic => {
                self.panics.fetch_add(1, Ordering::AcqRel);
                true
            }
        }
    }

    /// Takes the waiting commands (network thread): the panic first, then the kicks by slot.
    pub fn drain_into(&self, out: &mut Vec<Command>) {
        if self.panics.swap(0, Ordering::AcqRel) > 0 {
            out.push(Command::Panic);
        }
        let mut kicks = self.kicks.swap(0, Ordering::AcqRel);
        while kicks != 0 {
            let slot = kicks.trailing_zeros();
            out.push(Command::Kick(slot as u8));
            kicks &= kicks - 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    #[test]
    fn publish_replaces_and_readers_keep_what_they_hold() {
        let p = Published::<Vec<u32>>::default();
        assert!(p.read().is_empty());
        let g0 = p.generation();
        p.publish(&vec![1, 2]);
        let held = p.load();
        p.publish(&vec![3]);
        assert_eq!(
            *held,
            vec![1, 2],
            "a reader's snapshot is never changed under it"
        );
        assert_eq!(p.read(), vec![3]);
        assert_eq!(p.generation(), g0 + 2);
    }

    /// A reader that holds every snapshot it loads for a while cannot stall the publisher, and
    /// every snapshot it sees is one that was published whole.
    #[test]
    fn publisher_and_reader_never_wait_for_each_other() {
        let p = Arc::new(Published::<Vec<u64>>::default());
        let done = Arc::new(AtomicBool::new(false));
        let reader = {
            let (p, done) = (p.clone(), done.clone());
            std::thread::spawn(move || {
                let mut seen = 0u64;
                let mut last = 0;
                while !done.load(Ordering::Acquire) {
                    let s = p.load();
                    // Every snapshot is n % 64 + 1 copies of n, as published.
                    if let Some(&n) = s.first() {
                        assert!(s.len() as u64 == n % 64 + 1 && s.iter().all(|&v| v == n));
                        assert!(n >= last, "snapshots come in order");
                        last = n;
                        seen += 1;
                    }
                }
                seen
            })
        };
        for n in 1..=20_000u64 {
            p.publish_owned(vec![n; (n % 64) as usize + 1]);
        }
        done.store(true, Ordering::Release);
        let seen = reader.join().unwrap();
        assert!(seen > 0, "the reader saw snapshots");
    }

    #[test]
    fn commands_coalesce_and_are_bounded() {
        let c = Commands::default();
        let mut out = Vec::new();
        c.drain_into(&mut out);
        assert!(out.is_empty());
        for _ in 0..100 {
            assert!(c.push(Command::Panic));
            assert!(c.push(Command::Kick(3)));
        }
        assert!(c.push(Command::Kick(0)));
        assert!(c.push(Command::Kick(31)));
        assert!(!c.push(Command::Kick(32)), "no peer has slot 32");
        c.drain_into(&mut out);
        assert_eq!(
            out,
            vec![
                Command::Panic,
                Command::Kick(0),
                Command::Kick(3),
                Command::Kick(31)
            ]
        );
        out.clear();
        c.drain_into(&mut out);
        assert!(out.is_empty(), "taken once");
        for s in 0..crate::proto::peers::MAX_PEERS as u8 {
            c.push(Command::Kick(s));
        }
        c.push(Command::Panic);
        c.drain_into(&mut out);
        assert_eq!(out.len(), Commands::CAPACITY);
    }
}
