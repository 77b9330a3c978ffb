//! Round-trip, size and hostile-input tests of the v2 wire format, plain and sealed.

use super::*;
use crate::proto::event::{MidiMessage, SysEx, SYSEX_MAX};
use crate::proto::seal::RoomKey;
use events::{EventsHead, WireEvent, WireMsg};
use proptest::prelude::*;

fn arb_opt7(max: u8) -> impl Strategy<Value = Option<u8>> {
    prop_oneof![Just(None), (0..max).prop_map(Some)]
}

fn arb_unit() -> impl Strategy<Value = f32> {
    prop_oneof![Just(0.0f32), Just(1.0f32), 0.0f32..=1.0]
}

fn arb_msg() -> impl Strategy<Value = MidiMessage> {
    let voice = proptest::option::of(any::<i32>());
    prop_oneof![
        // Only a note-off may name any channel or key (255 on the wire).
        (0u8..16, 0u8..128, arb_unit(), voice.clone()).prop_map(|(c, k, v, id)| {
            MidiMessage::NoteOn {
                channel: Some(c),
                key: Some(k),
                velocity: v,
                voice_id: id,
            }
        }),
        (arb_opt7(16), arb_opt7(128), arb_unit(), voice.clone()).prop_map(|(c, k, v, id)| {
            MidiMessage::NoteOff {
                channel: c,
                key: k,
                velocity: v,
                voice_id: id,
            }
        }),
        (0u8..16, 0u8..128, arb_unit(), voice).prop_map(|(c, k, v, id)| {
            MidiMessage::PolyPressure {
                channel: Some(c),
                key: Some(k),
                pressure: v,
                voice_id: id,
            }
        }),
        (0u8..16, 0u8..128, arb_unit())
            .prop_map(|(channel, cc, value)| { MidiMessage::ControlChange { channel, cc, value } }),
        (0u8..16, arb_unit())
            .prop_map(|(channel, pressure)| MidiMessage::ChannelPressure { channel, pressure }),
        (0u8..16, arb_unit())
            .prop_map(|(channel, value)| MidiMessage::PitchBend { channel, value }),
        (0u8..16, 0u8..128)
            .prop_map(|(channel, program)| MidiMessage::ProgramChange { channel, program }),
        proptest::collection::vec(0u8..0x80, 0..=SYSEX_MAX - 2).prop_map(|inner| {
            let mut b = vec![0xF0];
            b.extend(inner);
            b.push(0xF7);
            MidiMessage::SysEx(SysEx::new(&b).unwrap())
        }),
    ]
}

fn arb_events() -> impl Strategy<Value = Vec<TimedMessage>> {
    (
        0u64..u64::MAX / 2,
        proptest::collection::vec((0u64..50_000_000, arb_msg()), 1..64),
    )
        .prop_map(|(base, evs)| {
            evs.into_iter()
                .map(|(dt, msg)| TimedMessage {
                    time_ns: base + dt,
                    msg,
                })
                .collect()
        })
}

/// The key of the sealed tests.
fn key() -> RoomKey {
    RoomKey::from_bytes([0x5A; 32])
}

const PRELUDE: Prelude = Prelude {
    sent_ns: 1_795_500_000_010_000_000,
    epoch: 0xC0FFEE,
};

/// Opens and decodes a whole datagram the way a Receiver does.
fn decode_all<'s>(
    bytes: &[u8],
    key: Option<&RoomKey>,
    scratch: &'s mut [u8; MAX_ACCEPTED_DATAGRAM],
    out: &mut Vec<TimedMessage>,
) -> Result<(Header, Body<'s>), String> {
    let (h, _) = decode_header(bytes).map_err(|e| format!("{e:?}"))?;
    let body = open_body(&h, bytes, key, key.is_some(), scratch).map_err(|e| format!("{e:?}"))?;
    let b = decode_body(&h, body, out).map_err(|e| format!("{e:?}"))?;
    Ok((h, b))
}

/// Encodes all `events` into as many datagrams as needed (sealed with `key` when given),
/// decodes them and returns the result.
fn round_trip(events: &[TimedMessage], key: Option<&RoomKey>) -> (Vec<TimedMessage>, usize) {
    let mut out = Vec::new();
    let mut buf = Vec::new();
    let mut rest = events;
    let mut seq = 0;
    let mut datagrams = 0;
    let mut event_seq = 1000;
    let mut scratch = [0u8; MAX_ACCEPTED_DATAGRAM];
    while !rest.is_empty() {
        let (d, n) = encode_events(0xDEAD_BEEF, seq, PRELUDE, event_seq, rest);
        let d = d.seal_with(key);
        assert!(n > 0);
        assert!(d.as_bytes().len() <= MAX_DATAGRAM);
        let (h, body) = decode_all(d.as_bytes(), key, &mut scratch, &mut buf).unwrap();
        assert_eq!(h.packet_type, PacketType::Events);
        assert_eq!(h.sealed, key.is_some());
        assert_eq!(h.sender_id, 0xDEAD_BEEF);
        assert_eq!(h.seq, seq);
        assert_eq!(
            body,
            Body::Events {
                prelude: PRELUDE,
                first_event_seq: event_seq
            }
        );
        out.extend_from_slice(&buf);
        rest = &rest[n..];
        seq += 1;
        event_seq += n as u64;
        datagrams += 1;
    }
    (out, datagrams)
}

proptest! {
    #[test]
    fn events_round_trip(events in arb_events(), sealed in any::<bool>()) {
        let k = key();
        let (back, _) = round_trip(&events, sealed.then_some(&k));
        prop_assert_eq!(back, events);
    }

    #[test]
    fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..1600)) {
        let mut out = Vec::new();
        let mut scratch = [0u8; MAX_ACCEPTED_DATAGRAM];
        let k = key();
        let _ = decode_all(&bytes, Some(&k), &mut scratch, &mut out);
        let _ = decode_all(&bytes, None, &mut scratch, &mut out);
        prop_assert!(out.len() <= MAX_EVENTS_PER_DATAGRAM);
    }

    /// Garbage after a valid header: every body decoder must reject or accept without panic,
    /// and whatever it accepts must be in MIDI range.
    #[test]
    fn garbage_body_is_rejected_or_valid(body in proptest::collection::vec(any::<u8>(), 0..1200),
                                         ty in 1u8..=7) {
        let mut d = Datagram::new(PacketType::Events, 1, 2);
        d.push_bytes(&body[..body.len().min(MAX_DATAGRAM - HEADER_LEN - 16)]).unwrap();
        let mut bytes = d.as_bytes().to_vec();
        bytes[5] = ty;
        let mut out = Vec::new();
        let mut scratch = [0u8; MAX_ACCEPTED_DATAGRAM];
        match decode_all(&bytes, None, &mut scratch, &mut out) {
            Ok((_, Body::Events { .. })) => {
                prop_assert!(!out.is_empty());
                for ev in &out {
                    prop_assert!(ev.msg.is_valid());
                }
            }
            _ => prop_assert!(out.is_empty()),
        }
    }

    /// Flipping any one bit of a plain datagram gives an error or a valid datagram, never a
    /// panic or an out-of-range event; flipping any bit of a sealed one always fails.
    #[test]
    fn bit_flips(events in arb_events(), bit in 0usize..(MAX_DATAGRAM * 8)) {
        let (d, _) = encode_events(1, 2, PRELUDE, 3, &events);
        let mut bytes = d.as_bytes().to_vec();
        let bit = bit % (bytes.len() * 8);
        bytes[bit / 8] ^= 1 << (bit % 8);
        let mut out = Vec::new();
        let mut scratch = [0u8; MAX_ACCEPTED_DATAGRAM];
        if decode_all(&bytes, None, &mut scratch, &mut out).is_ok() {
            for ev in &out {
                prop_assert!(ev.msg.is_valid());
            }
        }
        let k = key();
        let sealed = d.clone().seal_with(Some(&k));
        let mut bytes = sealed.as_bytes().to_vec();
        let bit = bit % (bytes.len() * 8);
        bytes[bit / 8] ^= 1 << (bit % 8);
        prop_assert!(decode_all(&bytes, Some(&k), &mut scratch, &mut out).is_err());
    }

    /// Every truncation of a valid datagram is rejected, or (plain only, cut between events)
    /// decodes to a prefix of the events.
    #[test]
    fn truncation(events in arb_events(), cut in 0usize..MAX_DATAGRAM) {
        let (d, n) = encode_events(1, 2, PRELUDE, 3, &events);
        let full = d.as_bytes();
        let cut = cut % full.len();
        let mut out = Vec::new();
        let mut scratch = [0u8; MAX_ACCEPTED_DATAGRAM];
        if decode_all(&full[..cut], None, &mut scratch, &mut out).is_ok() {
            prop_assert!(out.len() < n);
            prop_assert_eq!(&out[..], &events[..out.len()]);
        }
        let k = key();
        let sealed = d.clone().seal_with(Some(&k));
        let s = sealed.as_bytes();
        let cut = cut % s.len();
        prop_assert!(decode_all(&s[..cut], Some(&k), &mut scratch, &mut out).is_err());
    }
}

fn note_on(t: u64, key: u8) -> TimedMessage {
    TimedMessage {
        time_ns: t,
        msg: MidiMessage::NoteOn {
            channel: Some(0),
            key: Some(key),
            velocity: 0.8,
            voice_id: None,
        },
    }
}

/// A realistic origin time: 2026-11-24 in ns since the Unix epoch.
const NOW_NS: u64 = 1_795_500_000_000_000_000;

#[test]
fn datagram_sizes() {
    let one = [note_on(NOW_NS, 60)];
    let (d1, n1) = encode_events(u64::MAX, 12345, PRELUDE, 678, &one);
    assert_eq!(n1, 1);
    let sixteen: Vec<_> = (0..16)
        .map(|i| note_on(NOW_NS + i * 208_333, 60 + i as u8))
        .collect();
    let (d16, n16) = encode_events(u64::MAX, 12345, PRELUDE, 678, &sixteen);
    assert_eq!(n16, 16);
    let k = key();
    let (s1, s16) = (
        d1.clone().seal_with(Some(&k)),
        d16.clone().seal_with(Some(&k)),
    );
    println!(
        "bytes on the wire: 1 note-on = {} ({} sealed), 16 note-ons = {} ({} sealed)",
        d1.as_bytes().len(),
        s1.as_bytes().len(),
        d16.as_bytes().len(),
        s16.as_bytes().len()
    );
    // These figures are quoted in docs/protocol.md: keep them in step.
    assert_eq!(d1.as_bytes().len(), 57);
    assert_eq!(s1.as_bytes().len(), 73);
    assert_eq!(d16.as_bytes().len(), 232);
    assert_eq!(s16.as_bytes().len(), 248);
}

#[test]
fn large_batches_split_under_the_budget() {
    let sx: Vec<u8> = std::iter::once(0xF0)
        .chain(std::iter::repeat_n(0x11, SYSEX_MAX - 2))
        .chain(std::iter::once(0xF7))
        .collect();
    let mut events: Vec<_> = (0..600)
        .map(|i| note_on(NOW_NS + i, (i % 128) as u8))
        .collect();
    for i in 0..20 {
        events.push(TimedMessage {
            time_ns: NOW_NS + 600 + i,
            msg: MidiMessage::SysEx(SysEx::new(&sx).unwrap()),
        });
    }
    let k = key();
    for key in [None, Some(&k)] {
        let (back, datagrams) = round_trip(&events, key);
        assert_eq!(back, events);
        assert!(datagrams >= 9, "{datagrams} datagrams");
    }
}

#[test]
fn header_errors() {
    let (d, _) = encode_events(7, 8, PRELUDE, 9, &[note_on(NOW_NS, 1)]);
    let good = d.as_bytes().to_vec();
    assert_eq!(
        decode_header(&good[..HEADER_LEN - 1]),
        Err(DecodeError::TooShort)
    );
    assert_eq!(decode_header(&[]), Err(DecodeError::TooShort));
    assert_eq!(
        decode_header(&vec![0; MAX_ACCEPTED_DATAGRAM + 1]),
        Err(DecodeError::TooLong)
    );
    let mut b = good.clone();
    b[0] = b'X';
    assert_eq!(decode_header(&b), Err(DecodeError::BadMagic));
    let mut b = good.clone();
    b[4] = 1;
    assert_eq!(decode_header(&b), Err(DecodeError::UnsupportedVersion(1)));
    let mut b = good.clone();
    b[5] = 99;
    assert_eq!(decode_header(&b), Err(DecodeError::UnknownType(99)));
    for (i, v) in [(6, 2), (6, 0x80), (7, 1)] {
        let mut b = good.clone();
        b[i] = v;
        assert_eq!(decode_header(&b), Err(DecodeError::ReservedBits));
    }
    let (h, body) = decode_header(&good).unwrap();
    let mut out = Vec::new();
    assert_eq!(
        decode_body(&h, &body[..2], &mut out),
        Err(DecodeError::Malformed)
    );
    let bye = Header {
        packet_type: PacketType::Bye,
        ..h
    };
    assert_eq!(
        decode_body(&bye, body, &mut out),
        Err(DecodeError::TrailingBytes)
    );
    assert!(out.is_empty());
}

#[test]
fn sealing_is_required_checked_and_keyed() {
    let (d, _) = encode_events(7, 8, PRELUDE, 9, &[note_on(NOW_NS, 1)]);
    let k = key();
    let other = RoomKey::from_bytes([1; 32]);
    let sealed = d.clone().seal_with(Some(&k));
    let mut scratch = [0u8; MAX_ACCEPTED_DATAGRAM];
    let open =
        |bytes: &[u8], key: Option<&RoomKey>, req: bool, s: &mut [u8; MAX_ACCEPTED_DATAGRAM]| {
            let (h, _) = decode_header(bytes).unwrap();
            open_body(&h, bytes, key, req, s).map(|b| b.len())
        };
    // A room with a code refuses plain datagrams; a side without a key cannot open sealed ones.
    assert_eq!(
        open(d.as_bytes(), Some(&k), true, &mut scratch),
        Err(OpenError::Unsealed)
    );
    assert_eq!(
        open(sealed.as_bytes(), None, false, &mut scratch),
        Err(OpenError::NoKey)
    );
    assert_eq!(
        open(sealed.as_bytes(), Some(&other), true, &mut scratch),
        Err(OpenError::AuthFailed)
    );
    assert_eq!(
        open(
            &sealed.as_bytes()[..HEADER_LEN + 3],
            Some(&k),
            true,
            &mut scratch
        ),
        Err(OpenError::TooShort)
    );
    // The header is authenticated: another sequence number (a replayed body under a new
    // number) fails.
    let mut b = sealed.as_bytes().to_vec();
    b[16] ^= 1;
    assert_eq!(
        open(&b, Some(&k), true, &mut scratch),
        Err(OpenError::AuthFailed)
    );
    assert!(open(sealed.as_bytes(), Some(&k), true, &mut scratch).is_ok());
    // An open room with a key still opens sealed datagrams and takes plain ones.
    assert!(open(sealed.as_bytes(), Some(&k), false, &mut scratch).is_ok());
    assert!(open(d.as_bytes(), Some(&k), false, &mut scratch).is_ok());
}

#[test]
fn refused_is_a_bare_header() {
    let d = encode_refused(3, 4);
    assert_eq!(d.as_bytes().len(), HEADER_LEN);
    let (h, body) = decode_header(d.as_bytes()).unwrap();
    assert_eq!(decode_body(&h, body, &mut Vec::new()), Ok(Body::Refused));
    assert_eq!(
        decode_body(&h, &[0], &mut Vec::new()),
        Err(DecodeError::TrailingBytes)
    );
}

/// An Events body with the given prelude, head and events, for hand-made bad input.
fn events_body(first: u64, base: u64, evs: &[WireEvent<'_>]) -> Vec<u8> {
    let mut body = vec![0u8; 4096];
    let mut n = postcard::to_slice(&PRELUDE, &mut body).unwrap().len();
    n += postcard::to_slice(
        &EventsHead {
            first_event_seq: first,
            base_ns: base,
        },
        &mut body[n..],
    )
    .unwrap()
    .len();
    for ev in evs {
        n += postcard::to_slice(ev, &mut body[n..]).unwrap().len();
    }
    body.truncate(n);
    body
}

#[test]
fn empty_and_out_of_range_events_are_rejected() {
    let h = Header {
        packet_type: PacketType::Events,
        sealed: false,
        sender_id: 1,
        seq: 1,
    };
    let mut out = Vec::new();
    assert_eq!(
        decode_body(&h, &events_body(0, 5, &[]), &mut out),
        Err(DecodeError::Empty)
    );
    let cc16 = WireEvent {
        dt_ns: 0,
        msg: WireMsg::ControlChange(16, 1, 0.5),
    };
    assert_eq!(
        decode_body(&h, &events_body(0, 5, &[cc16]), &mut out),
        Err(DecodeError::InvalidEvent)
    );
    let before_epoch = WireEvent {
        dt_ns: -6,
        msg: WireMsg::ProgramChange(0, 1),
    };
    assert_eq!(
        decode_body(&h, &events_body(0, 5, &[before_epoch]), &mut out),
        Err(DecodeError::TimeOverflow)
    );
    let pc = WireEvent {
        dt_ns: 0,
        msg: WireMsg::ProgramChange(0, 1),
    };
    assert_eq!(
        decode_body(&h, &events_body(u64::MAX - 3, 5, &[pc]), &mut out),
        Err(DecodeError::Malformed),
        "event numbers that would wrap"
    );
    // Wildcards (255): a note-off may carry them, a note-on or key pressure may not.
    for (c, k) in [(255, 60), (0, 255), (255, 255)] {
        for msg in [
            WireMsg::NoteOn(c, k, 1.0, None),
            WireMsg::PolyPressure(c, k, 0.5, None),
        ] {
            let ev = WireEvent { dt_ns: 0, msg };
            assert_eq!(
                decode_body(&h, &events_body(0, 5, &[ev]), &mut out),
                Err(DecodeError::InvalidEvent),
                "channel {c} key {k}"
            );
        }
        let off = WireEvent {
            dt_ns: 0,
            msg: WireMsg::NoteOff(c, k, 0.0, None),
        };
        assert!(decode_body(&h, &events_body(0, 5, &[off]), &mut out).is_ok());
    }
    out.clear();
    assert!(out.is_empty());
}

#[test]
fn too_many_events() {
    // 300 program changes fit in the size budget but exceed the count limit.
    let evs: Vec<_> = (0..300)
        .map(|_| WireEvent {
            dt_ns: 0,
            msg: WireMsg::ProgramChange(0, 1),
        })
        .collect();
    let h = Header {
        packet_type: PacketType::Events,
        sealed: false,
        sender_id: 1,
        seq: 1,
    };
    let mut out = Vec::new();
    assert_eq!(
        decode_body(&h, &events_body(0, 5, &evs), &mut out),
        Err(DecodeError::TooManyEvents)
    );
}

#[test]
fn an_error_after_good_events_leaves_none_behind() {
    // Found by the `decode` fuzz target: an error in the events after the first good ones
    // returned early and left those in the caller's buffer, against `decode_body`'s promise.
    let h = Header {
        packet_type: PacketType::Events,
        sealed: false,
        sender_id: 1,
        seq: 1,
    };
    let pc = || WireEvent {
        dt_ns: 0,
        msg: WireMsg::ProgramChange(0, 1),
    };
    let cc16 = WireEvent {
        dt_ns: 0,
        msg: WireMsg::ControlChange(16, 1, 0.5),
    };
    let mut out = Vec::new();
    assert_eq!(
        decode_body(&h, &events_body(0, 5, &[pc(), pc(), cc16]), &mut out),
        Err(DecodeError::InvalidEvent)
    );
    assert_eq!(out, []);
    let mut cut = events_body(0, 5, &[pc(), pc(), pc()]);
    cut.pop();
    assert_eq!(decode_body(&h, &cut, &mut out), Err(DecodeError::Malformed));
    assert_eq!(out, []);
    let many: Vec<_> = (0..MAX_EVENTS_PER_DATAGRAM + 1).map(|_| pc()).collect();
    assert_eq!(
        decode_body(&h, &events_body(0, 5, &many), &mut out),
        Err(DecodeError::TooManyEvents)
    );
    assert_eq!(out, []);
}
