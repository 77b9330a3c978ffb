//! The `receive` target: a [`ReceiverCore`] (a room with a code, an open room, or an open
//! room that also holds a key) fed a sequence of datagrams and clock steps read from the
//! input, with what it hands on played through the audio thread's note guard ([`Voices`]).
//!
//! Most datagrams are built with the encoders and sealed with the room's key, from up to
//! [`SENDERS`] senders (more than [`MAX_PEERS`]) that keep their own sequence numbers,
//! clocks and event numbers, so the fuzzer gets past the seal and the epoch into the peer
//! table, the event de-duplication, snapshots, clock reports and departures. Some are
//! replayed, tampered with, sealed with another room's key, sent with a stale epoch, or plain
//! arbitrary bytes. The clock only moves forward, as the network thread's does.
//!
//! Checked after every step:
//! - nothing panics; a rejected datagram is counted under exactly one reason, an accepted
//!   one under none;
//! - at most one reply per datagram, never larger than [`MAX_DATAGRAM`]; a refusal is a bare
//!   unsealed header; a clock answer is sealed when the room has a key and carries our
//!   epoch; an answer to an accepted datagram is no larger than it (no amplification);
//! - at most [`MAX_EVENTS_PER_DATAGRAM`] items per datagram and [`MAX_PEERS`] per clock step
//!   (when drained; when not, never more than [`MAX_PENDING`] waiting, ends of departed
//!   peers included: at most one per slot);
//!   every scheduled message is valid MIDI 1.0 and every snapshot in range; each event the
//!   Receiver counts is handed on exactly once;
//! - joins and leaves match the peer table slot for slot; never more than [`MAX_PEERS`]
//!   peers; names within [`NAME_MAX`]; loss within 0 to 100 %;
//! - the note guard emits only valid MIDI 1.0; the editor's report never panics either.

use crate::craft::{
    batch, check_snapshot, clock_report, key, name, one_in, other_key, snapshot, time_near,
};
use arbitrary::{Result, Unstructured};
use std::cell::RefCell;
use std::net::SocketAddr;
use udp_midi::audio::voices::Voices;
use udp_midi::proto::peers::{MAX_PEERS, TOMBSTONES};
use udp_midi::proto::receiver::{
    push_history, Item, NtpOffset, PeerEvent, ReceiverConfig, ReceiverCore, Reject, RejectReason,
    ScheduledEvent, MAX_PENDING,
};
use udp_midi::proto::seal::RoomKey;
use udp_midi::proto::wire::{
    self, decode_body, decode_header, encode_bye, encode_clock_report, encode_events,
    encode_refused, encode_state, encode_time_reply, encode_time_request, open_body, Body,
    Datagram, PacketType, Prelude, StateBody, TimeReply, HEADER_LEN, MAX_ACCEPTED_DATAGRAM,
    MAX_DATAGRAM, MAX_EVENTS_PER_DATAGRAM, NAME_MAX,
};
use udp_midi::status::{ReceiverStatus, HISTORY_LEN};
use udp_midi::timing::playout::PlayoutMode;

/// The Receiver's epoch in every run.
pub const EPOCH: u32 = 0x5EED_0001;
/// The Receiver's id.
pub const RECEIVER_ID: u64 = 0x00EC_E1FE;
/// Distinct senders the input can speak for: more than the table holds.
pub const SENDERS: usize = MAX_PEERS + 8;
/// Most steps of one run.
pub const MAX_STEPS: usize = 256;
/// One millisecond, ns.
const MS: u64 = 1_000_000;
/// The clock never goes past this (146 years of session time).
const NOW_MAX: u64 = 1 << 62;
/// Datagrams remembered for replays.
const HISTORY: usize = 16;

thread_local! {
    /// The note guard, reused between runs (it is large) and reset at the start of each.
    static VOICES: RefCell<Voices> = RefCell::new(Voices::new());
}

/// One sender the input speaks for.
struct Peer {
    /// Its id.
    id: u64,
    /// Its next datagram number.
    next_seq: u64,
    /// Its next event number.
    next_event: u64,
    /// Its clock minus the Receiver's, ns.
    offset: i64,
    /// Its address.
    addr: SocketAddr,
}

/// One run's state.
struct Run {
    /// The Receiver under test.
    core: ReceiverCore,
    /// The room's key, if it has one (senders seal with it).
    key: Option<RoomKey>,
    /// Whether plain datagrams are accepted.
    open_room: bool,
    /// Receiver time, ns.
    now: u64,
    /// The senders.
    peers: Vec<Peer>,
    /// The last datagrams sent, for replays.
    history: Vec<Vec<u8>>,
    /// Which sender holds each slot, as the joins and leaves told.
    slots: [Option<u64>; MAX_PEERS],
    /// Drain the items after every step (as the network thread does), or leave them.
    drain: bool,
    /// Events the Receiver had counted as handed on at the last drain.
    counted: u64,
    /// Peers that left.
    departures: usize,
    /// Scratch for opening replies.
    scratch: [u8; MAX_ACCEPTED_DATAGRAM],
    /// The editor's view, refreshed now and then.
    status: ReceiverStatus,
    /// How far the run got.
    summary: Summary,
}

/// How far one run got, for the tests of the corpus.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Datagrams the Receiver accepted.
    pub accepted: u64,
    /// Events it handed on.
    pub events: u64,
    /// Most peers it knew at once.
    pub most_peers: usize,
    /// Datagrams it sent (clock answers and refusals).
    pub replies: u64,
    /// Peers that left (Bye, silence or kick).
    pub departures: usize,
}

/// Runs one input.
pub fn run(data: &[u8]) -> Summary {
    VOICES.with(|v| {
        let mut v = v.borrow_mut();
        v.forget_peers();
        let mut u = Unstructured::new(data);
        let Ok(mut run) = Run::new(&mut u) else {
            return Summary::default();
        };
        for _ in 0..MAX_STEPS {
            if u.is_empty() || run.step(&mut u, &mut v).is_err() {
                break;
            }
        }
        run.finish(&mut v);
        run.summary
    })
}

impl Run {
    fn new(u: &mut Unstructured<'_>) -> Result<Self> {
        let (key, open_room) = match u.int_in_range(0u8..=2)? {
            0 => (Some(key()), false),
            1 => (None, true),
            _ => (Some(key()), true),
        };
        let config = ReceiverConfig {
            receiver_id: RECEIVER_ID,
            epoch: EPOCH,
            key: key.clone(),
            open_room,
            margin_ns: u.int_in_range(0..=100)? * MS as i64,
            mode: if one_in(u, 4)? {
                PlayoutMode::Fixed
            } else {
                PlayoutMode::Adaptive
            },
            timeout_ns: if one_in(u, 4)? {
                u.int_in_range(1..=10_000)? * MS
            } else {
                udp_midi::proto::peers::DEFAULT_PEER_TIMEOUT_NS
            },
        };
        let drain = !one_in(u, 8)?;
        let now = 10_000 * MS + u64::from(u.arbitrary::<u32>()?);
        let peers = (0..SENDERS)
            .map(|i| Peer {
                id: 0x5E4D_0000 + i as u64,
                next_seq: 0,
                next_event: 0,
                // Clocks a few seconds apart, differently for each sender.
                offset: (i as i64 - 20) * 123_456_789,
                addr: SocketAddr::from(([192, 0, 2, 1 + i as u8], 5000 + i as u16)),
            })
            .collect();
        Ok(Self {
            core: ReceiverCore::new(config),
            key,
            open_room,
            now,
            peers,
            history: Vec::with_capacity(HISTORY),
            slots: [None; MAX_PEERS],
            drain,
            counted: 0,
            departures: 0,
            scratch: [0; MAX_ACCEPTED_DATAGRAM],
            status: ReceiverStatus::default(),
            summary: Summary::default(),
        })
    }

    fn step(&mut self, u: &mut Unstructured<'_>, voices: &mut Voices) -> Result<()> {
        match u.int_in_range(0u8..=15)? {
            0..=3 => self.crafted(u, PacketType::Events, voices),
            4 => self.crafted(u, PacketType::State, voices),
            5 => self.crafted(u, PacketType::Bye, voices),
            6 => self.crafted(u, PacketType::TimeRequest, voices),
            7 => self.crafted(u, PacketType::ClockReport, voices),
            8 => {
                // Types only a Receiver sends.
                let t = if u.arbitrary()? {
                    PacketType::TimeReply
                } else {
                    PacketType::Refused
                };
                self.crafted(u, t, voices)
            }
            9 => {
                let n = if one_in(u, 8)? {
                    u.int_in_range(0..=MAX_ACCEPTED_DATAGRAM + 8)?
                } else {
                    u.int_in_range(0..=64)?
                };
                let bytes = u.bytes(n)?.to_vec();
                let from = self.peers[u.int_in_range(0..=SENDERS - 1)?].addr;
                self.deliver(from, &bytes, voices);
                Ok(())
            }
            10 => {
                if self.history.is_empty() {
                    return Ok(());
                }
                let i = u.int_in_range(0..=self.history.len() - 1)?;
                let mut bytes = self.history[i].clone();
                if one_in(u, 2)? {
                    tamper(u, &mut bytes)?;
                }
                let from = self.peers[u.int_in_range(0..=SENDERS - 1)?].addr;
                self.deliver(from, &bytes, voices);
                Ok(())
            }
            11 | 12 => {
                let dt = match u.int_in_range(0u8..=3)? {
                    0..=1 => u.int_in_range(0..=20 * MS)?,
                    2 => u.int_in_range(0..=3_000 * MS)?,
                    _ => u.arbitrary()?,
                };
                self.now = self.now.saturating_add(dt).min(NOW_MAX);
                self.core.handle_timeout(self.now);
                // A wake-up is due exactly while there are peers, and later than now.
                let next = self.core.poll_timeout(self.now);
                assert_eq!(next.is_some(), !self.core.peers().is_empty());
                assert!(
                    next.is_none_or(|t| t > self.now),
                    "{next:?} at {}",
                    self.now
                );
                self.after(MAX_PEERS, voices);
                Ok(())
            }
            13 => {
                let slot = u.int_in_range(0..=MAX_PEERS + 1)?;
                self.core.kick(slot);
                self.after(1, voices);
                Ok(())
            }
            14 => {
                let ntp = if one_in(u, 4)? {
                    None
                } else {
                    Some(NtpOffset {
                        offset_ns: if one_in(u, 8)? {
                            u.arbitrary()?
                        } else {
                            u.int_in_range(-3_600_000 * MS as i64..=3_600_000 * MS as i64)?
                        },
                        error_ns: u.int_in_range(0..=1_000 * MS)?,
                    })
                };
                self.core.set_ntp(ntp);
                Ok(())
            }
            _ => {
                let applied = u.int_in_range(0..=1_000 * MS as i64)?;
                self.core.report(self.now, applied, &mut self.status);
                assert!(self.status.peers.len() <= MAX_PEERS);
                push_history(&mut self.status, (self.now / MS) as f32 / 1e3);
                assert!(self.status.history.len() <= HISTORY_LEN);
                Ok(())
            }
        }
    }

    /// Builds a datagram of type `t` from one of the senders, as it would send it (most of
    /// the time), and delivers it.
    fn crafted(
        &mut self,
        u: &mut Unstructured<'_>,
        t: PacketType,
        voices: &mut Voices,
    ) -> Result<()> {
        let i = u.int_in_range(0..=SENDERS - 1)?;
        // A quarter of the datagrams are wild: out-of-range values, a replayed or far-off
        // sequence number, a stale epoch, another room's seal, a changed byte, another
        // address (each now and then). The others are what an honest sender sends.
        let wild = one_in(u, 4)?;
        let now = self.now;
        let p = &mut self.peers[i];
        let seq = match (wild, u.int_in_range(0u8..=3)?) {
            (true, 0) => p.next_seq.saturating_sub(u.int_in_range(1..=80)?),
            (true, 1) => u.arbitrary()?,
            _ => p.next_seq,
        };
        p.next_seq = p.next_seq.max(seq.saturating_add(1));
        let epoch = if wild && one_in(u, 4)? {
            u.arbitrary()?
        } else {
            EPOCH
        };
        let clock = now.wrapping_add_signed(p.offset);
        let sent_ns = time_near(u, clock, wild)?;
        let prelude = Prelude { sent_ns, epoch };
        let d: Datagram = match t {
            PacketType::Events => {
                let max = if one_in(u, 32)? {
                    MAX_EVENTS_PER_DATAGRAM
                } else {
                    12
                };
                let events = batch(u, clock, max, wild)?;
                // Repeats of earlier events are part of the protocol (redundancy).
                let first = match u.int_in_range(0u8..=7)? {
                    0 => p.next_event.saturating_sub(u.int_in_range(1..=300)?),
                    1 if wild => u.arbitrary()?,
                    _ => p.next_event,
                };
                let (d, n) = encode_events(p.id, seq, prelude, first, &events);
                p.next_event = p.next_event.max(first.saturating_add(n as u64));
                d
            }
            PacketType::State => {
                let name = name(u)?;
                let body = StateBody {
                    prelude,
                    name: &name,
                    hold_ns: u.int_in_range(0..=200 * MS)?,
                    as_of_seq: if wild && one_in(u, 4)? {
                        u.arbitrary()?
                    } else {
                        p.next_event
                    },
                    as_of_ns: time_near(u, clock, wild)?,
                    snapshot: snapshot(u, wild)?,
                };
                encode_state(p.id, seq, &body)
            }
            PacketType::Bye => encode_bye(p.id, seq, prelude),
            PacketType::TimeRequest => encode_time_request(p.id, seq, prelude),
            PacketType::ClockReport => {
                let mut r = clock_report(u, clock, wild)?;
                if !wild {
                    // A Direct report that is right about this sender's clock.
                    r.offset_ns = -p.offset;
                }
                encode_clock_report(p.id, seq, prelude, &r)
            }
            PacketType::TimeReply => encode_time_reply(
                p.id,
                seq,
                prelude,
                &TimeReply {
                    t1: u.arbitrary()?,
                    t2: u.arbitrary()?,
                },
            ),
            PacketType::Refused => encode_refused(p.id, seq),
        };
        let addr = if wild && one_in(u, 4)? {
            SocketAddr::from(([198, 51, 100, 7], u.arbitrary()?))
        } else {
            p.addr
        };
        // Honest senders seal with the room's key; in an open room that has one, the
        // odd-numbered ones have no code and send plain datagrams.
        let own = match (&self.key, self.open_room) {
            (Some(k), true) if i % 2 == 0 => Some(k.clone()),
            (Some(_), true) | (None, _) => None,
            (Some(k), false) => Some(k.clone()),
        };
        let seal_key = match (wild, u.int_in_range(0u8..=3)?) {
            (true, 0) => None,
            (true, 1) => Some(other_key()),
            (true, 2) => Some(key()),
            _ => own,
        };
        let d = d.seal_with(seal_key.as_ref());
        let mut bytes = d.as_bytes().to_vec();
        if wild && one_in(u, 4)? {
            tamper(u, &mut bytes)?;
        }
        if self.history.len() == HISTORY {
            self.history.remove(0);
        }
        self.history.push(bytes.clone());
        self.deliver(addr, &bytes, voices);
        Ok(())
    }

    /// Hands `bytes` to the Receiver and checks how it was counted and answered.
    fn deliver(&mut self, from: SocketAddr, bytes: &[u8], voices: &mut Voices) {
        let before = *self.core.stats();
        let r = self.core.handle_datagram(self.now, from, bytes);
        let after = *self.core.stats();
        for reason in RejectReason::ALL {
            let i = reason as usize;
            let expected = match r {
                Err(e) if RejectReason::from(e) == reason => 1,
                _ => 0,
            };
            assert_eq!(
                after.rejected[i] - before.rejected[i],
                expected,
                "{reason:?} miscounted for {r:?}"
            );
        }
        if r.is_ok() {
            assert!(after.datagrams >= before.datagrams);
        }
        let mut replies = 0;
        while let Some((to, d)) = self.core.poll_transmit(self.now) {
            replies += 1;
            assert_eq!(to, from, "a reply goes back where the datagram came from");
            self.check_reply(&d, bytes, r);
        }
        assert!(replies <= 1, "{replies} replies to one datagram");
        self.summary.replies += replies;
        self.after(MAX_EVENTS_PER_DATAGRAM, voices);
    }

    /// Checks one datagram the Receiver sends in answer to `provoked_by`.
    fn check_reply(&mut self, d: &Datagram, provoked_by: &[u8], r: Result<(), Reject>) {
        let b = d.as_bytes();
        assert!(b.len() <= MAX_DATAGRAM);
        let (h, _) = decode_header(b).expect("a reply decodes");
        assert_eq!(h.sender_id, RECEIVER_ID);
        match h.packet_type {
            PacketType::Refused => {
                assert!(!h.sealed && b.len() == HEADER_LEN);
                assert!(
                    provoked_by.len() >= HEADER_LEN,
                    "refusal larger than what provoked it"
                );
                assert!(
                    matches!(
                        r,
                        Err(Reject::Open(
                            wire::OpenError::Unsealed | wire::OpenError::AuthFailed
                        ))
                    ),
                    "refused after {r:?}"
                );
            }
            PacketType::TimeReply => {
                // Sealed when what it answers was (and so only when the room has a key).
                assert_eq!(h.sealed, provoked_by[6] & wire::FLAG_SEALED != 0);
                assert!(!h.sealed || self.key.is_some());
                let body = open_body(&h, b, self.key.as_ref(), h.sealed, &mut self.scratch)
                    .expect("our own reply opens");
                let body = decode_body(&h, body, &mut Vec::new()).expect("our own reply decodes");
                let Body::TimeReply { prelude, .. } = body else {
                    panic!("not a time reply: {body:?}");
                };
                assert_eq!(prelude.epoch, EPOCH);
                match r {
                    Ok(()) => assert!(
                        b.len() <= provoked_by.len(),
                        "a {}-byte answer to a {}-byte request",
                        b.len(),
                        provoked_by.len()
                    ),
                    Err(e) => assert_eq!(e, Reject::StaleEpoch, "answered after {e:?}"),
                }
            }
            t => panic!("the Receiver sent a {t:?}"),
        }
    }

    /// Drains and checks what one step produced: at most `max_items` items.
    fn after(&mut self, max_items: usize, voices: &mut Voices) {
        while let Some(ev) = self.core.poll_peer_event() {
            match ev {
                PeerEvent::Joined { slot, sender_id } => {
                    let s = &mut self.slots[slot as usize];
                    assert_eq!(*s, None, "joined an occupied slot");
                    *s = Some(sender_id);
                }
                PeerEvent::Left {
                    slot, sender_id, ..
                } => {
                    let s = &mut self.slots[slot as usize];
                    assert_eq!(*s, Some(sender_id), "left a slot it did not hold");
                    *s = None;
                    self.departures += 1;
                }
            }
        }
        assert!(
            self.core.pending_items() <= MAX_PENDING,
            "queue past its bound"
        );
        let table = self.core.peers();
        assert!(table.len() <= MAX_PEERS);
        assert!(table.tombstones() <= 2 * TOMBSTONES);
        self.summary.most_peers = self.summary.most_peers.max(table.len());
        self.summary.accepted = self.core.stats().datagrams;
        self.summary.events = self.core.stats().events;
        self.summary.departures = self.departures;
        for (slot, held) in self.slots.iter().enumerate() {
            assert_eq!(table.get(slot).map(|p| p.sender_id), *held, "slot {slot}");
        }
        for (_, p) in table.iter() {
            assert!(p.name.len() <= NAME_MAX);
            let loss = p.loss_pct();
            // (Within rounding: the share is computed in f64 over 64-bit counts.)
            assert!((0.0..=100.0 + 1e-9).contains(&loss), "loss {loss}");
        }
        if !self.drain {
            return;
        }
        let mut items = 0;
        let mut midi = 0;
        while let Some(ev) = self.core.poll_event() {
            items += 1;
            midi += u64::from(matches!(ev.item, Item::Midi(_)));
            check_item(&ev, voices);
        }
        assert!(items <= max_items, "{items} items from one step");
        let counted = self.core.stats().events;
        assert_eq!(
            midi,
            counted - self.counted,
            "counted events differ from those handed on"
        );
        self.counted = counted;
    }

    /// At the end of a run that did not drain: everything queued is bounded.
    fn finish(&mut self, voices: &mut Voices) {
        if self.drain {
            return;
        }
        let mut items = 0;
        let mut midi = 0;
        while let Some(ev) = self.core.poll_event() {
            items += 1;
            midi += u64::from(matches!(ev.item, Item::Midi(_)));
            check_item(&ev, voices);
        }
        assert!(items <= MAX_PENDING, "{items} items queued");
        assert_eq!(
            midi,
            self.core.stats().events,
            "counted events differ from those queued"
        );
    }
}

/// Checks one item for the audio thread and plays it through the note guard.
fn check_item(ev: &ScheduledEvent, voices: &mut Voices) {
    assert!((ev.peer as usize) < MAX_PEERS, "{ev:?}");
    match ev.item {
        Item::Midi(m) => assert!(m.is_valid(), "invalid message handed on: {m:?}"),
        Item::Reconcile(ref s) => check_snapshot(s),
        Item::EndPeer => assert_eq!(ev.seq, u64::MAX),
    }
    voices.apply(ev, |m| assert!(m.is_valid(), "the guard emitted {m:?}"));
}

/// Changes a datagram a little: one byte, its length, or a tail.
pub fn tamper(u: &mut Unstructured<'_>, bytes: &mut Vec<u8>) -> Result<()> {
    match u.int_in_range(0u8..=2)? {
        0 if !bytes.is_empty() => {
            let i = u.int_in_range(0..=bytes.len() - 1)?;
            bytes[i] ^= u.int_in_range(1..=255)?;
        }
        1 => {
            let n = u.int_in_range(0..=bytes.len())?;
            bytes.truncate(n);
        }
        _ => {
            let n = u.int_in_range(1..=32)?;
            bytes.extend_from_slice(u.bytes(n)?);
        }
    }
    Ok(())
}
