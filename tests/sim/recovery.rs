//! Nothing stuck, nothing lost that matters: loss, burst loss, duplication, reordering and a
//! vanishing peer, over more than 10,000 notes per case.

use super::alignment::three_peers;
use super::world::{PeerSpec, Played, World, MS};
use std::collections::{HashMap, HashSet, VecDeque};
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

/// What a case measured, from the Receiver's output.
#[derive(Debug, Default)]
struct Outcome {
    /// Notes in the score.
    notes: u64,
    /// Note-ons pushed whose note-on never came out.
    ons_lost: u64,
    /// Note-ons that came out more than once.
    ons_doubled: u64,
    /// Note-ons that came out and match no note-on pushed (none should: the guard never
    /// starts a note).
    spurious: u64,
    /// Note-ons that played late.
    ons_late: u64,
    /// Notes that came out whose own note-off never did (lost in the network, or never sent).
    offs_missing: u64,
    /// Notes ended at the output (per key, each note-off ends the oldest sounding note) by
    /// their own note-off, by another note-off of the peer's on that key (the note-off of a
    /// note whose note-on was lost, or of the next note), and by a note-off the Receiver made
    /// itself (a snapshot, the peer's departure).
    ended: [u64; 3],
    /// Notes that came out and that nothing ended: their note-off lost for good. (The same as
    /// the notes sounding at the end of the output.)
    offs_lost: u32,
    /// Notes sounding at the end as the stuck-note guard counts them.
    stuck: u32,
    /// Sustain pedals still down at the end.
    pedals: u32,
    /// Longest a note sounded at the output (each note-off ending the oldest note of its
    /// key), ms.
    longest_ms: f64,
}

/// The channel and key of a note message, and whether it starts a note.
fn note_of(m: &MidiMessage) -> Option<(bool, u8, u8)> {
    match *m {
        MidiMessage::NoteOn {
            channel: Some(c),
            key: Some(k),
            velocity,
            ..
        } => Some((velocity > 0.0, c, k)),
        MidiMessage::NoteOff {
            channel: Some(c),
            key: Some(k),
            ..
        } => Some((false, c, k)),
        _ => None,
    }
}

/// Follows the output note by note, against what each Sender pushed (event numbers tell a
/// note-on played twice from two notes of the same key).
fn measure(w: &World, notes: u64) -> Outcome {
    let mut o = Outcome {
        notes,
        ..Outcome::default()
    };
    // Each pushed note-on's note-off, by (peer, event number).
    let mut off_of: HashMap<(usize, u64), u64> = HashMap::new();
    for (peer, pushed) in w.pushed.iter().enumerate() {
        // Each pushed note: its note-on's number, and its note-off's (the next note event of
        // its key; `None`: never sent).
        let mut notes: Vec<(u64, Option<u64>)> = Vec::new();
        let mut open: HashMap<(u8, u8), usize> = HashMap::new();
        for (seq, (_, m)) in pushed.iter().enumerate() {
            match note_of(m) {
                Some((true, c, k)) => {
                    open.insert((c, k), notes.len());
                    notes.push((seq as u64, None));
                }
                Some((false, c, k)) => {
                    if let Some(i) = open.remove(&(c, k)) {
                        notes[i].1 = Some(seq as u64);
                    }
                }
                None => {}
            }
        }
        let out: Vec<&Played> = w.played.iter().filter(|p| p.peer == peer).collect();
        // How often each of the peer's own events came out, and whether late.
        let mut times: HashMap<u64, (u64, bool)> = HashMap::new();
        for p in &out {
            if let Some(seq) = p.seq {
                let t = times.entry(seq).or_insert((0, p.late));
                t.0 += 1;
            }
        }
        let ons: HashSet<u64> = notes.iter().map(|n| n.0).collect();
        for &(on, off) in &notes {
            let Some(&(n, late)) = times.get(&on) else {
                o.ons_lost += 1;
                continue;
            };
            if let Some(off) = off {
                off_of.insert((peer, on), off);
            }
            o.ons_doubled += u64::from(n > 1);
            o.ons_late += u64::from(late);
            if off.is_none_or(|off| !times.contains_key(&off)) {
                o.offs_missing += 1;
            }
        }
        o.spurious += out
            .iter()
            .filter(|p| matches!(note_of(&p.msg), Some((true, ..))))
            .filter(|p| p.seq.is_none_or(|s| !ons.contains(&s)))
            .count() as u64;
    }
    // What sounds, from the output alone: per key, each note-off ends the oldest note.
    let mut sounding: HashMap<(usize, u8, u8), VecDeque<&Played>> = HashMap::new();
    for p in &w.played {
        match note_of(&p.msg) {
            Some((true, c, k)) => sounding.entry((p.peer, c, k)).or_default().push_back(p),
            Some((false, c, k)) => {
                let Some(on) = sounding
                    .get_mut(&(p.peer, c, k))
                    .and_then(|v| v.pop_front())
                else {
                    continue;
                };
                o.longest_ms = o.longest_ms.max((p.at - on.at) as f64 / 1e6);
                let own = on.seq.and_then(|s| off_of.get(&(p.peer, s)).copied());
                let kind = match (p.repair, p.seq) {
                    (true, _) => 2,
                    (false, seq) if seq.is_some() && seq == own => 0,
                    _ => 1,
                };
                o.ended[kind] += 1;
            }
            None => {}
        }
    }
    o.offs_lost = sounding.values().map(|v| v.len() as u32).sum();
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
    let notes = 3 * NOTES;
    let mut o = measure(&w, notes);
    if vanish {
        // Peer 2's second half was never played (never pushed): not lost.
        let pushed = w.pushed[2]
            .iter()
            .filter(|e| matches!(note_of(&e.1), Some((true, ..))))
            .count() as u64;
        o.notes = notes - (NOTES - pushed);
    }
    if std::env::var_os("SIM_DEBUG").is_some() {
        let st = w.receiver.stats();
        eprintln!("stats: {st:?} stale {}", w.stale);
    }
    println!(
        "{name} (repeats {redundancy}): {} notes; note-ons lost {} ({:.3} %), doubled {}, \
         spurious {}, late {:.3} %; note-offs missing {}; notes ended by their note-off {}, \
         by another of their key {}, by the Receiver {}, by nothing (note-offs lost) {} (the \
         guard counts {} sounding); pedals down {}; longest note {:.0} ms (30 ms played); \
         datagrams lost {}, duplicated {}",
        o.notes,
        o.ons_lost,
        100.0 * o.ons_lost as f64 / o.notes as f64,
        o.ons_doubled,
        o.spurious,
        100.0 * o.ons_late as f64 / o.notes as f64,
        o.offs_missing,
        o.ended[0],
        o.ended[1],
        o.ended[2],
        o.offs_lost,
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

/// The promises of every case: nothing left sounding, no note-off lost for good, nothing
/// doubled or made up, and no note longer than `longest_ms`.
fn check(o: &Outcome, longest_ms: f64) {
    assert_eq!(
        (o.offs_lost, o.stuck),
        (0, 0),
        "notes sounding at the end: {o:?}"
    );
    assert_eq!(
        (o.ons_doubled, o.spurious),
        (0, 0),
        "doubled, spurious: {o:?}"
    );
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
    // The note it held: ended by the Receiver when it forgot the peer.
    assert!(o.offs_missing >= 1 && o.ended[2] >= 1, "{o:?}");
}
