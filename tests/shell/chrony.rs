//! A private chrony NTP server on loopback (`chronyd -x`: it never touches the system clock),
//! and the NTP path against it.

use std::net::UdpSocket;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running chronyd; killed on drop.
pub struct Chrony {
    child: Child,
    dir: PathBuf,
    /// `127.0.0.1:port`.
    pub server: String,
}

impl Drop for Chrony {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Whether this process runs as root (real uid 0), from `/proc/self/status`.
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

fn find_chronyd() -> Option<PathBuf> {
    ["/usr/sbin/chronyd", "/sbin/chronyd", "/usr/bin/chronyd"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// Starts chronyd on a free loopback port. `None` when chrony is not installed and this is not
/// CI (`.ci/run` installs it; there its absence is a failure).
pub fn start() -> Option<Chrony> {
    let Some(bin) = find_chronyd() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "chronyd is missing: .ci/run should have installed chrony"
        );
        eprintln!("SKIPPED: chronyd not installed (apt-get install chrony)");
        return None;
    };
    let port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = std::env::temp_dir().join(format!("udp-midi-chrony-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("chrony.conf");
    std::fs::write(
        &conf,
        format!(
            "port {port}\nbindaddress 127.0.0.1\nallow 127.0.0.1\nlocal stratum 8\ncmdport 0\n\
             bindcmdaddress /\npidfile {}\ndriftfile {}\n",
            dir.join("chronyd.pid").display(),
            dir.join("drift").display()
        ),
    )
    .unwrap();
    // As root chronyd drops to its own user, which must be able to read the config.
    let _ = Command::new("chmod")
        .arg("-R")
        .arg("a+rwx")
        .arg(&dir)
        .status();
    let mut cmd = Command::new(&bin);
    cmd.arg("-x").arg("-d").arg("-f").arg(&conf);
    // Unprivileged, chronyd must be told not to switch users.
    if !is_root() {
        cmd.arg("-U");
    }
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chronyd starts");
    Some(Chrony {
        child,
        dir,
        server: format!("127.0.0.1:{port}"),
    })
}

/// Queries until chrony answers (it serves at once, but the process needs a moment to bind).
pub fn wait_for(server: &str) -> udp_midi::net::ntp::NtpSample {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match rt.block_on(udp_midi::net::ntp::query(server)) {
            Ok(s) => return s,
            Err(e) if Instant::now() > deadline => panic!("chrony never answered: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

#[test]
fn ntp_offset_against_chrony_on_loopback() {
    let Some(c) = start() else { return };
    let s = wait_for(&c.server);
    // chrony serves this machine's own clock, so the session clock's offset to it is what the
    // session clock has drifted from the system clock since it was anchored: tiny.
    println!(
        "NTP (chrony on loopback): offset {} us, error bound {} us",
        s.offset_ns / 1000,
        s.error_ns / 1000
    );
    // Nothing adjusts the system clock here (`chronyd -x`), so the truth is within the error
    // bound (half the round trip), give or take the microseconds between the two clock
    // readings that convert the offset. Measured: 9 us, bounds of 31 and 32 us.
    assert!(
        s.offset_ns.unsigned_abs() <= s.error_ns + 10_000,
        "offset {} ns, bound {} ns",
        s.offset_ns,
        s.error_ns
    );
    assert!(s.offset_ns.abs() < 500_000, "offset {} ns", s.offset_ns);
    assert!(s.error_ns < 1_000_000, "error bound {} ns", s.error_ns);
}
