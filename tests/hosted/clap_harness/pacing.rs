//! Time and the process: real-time pacing, the lock that runs timing tests one at a time,
//! waiting for a condition, running a test alone in a child process; free ports, and what the
//! process holds (threads, UDP sockets).

use std::collections::BTreeSet;
use std::net::UdpSocket;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Runs blocks at real-time pace: block `i` is due `i * block / sample_rate` after the start.
pub struct Pacer {
    /// When block 0 is due.
    start: Instant,
    /// How long one block lasts at the sample rate.
    block: Duration,
}

impl Pacer {
    /// A pacer starting now.
    pub fn new(sample_rate: f64, block: u32) -> Self {
        Self {
            start: Instant::now(),
            block: Duration::from_secs_f64(block as f64 / sample_rate),
        }
    }

    /// When block `index` is due.
    pub fn due(&self, index: u64) -> Instant {
        self.start + self.block.mul_f64(index as f64)
    }

    /// Sleeps until block `index` is due (returns at once when it is already late).
    pub fn wait_for_block(&self, index: u64) {
        let due = self.due(index);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
    }
}

/// A UDP port nobody uses, for one test. Ports come from 20000-29999 (below Linux's ephemeral
/// range, so a Sender's own socket never takes it), from a per-process sequence (tests running
/// in parallel never share one) starting at an offset chosen by the process id (parallel test
/// processes rarely collide), and each is checked free on IPv4 and IPv6 first.
pub fn free_udp_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = (std::process::id() % 500) * 20;
    for _ in 0..10_000 {
        let k = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (20_000 + (start + k) % 10_000) as u16;
        // One at a time: a dual-stack IPv6 socket conflicts with an IPv4 one on the same port.
        // IPv6 may be missing on the machine: then only IPv4 has to be free.
        let v4 = UdpSocket::bind(("0.0.0.0", port)).is_ok();
        if v4 && (!ipv6_available() || UdpSocket::bind(("::", port)).is_ok()) {
            return port;
        }
    }
    panic!("no free UDP port in 20000-29999");
}

/// Whether this machine can open IPv6 sockets.
fn ipv6_available() -> bool {
    UdpSocket::bind("[::1]:0").is_ok()
}

/// Whether any socket of this machine is bound to UDP `port` (IPv4 or IPv6), from
/// `/proc/net/udp{,6}`: a passive check, which never takes the port from the plugin.
pub fn udp_port_bound(port: u16) -> bool {
    let needle = format!(":{port:04X}");
    ["/proc/net/udp", "/proc/net/udp6"].iter().any(|f| {
        std::fs::read_to_string(f).is_ok_and(|text| {
            text.lines().skip(1).any(|l| {
                l.split_whitespace()
                    .nth(1)
                    .is_some_and(|local| local.ends_with(&needle))
            })
        })
    })
}

/// The UDP sockets of `/proc/net/udp` and `/proc/net/udp6`: (local port, inode) of each.
fn udp_table() -> Vec<(u16, u64)> {
    let mut v = Vec::new();
    for f in ["/proc/net/udp", "/proc/net/udp6"] {
        let Ok(text) = std::fs::read_to_string(f) else {
            continue;
        };
        // Columns: sl local_address rem_address st tx:rx tr:tm retrnsmt uid timeout inode ...
        for l in text.lines().skip(1) {
            let cols: Vec<&str> = l.split_whitespace().collect();
            let port = cols
                .get(1)
                .and_then(|a| a.rsplit(':').next())
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            let inode = cols.get(9).and_then(|i| i.parse().ok());
            if let (Some(port), Some(inode)) = (port, inode) {
                v.push((port, inode));
            }
        }
    }
    v
}

/// This process's open files that are sockets: the inodes of `/proc/self/fd/*` links
/// `socket:[inode]`.
fn socket_inodes() -> BTreeSet<u64> {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|target| {
            let t = target.to_str()?;
            t.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
        })
        .collect()
}

/// This process's UDP sockets, by inode: its sockets that `/proc/net/udp{,6}` lists.
pub fn udp_sockets() -> BTreeSet<u64> {
    let ours = socket_inodes();
    udp_table()
        .into_iter()
        .map(|(_, inode)| inode)
        .filter(|i| ours.contains(i))
        .collect()
}

/// The inode of this process's UDP socket bound to `port`, if it has one.
pub fn udp_socket_on(port: u16) -> Option<u64> {
    let ours = socket_inodes();
    udp_table()
        .into_iter()
        .find(|&(p, inode)| p == port && ours.contains(&inode))
        .map(|(_, inode)| inode)
}

/// Number of this process's open file descriptors (entries of `/proc/self/fd`).
pub fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .count()
}

/// Waits up to `timeout` for `cond`, polling every millisecond; returns whether it held.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Names of this process's threads (`/proc/self/task/*/comm`).
pub fn thread_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .filter_map(|e| e.ok())
        .map(|e| {
            std::fs::read_to_string(e.path().join("comm"))
                .map(|s| s.trim().to_owned())
                .unwrap_or_else(|_| "?".into())
        })
        .collect();
    names.sort();
    names
}

/// Number of threads of this process (entries of `/proc/self/task`).
pub fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .count()
}

/// Serialises the tests that play at real-time pace and check timing: run side by side on a
/// two-core machine they would measure each other's scheduling, not the plugins. Hold the
/// guard for the whole test.
pub fn realtime() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Runs the `#[ignore]`d test `name` (its full path, e.g. `lifecycle::child_x`) alone in a
/// child process of this test binary, so that nothing else runs in the process it measures
/// (thread and socket counts), and fails if it fails or did not run. It holds [`realtime`]
/// meanwhile: a child that starts a hundred plugin instances (threads, sockets, room key
/// derivations) keeps a core busy, which would show in a timing test running beside it.
pub fn run_isolated(name: &str) {
    let _realtime = realtime();
    let exe = std::env::current_exe().expect("current_exe");
    let out = std::process::Command::new(exe)
        .args([
            "--ignored",
            "--exact",
            name,
            "--nocapture",
            "--test-threads=1",
        ])
        .output()
        .expect("cannot run the test binary");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("---- {name} (child process) stdout:\n{stdout}");
    if !stderr.trim().is_empty() {
        println!("---- {name} (child process) stderr:\n{stderr}");
    }
    assert!(out.status.success(), "{name} failed in its child process");
    assert!(
        stdout.contains("test result: ok. 1 passed"),
        "{name} did not run in its child process"
    );
}
