//! The Receiver's network thread: listens on the configured port (IPv6 and IPv4 on one
//! dual-stack socket), feeds every datagram to [`ReceiverCore`] with its arrival time, and
//! passes the scheduled events to the audio thread.

use super::{clock, ntp};
use crate::bridge::{NetState, ReceiverShared};
use crate::proto::receiver::{NtpOffset, ReceiverCore, RejectReason, ScheduledEvent};
use crate::status::{Commands, Published, ReceiverStatus};
use crate::ReceiverParams;
use socket2::{Domain, Protocol, Socket, Type};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::sync::Notify;

/// Housekeeping period: peer time-outs, settings changes, retrying a busy port, and moving
/// events the audio queue could not take yet.
const HOUSEKEEPING: Duration = Duration::from_millis(5);

/// How long to wait before trying a busy port again.
const REBIND_EVERY_NS: u64 = 1_000_000_000;

/// Receive buffer: larger than any datagram we accept, so an oversized one is seen as such
/// (and rejected) instead of silently truncated to a valid-looking prefix.
const RECV_BUF: usize = 2048;

/// Everything the thread needs, moved into it at start.
pub struct ReceiverThread {
    /// Random id of this Receiver (in the header of its replies).
    pub receiver_id: u64,
    /// Parameters (margin and mode of the playout delay) and settings (port, NTP server),
    /// shared with the host.
    pub params: Arc<ReceiverParams>,
    /// The audio thread's queue.
    pub queue: rtrb::Producer<ScheduledEvent>,
    /// Counters and state shown to the user.
    pub shared: Arc<ReceiverShared>,
    /// Session snapshot for the editor, published a few times a second.
    pub status: Arc<Published<ReceiverStatus>>,
    /// Requests from the editor.
    pub commands: Arc<Commands>,
}

/// Binds `port` on `[::]` accepting IPv4 too, or on `0.0.0.0` where IPv6 is unavailable.
pub fn bind(port: u16) -> std::io::Result<UdpSocket> {
    let dual = || -> std::io::Result<Socket> {
        let s = Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP))?;
        s.set_only_v6(false)?;
        s.bind(&SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)).into())?;
        Ok(s)
    };
    let socket = match dual() {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => return Err(e),
        Err(_) => {
            let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
            s.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)).into())?;
            s
        }
    };
    socket.set_nonblocking(true)?;
    UdpSocket::from_std(socket.into())
}

/// Receives from `socket`, or waits forever when there is none.
async fn recv(socket: &Option<UdpSocket>, buf: &mut [u8]) -> std::io::Result<(usize, SocketAddr)> {
    match socket {
        Some(s) => s.recv_from(buf).await,
        None => std::future::pending().await,
    }
}

impl ReceiverThread {
    /// The thread's main loop; returns after `stop` fires.
    pub async fn run(mut self, stop: Arc<Notify>) {
        let (margin, mode) = self.params.playout();
        let mut core = ReceiverCore::new(self.receiver_id, margin, mode);
        let settings = self.params.settings.clone();
        let mut current = settings.get();
        let mut port = current.port;
        let mut generation = settings.generation();
        let (ntp_tx, mut ntp_rx) = tokio::sync::watch::channel(None);
        let mut ntp_task = tokio::spawn(ntp::run(current.ntp_server.clone(), ntp_tx));
        let mut socket: Option<UdpSocket> = None;
        let mut next_bind = 0u64;
        let mut buf = vec![0u8; RECV_BUF];
        let mut tick = tokio::time::interval(HOUSEKEEPING);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        self.shared.set_state(NetState::Starting);
        loop {
            let now = clock::now_ns();
            let g = settings.generation();
            if g != generation {
                generation = g;
                let new = settings.get();
                if new.port != port {
                    port = new.port;
                    socket = None;
                    next_bind = 0;
                }
                if new.ntp_server != current.ntp_server {
                    ntp_task.abort();
                    let (tx, rx) = tokio::sync::watch::channel(None);
                    ntp_rx = rx;
                    ntp_task = tokio::spawn(ntp::run(new.ntp_server.clone(), tx));
                    core.set_ntp(None);
                }
                current = new;
            }
            if let Some(n) = *ntp_rx.borrow() {
                core.set_ntp(Some(NtpOffset {
                    offset_ns: n.offset_ns,
                    error_ns: n.error_ns,
                }));
            }
            let (margin, mode) = self.params.playout();
            core.set_playout(margin, mode);
            if socket.is_none() && now >= next_bind {
                match bind(port) {
                    Ok(s) => {
                        socket = Some(s);
                        self.shared.port.store(port, Relaxed);
                        self.shared.set_state(NetState::Ready);
                    }
                    Err(e) => {
                        let busy = e.kind() == std::io::ErrorKind::AddrInUse;
                        // Say it once, not every retry.
                        if self.shared.state() != NetState::PortInUse || !busy {
                            nice_plug::nice_warn!(
                                "udp-midi receiver: cannot listen on UDP port {port}: {e}; retrying"
                            );
                        }
                        self.shared.port.store(0, Relaxed);
                        self.shared.set_state(if busy {
                            NetState::PortInUse
                        } else {
                            NetState::Error
                        });
                        next_bind = now + REBIND_EVERY_NS;
                    }
                }
            }

            tokio::select! {
                _ = stop.notified() => break,
                r = recv(&socket, &mut buf) => {
                    let arrival = clock::now_ns();
                    match r {
                        Ok((n, from)) => {
                            let _ = core.handle_datagram(arrival, from, &buf[..n]);
                        }
                        Err(e) => {
                            // ICMP errors and the like surface here on some systems; they do
                            // not make the socket unusable.
                            nice_plug::nice_trace!("udp-midi receiver: recv error: {e}");
                        }
                    }
                }
                _ = tick.tick() => {
                    core.handle_timeout(clock::now_ns());
                }
            }

            // Answer clock-exchange requests, stamping each with its send time.
            if let Some(s) = &socket {
                while let Some((to, d)) = core.poll_transmit(clock::now_ns()) {
                    let _ = s.try_send_to(d.as_bytes(), to);
                }
            } else {
                while core.poll_transmit(0).is_some() {}
            }

            // Hand scheduled events to the audio thread; keep what does not fit for later.
            while let Some(ev) = core.poll_event() {
                if let Err(rtrb::PushError::Full(ev)) = self.queue.push(ev) {
                    core.unpoll_event(ev);
                    break;
                }
            }
            while core.poll_peer_event().is_some() {}
            self.publish(&core);
        }
        ntp_task.abort();
        self.shared.set_state(NetState::Stopped);
        self.shared.port.store(0, Relaxed);
    }

    /// Copies the core's counters to the shared atomics.
    fn publish(&self, core: &ReceiverCore) {
        let s = core.stats();
        self.shared.datagrams.store(s.datagrams, Relaxed);
        self.shared.events.store(s.events, Relaxed);
        self.shared.peers.store(core.peers().len() as u64, Relaxed);
        self.shared
            .playout_delay_ns
            .store(core.playout_delay(), Relaxed);
        for r in RejectReason::ALL {
            self.shared.rejected[r as usize].store(s.rejected[r as usize], Relaxed);
        }
    }
}
