//! The Receiver's network thread: listens on the configured port (IPv6 and IPv4 on one
//! dual-stack socket), feeds every datagram to [`ReceiverCore`] with its arrival time, passes
//! the scheduled items to the audio thread, and publishes the session for the editor.

use super::key_cache::{key_of, KeyCache};
use super::{clock, ntp, room_file};
use crate::bridge::{NetState, ReceiverShared};
use crate::proto::receiver::{
    push_history, EventDrop, PeerEvent, ReceiverConfig, ReceiverCore, RejectReason, ScheduledEvent,
};
use crate::proto::room::RoomCode;
use crate::proto::seal::{KeyError, RoomKey};
use crate::settings::{ReceiverSettings, Settings};
use crate::status::PUBLISH_EVERY_NS;
use crate::status::{Command, Commands, ListenState, Published, ReceiverStatus};
use crate::ReceiverParams;
use socket2::{Domain, Protocol, Socket, Type};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// Housekeeping period: peer time-outs, the playout delay, settings changes, retrying a busy
/// port, and moving items the audio queue could not take yet.
const HOUSEKEEPING: Duration = Duration::from_millis(5);

/// How long to wait before trying a busy port again.
pub const REBIND_EVERY_NS: u64 = 1_000_000_000;

/// Receive buffer: larger than any datagram we accept, so an oversized one is seen as such
/// (and rejected) instead of silently truncated to a valid-looking prefix.
const RECV_BUF: usize = 2048;

/// Everything the thread needs, moved into it at start.
pub struct ReceiverThread {
    /// Parameters (margin and mode of the playout delay, timeout) and settings (port, room,
    /// NTP server), shared with the host.
    pub params: Arc<ReceiverParams>,
    /// The audio thread's queue.
    pub queue: rtrb::Producer<ScheduledEvent>,
    /// Counters and state shown to the user.
    pub shared: Arc<ReceiverShared>,
    /// Session snapshot for the editor, published a few times a second.
    pub status: Arc<Published<ReceiverStatus>>,
    /// Requests from the editor.
    pub commands: Arc<Commands>,
    /// The room key derived last by this plugin instance, for its next activations.
    pub keys: Arc<KeyCache>,
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

/// The room code of these settings. An unreadable code (a hand-edited project) is replaced
/// by a fresh one, so the room is never left open by accident, and the fresh one is written
/// back into `s` and the shared settings, so that the editor shows (and copies) the code that
/// is in force and the project saves it.
fn code_of(s: &mut ReceiverSettings, shared: &Settings<ReceiverSettings>) -> RoomCode {
    RoomCode::parse(&s.room).unwrap_or_else(|e| {
        let code = RoomCode::random();
        nice_plug::nice_warn!("udp-midi receiver: room code unusable ({e}); using a new one");
        s.room = code.to_string();
        shared.set(s.clone());
        code
    })
}

/// A room key being derived on tokio's blocking pool (Argon2id takes about 22 ms optimised,
/// far more in a debug build): the loop keeps serving meanwhile.
struct Deriving {
    /// The code it is derived from, grouped (for the room file once it is in force).
    code: String,
    /// The derivation.
    task: JoinHandle<Result<RoomKey, KeyError>>,
}

impl Deriving {
    /// Starts deriving the key of `code` (or takes it from `keys`, when it was derived
    /// last).
    fn start(code: RoomCode, keys: &Arc<KeyCache>) -> Self {
        Self {
            code: code.to_string(),
            task: key_of(&code, keys),
        }
    }
}

impl ReceiverThread {
    /// The thread's main loop; returns after `stop` fires.
    pub async fn run(mut self, stop: Arc<Notify>) {
        let settings = self.params.settings.clone();
        let mut current = settings.get();
        let mut port = current.port;
        // The key is derived off the loop; the port is bound once the first one is ready, so
        // that no datagram arrives before the room can check it. `code` is the code in force
        // (the one in the room file).
        let mut deriving = Some(Deriving::start(
            code_of(&mut current, &settings),
            &self.keys,
        ));
        let mut generation = settings.generation();
        let mut code = String::new();
        let (margin, mode) = self.params.playout();
        let mut core = ReceiverCore::new(ReceiverConfig {
            receiver_id: rand::random(),
            epoch: rand::random(),
            key: None,
            open_room: current.open_room,
            margin_ns: margin,
            mode,
            timeout_ns: self.params.timeout_ns(),
        });
        let (ntp_tx, mut ntp_rx) = tokio::sync::watch::channel(None);
        let mut ntp_task = tokio::spawn(ntp::run(current.ntp_server.clone(), ntp_tx));
        let mut socket: Option<UdpSocket> = None;
        let mut next_bind = 0u64;
        let mut buf = vec![0u8; RECV_BUF];
        let mut tick = tokio::time::interval(HOUSEKEEPING);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut status = ReceiverStatus::default();
        let started = clock::now_ns();
        let mut next_publish = started;
        let mut commands = Vec::with_capacity(Commands::CAPACITY);
        self.shared.set_state(NetState::Starting);
        status.listen = ListenState::Starting;
        loop {
            let now = clock::now_ns();
            let g = settings.generation();
            if g != generation {
                let mut new = settings.get();
                if new.port != port {
                    if socket.take().is_some() {
                        room_file::remove(port, &code);
                    }
                    port = new.port;
                    next_bind = 0;
                }
                if new.room != current.room {
                    // The old key stays in force until the new one is ready (a few ms).
                    if let Some(d) = deriving.take() {
                        d.task.abort();
                    }
                    deriving = Some(Deriving::start(code_of(&mut new, &settings), &self.keys));
                }
                // (After `code_of`, which may have written a fresh code back.)
                generation = settings.generation();
                if new.open_room != current.open_room {
                    let key = core.config().key.clone();
                    core.set_room(key, new.open_room);
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
            if deriving.as_ref().is_some_and(|d| d.task.is_finished()) {
                let d = deriving.take().expect("checked just above");
                let key = match d.task.await {
                    Ok(Ok(k)) => Some(k),
                    Ok(Err(e)) => {
                        // No key: sealed datagrams are refused ("sealed, no key"); the room
                        // never opens by accident.
                        nice_plug::nice_error!("udp-midi receiver: {e}; the room stays closed");
                        None
                    }
                    Err(e) => {
                        nice_plug::nice_error!("udp-midi receiver: room key task failed: {e}");
                        None
                    }
                };
                core.set_room(key, current.open_room);
                if d.code != code {
                    // A new code: whoever was kicked may come back with it.
                    core.forgive_kicked();
                }
                if socket.is_some() && d.code != code {
                    room_file::remove(port, &code);
                    let _ = room_file::write(port, &d.code);
                }
                code = d.code;
            }
            // (`None` once the NTP server stopped answering.)
            core.set_ntp(ntp::offset(*ntp_rx.borrow()));
            let (margin, mode) = self.params.playout();
            core.set_playout(margin, mode);
            core.set_timeout(self.params.timeout_ns());
            core.set_block(self.shared.block_ns.load(Relaxed));
            core.set_audio_late(self.shared.late_by_slot());
            if socket.is_none() && now >= next_bind && !code.is_empty() {
                match bind(port) {
                    Ok(s) => {
                        socket = Some(s);
                        self.shared.port.store(port, Relaxed);
                        self.shared.set_state(NetState::Ready);
                        status.listen = ListenState::Listening(port);
                        if let Err(e) = room_file::write(port, &code) {
                            nice_plug::nice_trace!("udp-midi receiver: no local room file: {e}");
                        }
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
                        status.listen = if busy {
                            ListenState::PortInUse(port)
                        } else {
                            ListenState::Error(e.to_string())
                        };
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

            // Replies (clock answers, refusals), each stamped with its send time.
            if let Some(s) = &socket {
                while let Some((to, d)) = core.poll_transmit(clock::now_ns()) {
                    let _ = s.try_send_to(d.as_bytes(), to);
                }
            } else {
                while core.poll_transmit(0).is_some() {}
            }

            // Hand scheduled items to the audio thread; keep what does not fit for later.
            while let Some(ev) = core.poll_event() {
                if let Err(rtrb::PushError::Full(ev)) = self.queue.push(ev) {
                    core.unpoll_event(ev);
                    break;
                }
            }
            while let Some(e) = core.poll_peer_event() {
                match e {
                    PeerEvent::Joined { slot, sender_id } => nice_plug::nice_log!(
                        "udp-midi receiver: sender {sender_id:016x} joined (slot {slot})"
                    ),
                    PeerEvent::Left {
                        slot,
                        sender_id,
                        reason,
                    } => nice_plug::nice_log!(
                        "udp-midi receiver: sender {sender_id:016x} left (slot {slot}, {reason:?})"
                    ),
                }
            }
            commands.clear();
            self.commands.drain_into(&mut commands);
            for c in &commands {
                match *c {
                    Command::Kick(slot) => core.kick(slot as usize),
                    Command::Panic => {
                        self.shared.panic_requests.fetch_add(1, Relaxed);
                    }
                }
            }
            self.publish_counters(&core);
            let now = clock::now_ns();
            if now >= next_publish {
                next_publish = now + PUBLISH_EVERY_NS;
                let applied = self.shared.applied_delay_ns.load(Relaxed);
                core.report(now, applied, &mut status);
                status.late = self.shared.late.load(Relaxed);
                let offline = self.shared.offline_blocks.load(Relaxed);
                status.offline = offline != status.offline_blocks;
                status.offline_blocks = offline;
                push_history(&mut status, (now - started) as f32 / 1e9);
                self.status.publish(&status);
            }
        }
        ntp_task.abort();
        if socket.is_some() {
            room_file::remove(port, &code);
        }
        self.shared.set_state(NetState::Stopped);
        self.shared.port.store(0, Relaxed);
        status.listen = ListenState::Stopped;
        status.peers.clear();
        self.status.publish(&status);
    }

    /// Copies the core's counters to the shared atomics.
    fn publish_counters(&self, core: &ReceiverCore) {
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
        for r in EventDrop::ALL {
            self.shared.events_dropped[r as usize].store(s.dropped[r as usize], Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreadable_room_code_is_replaced_where_the_editor_and_the_project_see_it() {
        let shared = Settings::<ReceiverSettings>::default();
        let mut s = ReceiverSettings {
            room: "not a code".into(),
            ..ReceiverSettings::default()
        };
        shared.set(s.clone());
        let before = shared.generation();
        let code = code_of(&mut s, &shared);
        assert_eq!(s.room, code.to_string());
        assert_eq!(shared.get().room, code.to_string());
        assert!(shared.generation() > before);
        // A readable code is kept as it is, and nothing is written.
        let mut good = shared.get();
        let g = shared.generation();
        assert_eq!(code_of(&mut good, &shared), code);
        assert_eq!(shared.generation(), g);
    }
}
