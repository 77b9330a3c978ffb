//! Security with real sockets: a Receiver's network thread in a room, a genuine Sender's
//! network thread reaching it through a capturing relay, and an attacker's UDP socket.
//!
//! From the captured genuine datagrams and the crate's own encoders, the attacker sends
//! forged, truncated, bit-flipped, replayed (while the Sender is connected, and after it said
//! Bye), wrong-key and plain (unsealed) datagrams; then a real Sender with another room code
//! tries to join. Every attack datagram must be rejected and counted under its reason
//! (`ReceiverShared::rejected`), exactly as many as were sent, none may reach the audio
//! thread's queue or create a peer, and the wrong-code Sender must show "Refused".
//!
//! The expected reason of each datagram is worked out here from the protocol
//! (`docs/protocol.md`: header checks, then the seal, then the body, then departed senders,
//! then the replay window), not by asking the crate's decoder.

use crate::relay::{Impairment, Relay};
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};
use udp_midi::bridge::{self, NetState, ReceiverShared, SenderMsg, SenderShared};
use udp_midi::net::clock::now_ns;
use udp_midi::net::receiver_thread::ReceiverThread;
use udp_midi::net::sender_thread::SenderThread;
use udp_midi::net::NetThread;
use udp_midi::proto::event::{MidiMessage, TimedMessage};
use udp_midi::proto::receiver::{ScheduledEvent, REJECT_REASONS};
use udp_midi::proto::reject::RejectReason;
use udp_midi::proto::room::RoomCode;
use udp_midi::proto::seal::RoomKey;
use udp_midi::proto::state::StateSnapshot;
use udp_midi::proto::wire::{self, ClockReport, ClockSource, Datagram, Prelude, StateBody};
use udp_midi::settings::{ReceiverSettings, SenderSettings, Settings};
use udp_midi::status::{LinkState, Published, SenderStatus};
use udp_midi::testkit::Rng;
use udp_midi::ReceiverParams;

/// The Receiver's room.
const ROOM: &str = "7QF2-M9KD-XW3C-T0ZB";
/// Another room: the wrong code.
const OTHER_ROOM: &str = "4D9X-2KQM-8TRW-HB7C";
/// Attack datagrams sent before waiting for the Receiver to count them: few enough that the
/// socket's receive buffer never overflows (an overflow would lose datagrams uncounted).
const BATCH: usize = 32;
/// How long any wait may take.
const PATIENCE: Duration = Duration::from_secs(5);

/// Header byte offsets (`docs/protocol.md`, "Header").
const VERSION_BYTE: usize = 4;
const TYPE_BYTE: usize = 5;
const FLAGS_BYTE: usize = 6;
const RESERVED_BYTE: usize = 7;
/// Bytes of the header, and of the tag that follows a sealed body.
const HEADER: usize = 24;
const TAG: usize = 16;

/// Waits up to [`PATIENCE`] for `cond`.
fn wait_for(mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + PATIENCE;
    while Instant::now() < end {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    cond()
}

/// A running Receiver network thread with what the test watches.
struct Receiver {
    /// Where it listens (IPv4 loopback).
    addr: SocketAddr,
    /// Its counters.
    shared: Arc<ReceiverShared>,
    /// The audio thread's end of its queue: nothing an attacker sends may come out here.
    queue: rtrb::Consumer<ScheduledEvent>,
    /// The thread (stopped on drop).
    _thread: NetThread,
}

impl Receiver {
    fn start() -> Self {
        Self::start_room(false)
    }

    /// A Receiver in the room [`ROOM`], open to plain datagrams too when `open_room`.
    fn start_room(open_room: bool) -> Self {
        let port = UdpSocket::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .expect("a free port")
            .port();
        let params = Arc::new(ReceiverParams::default());
        params.settings.set(ReceiverSettings {
            port,
            ntp_server: String::new(),
            room: ROOM.into(),
            open_room,
        });
        let shared = Arc::new(ReceiverShared::default());
        let (producer, queue) = bridge::receiver_queue();
        let t = ReceiverThread {
            params,
            queue: producer,
            shared: shared.clone(),
            status: Default::default(),
            commands: Default::default(),
            keys: Default::default(),
        };
        let thread = NetThread::spawn("test receiver", move |stop| t.run(stop)).expect("spawn");
        assert!(
            wait_for(|| shared.state() == NetState::Ready),
            "the Receiver did not listen on port {port}"
        );
        Self {
            addr: ([127, 0, 0, 1], port).into(),
            shared,
            queue,
            _thread: thread,
        }
    }

    /// The rejection counters now.
    fn rejected(&self) -> [u64; REJECT_REASONS] {
        std::array::from_fn(|i| self.shared.rejected[i].load(Relaxed))
    }

    /// Items waiting in the audio queue, taken out.
    fn drain(&mut self) -> Vec<ScheduledEvent> {
        let mut v = Vec::new();
        while let Ok(e) = self.queue.pop() {
            v.push(e);
        }
        v
    }
}

/// A running Sender network thread.
struct Sender {
    /// Its queue from the (absent) audio thread.
    queue: rtrb::Producer<SenderMsg>,
    /// Its counters.
    shared: Arc<SenderShared>,
    /// What its editor would show.
    status: Arc<Published<SenderStatus>>,
    /// The thread (stopped on drop: it says Bye).
    thread: NetThread,
}

impl Sender {
    fn start(to: SocketAddr, room: &str) -> Self {
        let settings = Arc::new(Settings::default());
        settings.set(SenderSettings {
            host: to.ip().to_string(),
            port: to.port(),
            name: "genuine".into(),
            ntp_server: String::new(),
            room: room.into(),
            ..Default::default()
        });
        let shared = Arc::new(SenderShared::default());
        let status: Arc<Published<SenderStatus>> = Default::default();
        let (queue, consumer) = bridge::sender_queue();
        let t = SenderThread {
            settings,
            queue: consumer,
            shared: shared.clone(),
            status: status.clone(),
            keys: Default::default(),
        };
        let thread = NetThread::spawn("test sender", move |stop| t.run(stop)).expect("spawn");
        Self {
            queue,
            shared,
            status,
            thread,
        }
    }

    /// Plays one short note now, as a host block would.
    fn play(&mut self, key: u8) {
        let now = now_ns();
        for (dt, on) in [(0, true), (1_000_000, false)] {
            let msg = if on {
                MidiMessage::NoteOn {
                    channel: Some(0),
                    key: Some(key),
                    velocity: 0.8,
                    voice_id: None,
                }
            } else {
                MidiMessage::NoteOff {
                    channel: Some(0),
                    key: Some(key),
                    velocity: 0.0,
                    voice_id: None,
                }
            };
            let ev = TimedMessage {
                time_ns: now + dt,
                msg,
            };
            assert!(self.queue.push(SenderMsg::Event(ev)).is_ok());
        }
        assert!(self.queue.push(SenderMsg::EndBlock).is_ok());
    }
}

/// The attacker: an ordinary UDP socket that sends to the Receiver, in counted batches.
struct Attacker {
    /// Its socket, on another port than the genuine Sender's.
    socket: UdpSocket,
    /// The Receiver.
    to: SocketAddr,
}

impl Attacker {
    fn new(to: SocketAddr) -> Self {
        Self {
            socket: UdpSocket::bind("127.0.0.1:0").expect("bind"),
            to,
        }
    }

    /// Sends `datagrams` and checks that the Receiver rejected each for the reason given with
    /// it, no more and no fewer, and let nothing through to the audio queue. Returns the count
    /// per reason. (A genuine Sender may be connected, but it plays nothing during an attack,
    /// and its heartbeats repeat a snapshot already handed on: whatever reaches the queue
    /// meanwhile came from the attack.)
    fn attack(
        &self,
        rx: &mut Receiver,
        what: &str,
        datagrams: &[(Vec<u8>, RejectReason)],
    ) -> Vec<(RejectReason, u64)> {
        rx.drain();
        let before = rx.rejected();
        let events_before = rx.shared.events.load(Relaxed);
        let mut expected = [0u64; REJECT_REASONS];
        for batch in datagrams.chunks(BATCH) {
            let base: u64 = rx.rejected().iter().sum();
            for (d, reason) in batch {
                self.socket.send_to(d, self.to).expect("send");
                expected[*reason as usize] += 1;
            }
            let want = base + batch.len() as u64;
            let counted = wait_for(|| rx.rejected().iter().sum::<u64>() >= want);
            assert!(
                counted,
                "{what}: the Receiver counted {} of a batch of {}",
                rx.rejected().iter().sum::<u64>() - base,
                batch.len()
            );
        }
        let after = rx.rejected();
        let got: Vec<u64> = (0..REJECT_REASONS).map(|i| after[i] - before[i]).collect();
        let differences: Vec<String> = RejectReason::ALL
            .iter()
            .filter(|r| got[**r as usize] != expected[**r as usize])
            .map(|r| {
                format!(
                    "{r:?}: expected {}, counted {}",
                    expected[*r as usize], got[*r as usize]
                )
            })
            .collect();
        assert!(
            differences.is_empty(),
            "{what}: {} datagrams, counts by reason differ: {differences:?}",
            datagrams.len()
        );
        assert_eq!(
            rx.shared.events.load(Relaxed),
            events_before,
            "{what}: events reached the schedule"
        );
        let leaked = rx.drain();
        assert!(
            leaked.is_empty(),
            "{what}: items reached the audio queue: {leaked:?}"
        );
        RejectReason::ALL
            .iter()
            .filter(|r| expected[**r as usize] > 0)
            .map(|r| (*r, expected[*r as usize]))
            .collect()
    }
}

/// What one kind of attack came to: its name, the datagrams sent, and the count per reason.
type Tally = (&'static str, usize, Vec<(RejectReason, u64)>);

/// Why a genuine sealed datagram fails once bit `bit` of byte `byte` is flipped, from the
/// protocol: magic, version, type and reserved bits are checked before anything else; a
/// Receiver never receives replies; the sealed flag cleared makes it plain, which a room
/// refuses; anything else (ids, sequence number, body, tag, or a type changed to another
/// Sender type) breaks the tag, the header being the associated data.
fn flipped_reason(original: &[u8], byte: usize, bit: u8) -> RejectReason {
    match byte {
        0..=3 => RejectReason::BadMagic,
        VERSION_BYTE => RejectReason::UnsupportedVersion,
        TYPE_BYTE => match original[byte] ^ (1 << bit) {
            1..=4 | 6 => RejectReason::AuthFailed,
            5 | 7 => RejectReason::Unexpected,
            _ => RejectReason::UnknownType,
        },
        FLAGS_BYTE if bit == 0 => RejectReason::Unsealed,
        FLAGS_BYTE | RESERVED_BYTE => RejectReason::ReservedBits,
        _ => RejectReason::AuthFailed,
    }
}

/// Why a prefix of `len` bytes of a genuine sealed datagram fails: shorter than the header;
/// sealed but shorter than a tag; or a tag over the wrong bytes.
fn truncated_reason(len: usize) -> RejectReason {
    if len < HEADER + TAG {
        RejectReason::TooShort
    } else {
        RejectReason::AuthFailed
    }
}

/// One of each kind of datagram a Sender sends, well formed, for `sender_id` from sequence
/// number `seq`, sealed with `key` (or plain).
fn crafted(sender_id: u64, seq: u64, key: Option<&RoomKey>) -> Vec<Datagram> {
    let prelude = Prelude {
        sent_ns: now_ns(),
        epoch: 0,
    };
    let note = TimedMessage {
        time_ns: prelude.sent_ns,
        msg: MidiMessage::NoteOn {
            channel: Some(0),
            key: Some(60),
            velocity: 1.0,
            voice_id: None,
        },
    };
    let (events, n) = wire::encode_events(sender_id, seq, prelude, 0, &[note; 4]);
    assert_eq!(n, 4);
    let state = wire::encode_state(
        sender_id,
        seq + 1,
        &StateBody {
            prelude,
            name: "intruder",
            hold_ns: 0,
            as_of_seq: 4,
            as_of_ns: prelude.sent_ns,
            snapshot: StateSnapshot::IDLE,
        },
    );
    let report = wire::encode_clock_report(
        sender_id,
        seq + 2,
        prelude,
        &ClockReport {
            source: ClockSource::Direct,
            ref_ns: prelude.sent_ns,
            offset_ns: 0,
            skew_ppb: 0,
            error_ns: 1_000,
            rtt_ns: 1_000,
        },
    );
    let request = wire::encode_time_request(sender_id, seq + 3, prelude);
    let bye = wire::encode_bye(sender_id, seq + 4, prelude);
    [events, state, report, request, bye]
        .into_iter()
        .map(|d| d.seal_with(key))
        .collect()
}

#[test]
fn every_attack_is_rejected_and_counted_by_reason() {
    let wall = Instant::now();
    let mut rx = Receiver::start();
    // A 40 ms path each way: the Sender sends a clock request every 50 ms until the first
    // answer, so two or three come before it joins.
    let relay = Relay::start(rx.addr, Impairment::path(40, 0.0, 1)).expect("relay");
    let attacker = Attacker::new(rx.addr);
    let mut report: Vec<Tally> = Vec::new();

    // A genuine Sender joins through the capturing relay.
    let mut sender = Sender::start(relay.addr, ROOM);
    assert!(
        wait_for(|| rx.shared.peers.load(Relaxed) == 1),
        "the genuine Sender did not join"
    );
    // Replayed just after it joined: its first clock requests came before it had a place at
    // the Receiver (they are answered without one), and the datagram that made it join. Exact
    // copies, from another address, at once: the replay window still reaches them.
    let replays: Vec<(Vec<u8>, RejectReason)> = relay
        .stats
        .up_records()
        .into_iter()
        .filter(|r| r.released.is_some())
        .map(|r| (r.bytes, RejectReason::Duplicate))
        .collect();
    assert!(
        replays.iter().filter(|(d, _)| d[TYPE_BYTE] == 4).count() >= 2,
        "clock requests from before the join"
    );
    let r = attacker.attack(&mut rx, "replayed, Sender just joined", &replays);
    report.push(("replayed, Sender just joined", replays.len(), r));
    let counted = rx.rejected();

    // It plays 20 notes.
    assert!(
        wait_for(|| sender.status.read().link == LinkState::Connected),
        "the genuine Sender did not connect: {:?}",
        sender.status.read().link
    );
    for k in 0..20 {
        sender.play(60 + k);
        std::thread::sleep(Duration::from_millis(15));
    }
    assert!(
        wait_for(|| rx.shared.events.load(Relaxed) >= 40),
        "the genuine notes did not arrive: {} events",
        rx.shared.events.load(Relaxed)
    );
    // Its clock exchange converges in a second: a ClockReport and a State or two are then in
    // the capture too.
    std::thread::sleep(Duration::from_millis(1_200));
    let genuine = rx.drain();
    assert!(genuine.len() >= 40, "{} genuine items", genuine.len());
    assert_eq!(rx.rejected(), counted, "genuine traffic rejected");
    let captured: Vec<Vec<u8>> = relay
        .stats
        .up_records()
        .into_iter()
        .filter(|r| r.released.is_some())
        .map(|r| r.bytes)
        .collect();
    let kinds = |c: &[Vec<u8>]| {
        let mut k: Vec<u8> = c.iter().map(|d| d[TYPE_BYTE]).collect();
        k.sort_unstable();
        k.dedup();
        k
    };
    assert_eq!(
        kinds(&captured),
        [1, 2, 4, 6],
        "Events, State, TimeRequest and ClockReport captured"
    );
    let sample = captured
        .iter()
        .find(|d| d[TYPE_BYTE] == 1)
        .expect("an Events datagram")
        .clone();
    assert_ne!(
        sample[FLAGS_BYTE] & 1,
        0,
        "the genuine datagrams are sealed"
    );

    // Replayed while the Sender is connected: exact copies of everything it sent so far, from
    // another address. The replay window refuses each, whatever its type.
    let replays: Vec<(Vec<u8>, RejectReason)> = captured
        .iter()
        .map(|d| (d.clone(), RejectReason::Duplicate))
        .collect();
    let r = attacker.attack(&mut rx, "replayed, Sender connected", &replays);
    report.push(("replayed, Sender connected", replays.len(), r));
    assert_eq!(rx.shared.peers.load(Relaxed), 1, "only the genuine peer");

    // The Sender leaves: it says Bye (three times, 10 ms apart, with its last notes), and
    // the Receiver forgets it; its thread stops within the goodbye's 50 ms.
    let sent_by_genuine = sender.shared.datagrams_sent.load(Relaxed);
    let sender_shared = sender.shared.clone();
    let gone = RejectReason::Gone as usize;
    let gone_before = rx.rejected()[gone];
    let stopping = Instant::now();
    drop(sender.thread);
    let stop_took = stopping.elapsed();
    assert!(
        stop_took < Duration::from_millis(500),
        "the Sender took {stop_took:?} to stop"
    );
    assert!(
        wait_for(|| rx.shared.peers.load(Relaxed) == 0),
        "the Receiver did not forget the Sender after its Bye"
    );
    let ended = rx.drain();
    assert!(
        !ended.is_empty(),
        "the departed peer's end reached the audio queue"
    );
    // Everything it sent has crossed the relay, and the Receiver has dealt with it: the
    // goodbye's repeats that follow the first Bye are refused ("sender gone").
    let total = sender_shared.datagrams_sent.load(Relaxed);
    assert!(
        wait_for(|| {
            let r = relay.stats.up_records();
            r.len() as u64 == total && r.iter().all(|r| r.released.is_some())
        }),
        "the goodbye did not cross the relay"
    );
    std::thread::sleep(Duration::from_millis(50));
    let captured: Vec<Vec<u8>> = relay
        .stats
        .up_records()
        .into_iter()
        .map(|r| r.bytes)
        .collect();
    assert!(captured.len() as u64 > sent_by_genuine, "the Bye captured");
    assert_eq!(captured.last().unwrap()[TYPE_BYTE], 3, "the last was a Bye");
    let byes = captured.iter().filter(|d| d[TYPE_BYTE] == 3).count();
    assert_eq!(byes, 3, "the goodbye is sent three times");
    let after_bye = captured.len() - 1 - captured.iter().position(|d| d[TYPE_BYTE] == 3).unwrap();
    assert_eq!(
        rx.rejected()[gone] - gone_before,
        after_bye as u64,
        "the goodbye's repeats are refused as from a sender gone, and nothing else is"
    );
    println!(
        "  the Sender stopped in {:.1} ms; its goodbye went out {byes} times",
        stop_took.as_secs_f64() * 1e3
    );

    // Replayed after the Bye: every datagram of the departed Sender, its Bye included.
    let replays: Vec<(Vec<u8>, RejectReason)> = captured
        .iter()
        .map(|d| (d.clone(), RejectReason::Gone))
        .collect();
    let r = attacker.attack(&mut rx, "replayed after Bye", &replays);
    report.push(("replayed after Bye", replays.len(), r));

    // Forged: a valid header (Sender types, sealed), random ids and sequence numbers (half
    // of them the genuine Sender's id, with numbers above any it used), random body and tag.
    let mut rng = Rng(0xf0_5eed);
    let genuine_id = u64::from_le_bytes(sample[8..16].try_into().unwrap());
    let forged: Vec<(Vec<u8>, RejectReason)> = (0..256)
        .map(|i| {
            let mut d = sample[..HEADER].to_vec();
            d[TYPE_BYTE] = [1, 2, 3, 4, 6][i % 5];
            let id = if i % 2 == 0 {
                genuine_id
            } else {
                rng.next_u64()
            };
            d[8..16].copy_from_slice(&id.to_le_bytes());
            d[16..24].copy_from_slice(&(1_000_000 + rng.next_u64() % 1_000_000).to_le_bytes());
            let len = TAG + (rng.next_u64() % 300) as usize;
            d.extend((0..len).map(|_| rng.next_u64() as u8));
            (d, RejectReason::AuthFailed)
        })
        .collect();
    let r = attacker.attack(&mut rx, "forged", &forged);
    report.push(("forged", forged.len(), r));

    // Truncated: every prefix of a genuine Events datagram, the empty one included.
    let truncated: Vec<(Vec<u8>, RejectReason)> = (0..sample.len())
        .map(|n| (sample[..n].to_vec(), truncated_reason(n)))
        .collect();
    let r = attacker.attack(&mut rx, "truncated", &truncated);
    report.push(("truncated", truncated.len(), r));

    // Bit-flipped: every bit of the same datagram, one at a time.
    let flipped: Vec<(Vec<u8>, RejectReason)> = (0..sample.len())
        .flat_map(|byte| (0..8u8).map(move |bit| (byte, bit)))
        .map(|(byte, bit)| {
            let mut d = sample.clone();
            d[byte] ^= 1 << bit;
            (d, flipped_reason(&sample, byte, bit))
        })
        .collect();
    let r = attacker.attack(&mut rx, "bit-flipped", &flipped);
    report.push(("bit-flipped", flipped.len(), r));

    // Sealed under another room's key: well-formed datagrams of every Sender type.
    let other =
        RoomKey::derive(&RoomCode::parse(OTHER_ROOM).expect("a valid code")).expect("a key");
    let wrong_key: Vec<(Vec<u8>, RejectReason)> = (0..20u64)
        .flat_map(|i| crafted(0xbad_c0de + i, 0, Some(&other)))
        .map(|d| (d.as_bytes().to_vec(), RejectReason::AuthFailed))
        .collect();
    let r = attacker.attack(&mut rx, "wrong key", &wrong_key);
    report.push(("wrong key", wrong_key.len(), r));

    // Plain (unsealed) in a room with a code: the same, not sealed at all.
    let plain: Vec<(Vec<u8>, RejectReason)> = (0..20u64)
        .flat_map(|i| crafted(0x91a1_0000 + i, 0, None))
        .map(|d| (d.as_bytes().to_vec(), RejectReason::Unsealed))
        .collect();
    let r = attacker.attack(&mut rx, "plain", &plain);
    report.push(("plain in a secure room", plain.len(), r));
    assert_eq!(rx.shared.peers.load(Relaxed), 0, "no attack created a peer");

    // A real Sender with the wrong code: each of its datagrams (clock requests: it sends
    // nothing else before an answer) fails authentication, and it is told so.
    let before = rx.rejected();
    let wrong = Sender::start(rx.addr, OTHER_ROOM);
    assert!(
        wait_for(|| wrong.status.read().link == LinkState::Refused),
        "the wrong-code Sender shows {:?}, not Refused",
        wrong.status.read().link
    );
    let link = wrong.status.read().link;
    let wrong_shared = wrong.shared.clone();
    drop(wrong);
    let sent = wrong_shared.datagrams_sent.load(Relaxed);
    let auth = RejectReason::AuthFailed as usize;
    assert!(
        wait_for(|| rx.rejected()[auth] - before[auth] >= sent),
        "the wrong-code Sender sent {sent} datagrams, {} were counted",
        rx.rejected()[auth] - before[auth]
    );
    std::thread::sleep(Duration::from_millis(50));
    let after = rx.rejected();
    for r in RejectReason::ALL {
        let want = if r as usize == auth { sent } else { 0 };
        assert_eq!(
            after[r as usize] - before[r as usize],
            want,
            "wrong-code Sender: {r:?}"
        );
    }
    assert!(
        rx.drain().is_empty(),
        "wrong-code Sender: items reached the audio queue"
    );
    assert_eq!(
        rx.shared.peers.load(Relaxed),
        0,
        "wrong-code Sender: a peer"
    );
    report.push((
        "real Sender, wrong code",
        sent as usize,
        vec![(RejectReason::AuthFailed, sent)],
    ));

    println!(
        "security with real sockets ({:.1} s): every attack datagram rejected, counted by \
         reason, none reached the audio queue; the wrong-code Sender shows {link:?}",
        wall.elapsed().as_secs_f64()
    );
    for (what, n, counts) in &report {
        println!("  {what}: {n} sent -> {counts:?}");
    }
}

/// A Sender whose code was mistyped sends nothing at all, not even plain datagrams (which an
/// open room would take), and says why.
#[test]
fn a_sender_with_a_mistyped_code_sends_nothing() {
    let rx = Receiver::start_room(true);
    let mut typo = Sender::start(rx.addr, "7QF2-M9KD-XW3C-T0Z");
    assert!(
        wait_for(|| matches!(typo.status.read().link, LinkState::BadRoomCode(_))),
        "the Sender shows {:?}",
        typo.status.read().link
    );
    typo.play(60);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        typo.shared.datagrams_sent.load(Relaxed),
        0,
        "datagrams sent"
    );
    assert_eq!(rx.shared.datagrams.load(Relaxed), 0, "datagrams accepted");
    assert_eq!(rx.rejected().iter().sum::<u64>(), 0, "datagrams rejected");
    assert_eq!(typo.shared.state(), NetState::Error);
    println!(
        "mistyped room code: the Sender shows {:?} and sent nothing",
        typo.status.read().link
    );
}
