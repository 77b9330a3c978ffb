//! Round-trip, size and hostile-input tests of the v1 wire format.

use super::*;
use crate::proto::event::SYSEX_MAX;
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
        (arb_opt7(16), arb_opt7(128), arb_unit(), voice.clone()).prop_map(|(c, k, v, id)| {
            MidiMessage::NoteOn {
                channel: c,
                key: k,
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
        (arb_opt7(16), arb_opt7(128), arb_unit(), voice).prop_map(|(c, k, v, id)| {
            MidiMessage::PolyPressure {
                channel: c,
                key: k,
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

/// Encodes all `events` into as many datagrams as needed, decodes them and returns the result.
fn round_trip(events: &[TimedMessage]) -> (Vec<TimedMessage>, usize) {
    let mut out = Vec::new();
    let mut buf = Vec::new();
    let mut rest = events;
    let mut seq = 0;
    let mut datagrams = 0;
    let mut event_seq = 1000;
    while !rest.is_empty() {
        let (d, n) = encode_events(0xDEAD_BEEF, seq, event_seq, rest);
        assert!(n > 0);
        assert!(d.as_bytes().len() <= MAX_DATAGRAM);
        let (h, body) = decode_header(d.as_bytes()).unwrap();
        assert_eq!(h.packet_type, PacketType::Events);
        assert_eq!(h.sender_id, 0xDEAD_BEEF);
        assert_eq!(h.seq, seq);
        assert_eq!(decode_events(body, &mut buf).unwrap(), event_seq);
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
    fn events_round_trip(events in arb_events()) {
        let (back, _) = round_trip(&events);
        prop_assert_eq!(back, events);
    }

    #[test]
    fn hello_round_trip(name in ".{0,80}", id in any::<u64>(), seq in any::<u64>()) {
        let d = encode_hello(id, seq, &name);
        let (h, body) = decode_header(d.as_bytes()).unwrap();
        prop_assert_eq!(h, Header { packet_type: PacketType::Hello, sender_id: id, seq });
        let got = decode_hello(body).unwrap();
        prop_assert!(name.starts_with(got));
        prop_assert!(got.len() <= NAME_MAX);
        prop_assert!(got.len() >= name.len().min(NAME_MAX - 3));
    }

    #[test]
    fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..1600)) {
        let mut out = Vec::new();
        if let Ok((_, body)) = decode_header(&bytes) {
            let _ = decode_events(body, &mut out);
            let _ = decode_hello(body);
            let _ = decode_bye(body);
        }
        prop_assert!(out.len() <= MAX_EVENTS_PER_DATAGRAM);
    }

    /// Garbage after a valid header: the body decoders must reject or accept without panic,
    /// and whatever they accept must be in MIDI range.
    #[test]
    fn garbage_body_is_rejected_or_valid(body in proptest::collection::vec(any::<u8>(), 0..1200)) {
        let mut out = Vec::new();
        if decode_events(&body, &mut out).is_ok() {
            prop_assert!(!out.is_empty());
            for ev in &out {
                prop_assert!(ev.msg.is_valid());
            }
        } else {
            prop_assert!(out.is_empty());
        }
    }

    /// Flipping any one bit of a valid datagram gives an error or a valid datagram, never a
    /// panic or an out-of-range event.
    #[test]
    fn bit_flips(events in arb_events(), bit in 0usize..(MAX_DATAGRAM * 8)) {
        let (d, _) = encode_events(1, 2, 3, &events);
        let mut bytes = d.as_bytes().to_vec();
        let bit = bit % (bytes.len() * 8);
        bytes[bit / 8] ^= 1 << (bit % 8);
        let mut out = Vec::new();
        if let Ok((_, body)) = decode_header(&bytes) {
            if decode_events(body, &mut out).is_ok() {
                for ev in &out {
                    prop_assert!(ev.msg.is_valid());
                }
            }
        }
    }

    /// Every truncation of a valid datagram is rejected (the body's end is the last event's
    /// end, so a cut inside an event is malformed, and a cut between events loses events but
    /// is still a well-formed shorter batch).
    #[test]
    fn truncation(events in arb_events(), cut in 0usize..MAX_DATAGRAM) {
        let (d, n) = encode_events(1, 2, 3, &events);
        let full = d.as_bytes();
        let cut = cut % full.len();
        let mut out = Vec::new();
        match decode_header(&full[..cut]) {
            Err(e) => prop_assert_eq!(e, DecodeError::TooShort),
            Ok((_, body)) => {
                if decode_events(body, &mut out).is_ok() {
                    prop_assert!(out.len() < n);
                    prop_assert_eq!(&out[..], &events[..out.len()]);
                }
            }
        }
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
    let (d1, n1) = encode_events(u64::MAX, 12345, 678, &one);
    assert_eq!(n1, 1);
    let sixteen: Vec<_> = (0..16)
        .map(|i| note_on(NOW_NS + i * 208_333, 60 + i as u8))
        .collect();
    let (d16, n16) = encode_events(u64::MAX, 12345, 678, &sixteen);
    assert_eq!(n16, 16);
    println!(
        "bytes on the wire: 1 note-on = {}, 16 note-ons = {}",
        d1.as_bytes().len(),
        d16.as_bytes().len()
    );
    // These figures are quoted in docs/protocol.md: keep them in step.
    assert_eq!(d1.as_bytes().len(), 44);
    assert_eq!(d16.as_bytes().len(), 219);
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
    let (back, datagrams) = round_trip(&events);
    assert_eq!(back, events);
    assert!(datagrams >= 9, "{datagrams} datagrams");
}

#[test]
fn header_errors() {
    let (d, _) = encode_events(7, 8, 9, &[note_on(NOW_NS, 1)]);
    let good = d.as_bytes().to_vec();
    let mut out = Vec::new();
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
    b[4] = 2;
    assert_eq!(decode_header(&b), Err(DecodeError::UnsupportedVersion(2)));
    let mut b = good.clone();
    b[5] = 99;
    assert_eq!(decode_header(&b), Err(DecodeError::UnknownType(99)));
    let mut b = good.clone();
    b[7] = 1;
    assert_eq!(decode_header(&b), Err(DecodeError::ReservedBits));
    let (_, body) = decode_header(&good).unwrap();
    assert_eq!(
        decode_events(&body[..2], &mut out),
        Err(DecodeError::Malformed)
    );
    assert_eq!(decode_bye(body), Err(DecodeError::TrailingBytes));
    assert!(out.is_empty());
}

#[test]
fn empty_and_out_of_range_events_are_rejected() {
    let mut out = Vec::new();
    // A prelude with no event after it.
    let mut body = [0u8; 32];
    let n = postcard::to_slice(
        &EventsPrelude {
            base_ns: 5,
            first_event_seq: 0,
        },
        &mut body,
    )
    .unwrap()
    .len();
    assert_eq!(decode_events(&body[..n], &mut out), Err(DecodeError::Empty));
    // A CC on channel 16.
    let ev = WireEvent {
        dt_ns: 0,
        msg: WireMsg::ControlChange(16, 1, 0.5),
    };
    let m = postcard::to_slice(&ev, &mut body[n..]).unwrap().len();
    assert_eq!(
        decode_events(&body[..n + m], &mut out),
        Err(DecodeError::InvalidEvent)
    );
    // A time before the epoch.
    let ev = WireEvent {
        dt_ns: -6,
        msg: WireMsg::ProgramChange(0, 1),
    };
    let m = postcard::to_slice(&ev, &mut body[n..]).unwrap().len();
    assert_eq!(
        decode_events(&body[..n + m], &mut out),
        Err(DecodeError::TimeOverflow)
    );
    // A name that is too long.
    let long = "x".repeat(NAME_MAX + 1);
    let mut hb = [0u8; 128];
    let k = postcard::to_slice(&HelloBody { name: &long }, &mut hb)
        .unwrap()
        .len();
    assert_eq!(decode_hello(&hb[..k]), Err(DecodeError::NameTooLong));
}

#[test]
fn too_many_events() {
    // 300 one-byte-value program changes fit in the size budget but exceed the count limit.
    let mut body = vec![0u8; 2000];
    let mut n = postcard::to_slice(
        &EventsPrelude {
            base_ns: 5,
            first_event_seq: 0,
        },
        &mut body,
    )
    .unwrap()
    .len();
    for _ in 0..300 {
        let ev = WireEvent {
            dt_ns: 0,
            msg: WireMsg::ProgramChange(0, 1),
        };
        n += postcard::to_slice(&ev, &mut body[n..]).unwrap().len();
    }
    let mut out = Vec::new();
    assert_eq!(
        decode_events(&body[..n], &mut out),
        Err(DecodeError::TooManyEvents)
    );
}
