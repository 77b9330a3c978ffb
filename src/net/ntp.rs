//! NTP on the network thread: the offset of this machine's session clock to UTC, through
//! `rsntp` (SNTP, RFC 4330).
//!
//! This is the fallback and the prior of the alignment: the direct clock exchange between a
//! Sender and its Receiver measures the actual pair and wins once it has converged. No NTP
//! server reachable is normal (offline studios, firewalls): the task just keeps retrying
//! quietly and the estimate stays `None`.

use super::clock;
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

/// Queries `server` now and then, forever, publishing each result. Meant to be spawned on the
/// network thread's runtime, which drops it on shutdown. An empty server disables it.
pub async fn run(server: String, out: watch::Sender<Option<NtpSample>>) {
    if server.trim().is_empty() {
        return;
    }
    let mut said = false;
    loop {
        let wait = match query(&server).await {
            Ok(s) => {
                let _ = out.send(Some(s));
                said = false;
                POLL_OK
            }
            Err(e) => {
                if !said {
                    nice_plug::nice_log!("udp-midi: NTP unavailable ({e}); retrying");
                    said = true;
                }
                POLL_FAIL
            }
        };
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests {
    use super::split_host_port;

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
