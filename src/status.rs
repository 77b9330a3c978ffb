//! What the editors show: a snapshot of the session, published by the network thread and read
//! by the editor (GUI thread), and the commands the editor sends back.
//!
//! The audio thread never touches any of this. The network thread publishes a fresh snapshot a
//! few times per second with [`Published::publish`], which only ever *tries* the lock: if the
//! editor happens to be copying the previous snapshot, this one is skipped and the next one
//! goes out. The editor copies the snapshot out with [`Published::read`] once per frame.
//! Neither side can make the other wait for more than a copy, and closing or opening the
//! editor changes nothing in the session.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// A value one thread publishes and another reads, never blocking the publisher.
#[derive(Debug, Default)]
pub struct Published<T> {
    /// The latest snapshot.
    value: Mutex<T>,
    /// Bumped on every successful publish.
    generation: AtomicU64,
}

impl<T: Clone> Published<T> {
    /// Replaces the snapshot unless a reader holds it right now (then this one is dropped and
    /// `false` returned). Never waits.
    pub fn publish(&self, v: &T) -> bool {
        match self.value.try_lock() {
            Ok(mut g) => {
                g.clone_from(v);
                self.generation.fetch_add(1, Ordering::Release);
                true
            }
            Err(_) => false,
        }
    }

    /// A copy of the latest snapshot.
    pub fn read(&self) -> T {
        match self.value.lock() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Changes whenever a snapshot is published.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
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

/// Points kept in the history graph: one every 250 ms for a minute.
pub const HISTORY_LEN: usize = 240;

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

/// Commands from the editor, waiting for the network thread. Bounded: a click-happy user
/// cannot grow it past [`Commands::CAPACITY`].
#[derive(Debug, Default)]
pub struct Commands {
    /// Waiting commands.
    queue: Mutex<Vec<Command>>,
}

impl Commands {
    /// Most commands waiting.
    pub const CAPACITY: usize = 64;

    /// Queues a command (GUI thread). Returns `false` when the queue is full.
    pub fn push(&self, c: Command) -> bool {
        let mut q = match self.queue.lock() {
            Ok(q) => q,
            Err(p) => p.into_inner(),
        };
        if q.len() >= Self::CAPACITY {
            return false;
        }
        q.push(c);
        true
    }

    /// Takes the waiting commands (network thread), without waiting if the GUI holds the lock.
    pub fn drain_into(&self, out: &mut Vec<Command>) {
        if let Ok(mut q) = self.queue.try_lock() {
            out.append(&mut q);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_skips_when_held_and_read_copies() {
        let p = Published::<Vec<u32>>::default();
        assert!(p.publish(&vec![1, 2]));
        let g0 = p.generation();
        {
            let _held = p.value.lock().unwrap();
            assert!(!p.publish(&vec![3]), "never waits for the reader");
        }
        assert_eq!(p.read(), vec![1, 2]);
        assert!(p.publish(&vec![3]));
        assert_eq!(p.read(), vec![3]);
        assert!(p.generation() > g0);
    }

    #[test]
    fn commands_are_bounded() {
        let c = Commands::default();
        for _ in 0..Commands::CAPACITY {
            assert!(c.push(Command::Panic));
        }
        assert!(!c.push(Command::Kick(1)));
        let mut out = Vec::new();
        c.drain_into(&mut out);
        assert_eq!(out.len(), Commands::CAPACITY);
        c.drain_into(&mut out);
        assert_eq!(out.len(), Commands::CAPACITY);
    }
}
