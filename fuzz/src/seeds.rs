//! The starting corpus, written by code rather than kept as binary files: valid datagrams of
//! every type for `decode`, and byte streams for the two state-machine targets (their input
//! is read as a sequence of choices, so any bytes make a scenario; a deterministic generator
//! gives runs of every length).

use crate::craft::key;
use std::path::Path;
use udp_midi::proto::event::{MidiMessage, SysEx, TimedMessage};
use udp_midi::proto::state::StateSnapshot;
use udp_midi::proto::wire::{
    encode_bye, encode_clock_report, encode_events, encode_refused, encode_state,
    encode_time_reply, encode_time_request, ClockReport, ClockSource, Datagram, Prelude, StateBody,
    TimeReply, HEADER_LEN,
};

/// The fuzz targets, by the name of their directory under `corpus/`.
pub const TARGETS: [&str; 3] = ["decode", "receive", "sender_receive"];

/// SplitMix64 (Steele, Lea and Flood, 2014): deterministic bytes with no dependency.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// One datagram of every type, plain and sealed with the fuzz room key.
pub fn datagrams() -> Vec<Datagram> {
    let prelude = Prelude {
        sent_ns: 1_795_500_000_010_000_000,
        epoch: 0x5EED_0001,
    };
    let sx = SysEx::new(&[0xF0, 0x7E, 0x7F, 0x09, 0x01, 0xF7]).expect("six bytes");
    let msgs = [
        MidiMessage::NoteOn {
            channel: Some(0),
            key: Some(60),
            velocity: 0.8,
            voice_id: Some(3),
        },
        MidiMessage::NoteOff {
            channel: None,
            key: None,
            velocity: 0.0,
            voice_id: None,
        },
        MidiMessage::PolyPressure {
            channel: Some(15),
            key: Some(127),
            pressure: 0.25,
            voice_id: None,
        },
        MidiMessage::ControlChange {
            channel: 1,
            cc: 64,
            value: 1.0,
        },
        MidiMessage::ChannelPressure {
            channel: 2,
            pressure: 0.5,
        },
        MidiMessage::PitchBend {
            channel: 3,
            value: 0.75,
        },
        MidiMessage::ProgramChange {
            channel: 4,
            program: 42,
        },
        MidiMessage::SysEx(sx),
    ];
    let events: Vec<TimedMessage> = msgs
        .iter()
        .enumerate()
        .map(|(i, &msg)| TimedMessage {
            time_ns: prelude.sent_ns - 3_000_000 + i as u64 * 250_000,
            msg,
        })
        .collect();
    let mut snapshot = StateSnapshot::IDLE;
    snapshot.channels[0].notes = 1 << 60 | 1 << 64;
    snapshot.channels[0].sustain = true;
    snapshot.channels[9].bend = 0.25;
    snapshot.channels[9].program = Some(5);
    let state = StateBody {
        prelude,
        name: "Fuzz piano",
        hold_ns: 2_000_000,
        as_of_seq: 8,
        as_of_ns: prelude.sent_ns - 1_000_000,
        snapshot,
    };
    let report = ClockReport {
        source: ClockSource::Direct,
        ref_ns: prelude.sent_ns,
        offset_ns: -3_000_000,
        skew_ppb: 12_000,
        error_ns: 40_000,
        rtt_ns: 80_000,
    };
    let plain = [
        encode_events(1, 0, prelude, 0, &events).0,
        encode_events(1, 1, prelude, 7, &events[7..]).0,
        encode_state(1, 2, &state),
        encode_time_request(1, 3, prelude),
        encode_time_reply(2, 0, prelude, &TimeReply { t1: 5, t2: 9 }),
        encode_clock_report(1, 4, prelude, &report),
        encode_bye(1, 5, prelude),
        encode_refused(2, 1),
    ];
    let k = key();
    let sealed: Vec<Datagram> = plain
        .iter()
        .filter(|d| d.as_bytes()[5] != 7)
        .map(|d| d.clone().seal_with(Some(&k)))
        .collect();
    plain.into_iter().chain(sealed).collect()
}

/// The corpus of `decode`: whole datagrams, and each plain body behind its type byte (the
/// second form the target reads).
pub fn decode() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for d in datagrams() {
        let b = d.as_bytes();
        out.push(b.to_vec());
        if b[6] == 0 {
            let mut typed = vec![b[5]];
            typed.extend_from_slice(&b[HEADER_LEN..]);
            out.push(typed);
        }
    }
    out
}

/// Byte streams of every length from 16 bytes to 8 KiB, drawn from `seed`.
fn streams(seed: u64) -> Vec<Vec<u8>> {
    let mut r = SplitMix(seed);
    [16, 64, 256, 512, 1024, 2048, 4096, 8192]
        .iter()
        .flat_map(|&n| [n, n + n / 3])
        .map(|n| r.bytes(n))
        .collect()
}

/// The corpus of `receive`.
pub fn receive() -> Vec<Vec<u8>> {
    streams(0x0EC_E1FE)
}

/// The corpus of `sender_receive`.
pub fn sender() -> Vec<Vec<u8>> {
    streams(0x5E4D)
}

/// The corpus of `target`.
pub fn of(target: &str) -> Vec<Vec<u8>> {
    match target {
        "decode" => decode(),
        "receive" => receive(),
        "sender_receive" => sender(),
        _ => Vec::new(),
    }
}

/// Writes every target's corpus under `dir/<target>/` (files named `seed-NNN`, replaced if
/// present; whatever else the fuzzer added is left alone). Returns the number written.
pub fn write_all(dir: &Path) -> std::io::Result<usize> {
    let mut n = 0;
    for t in TARGETS {
        let d = dir.join(t);
        std::fs::create_dir_all(&d)?;
        for (i, bytes) in of(t).iter().enumerate() {
            std::fs::write(d.join(format!("seed-{i:03}")), bytes)?;
            n += 1;
        }
    }
    Ok(n)
}
