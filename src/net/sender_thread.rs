//! The Sender's network thread: drains the audio thread's queue into [`SenderCore`], resolves
//! the destination, finds the room key, sends the datagrams the core produces, and publishes
//! the link for the editor.

use super::key_cache::{key_of, KeyCache};
use super::{clock, ntp, room_file};
use crate::bridge::{NetState, SenderMsg, SenderShared};
use crate::proto::room::RoomCode;
use crate::proto::seal::{KeyError, RoomKey};
use crate::proto::sender::{Link, SenderCore};
use crate::proto::wire::ClockSource as WireSource;
use crate::settings::{SenderSettings, Settings};
use crate::status::PUBLISH_EVERY_NS;
use crate::status::{ClockSource, LinkState, Published, SenderStatus};
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
/// How often the local room file is read again while the code is taken from it.
const ROOM_FILE_EVERY_NS: u64 = 2_000_000_000;
/// ... and while the Receiver does not answer or refuses us.
const ROOM_FILE_RETRY_NS: u64 = 100_000_000;
/// Longest the thread stays, once asked to stop, to send the goodbye's repeats
/// ([`crate::proto::sender::BYE_ROUNDS`] rounds spanning 20 ms), ns.
const GOODBYE_WAIT_NS: u64 = 50_000_000;

/// Everything the thread needs, moved into it at start.
pub struct SenderThread {
    /// Destination, name and room code, shared with the host.
    pub settings: Arc<Settings<SenderSettings>>,
    /// The audio thread's queue.
    pub queue: rtrb::Consumer<SenderMsg>,
    /// Counters shown to the user.
    pub shared: Arc<SenderShared>,
    /// Session snapshot for the editor, published a few times a second.
    pub status: Arc<Published<SenderStatus>>,
    /// The room key derived last by this plugin instance, for its next activations.
    pub keys: Arc<KeyCache>,
}

/// A destination being looked up or known.
enum Dest {
    /// No usable destination (the text says why).
    None(String),
    /// A DNS lookup is running.
    Resolving(JoinHandle<Result<SocketAddr, String>>),
    /// Ready.
    Known(SocketAddr),
}

/// The host of these settings as an address literal, if it is one (an IPv6 address may be
/// written in brackets).
fn literal(s: &SenderSettings) -> Option<IpAddr> {
    s.host
        .trim()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
}

/// Parses an address literal, or starts a DNS lookup for a name.
fn resolve(s: &SenderSettings) -> Dest {
    let host = s.host.trim().trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Dest::None("no destination set".into());
    }
    if s.port == 0 {
        return Dest::None("port 0 is not a destination".into());
    }
    if let Some(ip) = literal(s) {
        return Dest::Known(SocketAddr::new(ip, s.port));
    }
    let target = (host.to_owned(), s.port);
    Dest::Resolving(tokio::spawn(async move {
        match tokio::net::lookup_host(target.clone()).await {
            Ok(mut addrs) => addrs
                .next()
                .ok_or_else(|| format!("{} has no address", target.0)),
            Err(e) => Err(format!("cannot resolve {}: {e}", target.0)),
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

/// Which room code the settings call for.
#[derive(Clone, Debug, PartialEq, Eq)]
enum CodeChoice {
    /// This code.
    Code(RoomCode),
    /// None: plain datagrams, for an open room (no code set, and no local Receiver's file).
    NoCode,
    /// The local Receiver's room file is missing right now (it is restarting): keep what was
    /// found before.
    Keep,
    /// The code set does not parse (the text says why): nothing may be sent, not even plain
    /// (an open room would take plain datagrams, and the player meant a closed one).
    Bad(String),
}

/// The room code to use: the one set, or, when none is set and the Receiver is on this
/// machine, the one in its room file.
fn code_for(s: &SenderSettings, dest: Option<SocketAddr>) -> CodeChoice {
    if !s.room.trim().is_empty() {
        return match RoomCode::parse(&s.room) {
            Ok(c) => CodeChoice::Code(c),
            Err(e) => CodeChoice::Bad(e.to_string()),
        };
    }
    let Some(d) = dest else {
        return CodeChoice::NoCode;
    };
    if !d.ip().is_loopback() {
        return CodeChoice::NoCode;
    }
    match room_file::read(d.port()).map(|t| RoomCode::parse(&t)) {
        Some(Ok(c)) => CodeChoice::Code(c),
        _ => CodeChoice::Keep,
    }
}

/// Where the room key stands. Nothing is sent unless it is [`KeyState::Ready`].
enum KeyState {
    /// Nothing decided yet (the first look at the settings is still to come).
    Unknown,
    /// The key of this code (or no code) is in the core.
    Ready(Option<RoomCode>),
    /// Deriving the key of this code on tokio's blocking pool (Argon2id: about 22 ms
    /// optimised; at once when this instance derived it last), while the loop keeps serving.
    Deriving(RoomCode, JoinHandle<Result<RoomKey, KeyError>>),
    /// No usable key (an unreadable code, or the derivation failed): the text says why.
    Unusable(String),
}

impl KeyState {
    /// The code the current or coming key is for (`None`: no code, or none usable).
    fn code(&self) -> Option<&RoomCode> {
        match self {
            Self::Ready(c) => c.as_ref(),
            Self::Deriving(c, _) => Some(c),
            Self::Unknown | Self::Unusable(_) => None,
        }
    }
}

impl SenderThread {
    /// The thread's main loop; returns after `stop` fires, once the goodbye is sent.
    pub async fn run(mut self, stop: Arc<Notify>) {
        let mut settings = self.settings.get();
        let mut generation = self.settings.generation();
        let mut core = SenderCore::new(rand::random(), &settings.name, None);
        core.set_redundancy(settings.redundancy as usize);
        let mut dest = resolve(&settings);
        let mut resolved_at = clock::now_ns();
        let mut key = KeyState::Unknown;
        let mut code_checked = 0u64;
        let mut socket: Option<(UdpSocket, bool)> = None;
        let mut tick = interval(POLL_INTERVAL);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut buf = [0u8; 2048];
        let (ntp_tx, mut ntp_rx) = tokio::sync::watch::channel(None);
        let mut ntp_task = tokio::spawn(ntp::run(settings.ntp_server.clone(), ntp_tx));
        let mut status = SenderStatus::default();
        let mut next_publish = 0u64;
        let mut ntp_now: Option<ntp::NtpSample>;
        self.shared.set_state(NetState::Starting);
        loop {
            let stopping = tokio::select! {
                _ = stop.notified() => true,
                _ = tick.tick() => false,
                r = recv(&socket, &mut buf) => {
                    let arrival = clock::now_ns();
                    if let Ok((n, from)) = r {
                        // Only our Receiver's answers count.
                        if matches!(dest, Dest::Known(a) if a == from) {
                            let _ = core.handle_datagram(arrival, &buf[..n]);
                        }
                    }
                    false
                }
            };
            let now = clock::now_ns();
            // (`None` once the NTP server stopped answering.)
            ntp_now = *ntp_rx.borrow();
            core.set_ntp(ntp::offset(ntp_now));

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
                core.set_redundancy(new.redundancy as usize);
                if new.ntp_server != settings.ntp_server {
                    ntp_task.abort();
                    let (tx, rx) = tokio::sync::watch::channel(None);
                    ntp_rx = rx;
                    ntp_task = tokio::spawn(ntp::run(new.ntp_server.clone(), tx));
                    core.set_ntp(None);
                    ntp_now = None;
                }
                settings = new;
                code_checked = 0;
            }
            if matches!(dest, Dest::Known(_))
                && now.saturating_sub(resolved_at) > RESOLVE_EVERY_NS
                && literal(&settings).is_none()
            {
                dest = resolve(&settings);
                resolved_at = now;
            }
            if let Dest::Resolving(h) = &mut dest {
                if h.is_finished() {
                    dest = match h.await {
                        Ok(Ok(a)) => Dest::Known(a),
                        Ok(Err(e)) => {
                            nice_plug::nice_warn!("udp-midi sender: {e}");
                            Dest::None(e)
                        }
                        Err(_) => Dest::None("lookup failed".into()),
                    };
                    code_checked = 0;
                }
            }
            let target = match dest {
                Dest::Known(a) => Some(a),
                _ => None,
            };

            // The room key: derived again (slowly) only when the code changes. A code taken from
            // the local Receiver's room file is looked at again often until it works.
            if core.link() == Link::Refused && settings.room.trim().is_empty() {
                code_checked = code_checked.min(now + ROOM_FILE_RETRY_NS);
            }
            if now >= code_checked && !stopping {
                code_checked = now
                    + if settings.room.trim().is_empty() && core.link() != Link::Connected {
                        ROOM_FILE_RETRY_NS
                    } else {
                        ROOM_FILE_EVERY_NS
                    };
                let choice = code_for(&settings, target);
                match choice {
                    CodeChoice::Keep if !matches!(key, KeyState::Unknown) => {}
                    CodeChoice::Keep | CodeChoice::NoCode => {
                        if !matches!(key, KeyState::Ready(None)) {
                            if let KeyState::Deriving(_, t) = &key {
                                t.abort();
                            }
                            core.set_key(None);
                            key = KeyState::Ready(None);
                        }
                    }
                    CodeChoice::Code(c) => {
                        let unusable = matches!(key, KeyState::Unusable(_));
                        if unusable || key.code() != Some(&c) {
                            if let KeyState::Deriving(_, t) = &key {
                                t.abort();
                            }
                            let task = key_of(&c, &self.keys);
                            key = KeyState::Deriving(c, task);
                        }
                    }
                    CodeChoice::Bad(why) => {
                        if let KeyState::Deriving(_, t) = &key {
                            t.abort();
                        }
                        if !matches!(&key, KeyState::Unusable(w) if *w == why) {
                            nice_plug::nice_warn!("udp-midi sender: room code unusable: {why}");
                        }
                        key = KeyState::Unusable(why);
                    }
                }
            }
            if let KeyState::Deriving(c, t) = &mut key {
                if t.is_finished() {
                    let c = c.clone();
                    key = match t.await {
                        Ok(Ok(k)) => {
                            core.set_key(Some(k));
                            KeyState::Ready(Some(c))
                        }
                        Ok(Err(e)) => {
                            nice_plug::nice_error!("udp-midi sender: {e}");
                            KeyState::Unusable(e.to_string())
                        }
                        Err(e) => KeyState::Unusable(format!("room key task failed: {e}")),
                    };
                }
            }
            // Sending waits for the key: without it a datagram would go out plain, which an
            // open room takes from anyone.
            let may_send = matches!(key, KeyState::Ready(_));

            self.shared.set_state(match (&dest, &socket) {
                _ if matches!(key, KeyState::Unusable(_)) => NetState::Error,
                (Dest::Known(_), Some(_)) => NetState::Ready,
                (Dest::None(_), _) => NetState::Error,
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
                core.close(now);
            } else {
                core.handle_timeout(now);
            }

            // Send.
            let send_all = |core: &mut SenderCore| {
                while let Some(d) = may_send
                    .then(|| core.poll_transmit(clock::now_ns()))
                    .flatten()
                {
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
            };
            send_all(&mut core);
            if stopping {
                // The goodbye's later rounds (the last batches and Bye again, 10 ms apart),
                // within GOODBYE_WAIT: deactivating the plugin waits for this thread.
                let deadline = now.saturating_add(GOODBYE_WAIT_NS);
                while let Some(t) = core.poll_timeout().filter(|&t| t <= deadline) {
                    let wait = t.saturating_sub(clock::now_ns());
                    tokio::time::sleep(Duration::from_nanos(wait)).await;
                    core.handle_timeout(clock::now_ns());
                    send_all(&mut core);
                }
            }
            let clock_status = core.clock_status(now);
            self.shared
                .events_sent
                .store(core.stats().events_sent, Relaxed);
            self.shared.publish_clock(&clock_status);
            if now >= next_publish || stopping {
                next_publish = now + PUBLISH_EVERY_NS;
                status.link = match (&key, &dest, core.link()) {
                    (KeyState::Unusable(why), _, _) => LinkState::BadRoomCode(why.clone()),
                    (_, Dest::None(why), _) => LinkState::NoDestination(why.clone()),
                    (_, Dest::Resolving(_), _) => LinkState::NoReply,
                    (_, _, Link::NoReply) => LinkState::NoReply,
                    (_, _, Link::Connected) => LinkState::Connected,
                    (_, _, Link::Refused) => LinkState::Refused,
                };
                status.destination = target;
                status.rtt_ns = (clock_status.rtt_ns > 0).then_some(clock_status.rtt_ns);
                status.clock = match clock_status.source {
                    Some(WireSource::Direct) => ClockSource::Direct,
                    Some(WireSource::Ntp) => ClockSource::Ntp,
                    None => ClockSource::None,
                };
                status.clock_offset_ns = clock_status.offset_ns;
                status.clock_error_ns = clock_status.error_ns;
                status.skew_ppm = clock_status.skew_ppm;
                status.ntp = ntp_now.map(|n| (n.offset_ns, n.error_ns));
                let st = core.stats();
                status.events_sent = st.events_sent;
                status.datagrams_sent = st.datagrams;
                status.events_dropped =
                    self.shared.events_dropped.load(Relaxed) + st.events_dropped;
                self.status.publish(&status);
            }
            if stopping {
                break;
            }
        }
        ntp_task.abort();
        self.shared.set_state(NetState::Stopped);
        status.link = LinkState::Stopped;
        self.status.publish(&status);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_room(room: &str) -> SenderSettings {
        SenderSettings {
            room: room.into(),
            ..SenderSettings::default()
        }
    }

    #[test]
    fn a_mistyped_code_is_unusable_not_plain() {
        let far: SocketAddr = "203.0.113.7:47800".parse().unwrap();
        // One symbol short, and a symbol that is in no code.
        for typed in ["7QF2-M9KD-XW3C-T0Z", "7QF2-M9KD-XW3C-T0Z!"] {
            let c = code_for(&with_room(typed), Some(far));
            assert!(matches!(c, CodeChoice::Bad(_)), "{typed}: {c:?}");
        }
        assert_eq!(
            code_for(&with_room("7qf2 m9kd xw3c t0zb"), Some(far)),
            CodeChoice::Code(RoomCode::parse("7QF2-M9KD-XW3C-T0ZB").unwrap())
        );
        // No code at all, towards another machine: plain, for an open room.
        assert_eq!(code_for(&with_room("  "), Some(far)), CodeChoice::NoCode);
        assert_eq!(code_for(&with_room(""), None), CodeChoice::NoCode);
    }

    #[test]
    fn address_literals_need_no_lookup_with_or_without_brackets() {
        let host = |h: &str| SenderSettings {
            host: h.into(),
            ..SenderSettings::default()
        };
        assert_eq!(literal(&host("[2001:db8::7]")), "2001:db8::7".parse().ok());
        assert_eq!(literal(&host(" 2001:db8::7 ")), "2001:db8::7".parse().ok());
        assert_eq!(literal(&host("203.0.113.7")), "203.0.113.7".parse().ok());
        assert_eq!(literal(&host("studio.example.org")), None);
    }
}
