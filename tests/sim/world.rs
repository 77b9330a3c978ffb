//! A deterministic world in virtual time: Senders with their own (offset, skewed) clocks, a
//! network path per Sender (base delay, jitter, random or burst loss, duplication) in both
//! directions, and one Receiver whose host calls `process()` with blocks of varying size at
//! jittered moments, its output going through the same schedule, playout gate and stuck-note
//! guard as the plugin's. Nothing sleeps and nothing reads a clock: the simulation moves time
//! from event to event.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::SocketAddr;
use udp_midi::audio::voices::Voices;
use udp_midi::proto::event::{MidiMessage, TimedMessage};
use udp_midi::proto::receiver::{Item, ReceiverConfig, ReceiverCore};
use udp_midi::proto::schedule::{BlockSpan, Schedule};
use udp_midi::proto::seal::RoomKey;
use udp_midi::proto::sender::SenderCore;
use udp_midi::timing::host_clock::HostClock;
use udp_midi::timing::playout::{PlayoutGate, PlayoutMode};

/// Nanoseconds per millisecond.
pub const MS: u64 = 1_000_000;
/// Sample rate of every host.
pub const SR: f64 = 48_000.0;
/// A Sender host's block: 512 samples.
const SENDER_BLOCK_NS: u64 = (512.0 / SR * 1e9) as u64;
/// What the Senders' clocks read at true time 0 (2026, in ns since the Unix epoch); the
/// Receiver's clock reads true time itself.
const SENDER_EPOCH: u64 = 1_795_000_000_000_000_000;

pub use udp_midi::testkit::Rng;

/// One Sender and its path to the Receiver (the same model both ways).
#[derive(Clone, Copy, Debug, Default)]
pub struct PeerSpec {
    /// One-way base delay.
    pub base: u64,
    /// Extra one-way delay: exponential with this mean (heavy tail), capped at 8 means.
    pub jitter_mean: u64,
    /// Probability a datagram is lost, independently.
    pub loss: f64,
    /// Burst loss, Gilbert-Elliott (Gilbert 1960, Elliott 1963): probabilities per datagram
    /// of going from the good state to the bad one and back; every datagram in the bad state
    /// is lost.
    pub burst: Option<(f64, f64)>,
    /// Probability a datagram is delivered twice.
    pub dup: f64,
    /// Sender clock minus true time at t = 0, ns.
    pub offset: i64,
    /// Sender clock rate error, ppm.
    pub skew_ppm: f64,
}

/// What the Receiver's host emitted: global output sample, peer, message.
#[derive(Clone, Copy, Debug)]
pub struct Played {
    /// Sample index since the Receiver's host started.
    pub sample: u64,
    /// True time of that sample.
    pub at: u64,
    /// Index of the Sender whose item this was.
    pub peer: usize,
    /// The message.
    pub msg: MidiMessage,
    /// Played after its time.
    pub late: bool,
    /// Emitted by the stuck-note guard (a repair or an end), not by a Sender's event.
    pub repair: bool,
    /// The playout delay in use when it played, ns.
    pub delay: i64,
}

/// Things that happen at a moment of true time.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum What {
    /// Sender `i` ends a host block (flushes its events) and runs its timers.
    SenderBlock(usize),
    /// A datagram reaches the Receiver from Sender `i`.
    ToReceiver(usize, Vec<u8>),
    /// A datagram reaches Sender `i` from the Receiver.
    ToSender(usize, Vec<u8>),
    /// The Receiver's network thread runs its timers.
    ReceiverTimer,
    /// The Receiver's host calls `process()` for the next block.
    ReceiverBlock,
}

/// The simulation.
pub struct World {
    /// True time now, ns.
    pub now: u64,
    queue: BinaryHeap<Reverse<(u64, u64, What)>>,
    tie: u64,
    rng: Rng,
    /// Peer specs, by index.
    pub specs: Vec<PeerSpec>,
    /// Gilbert-Elliott state per path and direction (true: bad).
    bad: Vec<[bool; 2]>,
    senders: Vec<SenderCore>,
    /// Sender `i` has been removed (it said goodbye, or vanished).
    gone: Vec<bool>,
    /// Sender `i` vanished without a goodbye (its datagrams stop).
    silent: Vec<bool>,
    /// Events each Sender will play: (true time, message), in time order.
    score: Vec<Vec<(u64, MidiMessage)>>,
    score_next: Vec<usize>,
    /// True play time of each event a Sender pushed, by event number.
    origin_by_seq: Vec<Vec<u64>>,
    /// Peer slot to Sender index.
    slot_owner: Vec<Option<usize>>,
    /// The Receiver's protocol core.
    pub receiver: ReceiverCore,
    schedule: Schedule,
    gate: PlayoutGate,
    voices: Voices,
    host_clock: HostClock,
    /// Next host sample index of the Receiver.
    sample: u64,
    /// True time at which the Receiver's sample 0 is played.
    pub sample_epoch: u64,
    /// Everything the Receiver played.
    pub played: Vec<Played>,
    /// One-way latency of every event delivered, per peer: true arrival - true origin.
    pub true_latency: Vec<Vec<u64>>,
    /// Error of the Receiver's placement of each event delivered, per peer: due time minus
    /// true origin (the Receiver's clock is true time), ns.
    pub map_error: Vec<Vec<i64>>,
    /// Datagrams lost on purpose.
    pub lost: u64,
    /// Datagrams duplicated on purpose.
    pub duplicated: u64,
    /// Items the stuck-note guard dropped as stale.
    pub stale: u64,
    /// Receiver block sizes: min and max.
    pub block_range: (u64, u64),
    /// End of the Receiver's previous block on its timeline.
    prev_end: u64,
    /// Longest Receiver block so far, ns.
    block_max: u64,
    /// Jitter of the Receiver host's `process()` calls, ns (uniform in [0, this]).
    pub host_jitter: u64,
    /// (true time, D in use) after every Receiver block.
    pub delay_history: Vec<(u64, i64)>,
}

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, 1 + i as u8], 4000))
}

/// The room key every participant of a world shares.
fn room_key() -> RoomKey {
    RoomKey::from_bytes([0x42; 32])
}

impl World {
    /// A world with the given peers, margin (ns) and mode, seeded.
    pub fn new(specs: Vec<PeerSpec>, margin: i64, mode: PlayoutMode, seed: u64) -> Self {
        let n = specs.len();
        let mut w = Self {
            now: 0,
            queue: BinaryHeap::new(),
            tie: 0,
            rng: Rng(seed),
            senders: (0..n)
                .map(|i| SenderCore::new(1000 + i as u64, &format!("peer{i}"), Some(room_key())))
                .collect(),
            bad: vec![[false; 2]; n],
            gone: vec![false; n],
            silent: vec![false; n],
            specs,
            score: vec![Vec::new(); n],
            score_next: vec![0; n],
            origin_by_seq: vec![Vec::new(); n],
            slot_owner: vec![None; 40],
            receiver: ReceiverCore::new(ReceiverConfig {
                receiver_id: 7,
                epoch: 0x5EED,
                key: Some(room_key()),
                open_room: false,
                margin_ns: margin,
                mode,
                ..ReceiverConfig::default()
            }),
            schedule: Schedule::with_capacity(16_384),
            gate: PlayoutGate::new(),
            voices: Voices::new(),
            host_clock: HostClock::new(),
            sample: 0,
            sample_epoch: 0,
            played: Vec::new(),
            true_latency: vec![Vec::new(); n],
            map_error: vec![Vec::new(); n],
            lost: 0,
            duplicated: 0,
            stale: 0,
            block_range: (64, 512),
            prev_end: 0,
            block_max: 0,
            host_jitter: MS,
            delay_history: Vec::new(),
        };
        for i in 0..n {
            // Each Sender's host runs 512-sample blocks, starting at a different phase. Its
            // events wait for the end of their block before they are sent.
            let phase = w.rng.range(0, 10 * MS);
            w.at(phase, What::SenderBlock(i));
            w.senders[i].set_hold_hint(SENDER_BLOCK_NS);
        }
        w.at(0, What::ReceiverTimer);
        w.at(0, What::ReceiverBlock);
        w
    }

    /// Sender `i` plays `msg` at true time `t` (call before running past `t`).
    pub fn play(&mut self, i: usize, t: u64, msg: MidiMessage) {
        let pos = self.score[i].partition_point(|e| e.0 <= t);
        self.score[i].insert(pos, (t, msg));
    }

    /// Sender `i` is removed now: it releases what it holds and says goodbye.
    pub fn close(&mut self, i: usize) {
        let local = self.sender_clock(i, self.now);
        self.senders[i].close(local);
        while let Some(d) = self.senders[i].poll_transmit(local) {
            self.send_up(i, d.as_bytes().to_vec());
        }
        self.gone[i] = true;
    }

    /// Sender `i` vanishes now: no goodbye, nothing more from it (a crash, a cable pulled).
    pub fn vanish(&mut self, i: usize) {
        self.gone[i] = true;
        self.silent[i] = true;
    }

    /// Sets every Sender's repeats (batches repeated per datagram).
    pub fn set_redundancy(&mut self, r: usize) {
        self.senders.iter_mut().for_each(|s| s.set_redundancy(r));
    }

    /// Changes the path of Sender `i` from now on.
    pub fn set_path(&mut self, i: usize, base: u64, jitter_mean: u64) {
        self.specs[i].base = base;
        self.specs[i].jitter_mean = jitter_mean;
    }

    fn at(&mut self, t: u64, what: What) {
        self.tie += 1;
        self.queue.push(Reverse((t, self.tie, what)));
    }

    /// Sender `i`'s clock reading at true time `t`: a session clock (Unix-epoch based, as the
    /// plugins' are), `offset` off and running `skew_ppm` fast.
    pub fn sender_clock(&self, i: usize, t: u64) -> u64 {
        let s = &self.specs[i];
        let drift = (t as f64 * s.skew_ppm * 1e-6).round() as i128;
        (SENDER_EPOCH as i128 + t as i128 + s.offset as i128 + drift) as u64
    }

    /// The fate of a datagram on path `i` in direction `dir` (0 up, 1 down): its delays (none
    /// when lost, two when duplicated).
    fn path(&mut self, i: usize, dir: usize) -> Vec<u64> {
        let s = self.specs[i];
        if let Some((p_gb, p_bg)) = s.burst {
            let bad = &mut self.bad[i][dir];
            let u = self.rng.unit();
            *bad = if *bad { u >= p_bg } else { u < p_gb };
            if *bad {
                self.lost += 1;
                return Vec::new();
            }
        }
        if self.rng.unit() < s.loss {
            self.lost += 1;
            return Vec::new();
        }
        let copies = if self.rng.unit() < s.dup {
            self.duplicated += 1;
            2
        } else {
            1
        };
        (0..copies)
            .map(|_| {
                let u = self.rng.unit().max(1e-12);
                let extra = (-(u.ln()) * s.jitter_mean as f64).min(8.0 * s.jitter_mean as f64);
                s.base + extra as u64
            })
            .collect()
    }

    fn send_up(&mut self, i: usize, bytes: Vec<u8>) {
        for d in self.path(i, 0) {
            self.at(self.now + d, What::ToReceiver(i, bytes.clone()));
        }
    }

    /// Runs the world until true time `until`.
    pub fn run_until(&mut self, until: u64) {
        while let Some(Reverse((t, _, _))) = self.queue.peek() {
            if *t > until {
                break;
            }
            let Some(Reverse((t, _, what))) = self.queue.pop() else {
                break;
            };
            self.now = t;
            self.step(what);
        }
        self.now = until;
    }

    fn step(&mut self, what: What) {
        let now = self.now;
        match what {
            What::SenderBlock(i) => {
                if self.gone[i] {
                    return;
                }
                // Events played up to now go out with this block, stamped with the sender's
                // clock at the moment they were played.
                while self.score_next[i] < self.score[i].len()
                    && self.score[i][self.score_next[i]].0 <= now
                {
                    let (t, msg) = self.score[i][self.score_next[i]];
                    let stamped = self.sender_clock(i, t);
                    self.senders[i].push_event(TimedMessage {
                        time_ns: stamped,
                        msg,
                    });
                    self.score_next[i] += 1;
                    self.origin_by_seq[i].push(t);
                }
                self.senders[i].end_block();
                let local = self.sender_clock(i, now);
                self.senders[i].handle_timeout(local);
                while let Some(d) = self.senders[i].poll_transmit(local) {
                    self.send_up(i, d.as_bytes().to_vec());
                }
                self.at(now + SENDER_BLOCK_NS, What::SenderBlock(i));
            }
            What::ToReceiver(i, bytes) => {
                let _ = self.receiver.handle_datagram(now, addr(i), &bytes);
                self.collect(Some(i));
                self.flush_receiver();
            }
            What::ToSender(i, bytes) => {
                if self.silent[i] {
                    return;
                }
                let local = self.sender_clock(i, now);
                let _ = self.senders[i].handle_datagram(local, &bytes);
                while let Some(d) = self.senders[i].poll_transmit(local) {
                    if !self.gone[i] {
                        self.send_up(i, d.as_bytes().to_vec());
                    }
                }
            }
            What::ReceiverTimer => {
                self.receiver.handle_timeout(now);
                self.collect(None);
                self.flush_receiver();
                self.at(now + 5 * MS, What::ReceiverTimer);
            }
            What::ReceiverBlock => self.receiver_block(),
        }
    }

    /// Moves the Receiver's items into the audio schedule; `from` is the Sender whose datagram
    /// just arrived (for the true latency of its events).
    fn collect(&mut self, from: Option<usize>) {
        while let Some(ev) = self.receiver.poll_event() {
            if let (Some(i), Item::Midi(_)) = (from, ev.item) {
                self.slot_owner[ev.peer as usize] = Some(i);
                // (The note-offs a Sender sends when it closes are not in its score.)
                if let Some(&origin) = self.origin_by_seq[i].get(ev.seq as usize) {
                    self.true_latency[i].push(self.now - origin);
                    self.map_error[i].push(ev.due_ns as i64 - origin as i64);
                }
            }
            self.schedule.insert(ev).expect("schedule large enough");
        }
    }

    fn flush_receiver(&mut self) {
        while let Some((to, d)) = self.receiver.poll_transmit(self.now) {
            let i = (0..self.specs.len())
                .find(|&i| addr(i) == to)
                .expect("reply to a known peer");
            for delay in self.path(i, 1) {
                self.at(self.now + delay, What::ToSender(i, d.as_bytes().to_vec()));
            }
        }
    }

    fn receiver_block(&mut self) {
        let (lo, hi) = self.block_range;
        let n = self.rng.range(lo, hi);
        // This call happens at the block's ideal start plus a random host delay (scheduled by
        // the previous block); the host clock must smooth that away.
        let timing = self.host_clock.update(self.now, n as u32, SR);
        let target = self.receiver.playout_delay();
        let next_due = self.schedule.peek().map(|e| e.due_ns);
        let d = self.gate.apply(target, timing.start_ns, next_due);
        self.delay_history.push((self.now, d));
        let block = BlockSpan {
            start_ns: timing.start_ns,
            n: n as u32,
            ns_per_sample: timing.ns_per_sample,
            late_before_ns: if self.prev_end == 0 {
                timing.start_ns
            } else {
                timing.start_ns.min(self.prev_end)
            },
        };
        self.prev_end = timing.start_ns + (n as f64 * timing.ns_per_sample) as u64;
        self.block_max = self.block_max.max((n as f64 * timing.ns_per_sample) as u64);
        self.receiver.set_block(self.block_max);
        while let Some((off, ev, late)) = self.schedule.pop_due(&block, d.max(0) as u64, None) {
            let owner = self.slot_owner[ev.peer as usize].unwrap_or(usize::MAX);
            if late && std::env::var_os("SIM_DEBUG").is_some() {
                eprintln!(
                    "late item at {}: due {} + d {} = {} < start {} (next_due was {:?}); {:?}",
                    self.now,
                    ev.due_ns,
                    d,
                    ev.due_ns as i64 + d,
                    timing.start_ns,
                    next_due,
                    ev.item
                );
            }
            let repair = !matches!(ev.item, Item::Midi(_));
            let sample = self.sample + off as u64;
            let at = self.sample_epoch + (sample as f64 / SR * 1e9) as u64;
            let mut out = Vec::new();
            let o = self.voices.apply(&ev, |m| out.push(m));
            if o.dropped {
                self.stale += 1;
                if std::env::var_os("SIM_DEBUG").is_some() {
                    eprintln!("stale at {}: {:?}", self.now, ev);
                }
            }
            if o.emitted > 0 {
                self.gate
                    .played(timing.start_ns + (off as f64 * timing.ns_per_sample) as u64);
            }
            for msg in out {
                let own = matches!(ev.item, Item::Midi(m) if m == msg);
                self.played.push(Played {
                    sample,
                    at,
                    peer: owner,
                    msg,
                    late,
                    repair: repair || !own,
                    delay: d,
                });
            }
        }
        self.sample += n;
        let next_ideal = self.sample_epoch + (self.sample as f64 / SR * 1e9) as u64;
        let jitter = self.rng.range(0, self.host_jitter);
        self.at(next_ideal + jitter, What::ReceiverBlock);
    }

    /// Notes sounding at the Receiver's output now.
    pub fn held_at_output(&self) -> u32 {
        self.voices.total_held()
    }

    /// Sustain pedals down at the Receiver's output now.
    pub fn pedals_at_output(&self) -> u32 {
        self.voices.pedals_down()
    }
}
