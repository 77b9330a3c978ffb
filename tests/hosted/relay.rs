//! A UDP impairment relay for tests: stands between Senders and a Receiver on loopback and
//! delays, jitters, drops, duplicates and (through jitter) reorders datagrams, with a seeded
//! random generator so every run sees the same network. `tc netem` is not available on these
//! machines, so the test brings its own network.
//!
//! Both directions pass through it (the clock exchange needs the replies to suffer the path
//! too): Senders send to [`Relay::addr`]; the relay forwards from its own upstream socket to the
//! Receiver, and the Receiver's answers back to the Sender that the relay last heard from.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What the path does to each datagram, per direction.
#[derive(Clone, Copy, Debug)]
pub struct Impairment {
    /// Fixed one-way delay.
    pub base: Duration,
    /// Extra delay, uniform in `[0, jitter]`; datagrams overtake each other when it exceeds
    /// their spacing.
    pub jitter: Duration,
    /// Probability of dropping a datagram.
    pub loss: f64,
    /// Probability of sending a datagram twice.
    pub duplicate: f64,
    /// Seed of the random generator.
    pub seed: u64,
}

/// Deterministic PRNG (SplitMix64, Steele, Lea and Flood 2014).
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Counters of what the relay did.
#[derive(Debug, Default)]
pub struct RelayStats {
    /// Datagrams forwarded (duplicates counted twice).
    pub forwarded: AtomicU64,
    /// Datagrams dropped on purpose.
    pub dropped: AtomicU64,
}

/// A running relay; stops and joins on drop.
pub struct Relay {
    /// Where Senders should send.
    pub addr: SocketAddr,
    /// Counters.
    pub stats: Arc<RelayStats>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Relay {
    /// Starts a relay in front of `receiver` on 127.0.0.1.
    pub fn start(receiver: SocketAddr, imp: Impairment) -> std::io::Result<Self> {
        let down = UdpSocket::bind("127.0.0.1:0")?;
        let up = UdpSocket::bind("127.0.0.1:0")?;
        down.set_nonblocking(true)?;
        up.set_nonblocking(true)?;
        let addr = down.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(RelayStats::default());
        let (t_stop, t_stats) = (stop.clone(), stats.clone());
        let thread = std::thread::Builder::new()
            .name("test relay".into())
            .spawn(move || run(down, up, receiver, imp, &t_stop, &t_stats))?;
        Ok(Self {
            addr,
            stats,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A datagram waiting for its release time: (when, tie-breaker, upstream?, bytes).
type Pending = Reverse<(Instant, u64, bool, Vec<u8>)>;

fn run(
    down: UdpSocket,
    up: UdpSocket,
    receiver: SocketAddr,
    imp: Impairment,
    stop: &AtomicBool,
    stats: &RelayStats,
) {
    let mut rng = Rng(imp.seed);
    let mut heap: BinaryHeap<Pending> = BinaryHeap::new();
    let mut sender: Option<SocketAddr> = None;
    let mut buf = [0u8; 2048];
    let mut tie = 0u64;
    // Bounded: a test relay never runs longer than this.
    let deadline = Instant::now() + Duration::from_secs(120);
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        let mut idle = true;
        for (sock, upstream) in [(&down, true), (&up, false)] {
            while let Ok((n, from)) = sock.recv_from(&mut buf) {
                idle = false;
                if upstream {
                    sender = Some(from);
                }
                if rng.unit() < imp.loss {
                    stats.dropped.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let copies = if rng.unit() < imp.duplicate { 2 } else { 1 };
                for _ in 0..copies {
                    let extra = imp.jitter.mul_f64(rng.unit());
                    let at = Instant::now() + imp.base + extra;
                    tie += 1;
                    heap.push(Reverse((at, tie, upstream, buf[..n].to_vec())));
                }
            }
        }
        let now = Instant::now();
        while let Some(Reverse((at, _, _, _))) = heap.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((_, _, upstream, bytes))) = heap.pop() else {
                break;
            };
            let sent = if upstream {
                up.send_to(&bytes, receiver).is_ok()
            } else if let Some(s) = sender {
                down.send_to(&bytes, s).is_ok()
            } else {
                false
            };
            if sent {
                stats.forwarded.fetch_add(1, Ordering::Relaxed);
            }
        }
        if idle {
            // Loopback: a 100 us nap bounds the added delay error well under a sample block.
            std::thread::sleep(Duration::from_micros(100));
        }
    }
}
