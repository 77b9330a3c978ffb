//! A Receiver's network thread on a UDP port another program holds, with real sockets: it
//! reports the busy port where the editor reads it (the published status, the shared state, the
//! editor's words), keeps serving the editor meanwhile, retries, and listens once the port is
//! free. (The plugin above it keeps processing and passing its track's MIDI through all along:
//! `tests/hosted/loopback.rs`, `receiver_on_a_busy_port_still_passes_its_track_through`.)

use std::net::UdpSocket;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};
use udp_midi::bridge::{self, NetState, ReceiverShared};
use udp_midi::editor::view::{self, Tone};
use udp_midi::net::receiver_thread::{ReceiverThread, REBIND_EVERY_NS};
use udp_midi::net::NetThread;
use udp_midi::proto::receiver::RejectReason;
use udp_midi::settings::ReceiverSettings;
use udp_midi::status::{Command, Commands, ListenState, Published, ReceiverStatus};
use udp_midi::ReceiverParams;

/// Waits up to `timeout` for `cond`, polling every 5 ms; returns whether it held.
fn wait_for(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while !cond() {
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    true
}

#[test]
fn a_busy_port_is_reported_retried_and_taken_once_free() {
    // Another program's socket, on IPv4 only: the Receiver's dual-stack socket conflicts with it.
    let blocker = UdpSocket::bind("0.0.0.0:0").expect("the other program's socket");
    let port = blocker.local_addr().expect("its address").port();

    let params = Arc::new(ReceiverParams::default());
    params.settings.set(ReceiverSettings {
        port,
        ntp_server: String::new(),
        ..Default::default()
    });
    let shared = Arc::new(ReceiverShared::default());
    let status: Arc<Published<ReceiverStatus>> = Arc::default();
    let commands: Arc<Commands> = Arc::default();
    let (queue, _audio) = bridge::receiver_queue();
    let thread = ReceiverThread {
        params,
        queue,
        shared: shared.clone(),
        status: status.clone(),
        commands: commands.clone(),
        keys: Default::default(),
    };
    let started = Instant::now();
    let mut receiver = NetThread::spawn("test receiver", move |stop| thread.run(stop)).unwrap();

    // Reported where the editor looks, within a publish or two.
    assert!(
        wait_for(Duration::from_secs(2), || status.read().listen
            == ListenState::PortInUse(port)),
        "the Receiver did not report port {port} in use: {:?}",
        status.read().listen
    );
    println!(
        "port {port} reported in use after {:.0} ms",
        started.elapsed().as_secs_f64() * 1e3
    );
    assert_eq!(shared.state(), NetState::PortInUse);
    assert_eq!(shared.port.load(Relaxed), 0, "no port bound");
    let words = view::listen(&status.read().listen, port);
    assert_eq!(words.tone, Tone::Bad);
    assert!(
        words.text.contains(&format!("Port {port} is in use")),
        "{}",
        words.text
    );

    // Meanwhile the thread serves the editor: a panic request goes through, snapshots go on.
    let panics = shared.panic_requests.load(Relaxed);
    assert!(commands.push(Command::Panic));
    assert!(
        wait_for(Duration::from_secs(1), || shared
            .panic_requests
            .load(Relaxed)
            > panics),
        "the panic request was not served while the port was busy"
    );
    // Through at least one retry, still busy and still said so.
    let generation = status.generation();
    std::thread::sleep(Duration::from_nanos(REBIND_EVERY_NS) + Duration::from_millis(300));
    assert_eq!(status.read().listen, ListenState::PortInUse(port));
    assert!(status.generation() > generation, "snapshots stopped");

    // The other program quits: within a retry the Receiver listens, and receives.
    drop(blocker);
    let freed = Instant::now();
    assert!(
        wait_for(
            Duration::from_nanos(REBIND_EVERY_NS) + Duration::from_secs(1),
            || status.read().listen == ListenState::Listening(port)
        ),
        "the Receiver did not take port {port} once it was free: {:?}",
        status.read().listen
    );
    println!(
        "listening {:.0} ms after the port was freed",
        freed.elapsed().as_secs_f64() * 1e3
    );
    assert_eq!(shared.state(), NetState::Ready);
    assert_eq!(shared.port.load(Relaxed), port);
    let probe = UdpSocket::bind("127.0.0.1:0").unwrap();
    let bad_magic = || shared.rejected[RejectReason::BadMagic as usize].load(Relaxed);
    let before = bad_magic();
    probe
        .send_to(&[0u8; 32], ("127.0.0.1", port))
        .expect("send a stray datagram");
    assert!(
        wait_for(Duration::from_secs(1), || bad_magic() > before),
        "a datagram to the freed port was not received"
    );
    receiver.stop();
    assert_eq!(status.read().listen, ListenState::Stopped);
}
