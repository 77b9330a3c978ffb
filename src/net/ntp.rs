//! NTP on the network thread: the offset of this machine's session clock to UTC, through
//! `rsntp` (SNTP, RFC 4330).
//!
//! This is the fallback of the alignment: the direct clock exchange between a Sender and its
//! Receiver measures the actual pair and wins once it has converged (the exchange uses no NTP
//! information: its skew is shrunk towards zero, not towards anything NTP says). No NTP server
//! reachable is normal (offline studios, firewalls): the task just keeps retrying quietly and
//! the estimate stays `None`.
//!
//! A result ages: between queries it is published again every [`REFRESH`] with its error bound
//! grown by NTP's frequency tolerance `PHI` (15 ppm, RFC 5905 §7.2) for each second since it
//! was measured, and once [`UNREACHABLE_AFTER`] queries in a row have gone unanswered it is
//! withdrawn (`None`), as NTP counts a server unreachable.

use super::clock;
use crate::proto::receiver::NtpOffset;
use crate::timing::clock_filter::PHI;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;

/// Default server: the NTP Pool's round-robin name.
pub const DEFAULT_SERVER: &str = "pool.ntp.org";
/// Port of NTP (RFC 5905 §7.2), used when the setting names none.
const NTP_PORT: u16 = 123;
/// Time between queries once synchronised: 64 s, NTP's default minimum poll interval
/// (RFC 5905 §7.3, `MINPOLL` = 6), which is also the most a pool server expects from a client.
const POLL_OK: Duration = Duration::from_secs(64);
/// Time between queries while no server answers.
const POLL_FAIL: Duration = Duration::from_secs(16);
/// How long to wait for an answer.
const TIMEOUT: Duration = Duration::from_secs(2);
/// Queries in a row without an answer after which the last result is withdrawn: eight, the
/// length of NTP's reachability register (RFC 5905 §9.2: a server none of whose last eight
/// polls was answered is unreachable). With the intervals above, 176 s after the last answer.
pub const UNREACHABLE_AFTER: u32 = 8;
/// How often the result is published again between queries, its error bound grown.
pub const REFRESH: Duration = Duration::from_secs(4);

/// One NTP measurement of the session clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NtpSample {
    /// UTC minus session time, ns.
    pub offset_ns: i64,
    /// Half the round trip to the server: a bound on the offset's error, ns.
    pub error_ns: u64,
    /// Session time of the measurement.
    pub at_ns: u64,
}

impl NtpSample {
    /// This measurement as it stands at session time `now`: its error bound grown by [`PHI`]
    /// for each second since it was made (the session clock may have drifted that much).
    pub fn aged(&self, now: u64) -> Self {
        let age = now.saturating_sub(self.at_ns) as f64;
        Self {
            error_ns: self.error_ns.saturating_add((age * PHI) as u64),
            ..*self
        }
    }
}

/// An NTP result as the protocol cores take it.
pub fn offset(s: Option<NtpSample>) -> Option<NtpOffset> {
    s.map(|s| NtpOffset {
        offset_ns: s.offset_ns,
        error_ns: s.error_ns,
    })
}

/// The latest answer and the queries unanswered since. Pure: the time is an argument.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reach {
    /// The latest answer, while the server counts as reachable.
    last: Option<NtpSample>,
    /// Queries in a row without an answer.
    missed: u32,
}

impl Reach {
    /// A query was answered.
    pub fn answered(&mut self, s: NtpSample) {
        self.last = Some(s);
        self.missed = 0;
    }

    /// A query went unanswered.
    pub fn missed(&mut self) {
        self.missed = self.missed.saturating_add(1);
        if self.missed >= UNREACHABLE_AFTER {
            self.last = None;
        }
    }

    /// What to publish at session time `now`.
    pub fn current(&self, now: u64) -> Option<NtpSample> {
        self.last.map(|s| s.aged(now))
    }
}

/// Parses `host`, `host:port`, `v4:port` or `[v6]:port` into a host and a port.
pub fn split_host_port(server: &str) -> (String, u16) {
    let s = server.trim();
    if let Ok(a) = s.parse::<SocketAddr>() {
        return (a.ip().to_string(), a.port());
    }
    if let Some((h, p)) = s.rsplit_once(':') {
        if !h.contains(':') {
            if let Ok(p) = p.parse() {
                return (h.to_owned(), p);
            }
        }
    }
    (
        s.trim_start_matches('[').trim_end_matches(']').to_owned(),
        NTP_PORT,
    )
}

/// Queries `server` once and returns the session clock's offset to UTC.
pub async fn query(server: &str) -> Result<NtpSample, String> {
    let (host, port) = split_host_port(server);
    let addr = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host} has no address"))?;
    let bind: SocketAddr = match addr {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let client = rsntp::AsyncSntpClient::with_config(
        rsntp::Config::default().bind_address(bind).timeout(TIMEOUT),
    );
    let r = client
        .synchronize(addr)
        .await
        .map_err(|e| format!("no answer from {server}: {e}"))?;
    // rsntp measures the system clock; ours is the session clock, anchored to it once and
    // then monotonic. Their difference now converts one offset into the other.
    let session = clock::now_ns() as i128;
    let system = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos()) as i128;
    let sys_offset = (r.clock_offset().as_secs_f64() * 1e9) as i128;
    let rtt = r.round_trip_delay().as_secs_f64().max(0.0) * 1e9;
    Ok(NtpSample {
        offset_ns: (sys_offset + system - session) as i64,
        error_ns: (rtt / 2.0) as u64,
        at_ns: session as u64,
    })
}

/// Queries `server` now and then, forever, publishing the result as it ages (see the module
/// documentation). Meant to be spawned on the network thread's runtime, which drops it on
/// shutdown. An empty server disables it.
pub async fn run(server: String, out: watch::Sender<Option<NtpSample>>) {
    if server.trim().is_empty() {
        return;
    }
    let mut said = false;
    let mut reach = Reach::default();
    loop {
        let wait = match query(&server).await {
            Ok(s) => {
                reach.answered(s);
                said = false;
                POLL_OK
            }
            Err(e) => {
                reach.missed();
                if !said {
                    nice_plug::nice_log!("udp-midi: NTP unavailable ({e}); retrying");
                    said = true;
                }
                POLL_FAIL
            }
        };
        let next = tokio::time::Instant::now() + wait;
        loop {
            let _ = out.send(reach.current(clock::now_ns()));
            let left = next.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                break;
            }
            tokio::time::sleep(left.min(REFRESH)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_result_ages_and_is_withdrawn_after_eight_unanswered_queries() {
        let s = NtpSample {
            offset_ns: 3_000,
            error_ns: 20_000,
            at_ns: 1_000_000_000,
        };
        let mut r = Reach::default();
        assert_eq!(r.current(0), None);
        r.answered(s);
        assert_eq!(r.current(s.at_ns), Some(s));
        // 100 s later its bound has grown by 15 ppm of that: 1.5 ms.
        let later = r.current(s.at_ns + 100_000_000_000).unwrap();
        assert_eq!((later.offset_ns, later.error_ns), (3_000, 1_520_000));
        for _ in 1..UNREACHABLE_AFTER {
            r.missed();
        }
        assert!(
            r.current(s.at_ns).is_some(),
            "seven missed: still reachable"
        );
        r.missed();
        assert_eq!(r.current(s.at_ns), None, "eight missed: withdrawn");
        r.answered(s);
        assert_eq!(offset(r.current(s.at_ns)).map(|o| o.offset_ns), Some(3_000));
    }

    #[test]
    fn host_port_forms() {
        assert_eq!(
            split_host_port("pool.ntp.org"),
            ("pool.ntp.org".into(), 123)
        );
        assert_eq!(
            split_host_port("127.0.0.1:11123"),
            ("127.0.0.1".into(), 11123)
        );
        assert_eq!(split_host_port("[::1]:5"), ("::1".into(), 5));
        assert_eq!(split_host_port("::1"), ("::1".into(), 123));
        assert_eq!(
            split_host_port("time.example:99"),
            ("time.example".into(), 99)
        );
    }
}
