//! A deterministic world in virtual time: Senders with their own (offset, skewed) clocks, a
//! network path per Sender (base delay, jitter, loss) in both directions, and one Receiver
//! whose host calls `process()` with blocks of varying size at jittered moments. Nothing
//! sleeps and nothing reads a clock: the simulation moves time from event to event.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::SocketAddr;
use udp_midi::proto::event::{MidiMessage, TimedMessage};
use udp_midi::proto::receiver::{ReceiverCore, ScheduledEvent};
use udp_midi::proto::schedule::Schedule;
use udp_midi::proto::sender::SenderCore;
use udp_midi::proto::wire;
use udp_midi::timing::host_clock::HostClock;
use udp_midi::timing::playout::PlayoutMode;

/// Nanoseconds per millisecond.
pub const MS: u64 = 1_000_000;
/// Sample rate of every host.
pub const SR: f64 = 48_000.0;

/// Deterministic PRNG (SplitMix64, Steele, Lea and Flood 2014).
pub struct Rng(pub u64);

impl Rng {
    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform integer in [lo, hi].
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }
}

/// One Sender and its path to the Receiver.
#[derive(Clone, Copy, Debug)]
pub struct PeerSpec {
    /// One-way base delay, both directions.
    pub base: u64,
    /// Extra one-way delay: exponential with this mean (heavy tail), capped at 8 means.
    pub jitter_mean: u64,
    /// Probability a datagram is lost.
    pub loss: f64,
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
    /// Peer slot (the scheduled event's `peer`). Read only through `Debug`, in failure
    /// messages.
    #[allow(dead_code)]
    pub peer: u8,
    /// The message.
    pub msg: MidiMessage,
    /// Played after its time.
    pub late: bool,
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
    senders: Vec<SenderCore>,
    /// Events each Sender will play: (true time, message), in time order.
    score: Vec<Vec<(u64, MidiMessage)>>,
    score_next: Vec<usize>,
    /// True play time of each event a Sender pushed, by event sequence number.
    origin_by_seq: Vec<Vec<u64>>,
    /// The Receiver's protocol core.
    pub receiver: ReceiverCore,
    schedule: Schedule,
    host_clock: HostClock,
    /// Next host sample index of the Receiver.
    sample: u64,
    /// True time at which the Receiver's sample 0 is played.
    pub sample_epoch: u64,
    /// Everything the Receiver played.
    pub played: Vec<Played>,
    /// One-way latency of every event delivered, per peer: true arrival - true origin.
    pub true_latency: Vec<Vec<u64>>,
    /// Datagrams lost on purpose.
    pub lost: u64,
    /// Receiver block sizes: min and max.
    pub block_range: (u64, u64),
    /// Jitter of the Receiver host's `process()` calls, ns (uniform in [0, this]).
    pub host_jitter: u64,
    /// (true time, D) after every Receiver block.
    pub delay_history: Vec<(u64, i64)>,
}

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, 1 + i as u8], 4000))
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
                .map(|i| SenderCore::new(1000 + i as u64, &format!("peer{i}")))
                .collect(),
            specs,
            score: vec![Vec::new(); n],
            score_next: vec![0; n],
            origin_by_seq: vec![Vec::new(); n],
            receiver: ReceiverCore::new(7, margin, mode),
            schedule: Schedule::with_capacity(8192),
            host_clock: HostClock::new(),
            sample: 0,
            sample_epoch: 0,
            played: Vec::new(),
            true_latency: vec![Vec::new(); n],
            lost: 0,
            block_range: (64, 1024),
            host_jitter: MS,
            delay_history: Vec::new(),
        };
        for i in 0..n {
            // Each Sender's host runs 512-sample blocks, starting at a different phase.
            let phase = w.rng.range(0, 10 * MS);
            w.at(phase, What::SenderBlock(i));
        }
        w.at(0, What::ReceiverTimer);
        w.at(0, What::ReceiverBlock);
        w
    }

    /// Sender `i` plays `msg` at true time `t` (call before running past `t`).
    pub fn play(&mut self, i: usize, t: u64, msg: MidiMessage) {
        self.score[i].push((t, msg));
        self.score[i].sort_by_key(|e| e.0);
    }

    /// Sender `i` is removed now: it says goodbye.
    pub fn close(&mut self, i: usize) {
        self.senders[i].close();
        let local = self.sender_clock(i, self.now);
        while let Some(d) = self.senders[i].poll_transmit(local) {
            self.send_up(i, d.as_bytes().to_vec());
        }
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

    /// Sender `i`'s clock reading at true time `t`.
    pub fn sender_clock(&self, i: usize, t: u64) -> u64 {
        let s = &self.specs[i];
        (t as f64 + s.offset as f64 + t as f64 * s.skew_ppm * 1e-6).round() as u64
    }

    /// One-way delay of a datagram on path `i`.
    fn path_delay(&mut self, i: usize) -> Option<u64> {
        let s = self.specs[i];
        if self.rng.unit() < s.loss {
            self.lost += 1;
            return None;
        }
        let u = self.rng.unit().max(1e-12);
        let extra = (-(u.ln()) * s.jitter_mean as f64).min(8.0 * s.jitter_mean as f64);
        Some(s.base + extra as u64)
    }

    fn send_up(&mut self, i: usize, bytes: Vec<u8>) {
        if let Some(d) = self.path_delay(i) {
            self.at(self.now + d, What::ToReceiver(i, bytes));
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
                let block = (512.0 / SR * 1e9) as u64;
                self.at(now + block, What::SenderBlock(i));
            }
            What::ToReceiver(i, bytes) => {
                // Events in this datagram: their true origin is recoverable from the score, so
                // record the true latency of each.
                if let Ok((h, body)) = wire::decode_header(&bytes) {
                    let mut evs = Vec::new();
                    if h.packet_type == wire::PacketType::Events {
                        if let Ok(first) = wire::decode_events(body, &mut evs) {
                            for k in 0..evs.len() {
                                let origin = self.origin_by_seq[i][first as usize + k];
                                self.true_latency[i].push(now - origin);
                            }
                        }
                    }
                }
                let _ = self.receiver.handle_datagram(now, addr(i), &bytes);
                let mut out = Vec::new();
                while let Some(ev) = self.receiver.poll_event() {
                    out.push(ev);
                }
                for ev in out {
                    self.deliver(i, ev);
                }
                self.flush_receiver();
            }
            What::ToSender(i, bytes) => {
                let local = self.sender_clock(i, now);
                let _ = self.senders[i].handle_datagram(local, &bytes);
                while let Some(d) = self.senders[i].poll_transmit(local) {
                    self.send_up(i, d.as_bytes().to_vec());
                }
            }
            What::ReceiverTimer => {
                self.receiver.handle_timeout(now);
                self.flush_receiver();
                self.at(now + 5 * MS, What::ReceiverTimer);
            }
            What::ReceiverBlock => self.receiver_block(),
        }
    }

    fn deliver(&mut self, _i: usize, ev: ScheduledEvent) {
        let _ = self.schedule.insert(ev);
    }

    fn flush_receiver(&mut self) {
        while let Some((to, d)) = self.receiver.poll_transmit(self.now) {
            let i = (0..self.specs.len())
                .find(|&i| addr(i) == to)
                .expect("reply to a known peer");
            if let Some(delay) = self.path_delay(i) {
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
        let d = self.receiver.playout_delay().max(0) as u64;
        self.delay_history.push((self.now, d as i64));
        while let Some((off, ev, late)) =
            self.schedule
                .pop_due(timing.start_ns, n as u32, timing.ns_per_sample, d, None)
        {
            self.played.push(Played {
                sample: self.sample + off as u64,
                peer: ev.peer,
                msg: ev.msg,
                late,
            });
        }
        self.sample += n;
        let next_ideal = self.sample_epoch + (self.sample as f64 / SR * 1e9) as u64;
        let jitter = self.rng.range(0, self.host_jitter);
        self.at(next_ideal + jitter, What::ReceiverBlock);
    }
}
