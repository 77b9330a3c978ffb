//! The room code of a Receiver on this machine, in a file only this user can read, so that a
//! Sender on the same machine with no code set finds it: a Sender and a Receiver with default
//! settings on one computer play together with no set-up, and the room stays closed to
//! everyone else.
//!
//! The file is `$XDG_RUNTIME_DIR/udp-midi/room-<port>` (a per-user directory that only its
//! owner can enter, cleared at logout), or `<temp>/udp-midi-<uid>/room-<port>` where there is
//! no runtime directory, created with mode 0700 and used only if it belongs to this user and
//! nobody else can enter it. The Receiver's network thread writes it when it listens and
//! removes it when it stops.

use std::io;
use std::path::PathBuf;

/// The directory of room files, created if needed; `None` when no safe one exists.
fn dir() -> Option<PathBuf> {
    let dir = match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d).join("udp-midi"),
        _ => std::env::temp_dir().join(format!("udp-midi-{}", uid()?)),
    };
    create_private_dir(&dir).ok()?;
    Some(dir)
}

#[cfg(unix)]
fn uid() -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    // The owner of this process's /proc entry is its user (Linux); elsewhere, the owner of a
    // file we create.
    std::fs::metadata("/proc/self").map(|m| m.uid()).ok()
}

#[cfg(not(unix))]
fn uid() -> Option<u32> {
    Some(0)
}

#[cfg(unix)]
fn create_private_dir(dir: &std::path::Path) -> io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let m = std::fs::symlink_metadata(dir)?;
    let mine = uid().is_some_and(|u| u == m.uid());
    if !m.is_dir() || !mine || m.permissions().mode() & 0o077 != 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "room directory is not private",
        ));
    }
    Ok(())
}

#[cfg(not(unix))]
fn create_private_dir(dir: &std::path::Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)
}

/// Path of the room file for `port`.
pub fn path(port: u16) -> Option<PathBuf> {
    Some(dir()?.join(format!("room-{port}")))
}

/// Writes `code` as the room of the Receiver listening on `port` (readable by this user only).
pub fn write(port: u16, code: &str) -> io::Result<()> {
    let path = path(port).ok_or_else(|| io::Error::other("no private directory"))?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    {
        let mut o = std::fs::OpenOptions::new();
        o.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
        let mut f = o.open(&tmp)?;
        io::Write::write_all(&mut f, code.as_bytes())?;
    }
    std::fs::rename(&tmp, &path)
}

/// Removes the room file for `port` if it holds `code` (another Receiver may have taken the
/// port since).
pub fn remove(port: u16, code: &str) {
    if let Some(p) = path(port) {
        if std::fs::read_to_string(&p).is_ok_and(|c| c == code) {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// The room code of the Receiver listening on `port` on this machine, if any.
pub fn read(port: u16) -> Option<String> {
    let s = std::fs::read_to_string(path(port)?).ok()?;
    (s.len() <= 64).then_some(s)
}

#[cfg(test)]
mod tests {
    #[test]
    fn write_read_remove() {
        let port = 1; // privileged: never a real Receiver's
        super::write(port, "ABCD-EFGH-JKMN-PQRS").unwrap();
        assert_eq!(super::read(port).as_deref(), Some("ABCD-EFGH-JKMN-PQRS"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let m = std::fs::metadata(super::path(port).unwrap()).unwrap();
            assert_eq!(m.permissions().mode() & 0o777, 0o600);
        }
        super::remove(port, "another code");
        assert!(super::read(port).is_some(), "not ours to remove");
        super::remove(port, "ABCD-EFGH-JKMN-PQRS");
        assert_eq!(super::read(port), None);
    }
}
