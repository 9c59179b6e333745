//! Key files of the `lts agent` link: [`init_key_file`] writes a new random key (mode 0600),
//! [`load_key`] reads one, refusing what is not a private regular file.

use std::fs::OpenOptions;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use super::auth::{Key, KEY_LEN};

/// Why a key file could not be created or loaded (the first field is always
/// the path). Messages name the path and the fix, never key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// `init_key_file` found a file already there.
    #[error(
        "key file {} already exists; refusing to overwrite it. Keep using it, or delete it \
         first to make a new key (then copy the new file to every host)",
        .0.display()
    )]
    Exists(PathBuf),
    /// `load_key` found no file.
    #[error(
        "key file {} not found; create it on the agent with `lts agent --init` and copy it \
         to the host (mode 600)",
        .0.display()
    )]
    NotFound(PathBuf),
    /// (path, permission bits): group or others may access the file.
    #[error(
        "key file {p} is accessible by other users (mode {1:03o}); run `chmod 600 {p}`",
        p = .0.display()
    )]
    Permissions(PathBuf, u32),
    /// (link, its target): the key file is a symbolic link. Refused outright: a `chmod` of
    /// the link would change its target, which may be any file.
    #[error(
        "key file {p} is a symbolic link to {t}; key files must be regular files: pass \
         `--key {t}` (mode 600), or replace the link with a copy of the key file",
        p = .0.display(),
        t = .1.display()
    )]
    Symlink(PathBuf, PathBuf),
    /// (path, what it is): a FIFO, a device, a directory or a socket (refused before it is
    /// opened: opening a FIFO blocks until someone writes to it).
    #[error(
        "key file {p} is {1}, not a regular file; pass the file written by `lts agent --init`",
        p = .0.display()
    )]
    NotRegular(PathBuf, &'static str),
    /// (path, what is wrong): not exactly 64 hex characters plus an optional
    /// newline. The detail gives lengths and positions, never content.
    #[error(
        "key file {p} is malformed ({1}); expected 64 hex characters and an optional newline, \
         as written by `lts agent --init`",
        p = .0.display()
    )]
    Malformed(PathBuf, String),
    /// (path, what was being done, error): any other I/O failure.
    #[error("cannot {1} key file {p}: {2}", p = .0.display())]
    Io(PathBuf, &'static str, io::Error),
}

/// Create a new random key and write it, hex-encoded (64 characters and a
/// newline), to a new file at `path` with mode 0600. Never overwrites an
/// existing file ([`KeyFileError::Exists`]). Returns the key.
pub fn init_key_file(path: &Path) -> Result<Key, KeyFileError> {
    let io_err = |action, error| KeyFileError::Io(path.into(), action, error);
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut file = opts.open(path).map_err(|e| match e.kind() {
        io::ErrorKind::AlreadyExists => KeyFileError::Exists(path.into()),
        _ => io_err("create", e),
    })?;
    let key = Key::generate();
    let mut text: String = key.0.iter().map(|b| format!("{b:02x}")).collect();
    text.push('\n');
    if let Err(e) = file
        .write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
    {
        let _ = std::fs::remove_file(path);
        return Err(io_err("write", e));
    }
    Ok(key)
}

/// Load the key written by [`init_key_file`]. Refuses a symbolic link (naming
/// its target), anything but a regular file (before opening it: a FIFO would
/// block), a file that group or others may access (the error says
/// `chmod 600 PATH`) and any content other than exactly 64 hex characters plus
/// an optional trailing newline.
pub fn load_key(path: &Path) -> Result<Key, KeyFileError> {
    let io_err = |action, error| KeyFileError::Io(path.into(), action, error);
    let malformed = |detail: String| KeyFileError::Malformed(path.into(), detail);
    let not_found = |e: io::Error| match e.kind() {
        io::ErrorKind::NotFound => KeyFileError::NotFound(path.into()),
        _ => io_err("inspect", e),
    };
    // Checked before opening: a symbolic link is refused, and opening a FIFO would block.
    let meta = std::fs::symlink_metadata(path).map_err(not_found)?;
    if meta.file_type().is_symlink() {
        let target = std::fs::read_link(path).map_err(|e| io_err("read the link of", e))?;
        return Err(KeyFileError::Symlink(path.into(), target));
    }
    if !meta.is_file() {
        return Err(KeyFileError::NotRegular(
            path.into(),
            crate::util::kind_of(meta.file_type()),
        ));
    }
    let mut opts = OpenOptions::new();
    opts.read(true);
    // Whatever replaced the file since: a link fails to open, a FIFO does not block.
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut opts, libc::O_NOFOLLOW | libc::O_NONBLOCK);
    let file = opts.open(path).map_err(|e| io_err("open", e))?;
    let meta = file.metadata().map_err(|e| io_err("inspect", e))?;
    if !meta.is_file() {
        return Err(KeyFileError::NotRegular(
            path.into(),
            crate::util::kind_of(meta.file_type()),
        ));
    }
    #[cfg(unix)]
    {
        let mode = std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyFileError::Permissions(path.into(), mode));
        }
    }
    let mut buf = Vec::new();
    file.take(1024)
        .read_to_end(&mut buf)
        .map_err(|e| io_err("read", e))?;
    let hex = buf.strip_suffix(b"\n").unwrap_or(&buf);
    if hex.len() != 2 * KEY_LEN {
        return Err(malformed(format!("the file is {} bytes long", meta.len())));
    }
    let nibble = |i: usize| (hex[i] as char).to_digit(16).ok_or(i);
    let mut key = [0u8; KEY_LEN];
    for (i, byte) in key.iter_mut().enumerate() {
        let (hi, lo) = nibble(2 * i)
            .and_then(|hi| Ok((hi, nibble(2 * i + 1)?)))
            .map_err(|pos| malformed(format!("character {} is not a hex digit", pos + 1)))?;
        *byte = (hi << 4 | lo) as u8;
    }
    Ok(Key(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn key_file_lifecycle() {
        use std::fs;
        use std::os::unix::fs::PermissionsExt;
        let chmod = |p: &Path, m| fs::set_permissions(p, fs::Permissions::from_mode(m)).unwrap();
        let dir = std::env::temp_dir().join(format!("lts-auth-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("agent.key");
        let key = init_key_file(&path).unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let text = fs::read_to_string(&path).unwrap();
        let hex = text.trim_end().to_string();
        assert!(text.len() == 65 && text.ends_with('\n'));
        assert_eq!(load_key(&path).unwrap().0, key.0);
        assert_eq!(format!("{key:?}"), "Key(<redacted>)");
        let leaks = |e: &KeyFileError| {
            let shown = format!("{e:#} {e:?}");
            (0..=hex.len() - 8).any(|i| shown.contains(&hex[i..i + 8]))
        };
        // Never overwritten.
        let e = init_key_file(&path).unwrap_err();
        assert!(matches!(e, KeyFileError::Exists(..)));
        assert!(format!("{e}").contains(path.to_str().unwrap()) && !leaks(&e));
        assert_eq!(fs::read_to_string(&path).unwrap(), text);
        // Too open.
        chmod(&path, 0o644);
        let e = load_key(&path).unwrap_err();
        assert!(format!("{e}").contains(&format!("chmod 600 {}", path.display())));
        assert!(matches!(e, KeyFileError::Permissions(_, 0o644)) && !leaks(&e));
        chmod(&path, 0o600);
        // Malformed variants, several derived from the real key.
        let cases = [
            format!("{}\n", &hex[..63]),
            format!("{hex}00\n"),
            format!("{}g\n", &hex[..63]),
            format!("{hex}\r\n"),
            format!(" {hex}"),
            format!("{hex}\n\n"),
            String::new(),
            "x".repeat(5000),
        ];
        for bad in cases {
            fs::write(&path, &bad).unwrap();
            let e = load_key(&path).unwrap_err();
            assert!(
                matches!(e, KeyFileError::Malformed(..)) && !leaks(&e),
                "{e:#}"
            );
        }
        fs::write(&path, hex.to_uppercase()).unwrap();
        assert_eq!(load_key(&path).unwrap().0, key.0, "upper case, no newline");
        let e = load_key(&dir.join("missing.key")).unwrap_err();
        assert!(format!("{e}").contains("lts agent --init"));
        // A link is refused, naming its target; a FIFO before it is opened (that blocked).
        let link = dir.join("link.key");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        let e = load_key(&link).unwrap_err();
        assert!(
            matches!(&e, KeyFileError::Symlink(_, t) if t == &path),
            "{e}"
        );
        let fifo = dir.join("fifo.key");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid C string.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = load_key(&fifo).unwrap_err();
        assert!(format!("{e}").contains("is a named pipe (FIFO), not a regular file"));
        let e = load_key(&dir).unwrap_err();
        assert!(format!("{e}").contains("is a directory, not a regular file"));
        fs::remove_dir_all(&dir).unwrap();
    }
}
