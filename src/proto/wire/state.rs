//! State bodies: the Sender's heartbeat, with its name, how long its events wait before they
//! leave, and a snapshot of what it holds (`docs/protocol.md`, "State").

use super::super::state::{ChannelState, StateSnapshot, CHANNELS};
use super::{finish, Datagram, DecodeError, PacketType, Prelude, NAME_MAX};
use serde::{Deserialize, Serialize};

/// A decoded State body.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StateBody<'a> {
    /// The prelude.
    pub prelude: Prelude,
    /// Display name, at most [`NAME_MAX`] bytes.
    pub name: &'a str,
    /// Longest time an event waits in the Sender before it is sent (its host's block plus
    /// its network thread's poll interval), ns. Lets the Receiver budget the delay before
    /// anyone plays.
    pub hold_ns: u64,
    /// The snapshot reflects every event numbered below this.
    pub as_of_seq: u64,
    /// Origin time (Sender clock) at which the snapshot holds: the latest origin of those
    /// events, or the send time when there is none.
    pub as_of_ns: u64,
    /// What is held.
    pub snapshot: StateSnapshot,
}

/// Fixed part of a State body after the prelude; field order is the wire format.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct StateHead<'a> {
    /// Display name, at most [`NAME_MAX`] bytes.
    name: &'a str,
    /// Longest time an event waits in the Sender before it is sent, ns.
    hold_ns: u64,
    /// The snapshot reflects every event numbered below this.
    as_of_seq: u64,
    /// Origin time at which it holds, ns.
    as_of_ns: u64,
    /// Number of channel entries that follow (channels with nothing on are left out).
    channels: u8,
}

/// One channel entry; field order is the wire format.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct WireChannel {
    /// MIDI channel, `0..16`.
    channel: u8,
    /// Bit `k`: key `k` held (varint: a few bytes for a few low keys).
    notes: u128,
    /// Sustain pedal down.
    sustain: bool,
    /// Pitch bend, 0.5 = centre.
    bend: f32,
    /// Last program change.
    program: Option<u8>,
}

/// Encodes a State datagram (unsealed). A name longer than [`NAME_MAX`] bytes is cut at a
/// character boundary.
pub fn encode_state(sender_id: u64, seq: u64, body: &StateBody<'_>) -> Datagram {
    let mut cut = body.name.len().min(NAME_MAX);
    while !body.name.is_char_boundary(cut) {
        cut -= 1;
    }
    let active = body
        .snapshot
        .channels
        .iter()
        .filter(|c| !c.is_idle())
        .count();
    let mut d = Datagram::new(PacketType::State, sender_id, seq);
    let _ = d.push(&body.prelude);
    let _ = d.push(&StateHead {
        name: &body.name[..cut],
        hold_ns: body.hold_ns,
        as_of_seq: body.as_of_seq,
        as_of_ns: body.as_of_ns,
        channels: active as u8,
    });
    for (c, ch) in body.snapshot.channels.iter().enumerate() {
        if ch.is_idle() {
            continue;
        }
        // At most 16 entries of at most 27 bytes: always fits.
        let _ = d.push(&WireChannel {
            channel: c as u8,
            notes: ch.notes,
            sustain: ch.sustain,
            bend: ch.bend,
            program: ch.program,
        });
    }
    d
}

/// Decodes the rest of a State body (after the prelude).
pub(super) fn decode_state(prelude: Prelude, rest: &[u8]) -> Result<StateBody<'_>, DecodeError> {
    let (head, mut rest): (StateHead<'_>, _) =
        postcard::take_from_bytes(rest).map_err(|_| DecodeError::Malformed)?;
    if head.name.len() > NAME_MAX {
        return Err(DecodeError::NameTooLong);
    }
    if head.channels as usize > CHANNELS {
        return Err(DecodeError::InvalidField);
    }
    let mut snapshot = StateSnapshot::IDLE;
    let mut next_channel = 0u8;
    for _ in 0..head.channels {
        let (c, tail): (WireChannel, _) =
            postcard::take_from_bytes(rest).map_err(|_| DecodeError::Malformed)?;
        rest = tail;
        // Channels in increasing order, each once; values in range.
        if c.channel < next_channel
            || c.channel as usize >= CHANNELS
            || !(c.bend.is_finite() && (0.0..=1.0).contains(&c.bend))
            || c.program.is_some_and(|p| p > 127)
        {
            return Err(DecodeError::InvalidField);
        }
        next_channel = c.channel + 1;
        snapshot.channels[c.channel as usize] = ChannelState {
            notes: c.notes,
            sustain: c.sustain,
            bend: c.bend,
            program: c.program,
        };
    }
    finish(rest)?;
    Ok(StateBody {
        prelude,
        name: head.name,
        hold_ns: head.hold_ns,
        as_of_seq: head.as_of_seq,
        as_of_ns: head.as_of_ns,
        snapshot,
    })
}

#[cfg(test)]
mod tests {
    use super::super::{decode_body, decode_header, Body};
    use super::*;
    use proptest::prelude::*;

    fn arb_channel() -> impl Strategy<Value = ChannelState> {
        (
            any::<u128>(),
            any::<bool>(),
            prop_oneof![Just(0.5f32), 0.0f32..=1.0],
            proptest::option::of(0u8..128),
        )
            .prop_map(|(notes, sustain, bend, program)| ChannelState {
                notes,
                sustain,
                bend,
                program,
            })
    }

    proptest! {
        #[test]
        fn round_trips(name in ".{0,70}", hold in any::<u64>(), seq in any::<u64>(),
                       at in any::<u64>(), chans in proptest::collection::vec(
                           proptest::option::of(arb_channel()), 16)) {
            let mut snapshot = StateSnapshot::IDLE;
            for (c, ch) in chans.iter().enumerate() {
                if let Some(ch) = ch {
                    snapshot.channels[c] = *ch;
                }
            }
            let prelude = Prelude { sent_ns: at ^ 1, epoch: 9 };
            let b = StateBody { prelude, name: &name, hold_ns: hold, as_of_seq: seq,
                                as_of_ns: at, snapshot };
            let d = encode_state(1, 2, &b);
            prop_assert!(d.as_bytes().len() <= super::super::MAX_DATAGRAM);
            let (h, body) = decode_header(d.as_bytes()).unwrap();
            let Body::State(got) = decode_body(&h, body, &mut Vec::new()).unwrap() else {
                panic!("not a state body");
            };
            prop_assert!(name.starts_with(got.name));
            prop_assert!(got.name.len() <= NAME_MAX);
            prop_assert_eq!(got.snapshot, snapshot);
            prop_assert_eq!((got.hold_ns, got.as_of_seq, got.as_of_ns), (hold, seq, at));
        }
    }

    #[test]
    fn out_of_range_channels_are_rejected() {
        let mut buf = [0u8; 256];
        let head = StateHead {
            name: "x",
            hold_ns: 0,
            as_of_seq: 0,
            as_of_ns: 0,
            channels: 2,
        };
        let ch = |channel, bend| WireChannel {
            channel,
            notes: 1,
            sustain: false,
            bend,
            program: None,
        };
        let enc = |a: WireChannel, b: WireChannel, buf: &mut [u8]| {
            let mut n = postcard::to_slice(&head, buf).unwrap().len();
            n += postcard::to_slice(&a, &mut buf[n..]).unwrap().len();
            n += postcard::to_slice(&b, &mut buf[n..]).unwrap().len();
            n
        };
        let p = Prelude::default();
        let n = enc(ch(1, 0.5), ch(3, 0.5), &mut buf);
        assert!(decode_state(p, &buf[..n]).is_ok());
        let n = enc(ch(3, 0.5), ch(1, 0.5), &mut buf);
        assert_eq!(decode_state(p, &buf[..n]), Err(DecodeError::InvalidField));
        let n = enc(ch(1, 0.5), ch(16, 0.5), &mut buf);
        assert_eq!(decode_state(p, &buf[..n]), Err(DecodeError::InvalidField));
        let n = enc(ch(1, 2.0), ch(2, 0.5), &mut buf);
        assert_eq!(decode_state(p, &buf[..n]), Err(DecodeError::InvalidField));
        let n = enc(ch(1, 0.5), ch(2, 0.5), &mut buf);
        assert_eq!(decode_state(p, &buf[..n - 1]), Err(DecodeError::Malformed));
    }
}
