//! A session over an impaired network, for the hosted tests: a Receiver in a room and several
//! Senders, real plugin instances from the library `cargo test` builds, each Sender's
//! datagrams (and the Receiver's answers) passing through its own [`Relay`].
//!
//! One paced loop drives them all at real-time pace (512-sample blocks at 48 kHz), each block
//! every active Sender, then the Receiver. The order of the Senders rotates from block to block:
//! each plugin maps its blocks to time by the earliest of its `process()` readings (the lower
//! envelope, `src/timing/host_clock.rs`), so a Sender that always went first would place its
//! blocks a few microseconds earlier than the others. Rotating, each is first a third of the
//! time, and the "same sample" of the same block is the same instant for all of them.
//!
//! Sample times are absolute, `block * 512 + offset`, on the one timeline all plugins share,
//! so what the Receiver plays can be compared with what the Senders were given directly.

use crate::clap_harness::{
    free_udp_port, receiver_state_in_room, sender_state_in_room, udp_port_bound, wait_until,
    ClapPlugin, MidiMsg, Pacer, BLOCK, RECEIVER_ID, ROOM, SAMPLE_RATE, SENDER_ID,
};
use crate::relay::{Impairment, Relay, UpRecord, TYPE_CLOCK_REPORT};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use udp_midi::proto::room::RoomCode;
use udp_midi::proto::seal::RoomKey;
use udp_midi::proto::wire::{self, Body, PacketType};

/// Samples per millisecond.
pub const SAMPLES_PER_MS: f64 = SAMPLE_RATE / 1000.0;
/// The longest a session waits for every Sender's clock exchange to converge.
const SETTLE_LIMIT: Duration = Duration::from_secs(8);

/// A timed MIDI message at an absolute sample time.
pub type Timed = (u64, MidiMsg);

/// One Sender and the path it sends through.
pub struct Peer {
    /// The Sender plugin.
    pub tx: ClapPlugin,
    /// Its network.
    pub relay: Relay,
    /// Still processing (a deactivated Sender is skipped).
    pub active: bool,
}

/// A Receiver and its Senders, driven block by block.
pub struct Session {
    /// The Receiver plugin.
    pub rx: ClapPlugin,
    /// The Senders, in the order given.
    pub peers: Vec<Peer>,
    /// Index of the next block.
    pub block: u64,
    /// Everything the Receiver played, at absolute sample times.
    pub received: Vec<Timed>,
    /// The latest any block started after it was due (the loop's own scheduling jitter).
    pub max_lateness: Duration,
    /// Paces the blocks from the session's start.
    pacer: Pacer,
}

impl Session {
    /// A Receiver in the room [`ROOM`] with `receiver_params` (nice-plug's form), and one
    /// Sender per path, each behind a relay with that impairment; all active.
    pub fn start(receiver_params: serde_json::Value, paths: &[Impairment]) -> Self {
        let port = free_udp_port();
        let mut rx = ClapPlugin::load(
            RECEIVER_ID,
            Some(&receiver_state_in_room(port, ROOM, receiver_params)),
        );
        rx.activate(SAMPLE_RATE, BLOCK);
        assert!(
            wait_until(Duration::from_secs(2), || udp_port_bound(port)),
            "the Receiver did not bind UDP port {port} within 2 s of activation"
        );
        let to: SocketAddr = ([127, 0, 0, 1], port).into();
        let peers = paths
            .iter()
            .enumerate()
            .map(|(i, imp)| {
                let relay = Relay::start(to, *imp).expect("start a relay");
                let state =
                    sender_state_in_room("127.0.0.1", relay.addr.port(), &format!("P{i}"), ROOM);
                let mut tx = ClapPlugin::load(SENDER_ID, Some(&state));
                tx.activate(SAMPLE_RATE, BLOCK);
                Peer {
                    tx,
                    relay,
                    active: true,
                }
            })
            .collect();
        Self {
            rx,
            peers,
            block: 0,
            received: Vec::new(),
            max_lateness: Duration::ZERO,
            pacer: Pacer::new(SAMPLE_RATE, BLOCK),
        }
    }

    /// Runs one block at its time: every active Sender (rotating) with `input(peer, block)`,
    /// then the Receiver with nothing of its own.
    pub fn step(&mut self, input: &mut impl FnMut(usize, u64) -> Vec<(u32, MidiMsg)>) {
        let b = self.block;
        self.pacer.wait_for_block(b);
        let due = self.pacer.due(b);
        self.max_lateness = self
            .max_lateness
            .max(Instant::now().saturating_duration_since(due));
        let n = self.peers.len();
        for j in 0..n {
            let i = (b as usize + j) % n;
            let p = &mut self.peers[i];
            if p.active {
                let ev = input(i, b);
                p.tx.process_block(BLOCK, &ev);
            }
        }
        for (off, m) in self.rx.process_block(BLOCK, &[]) {
            self.received.push((b * BLOCK as u64 + off as u64, m));
        }
        self.block += 1;
    }

    /// Runs `blocks` blocks, the Senders playing `score[peer]`.
    pub fn play(&mut self, score: &[Vec<Timed>], blocks: u64) {
        let mut input = |i: usize, b: u64| block_of(score.get(i).map_or(&[][..], |s| s), b);
        for _ in 0..blocks {
            self.step(&mut input);
        }
    }

    /// Runs empty blocks until every relay has forwarded a ClockReport to the Receiver (its
    /// Sender's clock exchange converged: NTP is off, so nothing else makes a Sender report),
    /// then `then` more. Returns how long the convergence took.
    pub fn settle(&mut self, then: Duration) -> Duration {
        let t = Instant::now();
        while !self
            .peers
            .iter()
            .all(|p| p.relay.stats.up_forwarded(TYPE_CLOCK_REPORT) > 0)
        {
            assert!(
                t.elapsed() < SETTLE_LIMIT,
                "the clock exchange did not converge within {SETTLE_LIMIT:?}: {}",
                self.relay_summaries()
            );
            self.play(&[], 1);
        }
        let converged = t.elapsed();
        let blocks = (then.as_secs_f64() * SAMPLE_RATE / BLOCK as f64).ceil() as u64;
        self.play(&[], blocks);
        converged
    }

    /// Every relay's counters, one line each.
    pub fn relay_summaries(&self) -> String {
        self.peers
            .iter()
            .enumerate()
            .map(|(i, p)| format!("\n  path {i}: {}", p.relay.stats.summary()))
            .collect()
    }
}

/// The events of `events` that fall in block `b`, as (offset, message).
pub fn block_of(events: &[Timed], b: u64) -> Vec<(u32, MidiMsg)> {
    let (lo, hi) = (b * BLOCK as u64, (b + 1) * BLOCK as u64);
    events
        .iter()
        .filter(|(t, _)| (lo..hi).contains(t))
        .map(|(t, m)| ((t - lo) as u32, m.clone()))
        .collect()
}

pub use udp_midi::testkit::Rng;

/// A note on.
pub fn note_on(channel: u8, key: u8, velocity: f64) -> MidiMsg {
    MidiMsg::NoteOn {
        channel,
        key,
        velocity,
        note_id: -1,
    }
}

/// A note off.
pub fn note_off(channel: u8, key: u8) -> MidiMsg {
    MidiMsg::NoteOff {
        channel,
        key,
        velocity: 0.0,
        note_id: -1,
    }
}

/// Whether `m` is a note on (`Some(true)`) or off (`Some(false)`), with its channel and key.
pub fn note_of(m: &MidiMsg) -> Option<(bool, u8, u8)> {
    match *m {
        MidiMsg::NoteOn { channel, key, .. } => Some((true, channel, key)),
        MidiMsg::NoteOff { channel, key, .. } => Some((false, channel, key)),
        _ => None,
    }
}

/// The events of `events` on MIDI channel `channel`, in order.
pub fn on_channel(events: &[Timed], channel: u8) -> Vec<Timed> {
    events
        .iter()
        .filter(|(_, m)| m.channel() == Some(channel))
        .cloned()
        .collect()
}

/// Notes left sounding at the end of `events` (a MIDI output, in order): per channel and key,
/// note-ons minus the note-offs that ended them (a note-off of a key that is not sounding ends
/// nothing). Returns the (channel, key, notes) that still sound.
pub fn stuck_notes(events: &[Timed]) -> Vec<(u8, u8, u32)> {
    let mut sounding: HashMap<(u8, u8), u32> = HashMap::new();
    for (_, m) in events {
        match note_of(m) {
            Some((true, c, k)) => *sounding.entry((c, k)).or_default() += 1,
            Some((false, c, k)) => {
                if let Some(n) = sounding.get_mut(&(c, k)) {
                    *n = n.saturating_sub(1);
                }
            }
            None => {}
        }
    }
    let mut stuck: Vec<(u8, u8, u32)> = sounding
        .into_iter()
        .filter(|&(_, n)| n > 0)
        .map(|((c, k), n)| (c, k, n))
        .collect();
    stuck.sort_unstable();
    stuck
}

/// The `q` quantile (0 to 1) of `v`.
pub fn quantile(v: &[i64], q: f64) -> i64 {
    let mut s = v.to_vec();
    s.sort_unstable();
    let i = ((s.len() as f64 * q).ceil() as usize).clamp(1, s.len()) - 1;
    s[i]
}

/// Samples to milliseconds.
pub fn ms(samples: f64) -> f64 {
    samples / SAMPLES_PER_MS
}

/// The key of [`ROOM`], derived once (Argon2id: tens of milliseconds).
pub fn room_key() -> &'static RoomKey {
    static KEY: OnceLock<RoomKey> = OnceLock::new();
    KEY.get_or_init(|| {
        RoomKey::derive(&RoomCode::parse(ROOM).expect("a valid room code")).expect("a room key")
    })
}

/// How one Sender's events were delivered, from its relay's log: each event travels in several
/// datagrams (its own and the repeats in the next ones), so its delivery is the first copy that
/// got through. Two parts, both decoded or measured, never inferred from the Receiver:
/// - the wait in the Sender: the first datagram's send time minus the event's origin (both on
///   the Sender's clock, read from the datagram with the room key). It is negative for events
///   late in a block (a block is stamped from when its `process()` starts) and grows when the
///   host runs late;
/// - the network: from the arrival at the relay of the first datagram that held the event (its
///   first sending) to the release of the first copy that got through. A lost or held-back
///   datagram shows as an event delayed by the time to its next repeat.
///
/// Their sum is the event's one-way latency, what the Receiver's playout delay must cover.
#[derive(Debug)]
pub struct EventDelays {
    /// Latency of each delivered event, ns, in event-number order.
    pub latency_ns: Vec<i64>,
    /// The network part of each, ns.
    pub network_ns: Vec<i64>,
    /// Events no copy of which got through.
    pub lost: usize,
}

/// What the log says of one event: its first sending and first delivery.
struct Journey {
    /// Arrival at the relay of the first datagram that held it.
    first_arrival: Instant,
    /// Send time of that datagram minus the event's origin, ns (Sender's clock).
    wait_ns: i64,
    /// Release of the first copy that got through.
    delivered: Option<Instant>,
}

impl EventDelays {
    /// Reads the relay's log of a Sender in [`ROOM`] (its sealed Events datagrams).
    pub fn from_log(log: &[UpRecord]) -> Self {
        let mut events: HashMap<u64, Journey> = HashMap::new();
        let mut scratch = [0u8; wire::MAX_ACCEPTED_DATAGRAM];
        let mut decoded = Vec::new();
        for r in log {
            let Ok((h, _)) = wire::decode_header(&r.bytes) else {
                continue;
            };
            if h.packet_type != PacketType::Events {
                continue;
            }
            let body = wire::open_body(&h, &r.bytes, Some(room_key()), true, &mut scratch)
                .expect("a genuine Sender's datagram opens with the room key");
            let Ok(Body::Events {
                prelude,
                first_event_seq,
            }) = wire::decode_body(&h, body, &mut decoded)
            else {
                panic!("a genuine Events datagram decodes");
            };
            for (i, ev) in decoded.iter().enumerate() {
                let j = events.entry(first_event_seq + i as u64).or_insert(Journey {
                    first_arrival: r.arrival,
                    wait_ns: prelude.sent_ns as i64 - ev.time_ns as i64,
                    delivered: None,
                });
                if r.arrival < j.first_arrival {
                    j.first_arrival = r.arrival;
                    j.wait_ns = prelude.sent_ns as i64 - ev.time_ns as i64;
                }
                if let Some(t) = r.released {
                    j.delivered = Some(j.delivered.map_or(t, |x| x.min(t)));
                }
            }
        }
        let mut seqs: Vec<u64> = events.keys().copied().collect();
        seqs.sort_unstable();
        let mut out = Self {
            latency_ns: Vec::new(),
            network_ns: Vec::new(),
            lost: 0,
        };
        for seq in seqs {
            let j = &events[&seq];
            match j.delivered {
                Some(t) => {
                    let network = (t - j.first_arrival).as_nanos() as i64;
                    out.network_ns.push(network);
                    out.latency_ns.push(network + j.wait_ns);
                }
                None => out.lost += 1,
            }
        }
        out
    }

    /// The `q` quantile (0 to 1) of the latencies, ms.
    pub fn latency_ms(&self, q: f64) -> f64 {
        quantile(&self.latency_ns, q) as f64 / 1e6
    }

    /// The `q` quantile (0 to 1) of the network part, ms.
    pub fn network_ms(&self, q: f64) -> f64 {
        quantile(&self.network_ns, q) as f64 / 1e6
    }
}
