//! Values built from fuzz input: MIDI messages, snapshots, clock reports, and the checks
//! every decoded value must pass.
//!
//! Every draw takes a `wild` flag. Tame draws are always valid, so that datagrams built from
//! them get past the decoder and reach the state machines; wild ones are out of range now
//! and then (NaN, channel 16, key 200, a SysEx without its framing, a time anywhere on the
//! 64-bit timeline), which the decoder must reject.

use arbitrary::{Result, Unstructured};
use udp_midi::proto::event::{MidiMessage, SysEx, TimedMessage, SYSEX_MAX};
use udp_midi::proto::seal::RoomKey;
use udp_midi::proto::state::{ChannelState, StateSnapshot, CHANNELS};
use udp_midi::proto::wire::{ClockReport, ClockSource, MAX_SKEW_PPB};

/// The room key of every fuzz run (a fixed key: deriving one is slow on purpose).
pub const KEY: [u8; 32] = *b"udp-midi fuzz room key, 32 bytes";
/// Another room's key: datagrams sealed with it must fail authentication.
pub const OTHER_KEY: [u8; 32] = *b"another room's key, not ours ..!";

/// The fuzz runs' room key.
pub fn key() -> RoomKey {
    RoomKey::from_bytes(KEY)
}

/// Another room's key.
pub fn other_key() -> RoomKey {
    RoomKey::from_bytes(OTHER_KEY)
}

/// One chance in `n`.
pub fn one_in(u: &mut Unstructured<'_>, n: u8) -> Result<bool> {
    Ok(u.int_in_range(0..=n.saturating_sub(1))? == 0)
}

/// A normalised value: a 7-bit value over 127, or (wild, sometimes) any `f32` at all.
pub fn unit(u: &mut Unstructured<'_>, wild: bool) -> Result<f32> {
    if wild && one_in(u, 8)? {
        Ok(f32::from_bits(u.arbitrary()?))
    } else {
        Ok(u.int_in_range(0u8..=127)? as f32 / 127.0)
    }
}

/// A channel: `0..16`, or (wild, sometimes) any byte.
fn channel(u: &mut Unstructured<'_>, wild: bool) -> Result<u8> {
    if wild && one_in(u, 8)? {
        u.arbitrary()
    } else {
        u.int_in_range(0..=15)
    }
}

/// A 7-bit number (key, controller, program): `0..128`, or (wild, sometimes) any byte.
fn seven(u: &mut Unstructured<'_>, wild: bool) -> Result<u8> {
    if wild && one_in(u, 8)? {
        u.arbitrary()
    } else {
        u.int_in_range(0..=127)
    }
}

/// A channel or key that may be the wildcard (only a note-off's may be, unless wild).
fn maybe(
    u: &mut Unstructured<'_>,
    wild: bool,
    f: fn(&mut Unstructured<'_>, bool) -> Result<u8>,
) -> Result<Option<u8>> {
    if one_in(u, 8)? {
        Ok(None)
    } else {
        f(u, wild).map(Some)
    }
}

/// The channel or key of a note-on or key pressure: a wildcard only when wild (a wildcard
/// names no note that could be ended: the decoder refuses it).
fn note_part(
    u: &mut Unstructured<'_>,
    wild: bool,
    f: fn(&mut Unstructured<'_>, bool) -> Result<u8>,
) -> Result<Option<u8>> {
    if wild {
        maybe(u, wild, f)
    } else {
        f(u, wild).map(Some)
    }
}

/// A SysEx message: mostly short, framed `F0 .. F7`; (wild, sometimes) any bytes.
fn sysex(u: &mut Unstructured<'_>, wild: bool) -> Result<SysEx> {
    // A valid message has at least its two framing bytes.
    let shortest = if wild { 1 } else { 2 };
    let len = if one_in(u, 8)? {
        u.int_in_range(shortest..=SYSEX_MAX)?
    } else {
        u.int_in_range(shortest..=12)?
    };
    let mut b = [0u8; SYSEX_MAX];
    u.fill_buffer(&mut b[..len])?;
    if !(wild && one_in(u, 4)?) {
        b[0] = 0xF0;
        b[len - 1] = 0xF7;
    }
    Ok(SysEx::new(&b[..len]).expect("1..=SYSEX_MAX bytes"))
}

/// A MIDI message, valid unless wild.
pub fn midi(u: &mut Unstructured<'_>, wild: bool) -> Result<MidiMessage> {
    Ok(match u.int_in_range(0u8..=7)? {
        0 => MidiMessage::NoteOn {
            channel: note_part(u, wild, channel)?,
            key: note_part(u, wild, seven)?,
            velocity: unit(u, wild)?,
            voice_id: u.arbitrary()?,
        },
        1 => MidiMessage::NoteOff {
            channel: maybe(u, wild, channel)?,
            key: maybe(u, wild, seven)?,
            velocity: unit(u, wild)?,
            voice_id: u.arbitrary()?,
        },
        2 => MidiMessage::PolyPressure {
            channel: note_part(u, wild, channel)?,
            key: note_part(u, wild, seven)?,
            pressure: unit(u, wild)?,
            voice_id: u.arbitrary()?,
        },
        3 => MidiMessage::ControlChange {
            channel: channel(u, wild)?,
            cc: seven(u, wild)?,
            value: unit(u, wild)?,
        },
        4 => MidiMessage::ChannelPressure {
            channel: channel(u, wild)?,
            pressure: unit(u, wild)?,
        },
        5 => MidiMessage::PitchBend {
            channel: channel(u, wild)?,
            value: unit(u, wild)?,
        },
        6 => MidiMessage::ProgramChange {
            channel: channel(u, wild)?,
            program: seven(u, wild)?,
        },
        _ => MidiMessage::SysEx(sysex(u, wild)?),
    })
}

/// A MIDI message that a host could send (always valid).
pub fn valid_midi(u: &mut Unstructured<'_>) -> Result<MidiMessage> {
    let m = midi(u, false)?;
    assert!(m.is_valid(), "a tame draw is valid: {m:?}");
    Ok(m)
}

/// A time near `around`: within about a second of it, or (wild, sometimes) anywhere on the
/// 64-bit timeline.
pub fn time_near(u: &mut Unstructured<'_>, around: u64, wild: bool) -> Result<u64> {
    if wild && one_in(u, 4)? {
        u.arbitrary()
    } else {
        let dt: i32 = u.arbitrary()?;
        Ok(around.wrapping_add_signed(i64::from(dt) / 2))
    }
}

/// Between 1 and `max` messages, the first stamped near `around` and each of the others up
/// to a few milliseconds after the one before (any time at all when wild).
pub fn batch(
    u: &mut Unstructured<'_>,
    around: u64,
    max: usize,
    wild: bool,
) -> Result<Vec<TimedMessage>> {
    let n = u.int_in_range(1..=max)?;
    let mut t = time_near(u, around, wild)?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(TimedMessage {
            time_ns: t,
            msg: midi(u, wild)?,
        });
        t = if wild && one_in(u, 8)? {
            u.arbitrary()?
        } else {
            t.wrapping_add(u.int_in_range(0..=4_000_000)?)
        };
    }
    Ok(out)
}

/// One channel of a snapshot: mostly in range, sometimes a bend out of `[0, 1]` or a program
/// over 127 (which the encoder writes faithfully and the decoder must refuse).
fn channel_state(u: &mut Unstructured<'_>, wild: bool) -> Result<ChannelState> {
    Ok(ChannelState {
        notes: u.arbitrary()?,
        sustain: u.arbitrary()?,
        bend: unit(u, wild)?,
        program: maybe(u, wild, seven)?,
    })
}

/// A snapshot with a few channels switched on.
pub fn snapshot(u: &mut Unstructured<'_>, wild: bool) -> Result<StateSnapshot> {
    let mut s = StateSnapshot::IDLE;
    for _ in 0..u.int_in_range(0..=4)? {
        let c = u.int_in_range(0..=CHANNELS - 1)?;
        s.channels[c] = channel_state(u, wild)?;
    }
    Ok(s)
}

/// A clock report: plausible (offset within an hour, skew in range), or (wild, sometimes)
/// any values at all.
pub fn clock_report(u: &mut Unstructured<'_>, now: u64, wild: bool) -> Result<ClockReport> {
    if wild && one_in(u, 2)? {
        return Ok(ClockReport {
            source: if u.arbitrary()? {
                ClockSource::Direct
            } else {
                ClockSource::Ntp
            },
            ref_ns: u.arbitrary()?,
            offset_ns: u.arbitrary()?,
            skew_ppb: u.arbitrary()?,
            error_ns: u.arbitrary()?,
            rtt_ns: u.arbitrary()?,
        });
    }
    const HOUR: i64 = 3_600_000_000_000;
    Ok(ClockReport {
        source: if u.arbitrary()? {
            ClockSource::Direct
        } else {
            ClockSource::Ntp
        },
        ref_ns: time_near(u, now, false)?,
        offset_ns: u.int_in_range(-HOUR..=HOUR)?,
        skew_ppb: u.int_in_range(-MAX_SKEW_PPB..=MAX_SKEW_PPB)?,
        error_ns: u.int_in_range(0..=1_000_000_000)?,
        rtt_ns: u.int_in_range(0..=1_000_000_000)?,
    })
}

/// A display name of up to 80 bytes (the encoder cuts it to 64 at a character boundary).
pub fn name(u: &mut Unstructured<'_>) -> Result<String> {
    let n = u.int_in_range(0..=80)?;
    let b = u.bytes(n)?;
    Ok(String::from_utf8_lossy(b).into_owned())
}

/// Panics unless every channel of `s` is within the ranges the decoder promises.
pub fn check_snapshot(s: &StateSnapshot) {
    for c in &s.channels {
        assert!(
            c.bend.is_finite() && (0.0..=1.0).contains(&c.bend),
            "bend out of range: {c:?}"
        );
        assert!(c.program.is_none_or(|p| p < 128), "program: {c:?}");
    }
}
