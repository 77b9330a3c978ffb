//! The Sender's network thread: drains the audio thread's queue into [`SenderCore`], resolves
//! the destination, and sends the datagrams the core produces.

use super::{clock, ntp};
use crate::bridge::{NetState, SenderMsg, SenderShared};
use crate::proto::receiver::NtpOffset;
use crate::proto::sender::SenderCore;
use crate::settings::{SenderSettings, Settings};
use crate::status::{Published, SenderStatus};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::{interval, MissedTickBehavior};

/// How often the queue is drained. The audio thread never wakes this thread (that would take
/// a system call, or a lock inside tokio), so it polls: 1 ms adds 0.5 ms of latency on average
/// and costs about a thousand cheap wake-ups per second.
pub const POLL_INTERVAL: Duration = Duration::from_millis(1);

/// How often a destination given by name is looked up again (DNS records change).
const RESOLVE_EVERY_NS: u64 = 60_000_000_000;

/// Everything the thread needs, moved into it at start.
pub struct SenderThread {
    /// Random id of this Sender instance.
    pub sender_id: u64,
    /// Destination and name, shared with the host.
    pub settings: Arc<Settings<SenderSettings>>,
    /// The audio thread's queue.
    pub queue: rtrb::Consumer<SenderMsg>,
    /// Counters shown to the user.
    pub shared: Arc<SenderShared>,
    /// Session snapshot for the editor, published a few times a second.
    pub status: Arc<Published<SenderStatus>>,
}

/// A destination being looked up or known.
enum Dest {
    /// No usable destination (empty host, or the lookup failed).
    None,
    /// A DNS lookup is running.
    Resolving(JoinHandle<Option<SocketAddr>>),
    /// Ready.
    Known(SocketAddr),
}

/// Parses an address literal, or starts a DNS lookup for a name.
fn resolve(s: &SenderSettings) -> Dest {
    let host = s.host.trim().trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || s.port == 0 {
        return Dest::None;
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Dest::Known(SocketAddr::new(ip, s.port));
    }
    let target = (host.to_owned(), s.port);
    Dest::Resolving(tokio::spawn(async move {
        match tokio::net::lookup_host(target.clone()).await {
            Ok(mut addrs) => addrs.next(),
            Err(e) => {
                nice_plug::nice_warn!("udp-midi sender: cannot resolve {}: {e}", target.0);
                None
            }
        }
    }))
}

/// Receives from `socket`, or waits forever when there is none.
async fn recv(
    socket: &Option<(UdpSocket, bool)>,
    buf: &mut [u8],
) -> std::io::Result<(usize, SocketAddr)> {
    match socket {
        Some((s, _)) => s.recv_from(buf).await,
        None => std::future::pending().await,
    }
}

/// A socket of the destination's address family, bound to an ephemeral port.
async fn socket_for(dest: SocketAddr) -> std::io::Result<UdpSocket> {
    let any: SocketAddr = match dest {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    UdpSocket::bind(any).await
}

impl SenderThread {
    /// The thread's main loop; returns after `stop` fires, once the goodbye is sent.
    pub async fn run(mut self, stop: Arc<Notify>) {
        let mut settings = self.settings.get();
        let mut generation = self.settings.generation();
        let mut core = SenderCore::new(self.sender_id, &settings.name);
        let mut dest = resolve(&settings);
        let mut resolved_at = clock::now_ns();
        let mut socket: Option<(UdpSocket, bool)> = None;
        let mut tick = interval(POLL_INTERVAL);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut buf = [0u8; 2048];
        let (ntp_tx, mut ntp_rx) = tokio::sync::watch::channel(None);
        let mut ntp_task = tokio::spawn(ntp::run(settings.ntp_server.clone(), ntp_tx));
        self.shared.set_state(NetState::Starting);
        loop {
            let stopping = tokio::select! {
                _ = stop.notified() => true,
                _ = tick.tick() => false,
                r = recv(&socket, &mut buf) => {
                    let arrival = clock::now_ns();
                    if let Ok((n, from)) = r {
                        // Only our Receiver's answers count.
                        if Some(from) == match dest { Dest::Known(a) => Some(a), _ => None } {
                            let _ = core.handle_datagram(arrival, &buf[..n]);
                        }
                    }
                    false
                }
            };
            let now = clock::now_ns();
            if let Some(n) = *ntp_rx.borrow() {
                core.set_ntp(Some(NtpOffset {
                    offset_ns: n.offset_ns,
                    error_ns: n.error_ns,
                }));
            }

            // Settings changed (project loaded, or edited): follow them.
            let g = self.settings.generation();
            if g != generation {
                generation = g;
                let new = self.settings.get();
                if (new.host.as_str(), new.port) != (settings.host.as_str(), settings.port) {
                    dest = resolve(&new);
                    resolved_at = now;
                }
                core.set_name(&new.name);
                if new.ntp_server != settings.ntp_server {
                    ntp_task.abort();
                    let (tx, rx) = tokio::sync::watch::channel(None);
                    ntp_rx = rx;
                    ntp_task = tokio::spawn(ntp::run(new.ntp_server.clone(), tx));
                    core.set_ntp(None);
                }
                settings = new;
            }
            if matches!(dest, Dest::Known(_))
                && now.saturating_sub(resolved_at) > RESOLVE_EVERY_NS
                && settings.host.parse::<IpAddr>().is_err()
            {
                dest = resolve(&settings);
                resolved_at = now;
            }
            if let Dest::Resolving(h) = &mut dest {
                if h.is_finished() {
                    dest = match h.await {
                        Ok(Some(a)) => Dest::Known(a),
                        _ => Dest::None,
                    };
                }
            }
            let target = match dest {
                Dest::Known(a) => Some(a),
                _ => None,
            };
            self.shared.set_state(match (&dest, &socket) {
                (Dest::Known(_), Some(_)) => NetState::Ready,
                (Dest::None, _) => NetState::Error,
                _ => NetState::Starting,
            });

            // A socket of the right family.
            if let Some(t) = target {
                let is_v6 = t.is_ipv6();
                if socket.as_ref().is_none_or(|(_, v6)| *v6 != is_v6) {
                    socket = match socket_for(t).await {
                        Ok(s) => Some((s, is_v6)),
                        Err(e) => {
                            nice_plug::nice_warn!("udp-midi sender: cannot open a socket: {e}");
                            None
                        }
                    };
                }
            }

            // Drain the audio thread's queue.
            while let Ok(msg) = self.queue.pop() {
                match msg {
                    SenderMsg::Event(ev) => core.push_event(ev),
                    SenderMsg::EndBlock => core.end_block(),
                }
            }
            if stopping {
                core.close();
            } else {
                core.handle_timeout(now);
            }

            // Send.
            while let Some(d) = core.poll_transmit(clock::now_ns()) {
                let sent = match (&socket, target) {
                    (Some((s, _)), Some(t)) => s.try_send_to(d.as_bytes(), t).is_ok(),
                    _ => false,
                };
                if sent {
                    self.shared.datagrams_sent.fetch_add(1, Relaxed);
                } else {
                    self.shared.send_errors.fetch_add(1, Relaxed);
                }
            }
            self.shared
                .events_sent
                .store(core.stats().events_sent, Relaxed);
            self.shared.publish_clock(&core.clock_status(now));
            if stopping {
                break;
            }
        }
        ntp_task.abort();
        self.shared.set_state(NetState::Stopped);
    }
}
