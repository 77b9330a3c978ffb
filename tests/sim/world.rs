//! A deterministic world in virtual time: Senders with their own (offset, skewed) machine clocks
//! and sound cards, a network path per Sender (base delay, jitter, random or burst loss,
//! duplication) in both directions, and one Receiver. Every host calls `process()` with blocks
//! of varying size at jittered moments after its sound card's period starts, and every sound
//! card runs off its nominal rate against its machine's clock. The Senders stamp their events
//! as the plugin does (`src/audio/sender.rs`: the block's start on the filtered sample clock,
//! `HostClock`, plus the event's offset over the measured rate), and the Receiver's output goes
//! through the same schedule, playout gate and stuck-note guard as the plugin's. Nothing sleeps
//! and nothing reads a clock: the simulation moves time from event to event.
//!
//! Truth: true time is the Receiver's machine clock. An event's true origin is the true time of
//! the Sender's sound-card sample that its host put it on; what the Receiver played is at the
//! true time of its own sound card's output sample.

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
/// Nominal sample rate of every host.
pub const SR: f64 = 48_000.0;
/// Block sizes of every host, samples: each block draws one in this range.
pub const BLOCKS: (u64, u64) = (64, 512);
/// How late a host calls `process()` after its block's period starts, ns: uniform in
/// `[0, this]` (a badly behaved host; `src/timing/host_clock.rs` is tested down to 100 us).
pub const HOST_JITTER: u64 = MS;
/// Rate error of the Receiver's sound card against its machine clock (true time), ppm.
pub const RECEIVER_DEVICE_PPM: f64 = -70.0;
/// What the Senders' clocks read at true time 0 (2026, in ns since the Unix epoch); the
/// Receiver's clock reads true time itself.
const SENDER_EPOCH: u64 = 1_795_000_000_000_000_000;
/// Window over which the Receiver's audio thread keeps its longest block
/// (`BLOCK_WINDOW_NS` of `src/audio/receiver.rs`), ns.
const BLOCK_WINDOW_NS: u64 = 2_000_000_000;
/// Period of the Receiver's network-thread timer here, ns (the plugin's polls at least every
/// 10 ms while it has peers, `ReceiverCore::poll_timeout`).
pub const RECEIVER_TIMER_NS: u64 = 5 * MS;

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
    /// Sender clock rate error against true time, ppm.
    pub skew_ppm: f64,
    /// Rate error of the Sender's sound card against the Sender's clock, ppm.
    pub device_ppm: f64,
}

/// What the Receiver's host emitted.
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
    /// For a Sender's own event: its number in that Sender's stream.
    pub seq: Option<u64>,
    /// For a Sender's own event: its true origin.
    pub origin: Option<u64>,
}

/// One of a Sender's events as the Receiver's network side got it.
#[derive(Clone, Copy, Debug)]
pub struct Delivered {
    /// True time it arrived (its first copy).
    pub arrival: u64,
    /// True one-way latency: arrival minus true origin, ns. (Negative for an event late in a
    /// short block on a short path: it is sent when its block is processed, at the block's
    /// start, before the sample it is stamped with, as the plugin does.)
    pub latency: i64,
    /// Error of the Receiver's placement of its origin (due time minus true origin: the
    /// Receiver's clock is true time), ns: the Sender's host clock and the clock exchange.
    pub placement: i64,
}

/// Things that happen at a moment of true time.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum What {
    /// Sender `i`'s host calls `process()` for its next block, then its network thread sends.
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

/// A Sender's host and sound card.
struct SenderHost {
    /// Its sample-clock filter, as in the plugin.
    clock: HostClock,
    /// Sound-card sample index of its next block.
    next_sample: u64,
    /// Sender-clock time of sound-card sample 0.
    zero: u64,
    /// Duration of one sound-card sample on the Sender's clock, ns.
    ns_per_sample: f64,
}

/// The simulation.
pub struct World {
    /// True time now, ns.
    pub now: u64,
    /// What happens next: (true time, tie-breaker, what).
    queue: BinaryHeap<Reverse<(u64, u64, What)>>,
    /// Tie-breaker of the queue: things scheduled for the same moment happen in order.
    tie: u64,
    /// The world's randomness (paths, block sizes, host jitter).
    rng: Rng,
    /// Peer specs, by index.
    pub specs: Vec<PeerSpec>,
    /// Gilbert-Elliott state per path and direction (true: bad).
    bad: Vec<[bool; 2]>,
    /// The Senders' protocol cores.
    senders: Vec<SenderCore>,
    /// The Senders' hosts.
    hosts: Vec<SenderHost>,
    /// Sender `i` has been removed (it said goodbye, or vanished).
    gone: Vec<bool>,
    /// Sender `i` vanished without a goodbye (its datagrams stop).
    silent: Vec<bool>,
    /// Events each Sender will play: (true time, message), in time order.
    score: Vec<Vec<(u64, MidiMessage)>>,
    /// Next event of each Sender's score to give its host.
    score_next: Vec<usize>,
    /// What each Sender pushed, by event number: true origin and message.
    pub pushed: Vec<Vec<(u64, MidiMessage)>>,
    /// Peer slot to Sender index.
    slot_owner: Vec<Option<usize>>,
    /// The Receiver's protocol core.
    pub receiver: ReceiverCore,
    /// Margin and mode of the Receiver's playout delay (its parameters).
    playout: (i64, PlayoutMode),
    /// The Receiver's audio schedule.
    schedule: Schedule,
    /// The Receiver's playout gate.
    gate: PlayoutGate,
    /// The Receiver's stuck-note guard.
    voices: Voices,
    /// The Receiver's sample-clock filter.
    host_clock: HostClock,
    /// Next sound-card sample index of the Receiver.
    sample: u64,
    /// Duration of one of the Receiver's sound-card samples, true ns.
    receiver_ns_per_sample: f64,
    /// Everything the Receiver played.
    pub played: Vec<Played>,
    /// Every event the Receiver's network side delivered to its audio side, per peer.
    pub delivered: Vec<Vec<Delivered>>,
    /// Datagrams lost on purpose.
    pub lost: u64,
    /// Datagrams duplicated on purpose.
    pub duplicated: u64,
    /// Items the stuck-note guard dropped as stale.
    pub stale: u64,
    /// End of the Receiver's previous block on its timeline (0 before the first).
    prev_end: u64,
    /// Longest Receiver block of the current window, ns, and when the window began.
    block_max: (u64, u64),
    /// (true time, D in use) after every Receiver block.
    pub delay_history: Vec<(u64, i64)>,
    /// (true time, D the network thread asks for) after every Receiver timer.
    pub target_history: Vec<(u64, i64)>,
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
            hosts: Vec::new(),
            bad: vec![[false; 2]; n],
            gone: vec![false; n],
            silent: vec![false; n],
            specs,
            score: vec![Vec::new(); n],
            score_next: vec![0; n],
            pushed: vec![Vec::new(); n],
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
            playout: (margin, mode),
            schedule: Schedule::with_capacity(16_384),
            gate: PlayoutGate::new(),
            voices: Voices::new(),
            host_clock: HostClock::new(),
            sample: 0,
            receiver_ns_per_sample: 1e9 / (SR * (1.0 + RECEIVER_DEVICE_PPM * 1e-6)),
            played: Vec::new(),
            delivered: vec![Vec::new(); n],
            lost: 0,
            duplicated: 0,
            stale: 0,
            prev_end: 0,
            block_max: (0, 0),
            delay_history: Vec::new(),
            target_history: Vec::new(),
        };
        for i in 0..n {
            // Each Sender's sound card starts at a different phase. Its events wait in its
            // network thread until their block has been processed.
            let phase = w.rng.range(0, 10 * MS);
            let device = 1e9 / (SR * (1.0 + w.specs[i].device_ppm * 1e-6));
            let zero = w.sender_clock(i, phase);
            w.hosts.push(SenderHost {
                clock: HostClock::new(),
                next_sample: 0,
                zero,
                ns_per_sample: device,
            });
            let jitter = w.rng.range(0, HOST_JITTER);
            w.at(phase + jitter, What::SenderBlock(i));
            w.senders[i].set_hold_hint((BLOCKS.1 as f64 / SR * 1e9) as u64);
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

    /// The true time at which Sender `i`'s clock reads `local` (the inverse of
    /// [`World::sender_clock`], to a nanosecond).
    fn true_time(&self, i: usize, local: u64) -> u64 {
        let s = &self.specs[i];
        let since = local as i128 - SENDER_EPOCH as i128 - s.offset as i128;
        (since as f64 / (1.0 + s.skew_ppm * 1e-6)).round() as u64
    }

    /// True time of Sender `i`'s sound-card sample `k`.
    fn sender_sample_time(&self, i: usize, k: u64) -> u64 {
        let h = &self.hosts[i];
        self.true_time(i, h.zero + (k as f64 * h.ns_per_sample).round() as u64)
    }

    /// The sound-card sample of Sender `i` nearest true time `t`.
    fn sender_sample_at(&self, i: usize, t: u64) -> u64 {
        let h = &self.hosts[i];
        let local = self.sender_clock(i, t) as i128 - h.zero as i128;
        (local as f64 / h.ns_per_sample).round().max(0.0) as u64
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
            What::SenderBlock(i) => self.sender_block(i),
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
                // The network thread reads the audio thread's longest recent block first, as
                // `src/net/receiver_thread.rs` does.
                self.receiver.set_block(self.block_max.0);
                self.receiver.handle_timeout(now);
                self.target_history
                    .push((now, self.receiver.playout_delay()));
                self.collect(None);
                self.flush_receiver();
                self.at(now + RECEIVER_TIMER_NS, What::ReceiverTimer);
            }
            What::ReceiverBlock => self.receiver_block(),
        }
    }

    /// Sender `i`'s host processes its next block (called late by up to [`HOST_JITTER`]): the
    /// plugin maps it onto the Sender's clock with its `HostClock` and stamps each event of
    /// the block `block start + offset * measured sample duration`; then its network thread
    /// sends what is due.
    fn sender_block(&mut self, i: usize) {
        if self.gone[i] {
            return;
        }
        let now = self.now;
        let n = self.hosts[i].next_sample;
        let len = self.rng.range(BLOCKS.0, BLOCKS.1);
        let local = self.sender_clock(i, now);
        let timing = self.hosts[i].clock.update(local, len as u32, SR);
        while let Some(&(t, msg)) = self.score[i].get(self.score_next[i]) {
            // The host puts the event on the sample of its sound card nearest its moment.
            let s = self.sender_sample_at(i, t).max(n);
            if s >= n + len {
                break;
            }
            let origin = self.sender_sample_time(i, s);
            self.senders[i].push_event(TimedMessage {
                time_ns: timing.time_of((s - n) as u32),
                msg,
            });
            self.pushed[i].push((origin, msg));
            self.score_next[i] += 1;
        }
        self.senders[i].end_block();
        self.senders[i].handle_timeout(local);
        while let Some(d) = self.senders[i].poll_transmit(local) {
            self.send_up(i, d.as_bytes().to_vec());
        }
        self.hosts[i].next_sample = n + len;
        let next = self.sender_sample_time(i, n + len) + self.rng.range(0, HOST_JITTER);
        self.at(next.max(now), What::SenderBlock(i));
    }

    /// Moves the Receiver's items into the audio schedule; `from` is the Sender whose datagram
    /// just arrived (for the true latency of its events).
    fn collect(&mut self, from: Option<usize>) {
        while let Some(ev) = self.receiver.poll_event() {
            if let (Some(i), Item::Midi(_)) = (from, ev.item) {
                self.slot_owner[ev.peer as usize] = Some(i);
                // (The note-offs a Sender sends when it closes are not in its score.)
                if let Some(&(origin, _)) = self.pushed[i].get(ev.seq as usize) {
                    self.delivered[i].push(Delivered {
                        arrival: self.now,
                        latency: self.now as i64 - origin as i64,
                        placement: ev.due_ns as i64 - origin as i64,
                    });
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

    /// One block of the Receiver's host.
    ///
    /// A model of `ReceiverAudio::process` (`src/audio/receiver.rs`), not a call of it: that
    /// runs inside a host's `ProcessContext` (events out to the host's buffer, counters in
    /// `ReceiverShared`), which this world does not have, and its schedule is being reworked.
    /// What it does with time is kept here step for step: the block on the `HostClock` line,
    /// the target delay (`D` from the network thread, at least the margin; the margin alone in
    /// fixed mode, as `src/lib.rs` passes it), the gate, the late boundary at the previous
    /// block's end, the longest block over a 2 s window, events played at their nearest sample
    /// through the stuck-note guard. Not modelled: the track's own MIDI, panic, offline
    /// rendering, a full schedule.
    fn receiver_block(&mut self) {
        let n = self.rng.range(BLOCKS.0, BLOCKS.1);
        // This call happens at the block's start on the sound card plus a random host delay;
        // the host clock must smooth that away.
        let timing = self.host_clock.update(self.now, n as u32, SR);
        let (start, nps) = (timing.start_ns, timing.ns_per_sample);
        let (margin, mode) = self.playout;
        let target = match mode {
            PlayoutMode::Fixed => margin,
            PlayoutMode::Adaptive => self.receiver.playout_delay().max(margin),
        };
        let next_due = self.schedule.peek().map(|e| e.due_ns);
        let d = self.gate.apply(target, start, next_due);
        self.delay_history.push((self.now, d));
        let block = BlockSpan {
            start_ns: start,
            n: n as u32,
            ns_per_sample: nps,
            late_before_ns: if self.prev_end == 0 || timing.relocked {
                start
            } else {
                start.min(self.prev_end)
            },
        };
        self.prev_end = start + (n as f64 * nps).round() as u64;
        let block_ns = (n as f64 * nps) as u64;
        if start.saturating_sub(self.block_max.1) > BLOCK_WINDOW_NS {
            self.block_max = (block_ns, start);
        } else {
            self.block_max.0 = self.block_max.0.max(block_ns);
        }
        while let Some((off, ev, late)) = self.schedule.pop_due(&block, d.max(0) as u64, None) {
            let owner = self.slot_owner[ev.peer as usize].unwrap_or(usize::MAX);
            if late && std::env::var_os("SIM_DEBUG").is_some() {
                eprintln!(
                    "late item at {}: due {} + d {} = {} < start {} (next_due was {:?}); {:?}",
                    self.now,
                    ev.due_ns,
                    d,
                    ev.due_ns as i64 + d,
                    start,
                    next_due,
                    ev.item
                );
            }
            let repair = !matches!(ev.item, Item::Midi(_));
            let sample = self.sample + off as u64;
            let at = (sample as f64 * self.receiver_ns_per_sample).round() as u64;
            let mut out = Vec::new();
            let o = self.voices.apply(&ev, |m| out.push(m));
            if o.dropped {
                self.stale += 1;
                if std::env::var_os("SIM_DEBUG").is_some() {
                    eprintln!("stale at {}: {:?}", self.now, ev);
                }
            }
            if o.emitted > 0 {
                self.gate.played(start + (off as f64 * nps).round() as u64);
            }
            for msg in out {
                let own = matches!(ev.item, Item::Midi(m) if m == msg);
                let origin = own
                    .then(|| self.pushed.get(owner)?.get(ev.seq as usize).map(|e| e.0))
                    .flatten();
                self.played.push(Played {
                    sample,
                    at,
                    peer: owner,
                    msg,
                    late,
                    repair: repair || !own,
                    delay: d,
                    seq: own.then_some(ev.seq),
                    origin,
                });
            }
        }
        self.sample += n;
        let next_ideal = (self.sample as f64 * self.receiver_ns_per_sample).round() as u64;
        let jitter = self.rng.range(0, HOST_JITTER);
        self.at(next_ideal + jitter, What::ReceiverBlock);
    }

    /// Notes sounding at the Receiver's output now, as its stuck-note guard counts them.
    pub fn held_at_output(&self) -> u32 {
        self.voices.total_held()
    }

    /// Sustain pedals down at the Receiver's output now, as its stuck-note guard counts them.
    pub fn pedals_at_output(&self) -> u32 {
        self.voices.pedals_down()
    }

    /// The Receiver's network-thread `D` at true time `t` (the last timer's), ns.
    pub fn target_at(&self, t: u64) -> i64 {
        let i = self.target_history.partition_point(|e| e.0 <= t);
        self.target_history[i.saturating_sub(1)].1
    }
}
