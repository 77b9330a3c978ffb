//! What an open editor costs, run with `cargo bench --bench editor`.
//!
//! One frame, as the plugin window does it 20 times per second while open (more while the
//! Sender's MIDI light is on): take the latest status snapshot from its `Published` slot (an
//! `Arc`, nothing copied), build the whole UI with egui, and tessellate it into the triangles
//! the OpenGL painter uploads. The GPU's drawing is not included (there is none
//! here); it is a few thousand triangles.
//!
//! - `editor/receiver/3`: the Receiver with the made-up session of three players and a minute
//!   of history, at 1 and 2 pixels per point (`ppp1`, `ppp2`);
//! - `editor/receiver/32`: the same with the peer table full (32 players, all in the graph);
//! - `editor/sender`: the Sender, connected, with MIDI going out (the light on, fed by the
//!   audio thread's count of queued events, which goes up every frame).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use std::hint::black_box;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;
use udp_midi::bridge::SenderShared;
use udp_midi::editor::headless::Headless;
use udp_midi::editor::{demo, receiver, sender, ReceiverEditor, SenderEditor};
use udp_midi::proto::peers::MAX_PEERS;
use udp_midi::status::{Commands, Published, ReceiverStatus};
use udp_midi::{ReceiverParams, SenderParams};

/// The demo session with `n` players: the three demo players repeated in every slot.
fn session(n: usize) -> ReceiverStatus {
    let mut s = demo::receiver_status();
    let base = s.peers.clone();
    s.peers = (0..n)
        .map(|i| {
            let mut p = base[i % base.len()].clone();
            p.slot = i as u8;
            p.slowest = i == 2;
            p.name = format!("{} #{}", p.name, i + 1);
            p
        })
        .collect();
    for h in &mut s.history {
        for slot in base.len()..n.min(MAX_PEERS) {
            h.p99_ms[slot] = h.p99_ms[slot % base.len()] + slot as f32 * 0.5;
        }
    }
    s
}

/// A Receiver editor over `status`, warmed up (fonts loaded, layout settled).
fn receiver_editor(status: ReceiverStatus, ppp: f32) -> (Headless, ReceiverEditor) {
    let params = Arc::new(ReceiverParams::default());
    params.settings.set(demo::receiver_settings());
    let published = Arc::new(Published::default());
    published.publish(&status);
    let mut editor = ReceiverEditor::new(params, published, Arc::new(Commands::default()));
    let mut h = Headless::new(receiver::SIZE, ppp);
    for _ in 0..5 {
        let mut out = h.frame(|ui, setter| editor.draw(ui, setter));
        let _ = h.tessellate(&mut out);
    }
    (h, editor)
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("editor");
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(3));

    for (peers, ppp) in [(3, 1.0), (3, 2.0), (32, 1.0)] {
        let (mut h, mut editor) = receiver_editor(session(peers), ppp);
        let id = BenchmarkId::new("receiver", format!("{peers}/ppp{ppp}"));
        g.bench_function(id, |b| {
            b.iter(|| {
                let mut out = h.frame(|ui, setter| editor.draw(ui, setter));
                black_box(h.tessellate(&mut out))
            })
        });
    }

    let params = Arc::new(SenderParams::default());
    params.settings.set(demo::sender_settings());
    let published = Arc::new(Published::default());
    published.publish(&demo::sender_status());
    let shared = Arc::new(SenderShared::default());
    let mut editor = SenderEditor::new(params, published, shared.clone());
    let mut h = Headless::new(sender::SIZE, 1.0);
    g.bench_function("sender", |b| {
        b.iter(|| {
            shared.events_queued.fetch_add(1, Relaxed);
            let mut out = h.frame(|ui, setter| editor.draw(ui, setter));
            black_box(h.tessellate(&mut out))
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
