//! The `sender_receive` target: a [`SenderCore`] (with a room key or without) that plays
//! events, sends what it produces into the void, and receives what the input makes of the
//! Receiver's side: answers to its real clock requests with any timestamps, answers to its
//! other datagrams (a restarted Receiver telling its epoch), refusals, replays, tampered and
//! arbitrary datagrams. Its clock only moves forward.
//!
//! Checked after every step:
//! - nothing panics; every datagram it does not take is counted, and only those;
//! - everything it sends decodes (sealed with its key when it has one), carries its id and
//!   strictly increasing sequence numbers, fits [`MAX_DATAGRAM`], and holds only valid MIDI,
//!   in-range snapshots and clock reports a Receiver accepts;
//! - after its first Bye, only the goodbye's repeats: repeats of events already sent, and at
//!   most [`BYE_ROUNDS`] Byes in all; no heartbeat, report or clock request;
//! - once the goodbye is done, it asks for no more wake-ups.

use crate::craft::{key, one_in, other_key, valid_midi};
use crate::receive::tamper;
use arbitrary::{Result, Unstructured};
use udp_midi::proto::event::TimedMessage;
use udp_midi::proto::receiver::NtpOffset;
use udp_midi::proto::seal::RoomKey;
use udp_midi::proto::sender::{SenderCore, BYE_ROUNDS};
use udp_midi::proto::wire::{
    decode_body, decode_header, encode_bye, encode_events, encode_refused, encode_time_reply,
    open_body, Body, Datagram, PacketType, Prelude, TimeReply, FLAG_SEALED, MAX_ACCEPTED_DATAGRAM,
    MAX_DATAGRAM, MAX_SKEW_PPB, NAME_MAX,
};

/// The Sender's id.
const SENDER_ID: u64 = 0x5E4D_E400;
/// Ids a Receiver can have (a restart draws another).
const RECEIVER_IDS: [u64; 2] = [0x00EC_E1FE, 0x00EC_E1FF];
/// Epochs a Receiver can have.
const EPOCHS: [u32; 2] = [0x5EED_0001, 0x5EED_0002];
/// Most steps of one run.
const MAX_STEPS: usize = 256;
/// One millisecond, ns.
const MS: u64 = 1_000_000;
/// The clock never goes past this.
const NOW_MAX: u64 = 1 << 62;
/// Send times remembered (what a Receiver could answer).
const REMEMBERED: usize = 32;

/// One run's state.
struct Run {
    /// The Sender under test.
    core: SenderCore,
    /// Its key.
    key: Option<RoomKey>,
    /// Sender time, ns.
    now: u64,
    /// Receiver clock minus Sender clock, ns.
    offset: i64,
    /// Send times of its clock requests, newest last.
    requests: Vec<u64>,
    /// Send times of its other datagrams, newest last.
    sends: Vec<u64>,
    /// Sequence number of its last datagram.
    last_seq: Option<u64>,
    /// Byes that went out.
    byes: usize,
    /// One past the highest event number sent before the first Bye.
    events_before_bye: u64,
    /// The Receiver's next datagram number.
    receiver_seq: u64,
    /// Datagrams delivered, for replays.
    history: Vec<Vec<u8>>,
    /// Scratch for opening.
    scratch: [u8; MAX_ACCEPTED_DATAGRAM],
}

/// How far one run got, for the tests of the corpus.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Clock answers the Sender took.
    pub replies: u64,
    /// Datagrams it sent.
    pub datagrams: u64,
    /// Events it sent.
    pub events: u64,
    /// Refusals it heard.
    pub refused: u64,
}

/// Runs one input.
pub fn run(data: &[u8]) -> Summary {
    let mut u = Unstructured::new(data);
    let Ok(mut run) = Run::new(&mut u) else {
        return Summary::default();
    };
    for _ in 0..MAX_STEPS {
        if u.is_empty() || run.step(&mut u).is_err() {
            break;
        }
    }
    let s = run.core.stats();
    Summary {
        replies: s.replies,
        datagrams: s.datagrams,
        events: s.events_sent,
        refused: s.refused,
    }
}

impl Run {
    fn new(u: &mut Unstructured<'_>) -> Result<Self> {
        let key = u.arbitrary::<bool>()?.then(key);
        Ok(Run {
            core: SenderCore::new(SENDER_ID, "fuzz", key.clone()),
            key,
            now: 10_000 * MS + u64::from(u.arbitrary::<u32>()?),
            offset: u.int_in_range(-3_600_000 * MS as i64..=3_600_000 * MS as i64)?,
            requests: Vec::with_capacity(REMEMBERED),
            sends: Vec::with_capacity(REMEMBERED),
            last_seq: None,
            byes: 0,
            events_before_bye: 0,
            receiver_seq: 0,
            history: Vec::new(),
            scratch: [0; MAX_ACCEPTED_DATAGRAM],
        })
    }

    fn step(&mut self, u: &mut Unstructured<'_>) -> Result<()> {
        match u.int_in_range(0u8..=11)? {
            0..=2 => {
                let dt = match u.int_in_range(0u8..=3)? {
                    0..=2 => u.int_in_range(0..=60 * MS)?,
                    _ => u.int_in_range(0..=5_000 * MS)?,
                };
                self.now = self.now.saturating_add(dt).min(NOW_MAX);
                self.core.handle_timeout(self.now);
                self.transmit();
                if self.byes == BYE_ROUNDS {
                    assert_eq!(self.core.poll_timeout(), None, "woken after the goodbye");
                }
            }
            3 => {
                for _ in 0..u.int_in_range(1..=24)? {
                    let t = self.now.saturating_sub(u.int_in_range(0..=3 * MS)?);
                    self.core.push_event(TimedMessage {
                        time_ns: t,
                        msg: valid_midi(u)?,
                    });
                }
                self.core.end_block();
                self.transmit();
            }
            4..=6 => {
                let d = self.reply(u)?;
                self.deliver(u, d)?;
            }
            7 => {
                let mut d = encode_refused(RECEIVER_IDS[0], self.receiver_seq);
                self.receiver_seq += 1;
                if one_in(u, 4)? {
                    d = d.seal_with(Some(&other_key()));
                }
                self.deliver(u, d)?;
            }
            8 => {
                let n = if one_in(u, 8)? {
                    u.int_in_range(0..=MAX_ACCEPTED_DATAGRAM + 8)?
                } else {
                    u.int_in_range(0..=64)?
                };
                let bytes = u.bytes(n)?.to_vec();
                self.receive(&bytes);
            }
            9 => {
                // A type the Sender never takes (the Receiver's side does not send these).
                let prelude = Prelude {
                    sent_ns: self.receiver_now(),
                    epoch: EPOCHS[0],
                };
                let d = if u.arbitrary()? {
                    encode_bye(RECEIVER_IDS[0], self.receiver_seq, prelude)
                } else {
                    let ev = [TimedMessage {
                        time_ns: self.now,
                        msg: valid_midi(u)?,
                    }];
                    encode_events(RECEIVER_IDS[0], self.receiver_seq, prelude, 0, &ev).0
                };
                self.receiver_seq += 1;
                self.deliver(u, d.seal_with(self.key.as_ref()))?;
            }
            10 => {
                if !self.history.is_empty() {
                    let i = u.int_in_range(0..=self.history.len() - 1)?;
                    let mut bytes = self.history[i].clone();
                    if one_in(u, 2)? {
                        tamper(u, &mut bytes)?;
                    }
                    self.receive(&bytes);
                }
            }
            _ => match u.int_in_range(0u8..=3)? {
                0 => {
                    let ntp = if one_in(u, 4)? {
                        None
                    } else {
                        // An NTP server's answer: plausible, or anything at all.
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
                }
                1 => self.core.set_redundancy(u.int_in_range(0..=10)?),
                2 => {
                    let s = self.core.clock_status(self.now);
                    assert!(s.skew_ppm.is_finite());
                }
                _ => {
                    self.core.close(self.now);
                    self.transmit();
                }
            },
        }
        Ok(())
    }

    /// The Receiver's clock now.
    fn receiver_now(&self) -> u64 {
        self.now.wrapping_add_signed(self.offset)
    }

    /// A TimeReply as a Receiver would send it: to one of the Sender's requests (or another
    /// of its datagrams, or anything), with timestamps that are right within a few
    /// milliseconds of jitter, or anything at all.
    fn reply(&mut self, u: &mut Unstructured<'_>) -> Result<Datagram> {
        let pick = |u: &mut Unstructured<'_>, v: &[u64]| -> Result<Option<u64>> {
            if v.is_empty() {
                return Ok(None);
            }
            let back = u.int_in_range(0..=(v.len() - 1).min(3))?;
            Ok(Some(v[v.len() - 1 - back]))
        };
        let t1 = match u.int_in_range(0u8..=7)? {
            0 => pick(u, &self.sends)?,
            1 => Some(u.arbitrary()?),
            _ => pick(u, &self.requests)?,
        }
        .unwrap_or(self.now);
        // The answer arrives `rtt` after t1; the Receiver got it halfway and held it `turn`.
        let rtt = u.int_in_range(0..=200 * MS)?;
        let turn = u.int_in_range(0..=rtt.min(MS))?;
        let t2 = t1
            .wrapping_add_signed(self.offset)
            .wrapping_add((rtt - turn) / 2);
        let (t2, t3) = match u.int_in_range(0u8..=15)? {
            // Any timestamps, or a Receiver clock anywhere that holds the request a
            // plausible time (so the filter takes the sample).
            0 => (u.arbitrary()?, u.arbitrary()?),
            1 => {
                let t2: u64 = u.arbitrary()?;
                (t2, t2.wrapping_add(turn))
            }
            _ => (t2, t2.wrapping_add(turn)),
        };
        if t1 <= self.now {
            self.now = self.now.max(t1.saturating_add(rtt)).min(NOW_MAX);
        }
        let who = usize::from(one_in(u, 8)?);
        let prelude = Prelude {
            sent_ns: t3,
            epoch: if one_in(u, 16)? {
                u.arbitrary()?
            } else {
                EPOCHS[who]
            },
        };
        let d = encode_time_reply(
            RECEIVER_IDS[who],
            self.receiver_seq,
            prelude,
            &TimeReply { t1, t2 },
        );
        self.receiver_seq += 1;
        let seal = match (u.int_in_range(0u8..=15)?, &self.key) {
            (0, _) => None,
            (1, _) => Some(other_key()),
            (2, None) => Some(key()),
            (_, k) => k.clone(),
        };
        Ok(d.seal_with(seal.as_ref()))
    }

    /// Delivers `d`, tampered with now and then.
    fn deliver(&mut self, u: &mut Unstructured<'_>, d: Datagram) -> Result<()> {
        let mut bytes = d.as_bytes().to_vec();
        if one_in(u, 16)? {
            tamper(u, &mut bytes)?;
        }
        if self.history.len() == 16 {
            self.history.remove(0);
        }
        self.history.push(bytes.clone());
        self.receive(&bytes);
        Ok(())
    }

    /// Hands `bytes` to the Sender and checks how it was counted; sends what it answers.
    fn receive(&mut self, bytes: &[u8]) {
        let before = self.core.stats();
        let r = self.core.handle_datagram(self.now, bytes);
        let after = self.core.stats();
        assert_eq!(
            after.rejected - before.rejected,
            u64::from(r.is_err()),
            "rejections miscounted: {r:?}"
        );
        self.core.handle_timeout(self.now);
        self.transmit();
    }

    /// Takes everything the Sender has to send and checks it.
    fn transmit(&mut self) {
        while let Some(d) = self.core.poll_transmit(self.now) {
            let b = d.as_bytes();
            assert!(b.len() <= MAX_DATAGRAM);
            let (h, _) = decode_header(b).expect("own datagram's header");
            assert!(
                self.byes == 0 || matches!(h.packet_type, PacketType::Events | PacketType::Bye),
                "a {:?} after the Bye",
                h.packet_type
            );
            assert_eq!(h.sender_id, SENDER_ID);
            assert!(
                self.last_seq.is_none_or(|s| h.seq > s),
                "sequence went back"
            );
            self.last_seq = Some(h.seq);
            assert_eq!(h.sealed, self.key.is_some());
            assert_eq!(b[6] & FLAG_SEALED != 0, h.sealed);
            let body = open_body(
                &h,
                b,
                self.key.as_ref(),
                self.key.is_some(),
                &mut self.scratch,
            )
            .expect("own datagram opens");
            let mut events = Vec::new();
            let body = decode_body(&h, body, &mut events)
                .unwrap_or_else(|e| panic!("own {:?} does not decode: {e:?}", h.packet_type));
            let sent = body
                .prelude()
                .expect("a Sender's datagram has a prelude")
                .sent_ns;
            assert_eq!(sent, self.now);
            match body {
                Body::Events {
                    first_event_seq, ..
                } => {
                    assert!(events.iter().all(|e| e.msg.is_valid()));
                    let end = first_event_seq + events.len() as u64;
                    if self.byes == 0 {
                        self.events_before_bye = self.events_before_bye.max(end);
                    } else {
                        assert!(end <= self.events_before_bye, "new events after the Bye");
                    }
                }
                Body::State(s) => {
                    assert!(s.name.len() <= NAME_MAX);
                    crate::craft::check_snapshot(&s.snapshot);
                }
                Body::ClockReport { report, .. } => {
                    assert!(report.skew_ppb.unsigned_abs() <= MAX_SKEW_PPB as u64);
                }
                Body::Bye { .. } => {
                    self.byes += 1;
                    assert!(self.byes <= BYE_ROUNDS, "{} Byes", self.byes);
                }
                Body::TimeRequest { .. } => {}
                Body::TimeReply { .. } | Body::Refused => {
                    panic!("a Sender sent {:?}", h.packet_type)
                }
            }
            let list = if h.packet_type == PacketType::TimeRequest {
                &mut self.requests
            } else {
                &mut self.sends
            };
            if list.len() == REMEMBERED {
                list.remove(0);
            }
            list.push(self.now);
        }
    }
}
