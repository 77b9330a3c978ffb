//! Nothing stuck, nothing lost that matters: loss, burst loss, duplication, reordering and a
//! vanishing peer, over more than 10,000 notes per case.

use super::alignment::three_peers;
use super::world::{PeerSpec, Played, World, MS};
use std::collections::HashMap;
use udp_midi::proto::event::MidiMessage;
use udp_midi::proto::state::CC_SUSTAIN;
use udp_midi::timing::playout::PlayoutMode;

/// Playing starts once the clocks are settled.
const START: u64 = 30_000 * MS;
/// Each peer plays a note every 50 ms, 30 ms long.
const NOTE_EVERY: u64 = 50 * MS;
const NOTE_LEN: u64 = 30 * MS;
/// Notes per peer: 3 peers x 4,000 = 12,000 notes per case.
const NOTES: u64 = 4_000;

/// The score: notes cycling over two octaves, the sustain pedal down for one second in
/// every four, and a pitch bend now and then (so the snapshot has pedal and bend to repair).
fn score(w: &mut World, peer: usize) {
    let ch = peer as u8;
    for k in 0..NOTES {
        let t = START + k * NOTE_EVERY + peer as u64 * 7 * MS;
        let key = 48 + (k % 24) as u8;
        w.play(
            peer,
            t,
            MidiMessage::NoteOn {
                channel: Some(ch),
                key: Some(key),
                velocity: 0.6,
                voice_id: None,
            },
        );
        w.play(
            peer,
            t + NOTE_LEN,
            MidiMessage::NoteOff {
                channel: Some(ch),
                key: Some(key),
                velocity: 0.0,
                voice_id: None,
            },
        );
        if k % 80 == 0 {
            let pedal = |v: f32| MidiMessage::ControlChange {
                channel: ch,
                cc: CC_SUSTAIN,
                value: v,
            };
            w.play(peer, t + 5 * MS, pedal(1.0));
            w.play(peer, t + 1_000 * MS + 5 * MS, pedal(0.0));
        }
        if k % 37 == 0 {
            let bend = |v: f32| MidiMessage::PitchBend {
                channel: ch,
                value: v,
            };
            w.play(peer, t + 10 * MS, bend(0.8));
            w.play(peer, t + 40 * MS, bend(0.5));
        }
    }
}

/// What a case measured.
#[derive(Debug, Default)]
struct Outcome {
    /// Notes in the score.
    notes: u64,
    /// Note-ons that never played.
    ons_lost: u64,
    /// Note-ons that played late.
    ons_late: u64,
    /// Notes the Receiver ended itself (a snapshot or a departure), their own note-off lost.
    offs_repaired: u64,
    /// Notes still sounding at the end.
    stuck: u32,
    /// Sustain pedals still down at the end.
    pedals: u32,
    /// Longest a note sounded at the output, ms.
    longest_ms: f64,
}

/// Follows the output note by note.
fn measure(w: &World, notes: u64) -> Outcome {
    let mut o = Outcome {
        notes,
        ..Outcome::default()
    };
    let mut ons = 0;
    let mut sounding: HashMap<(usize, u8, u8), u64> = HashMap::new();
    let note = |p: &Played| match p.msg {
        MidiMessage::NoteOn {
            channel: Some(c),
            key: Some(k),
            ..
        } => Some((true, c, k)),
        MidiMessage::NoteOff {
            channel: Some(c),
            key: Some(k),
            ..
        } => Some((false, c, k)),
        _ => None,
    };
    for p in &w.played {
        let Some((on, c, k)) = note(p) else {
            continue;
        };
        if on {
            ons += 1;
            if p.late {
                o.ons_late += 1;
            }
            sounding.insert((p.peer, c, k), p.at);
        } else if let Some(at) = sounding.remove(&(p.peer, c, k)) {
            if p.repair {
                o.offs_repaired += 1;
            }
            o.longest_ms = o.longest_ms.max((p.at - at) as f64 / 1e6);
        }
    }
    o.ons_lost = notes.saturating_sub(ons);
    o.stuck = w.held_at_output();
    o.pedals = w.pedals_at_output();
    o
}

/// Runs `specs` (the three players of the alignment tests with their paths changed) through
/// the whole score and a quiet tail; `vanish` makes peer 2 disappear without a goodbye
/// halfway, holding notes.
fn case(name: &str, specs: Vec<PeerSpec>, redundancy: usize, vanish: bool, seed: u64) -> Outcome {
    let mut w = World::new(specs, 5 * MS as i64, PlayoutMode::Adaptive, seed);
    w.set_redundancy(redundancy);
    for peer in 0..3 {
        score(&mut w, peer);
    }
    let end = START + NOTES * NOTE_EVERY;
    if vanish {
        // Halfway, in the middle of a note and with the pedal down.
        // (Its note-on, at +14 ms, has gone out at the end of its block; its note-off, at
        // +44 ms, has not.)
        let mid = START + NOTES / 2 * NOTE_EVERY + 40 * MS;
        w.run_until(mid);
        w.vanish(2);
    }
    w.run_until(end + 5_000 * MS);
    let mut notes = 3 * NOTES;
    if vanish {
        // Peer 2's second half was never played.
        notes -= NOTES - NOTES / 2 - 1;
    }
    let o = measure(&w, notes);
    if std::env::var_os("SIM_DEBUG").is_some() {
        let st = w.receiver.stats();
        eprintln!("stats: {st:?} stale {}", w.stale);
    }
    println!(
        "{name} (repeats {redundancy}): {} notes; note-ons lost {:.3} %, late {:.3} %; note-offs repaired by the \
         Receiver {}, lost 0 (stuck at the end: {}); pedals stuck {}; longest note {:.0} ms \
         (30 ms played); datagrams lost {}, duplicated {}",
        o.notes,
        100.0 * o.ons_lost as f64 / o.notes as f64,
        100.0 * o.ons_late as f64 / o.notes as f64,
        o.offs_repaired,
        o.stuck,
        o.pedals,
        o.longest_ms,
        w.lost,
        w.duplicated
    );
    o
}

fn with(f: impl Fn(&mut PeerSpec)) -> Vec<PeerSpec> {
    let mut v = three_peers();
    v.iter_mut().for_each(f);
    v
}

/// The promises of every case: nothing left sounding, and no note longer than `longest_ms`.
fn check(o: &Outcome, longest_ms: f64) {
    assert_eq!(o.stuck, 0, "stuck notes");
    assert_eq!(o.pedals, 0, "stuck pedals");
    assert!(o.notes >= 10_000);
    assert!(
        o.longest_ms < longest_ms,
        "a note sounded {} ms",
        o.longest_ms
    );
}

#[test]
fn ten_percent_random_loss() {
    let o = case("10 % random loss", with(|p| p.loss = 0.10), 2, false, 101);
    // A note whose note-off and both repeats were lost ends at the next snapshot.
    check(&o, 1_300.0);
    // Two repeats per event: an event is lost only when three datagrams in a row are.
    assert!(o.ons_lost * 100 < o.notes, "{o:?}");
}

#[test]
fn thirty_percent_burst_loss() {
    // Gilbert-Elliott: bursts of 4.3 datagrams on average (leaving the bad state with
    // probability 0.23), 30 % of all datagrams lost; now and then a burst outlasts the
    // 2 s silence timeout, and the peer's notes are ended until it is heard again.
    let burst = || with(|p| p.burst = Some((0.1, 0.2333)));
    let o = case("30 % burst loss", burst(), 2, false, 202);
    check(&o, 2_500.0);
    assert!(o.ons_lost * 10 < o.notes, "{o:?}");
    // More repeats spread each event over more datagrams.
    let more = case("30 % burst loss", burst(), 6, false, 202);
    check(&more, 2_500.0);
    assert!(more.ons_lost < o.ons_lost, "{more:?}");
}

#[test]
fn duplication_and_reordering() {
    let o = case(
        "10 % duplicated, reordered (15 ms mean jitter), 2 % lost",
        with(|p| {
            p.dup = 0.10;
            p.jitter_mean = 15 * MS;
            p.loss = 0.02;
        }),
        2,
        false,
        303,
    );
    check(&o, 1_300.0);
    assert!(o.ons_lost * 1000 < o.notes, "{o:?}");
}

#[test]
fn a_peer_vanishes_mid_note() {
    let o = case(
        "a peer vanishes mid-note",
        with(|p| p.loss = 0.01),
        2,
        true,
        404,
    );
    // Its last notes end when the 2 s silence timeout forgets it.
    check(&o, 2_500.0);
    assert!(o.offs_repaired >= 1);
}
