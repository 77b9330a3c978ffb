//! The `decode` target: arbitrary bytes through the header decoder, the body opener (plain,
//! required-sealed, keyless, and with the room key) and the body decoder, with the promises
//! of `wire.rs` checked on every result:
//! - nothing panics; every failure is a typed error;
//! - a decoded Events body holds 1 to [`MAX_EVENTS_PER_DATAGRAM`] events, each valid MIDI
//!   1.0, and the event buffer is empty after any error;
//! - a decoded State body has a name of at most [`NAME_MAX`] bytes and a snapshot in range;
//!   a ClockReport's skew is within [`MAX_SKEW_PPB`];
//! - what decodes re-encodes, and the re-encoding decodes to the same body (at most as many
//!   events as fit the encoder's budget);
//! - a body sealed under the room key opens to exactly itself, and decodes as it does plain;
//!   one bit changed anywhere makes it fail authentication.
//!
//! The input also goes through [`RoomCode::parse`], which reads what a person typed.

use crate::craft::{check_snapshot, key};
use udp_midi::proto::event::TimedMessage;
use udp_midi::proto::room::RoomCode;
use udp_midi::proto::seal::TAG_LEN;
use udp_midi::proto::wire::{
    decode_body, decode_header, encode_bye, encode_clock_report, encode_events, encode_state,
    encode_time_reply, encode_time_request, open_body, Body, Datagram, DecodeError, Header,
    OpenError, PacketType, FLAG_SEALED, HEADER_LEN, MAGIC, MAX_ACCEPTED_DATAGRAM, MAX_DATAGRAM,
    MAX_EVENTS_PER_DATAGRAM, MAX_SKEW_PPB, NAME_MAX, VERSION,
};

/// Runs one input.
pub fn run(data: &[u8]) {
    room_code(data);
    let mut events = Vec::with_capacity(MAX_EVENTS_PER_DATAGRAM);
    let mut again = Vec::with_capacity(MAX_EVENTS_PER_DATAGRAM);
    let mut scratch = [0u8; MAX_ACCEPTED_DATAGRAM];

    // The input as a whole datagram, as it arrived.
    whole(data, &mut scratch, &mut events, &mut again);

    // The input as a body behind a valid header of each type: most random bytes fail the
    // magic check, and this lets the fuzzer work on the bodies directly. The first byte
    // picks the type (including an undefined one).
    if let Some((&t, body)) = data.split_first() {
        let len = HEADER_LEN + body.len();
        if len <= MAX_ACCEPTED_DATAGRAM {
            let mut d = [0u8; MAX_ACCEPTED_DATAGRAM];
            d[..4].copy_from_slice(&MAGIC);
            d[4] = VERSION;
            d[5] = t % 8;
            d[8..16].copy_from_slice(&0x0123_4567_89AB_CDEFu64.to_le_bytes());
            d[16..24].copy_from_slice(&u64::from(t).to_le_bytes());
            d[HEADER_LEN..len].copy_from_slice(body);
            whole(&d[..len], &mut scratch, &mut events, &mut again);
            sealed(&d[..len], &mut events, &mut again);
        }
    }
}

/// A typed room code: never panics; one that parses shows as 19 characters and reads back
/// the same.
fn room_code(data: &[u8]) {
    let s = String::from_utf8_lossy(&data[..data.len().min(64)]);
    if let Ok(c) = RoomCode::parse(&s) {
        let shown = c.to_string();
        assert_eq!(shown.len(), 19);
        assert_eq!(RoomCode::parse(&shown).as_ref(), Ok(&c));
        assert_eq!(c.as_str().len(), 16);
    }
}

/// Decodes `bytes` as a whole datagram, every way a side can open it.
fn whole(
    bytes: &[u8],
    scratch: &mut [u8; MAX_ACCEPTED_DATAGRAM],
    events: &mut Vec<TimedMessage>,
    again: &mut Vec<TimedMessage>,
) {
    let (h, rest) = match decode_header(bytes) {
        Ok(x) => x,
        Err(e) => {
            match e {
                DecodeError::TooLong => assert!(bytes.len() > MAX_ACCEPTED_DATAGRAM),
                DecodeError::TooShort => assert!(bytes.len() < HEADER_LEN),
                _ => assert!((HEADER_LEN..=MAX_ACCEPTED_DATAGRAM).contains(&bytes.len())),
            }
            return;
        }
    };
    assert!((HEADER_LEN..=MAX_ACCEPTED_DATAGRAM).contains(&bytes.len()));
    assert_eq!(rest, &bytes[HEADER_LEN..]);
    assert_eq!(h.sealed, bytes[6] & FLAG_SEALED != 0);
    let k = key();

    // A side without a key.
    match open_body(&h, bytes, None, false, scratch) {
        Ok(body) => {
            assert!(!h.sealed);
            assert_eq!(body, rest);
        }
        Err(e) => assert!(h.sealed && e == OpenError::NoKey, "{e:?}"),
    }
    // A room with a code: plain bodies refused, sealed ones checked (only a datagram sealed
    // with the key passes, as the seeds are: a random tag never does).
    match open_body(&h, bytes, Some(&k), true, scratch) {
        Ok(opened) => {
            assert!(h.sealed, "a plain body opened in a room with a code");
            assert_eq!(opened.len() + TAG_LEN, rest.len());
            let mut copy = [0u8; MAX_ACCEPTED_DATAGRAM];
            copy[..opened.len()].copy_from_slice(opened);
            body(&h, &copy[..opened.len()], events, again);
        }
        Err(OpenError::Unsealed) => assert!(!h.sealed),
        Err(OpenError::TooShort) => assert!(h.sealed && rest.len() < TAG_LEN),
        Err(OpenError::AuthFailed) => assert!(h.sealed && rest.len() >= TAG_LEN),
        Err(OpenError::NoKey) => panic!("NoKey with a key"),
    }
    // The body as plain bytes, whatever the flag says.
    body(&h, rest, events, again);
}

/// Seals the body of `plain` (a datagram with a valid header) under the room key, opens it
/// back, and checks that it decodes as the plain body does; then that one flipped bit fails.
fn sealed(plain: &[u8], events: &mut Vec<TimedMessage>, again: &mut Vec<TimedMessage>) {
    let Ok((hp, body_plain)) = decode_header(plain) else {
        return;
    };
    let k = key();
    let n = plain.len();
    if n + TAG_LEN > MAX_ACCEPTED_DATAGRAM {
        return;
    }
    let mut d = [0u8; MAX_ACCEPTED_DATAGRAM];
    d[..n].copy_from_slice(plain);
    d[6] |= FLAG_SEALED;
    let (head, body) = d.split_at_mut(HEADER_LEN);
    let id = u64::from_le_bytes(head[8..16].try_into().expect("8 bytes"));
    let seq = u64::from_le_bytes(head[16..24].try_into().expect("8 bytes"));
    let tag = k.seal(id, seq, head, &mut body[..n - HEADER_LEN]);
    body[n - HEADER_LEN..n - HEADER_LEN + TAG_LEN].copy_from_slice(&tag);
    let d = &d[..n + TAG_LEN];

    let (h, _) = decode_header(d).expect("a header made valid above");
    assert!(h.sealed);
    let mut scratch = [0u8; MAX_ACCEPTED_DATAGRAM];
    let opened = open_body(&h, d, Some(&k), true, &mut scratch).expect("sealed with our key");
    assert_eq!(opened, &plain[HEADER_LEN..]);
    let a = decode_body(&h, opened, events);
    let b = decode_body(&hp, body_plain, again);
    assert_eq!(a, b, "sealed and plain decodings differ");
    assert_eq!(events, again);

    // One bit changed (chosen by the content, so the fuzzer steers it): refused.
    let pos = usize::from(plain.last().copied().unwrap_or(0)) * 7 % d.len();
    let mut bad = [0u8; MAX_ACCEPTED_DATAGRAM];
    bad[..d.len()].copy_from_slice(d);
    bad[pos] ^= 1 << (pos % 8);
    let bad = &bad[..d.len()];
    if let Ok((hb, _)) = decode_header(bad) {
        let r = open_body(&hb, bad, Some(&k), true, &mut scratch);
        assert!(
            matches!(r, Err(OpenError::AuthFailed | OpenError::Unsealed)),
            "a tampered datagram opened: {r:?}"
        );
    }
}

/// Decodes a plain body and checks what came out.
fn body(h: &Header, body: &[u8], events: &mut Vec<TimedMessage>, again: &mut Vec<TimedMessage>) {
    // Left-over events from an earlier call must not survive.
    events.push(TimedMessage {
        time_ns: 1,
        msg: udp_midi::proto::event::MidiMessage::ProgramChange {
            channel: 0,
            program: 0,
        },
    });
    let decoded = match decode_body(h, body, events) {
        Ok(b) => b,
        Err(e) => {
            assert!(events.is_empty(), "events left after {e:?}: {events:?}");
            return;
        }
    };
    let prelude = decoded.prelude();
    assert_eq!(prelude.is_none(), h.packet_type == PacketType::Refused);
    let prelude = prelude.unwrap_or_default();
    // Re-encoded, then decoded again: the same body.
    let re: Datagram = match decoded {
        Body::Events {
            first_event_seq, ..
        } => {
            assert!(!events.is_empty() && events.len() <= MAX_EVENTS_PER_DATAGRAM);
            assert!(first_event_seq
                .checked_add(MAX_EVENTS_PER_DATAGRAM as u64)
                .is_some());
            for ev in events.iter() {
                assert!(ev.msg.is_valid(), "invalid event decoded: {ev:?}");
            }
            // The encoder writes each time relative to the first event's, so it can only
            // carry times within 2^63 ns of that one (a Sender's own clock never spans
            // more); the decoder accepts any time reached from the batch's base.
            let first = events[0].time_ns;
            if events.iter().any(|e| {
                first.checked_add_signed(e.time_ns.wrapping_sub(first) as i64) != Some(e.time_ns)
            }) {
                return;
            }
            let (d, n) = encode_events(h.sender_id, h.seq, prelude, first_event_seq, events);
            assert!(n >= 1, "a decoded event does not fit a datagram");
            let mut back = Vec::new();
            let (h2, b2) = decode_header(d.as_bytes()).expect("encoder output");
            let r = decode_body(&h2, b2, &mut back).expect("encoder output decodes");
            assert_eq!(r, decoded);
            assert_eq!(back[..], events[..n]);
            return;
        }
        Body::State(s) => {
            assert!(s.name.len() <= NAME_MAX);
            check_snapshot(&s.snapshot);
            encode_state(h.sender_id, h.seq, &s)
        }
        Body::Bye { .. } => encode_bye(h.sender_id, h.seq, prelude),
        Body::TimeRequest { .. } => encode_time_request(h.sender_id, h.seq, prelude),
        Body::TimeReply { reply, .. } => encode_time_reply(h.sender_id, h.seq, prelude, &reply),
        Body::ClockReport { report, .. } => {
            assert!(report.skew_ppb.unsigned_abs() <= MAX_SKEW_PPB as u64);
            encode_clock_report(h.sender_id, h.seq, prelude, &report)
        }
        Body::Refused => {
            assert!(body.is_empty());
            return;
        }
    };
    assert!(re.as_bytes().len() <= MAX_DATAGRAM);
    let (h2, b2) = decode_header(re.as_bytes()).expect("encoder output");
    assert_eq!(h2.packet_type, h.packet_type);
    let r = decode_body(&h2, b2, again).expect("encoder output decodes");
    assert_eq!(r, decoded, "re-encoded body decodes differently");
}
