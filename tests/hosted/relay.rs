//! A UDP impairment relay for tests: it stands between one Sender and a Receiver on loopback
//! and delays, jitters, drops (at random or in bursts), duplicates and reorders datagrams, with
//! seeded random generators so every run draws the same fates. `tc netem` is not available on
//! these machines, so the tests bring their own network.
//!
//! Both directions pass through it (the clock exchange needs the answers to travel the same
//! path): the Sender sends to [`Relay::addr`]; the relay forwards from its own upstream socket
//! to the Receiver, and the Receiver's answers back to the Sender. One relay serves one Sender
//! (the "client": the address it last heard from): with several Senders, start one relay
//! each, so that each has its own upstream socket and the Receiver tells them apart.
//!
//! Threads: one blocking receiver per socket and one sender that sleeps until the next
//! datagram is due, so an idle relay costs nothing and a due datagram leaves within the
//! scheduler's wake-up time. Everything stops on drop, and after [`MAX_LIFETIME`] in any case.
//!
//! It measures what it does: it logs every datagram from the Sender with its arrival and the
//! release of its first copy (the one-way delay it actually had, scheduling lateness
//! included), and counts every fate.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use udp_midi::testkit::Rng;

/// A relay never runs longer than this, whatever the test does.
pub const MAX_LIFETIME: Duration = Duration::from_secs(90);
/// How often the receiving threads look at the stop flag.
const POLL: Duration = Duration::from_millis(20);
/// Header byte holding the packet type (`docs/protocol.md`, "Header").
const TYPE_BYTE: usize = 5;
/// Packet type of Events datagrams.
pub const TYPE_EVENTS: u8 = 1;
/// Packet type of ClockReports: a Sender sends one only once its clock exchange converged
/// (or it has NTP, which the tests switch off).
pub const TYPE_CLOCK_REPORT: u8 = 6;

/// Loss in bursts: the two-state Gilbert-Elliott model (Gilbert 1960, Elliott 1963), every
/// datagram lost in the bad state. Bursts last `1 / leave` datagrams on average; the
/// long-run loss is `enter / (enter + leave)`.
#[derive(Clone, Copy, Debug)]
pub struct Burst {
    /// Probability, per datagram in the good state, of entering the bad state.
    pub enter: f64,
    /// Probability, per datagram in the bad state, of leaving it.
    pub leave: f64,
}

/// What the path does to each datagram, the same in both directions (each direction draws
/// from its own generator).
#[derive(Clone, Copy, Debug)]
pub struct Impairment {
    /// Fixed one-way delay.
    pub base: Duration,
    /// Extra delay, uniform in `[0, jitter]`; datagrams overtake each other when it exceeds
    /// their spacing.
    pub jitter: Duration,
    /// Probability of dropping a datagram, independently of the others.
    pub loss: f64,
    /// Loss in bursts, on top of `loss`.
    pub burst: Option<Burst>,
    /// Probability of sending a datagram twice (each copy with its own jitter).
    pub duplicate: f64,
    /// Probability of holding a datagram back by `reorder_by` more, so later ones overtake it.
    pub reorder: f64,
    /// Extra delay of a held-back datagram.
    pub reorder_by: Duration,
    /// Seed of the generators.
    pub seed: u64,
}

impl Impairment {
    /// A path of `base` one-way delay with `jitter`, nothing lost, duplicated or reordered
    /// on purpose.
    pub fn path(base_ms: u64, jitter_ms: f64, seed: u64) -> Self {
        Self {
            base: Duration::from_millis(base_ms),
            jitter: Duration::from_secs_f64(jitter_ms / 1e3),
            loss: 0.0,
            burst: None,
            duplicate: 0.0,
            reorder: 0.0,
            reorder_by: Duration::ZERO,
            seed,
        }
    }
}

/// The fate-drawing state of one direction.
struct Fates {
    /// Its generator.
    rng: Rng,
    /// In the bad state of the burst model.
    bad: bool,
}

/// What happens to one datagram.
enum Fate {
    /// Dropped (at random, or in a burst).
    Lost,
    /// Sent once or twice, after these delays.
    Sent(Vec<Duration>),
}

impl Fates {
    fn new(seed: u64) -> Self {
        Self {
            rng: Rng(seed),
            bad: false,
        }
    }

    /// Draws the fate of the next datagram. The number of draws per datagram is fixed, so the
    /// fates of the n-th datagram do not depend on what the earlier ones drew.
    fn draw(&mut self, imp: &Impairment, stats: &Direction) -> Fate {
        let u_loss = self.rng.unit();
        let u_burst = self.rng.unit();
        let u_dup = self.rng.unit();
        let u_reorder = self.rng.unit();
        let jitter = [self.rng.unit(), self.rng.unit()];
        if let Some(b) = imp.burst {
            self.bad = if self.bad {
                u_burst >= b.leave
            } else {
                u_burst < b.enter
            };
        }
        if self.bad {
            stats.burst_lost.fetch_add(1, Ordering::Relaxed);
            return Fate::Lost;
        }
        if u_loss < imp.loss {
            stats.lost.fetch_add(1, Ordering::Relaxed);
            return Fate::Lost;
        }
        let copies = if u_dup < imp.duplicate {
            stats.duplicated.fetch_add(1, Ordering::Relaxed);
            2
        } else {
            1
        };
        let held = u_reorder < imp.reorder;
        if held {
            stats.held_back.fetch_add(1, Ordering::Relaxed);
        }
        Fate::Sent(
            jitter[..copies]
                .iter()
                .map(|&u| {
                    let extra = if held { imp.reorder_by } else { Duration::ZERO };
                    imp.base + imp.jitter.mul_f64(u) + extra
                })
                .collect(),
        )
    }
}

/// Counters of one direction.
#[derive(Debug, Default)]
pub struct Direction {
    /// Datagrams received.
    pub received: AtomicU64,
    /// Datagrams forwarded (a duplicated one counts twice).
    pub forwarded: AtomicU64,
    /// Dropped at random.
    pub lost: AtomicU64,
    /// Dropped in a burst.
    pub burst_lost: AtomicU64,
    /// Sent twice.
    pub duplicated: AtomicU64,
    /// Held back to be overtaken.
    pub held_back: AtomicU64,
    /// Dropped because the path was cut.
    pub cut: AtomicU64,
}

/// What the relay did and measured.
#[derive(Debug, Default)]
pub struct RelayStats {
    /// Sender to Receiver.
    pub up: Direction,
    /// Receiver to Sender.
    pub down: Direction,
    /// Upstream datagrams forwarded, by packet type (index: header byte 5, 0 if shorter).
    pub up_by_type: [AtomicU64; 8],
    /// Every upstream datagram received, in arrival order, with its fate.
    pub up_log: Mutex<Vec<UpRecord>>,
}

/// One datagram from the Sender, as the relay received it and what became of it.
#[derive(Clone, Debug)]
pub struct UpRecord {
    /// When it reached the relay.
    pub arrival: Instant,
    /// When its first copy left for the Receiver (`None`: dropped, or not yet due).
    pub released: Option<Instant>,
    /// The datagram.
    pub bytes: Vec<u8>,
}

impl UpRecord {
    /// Its packet type (header byte 5; 0 when shorter).
    pub fn kind(&self) -> u8 {
        self.bytes.get(TYPE_BYTE).copied().unwrap_or(0)
    }

    /// The one-way delay it had, when forwarded.
    pub fn delay(&self) -> Option<Duration> {
        self.released.map(|r| r - self.arrival)
    }
}

impl RelayStats {
    /// Upstream datagrams of packet type `t` forwarded so far.
    pub fn up_forwarded(&self, t: u8) -> u64 {
        self.up_by_type
            .get(t as usize)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// The `q` quantile (0 to 1) of the measured upstream delay of packet type `t` (`None`:
    /// every type), with the number of datagrams it is taken over.
    pub fn up_delay_quantile(&self, t: Option<u8>, q: f64) -> Option<(Duration, usize)> {
        let d: Vec<Duration> = lock(&self.up_log)
            .iter()
            .filter(|r| t.is_none_or(|t| t == r.kind()))
            .filter_map(UpRecord::delay)
            .collect();
        quantile_of(d, q).map(|x| (x, self.up_forwarded_count(t)))
    }

    /// Upstream datagrams of type `t` (`None`: any) forwarded, duplicates counted once.
    fn up_forwarded_count(&self, t: Option<u8>) -> usize {
        lock(&self.up_log)
            .iter()
            .filter(|r| t.is_none_or(|t| t == r.kind()) && r.released.is_some())
            .count()
    }

    /// A copy of the upstream log.
    pub fn up_records(&self) -> Vec<UpRecord> {
        lock(&self.up_log).clone()
    }

    /// A one-line summary of both directions.
    pub fn summary(&self) -> String {
        let dir = |d: &Direction| {
            let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
            format!(
                "{} in, {} out, {} lost, {} lost in bursts, {} duplicated, {} held back, {} cut",
                g(&d.received),
                g(&d.forwarded),
                g(&d.lost),
                g(&d.burst_lost),
                g(&d.duplicated),
                g(&d.held_back),
                g(&d.cut)
            )
        };
        format!("up: {}; down: {}", dir(&self.up), dir(&self.down))
    }
}

/// The `q` quantile (0 to 1) of `v`, nearest rank.
fn quantile_of(mut v: Vec<Duration>, q: f64) -> Option<Duration> {
    if v.is_empty() {
        return None;
    }
    v.sort_unstable();
    let i = ((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1;
    Some(v[i])
}

/// Locks, ignoring poisoning (a panicking test thread must not hide the relay's figures).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A datagram waiting for its release: (due, tie-breaker, upstream?, index in the upstream
/// log (upstream) or 0, bytes).
type Pending = Reverse<(Instant, u64, bool, usize, Vec<u8>)>;

/// What the relay's threads share.
struct Inner {
    /// Impairment of both directions.
    imp: Impairment,
    /// The Receiver.
    receiver: SocketAddr,
    /// Sender side: the Sender sends here, answers go out from here.
    down: UdpSocket,
    /// Receiver side: datagrams to the Receiver go out from here, answers come in here.
    up: UdpSocket,
    /// The Sender (the address last heard from).
    client: Mutex<Option<SocketAddr>>,
    /// Datagrams waiting for their release time.
    queue: Mutex<(BinaryHeap<Pending>, u64)>,
    /// Wakes the releasing thread when a datagram is queued or the relay stops.
    wake: Condvar,
    /// Stop everything.
    stop: AtomicBool,
    /// Drop everything, both ways, from now on (the Sender's network vanished).
    cut: AtomicBool,
    /// Counters and measurements.
    stats: Arc<RelayStats>,
    /// When the relay stops in any case.
    deadline: Instant,
}

impl Inner {
    fn running(&self) -> bool {
        !self.stop.load(Ordering::Relaxed) && Instant::now() < self.deadline
    }

    /// Receives on one side until stopped.
    fn receive(&self, upstream: bool, seed: u64) {
        let (sock, dir) = if upstream {
            (&self.down, &self.stats.up)
        } else {
            (&self.up, &self.stats.down)
        };
        let mut fates = Fates::new(seed);
        let mut buf = [0u8; 2048];
        while self.running() {
            let Ok((n, from)) = sock.recv_from(&mut buf) else {
                continue; // timeout: look at the stop flag again
            };
            let arrival = Instant::now();
            dir.received.fetch_add(1, Ordering::Relaxed);
            let mut index = 0;
            if upstream {
                *lock(&self.client) = Some(from);
                let mut log = lock(&self.stats.up_log);
                index = log.len();
                log.push(UpRecord {
                    arrival,
                    released: None,
                    bytes: buf[..n].to_vec(),
                });
            } else if from != self.receiver {
                continue;
            }
            if self.cut.load(Ordering::Relaxed) {
                dir.cut.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let Fate::Sent(delays) = fates.draw(&self.imp, dir) else {
                continue;
            };
            let mut q = lock(&self.queue);
            for d in delays {
                q.1 += 1;
                let tie = q.1;
                q.0.push(Reverse((
                    arrival + d,
                    tie,
                    upstream,
                    index,
                    buf[..n].to_vec(),
                )));
            }
            drop(q);
            self.wake.notify_one();
        }
        self.wake.notify_one();
    }

    /// Releases queued datagrams when they are due, until stopped.
    fn release(&self) {
        let mut q = lock(&self.queue);
        while self.running() {
            let now = Instant::now();
            let wait = match q.0.peek() {
                Some(Reverse((due, ..))) if *due <= now => None,
                Some(Reverse((due, ..))) => Some((*due - now).min(POLL)),
                None => Some(POLL),
            };
            if let Some(w) = wait {
                q = self
                    .wake
                    .wait_timeout(q, w)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
                continue;
            }
            let Some(Reverse((_, _, upstream, index, bytes))) = q.0.pop() else {
                continue;
            };
            drop(q);
            self.send(upstream, index, &bytes);
            q = lock(&self.queue);
        }
    }

    /// Sends one due datagram on its way.
    fn send(&self, upstream: bool, index: usize, bytes: &[u8]) {
        if self.cut.load(Ordering::Relaxed) {
            let dir = if upstream {
                &self.stats.up
            } else {
                &self.stats.down
            };
            dir.cut.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if upstream {
            if self.up.send_to(bytes, self.receiver).is_ok() {
                let now = Instant::now();
                let t = bytes.get(TYPE_BYTE).copied().unwrap_or(0);
                self.stats.up.forwarded.fetch_add(1, Ordering::Relaxed);
                if let Some(c) = self.stats.up_by_type.get(t as usize) {
                    c.fetch_add(1, Ordering::Relaxed);
                }
                if let Some(r) = lock(&self.stats.up_log).get_mut(index) {
                    r.released.get_or_insert(now);
                }
            }
        } else {
            let client = *lock(&self.client);
            if let Some(c) = client {
                if self.down.send_to(bytes, c).is_ok() {
                    self.stats.down.forwarded.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

/// A running relay; stops and joins its threads on drop.
pub struct Relay {
    /// Where the Sender should send.
    pub addr: SocketAddr,
    /// Counters and measurements.
    pub stats: Arc<RelayStats>,
    /// Shared with the threads.
    inner: Arc<Inner>,
    /// The two receiving threads and the releasing one.
    threads: Vec<JoinHandle<()>>,
}

impl Relay {
    /// Starts a relay in front of `receiver`, on 127.0.0.1.
    pub fn start(receiver: SocketAddr, imp: Impairment) -> std::io::Result<Self> {
        let down = UdpSocket::bind("127.0.0.1:0")?;
        let up = UdpSocket::bind("127.0.0.1:0")?;
        down.set_read_timeout(Some(POLL))?;
        up.set_read_timeout(Some(POLL))?;
        let addr = down.local_addr()?;
        let stats = Arc::new(RelayStats::default());
        let inner = Arc::new(Inner {
            imp,
            receiver,
            down,
            up,
            client: Mutex::new(None),
            queue: Mutex::new((BinaryHeap::new(), 0)),
            wake: Condvar::new(),
            stop: AtomicBool::new(false),
            cut: AtomicBool::new(false),
            stats: stats.clone(),
            deadline: Instant::now() + MAX_LIFETIME,
        });
        let mut threads = Vec::new();
        for (name, upstream) in [("relay up", true), ("relay down", false)] {
            let i = inner.clone();
            // Distinct, fixed streams per direction.
            let seed = imp.seed ^ if upstream { 0 } else { 0x5eed_d0a1_0000_0001 };
            threads.push(
                std::thread::Builder::new()
                    .name(name.into())
                    .spawn(move || i.receive(upstream, seed))?,
            );
        }
        let i = inner.clone();
        threads.push(
            std::thread::Builder::new()
                .name("relay release".into())
                .spawn(move || i.release())?,
        );
        Ok(Self {
            addr,
            stats,
            inner,
            threads,
        })
    }

    /// Cuts the path: from now on every datagram, either way, is dropped (the Sender's
    /// network vanished without a word).
    pub fn cut(&self) {
        self.inner.cut.store(true, Ordering::Relaxed);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.inner.stop.store(true, Ordering::Relaxed);
        self.inner.wake.notify_all();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
