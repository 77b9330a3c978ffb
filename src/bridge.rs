//! The bridge between the audio thread and the network thread: fixed-capacity, lock-free
//! single-producer single-consumer queues ([`rtrb`]) of `Copy` messages, and atomic counters.
//!
//! Nothing here blocks: a push to a full queue hands the value back, the caller drops it and
//! counts the drop. Queues are created in the plugin's `initialize()` (`activate`), never on
//! the audio thread.

use crate::proto::event::TimedMessage;
use crate::proto::peers::MAX_PEERS;
use crate::proto::receiver::{ScheduledEvent, EVENT_DROPS, REJECT_REASONS};
use crate::proto::sender::ClockStatus;
use crate::proto::wire::ClockSource;
use std::sync::atomic::{AtomicI64, AtomicU16, AtomicU64, AtomicU8, Ordering::Relaxed};

/// Slots in each queue. At 200 events per second from each of 20 players, 4096 slots hold
/// one second of music, far more than the one block that normally sits in a queue.
pub const QUEUE_CAPACITY: usize = 4096;

/// What the Sender's audio thread tells its network thread.
// Inline and `Copy` on purpose: boxing would allocate on the audio thread.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SenderMsg {
    /// One stamped event.
    Event(TimedMessage),
    /// The host block in progress has ended: send what it held.
    EndBlock,
}

/// Creates the Sender's audio-to-network queue.
pub fn sender_queue() -> (rtrb::Producer<SenderMsg>, rtrb::Consumer<SenderMsg>) {
    rtrb::RingBuffer::new(QUEUE_CAPACITY)
}

/// Creates the Receiver's network-to-audio queue.
pub fn receiver_queue() -> (
    rtrb::Producer<ScheduledEvent>,
    rtrb::Consumer<ScheduledEvent>,
) {
    rtrb::RingBuffer::new(QUEUE_CAPACITY)
}

/// State of a network endpoint, as shown to the user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum NetState {
    /// The network thread is not running (plugin inactive).
    Stopped = 0,
    /// Resolving the destination or binding the port.
    Starting = 1,
    /// Receiver: listening. Sender: sending to a resolved destination.
    Ready = 2,
    /// Receiver: the port is in use by another program; retrying.
    PortInUse = 3,
    /// Some other error (see the log); retrying.
    Error = 4,
}

impl NetState {
    fn from_u8(v: u8) -> Self {
        match v {
            1 => Self::Starting,
            2 => Self::Ready,
            3 => Self::PortInUse,
            4 => Self::Error,
            _ => Self::Stopped,
        }
    }
}

/// Counters and state of a Sender, written by both threads with relaxed atomics.
#[derive(Debug, Default)]
pub struct SenderShared {
    /// [`NetState`] of the network thread.
    state: AtomicU8,
    /// Events the audio thread queued.
    pub events_queued: AtomicU64,
    /// Events the audio thread dropped because the queue was full (note-offs excepted: they
    /// wait for the next block).
    pub events_dropped: AtomicU64,
    /// Note-offs the audio thread could not queue at once and queued at a later block.
    pub note_offs_deferred: AtomicU64,
    /// Events put into datagrams by the network thread.
    pub events_sent: AtomicU64,
    /// Datagrams sent.
    pub datagrams_sent: AtomicU64,
    /// Datagrams that could not be sent (no destination yet, or a socket error).
    pub send_errors: AtomicU64,
    /// Clock source: 0 none, 1 direct exchange, 2 NTP.
    pub clock_source: AtomicU8,
    /// Receiver (or UTC) time minus ours, ns.
    pub clock_offset_ns: AtomicI64,
    /// Error bound of that offset, ns.
    pub clock_error_ns: AtomicU64,
    /// Best round trip to the Receiver, ns.
    pub rtt_ns: AtomicU64,
    /// Blocks the host rendered offline (a bounce): passed through, not sent.
    pub offline_blocks: AtomicU64,
}

impl SenderShared {
    /// Current state.
    pub fn state(&self) -> NetState {
        NetState::from_u8(self.state.load(Relaxed))
    }

    /// Sets the state.
    pub fn set_state(&self, s: NetState) {
        self.state.store(s as u8, Relaxed);
    }

    /// Publishes the clock status (network thread).
    pub fn publish_clock(&self, c: &ClockStatus) {
        self.clock_source.store(
            match c.source {
                None => 0,
                Some(ClockSource::Direct) => 1,
                Some(ClockSource::Ntp) => 2,
            },
            Relaxed,
        );
        self.clock_offset_ns.store(c.offset_ns, Relaxed);
        self.clock_error_ns.store(c.error_ns, Relaxed);
        self.rtt_ns.store(c.rtt_ns, Relaxed);
    }
}

/// Counters and state of a Receiver, written by both threads with relaxed atomics.
#[derive(Debug, Default)]
pub struct ReceiverShared {
    /// [`NetState`] of the network thread.
    state: AtomicU8,
    /// The port bound (0 when none).
    pub port: AtomicU16,
    /// Senders currently heard.
    pub peers: AtomicU64,
    /// Datagrams accepted.
    pub datagrams: AtomicU64,
    /// Events handed to the audio thread.
    pub events: AtomicU64,
    /// Rejected datagrams by reason (index: `RejectReason as usize`). Written by the network
    /// thread.
    pub rejected: [AtomicU64; REJECT_REASONS],
    /// Events of accepted datagrams the network thread did not hand on, by reason (index:
    /// `EventDrop as usize`). Written by the network thread.
    pub events_dropped: [AtomicU64; EVENT_DROPS],
    /// Events the audio thread played after their time (at offset 0 of a later block).
    pub late: AtomicU64,
    /// The same, per peer slot (index: the slot of [`ScheduledEvent::peer`]; the local slot
    /// is not counted here). Written by the audio thread, read by the network thread, which
    /// subtracts each peer's count at its join.
    pub late_by_slot: [AtomicU64; MAX_PEERS],
    /// Items the stuck-note guard dropped as stale (older than what it already played).
    pub stale: AtomicU64,
    /// Notes the Receiver ended itself (lost note-offs, departed peers, panic, reset).
    pub notes_ended: AtomicU64,
    /// Times the host sample clock started again (stalls, jumps, new sample rates).
    pub clock_relocks: AtomicU64,
    /// Panic requests (editor button): the audio thread ends every note when this changes.
    pub panic_requests: AtomicU64,
    /// The playout delay the audio thread uses now, ns (written every block).
    pub applied_delay_ns: AtomicI64,
    /// The longest recent host block, ns (written every block): events must arrive before
    /// the block that plays them starts, so it adds to the delay.
    pub block_ns: AtomicU64,
    /// Events the audio thread dropped because its schedule was full.
    pub schedule_full: AtomicU64,
    /// Events the host's output buffer refused.
    pub host_refused: AtomicU64,
    /// The target playout delay D in ns, written by the network thread, read by `process()`.
    pub playout_delay_ns: AtomicI64,
    /// Blocks processed while the host ran faster than real time (offline rendering), when
    /// events are passed through without alignment.
    pub offline_blocks: AtomicU64,
}

impl ReceiverShared {
    /// Counts one event of slot `peer` played late (audio thread).
    pub fn count_late(&self, peer: u8) {
        self.late.fetch_add(1, Relaxed);
        if let Some(c) = self.late_by_slot.get(peer as usize) {
            c.fetch_add(1, Relaxed);
        }
    }

    /// The late counts of every slot (network thread).
    pub fn late_by_slot(&self) -> [u64; MAX_PEERS] {
        std::array::from_fn(|i| self.late_by_slot[i].load(Relaxed))
    }

    /// Current state.
    pub fn state(&self) -> NetState {
        NetState::from_u8(self.state.load(Relaxed))
    }

    /// Sets the state.
    pub fn set_state(&self, s: NetState) {
        self.state.store(s as u8, Relaxed);
    }
}
