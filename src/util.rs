//! Small helpers shared by several modules (atomic file writes, bounded reads of input files,
//! RFC 3339 timestamps, a size-balanced thread pool) and the number formats of every table
//! ([`format`]).

pub mod format;

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;

use anyhow::{Context, Result};

/// Writes `bytes` to `path` through a temporary file in the same directory, synced and then
/// renamed over `path` (`tempfile`'s `NamedTempFile::persist`), so a crash or Ctrl-C never
/// leaves a partial file behind, and a failed write leaves no temporary file. Creates parent
/// directories.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create directory {}", dir.display()))?;
    let result = (|| -> std::io::Result<()> {
        // Readable by others, as a file created the ordinary way under the usual umask 022
        // (a temporary file is 0600 by default, which would hide results from colleagues).
        let mut f = tempfile::Builder::new()
            .prefix(".lts-tmp-")
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))
            .tempfile_in(dir)?;
        f.write_all(bytes)?;
        f.as_file().sync_all()?;
        f.persist(path).map_err(|e| e.error)?;
        Ok(())
    })();
    result.with_context(|| format!("cannot write {}", path.display()))
}

/// What a path that is not a regular file is, for messages: "a directory", "a named pipe
/// (FIFO)"...
pub fn kind_of(ft: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if ft.is_dir() {
        "a directory"
    } else if ft.is_fifo() {
        "a named pipe (FIFO)"
    } else if ft.is_char_device() {
        "a character device"
    } else if ft.is_block_device() {
        "a block device"
    } else if ft.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

/// Largest configuration file lts reads (arch, search space, device profile, run description):
/// real ones are a few KiB, so 16 MiB only stops a wrong path (a device, a disk image).
pub const MAX_CONFIG_BYTES: u64 = 16 << 20;

/// Hint of the errors of a configuration file over [`MAX_CONFIG_BYTES`].
pub const CONFIG_HINT: &str = "is this the right file? Real ones are a few KiB";

/// Opens `path` for reading when it is a regular file (symlinks followed), and refuses
/// anything else before it could block or stream forever: a directory, a FIFO (whose `open`
/// waits for a writer), a device such as `/dev/zero`, a socket. The error names `what` the
/// file is for, the path, what it is instead, and that a regular file is expected. The file is
/// opened non-blocking and checked again, so a FIFO swapped in after the check cannot block.
pub fn open_regular(path: &Path, what: &str) -> Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let p = path.display();
    let refuse = |ft: std::fs::FileType| {
        anyhow::anyhow!(
            "{what} {p} is {}, not a regular file: pass the path of the file itself",
            kind_of(ft)
        )
    };
    let meta = std::fs::metadata(path).with_context(|| format!("cannot open {what} {p}"))?;
    if !meta.is_file() {
        return Err(refuse(meta.file_type()));
    }
    // O_NONBLOCK changes nothing for a regular file; it only keeps a FIFO from blocking.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .with_context(|| format!("cannot open {what} {p}"))?;
    let meta = file
        .metadata()
        .with_context(|| format!("cannot stat {what} {p}"))?;
    if !meta.is_file() {
        return Err(refuse(meta.file_type()));
    }
    Ok(file)
}

/// Reads all of `reader`, at most `cap` bytes: through `Read::take(cap + 1)`, so a source
/// that never ends (a device, a pipe) or lies about its size stops one byte past the cap and
/// is refused with a message naming `what`, the cap and `hint` (what to do instead).
pub fn read_capped(reader: impl Read, cap: u64, what: &str, hint: &str) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    reader
        .take(cap.saturating_add(1))
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {what}"))?;
    if bytes.len() as u64 > cap {
        anyhow::bail!(
            "{what} is larger than {} ({cap} bytes), the most lts reads for it: {hint}",
            format_bytes(cap)
        );
    }
    Ok(bytes)
}

/// Reads the regular file `path` ([`open_regular`]) of at most `cap` bytes ([`read_capped`]);
/// a file whose size is known to be over the cap is refused before anything is read.
pub fn read_regular(path: &Path, cap: u64, what: &str, hint: &str) -> Result<Vec<u8>> {
    let file = open_regular(path, what)?;
    let shown = format!("{what} {}", path.display());
    let len = file.metadata().map_or(0, |m| m.len());
    if len > cap {
        anyhow::bail!(
            "{shown} has {len} bytes, more than {} ({cap} bytes), the most lts reads for it: {hint}",
            format_bytes(cap)
        );
    }
    read_capped(file, cap, &shown, hint)
}

/// [`read_regular`] as UTF-8 text; the error names the byte offset of the first invalid byte.
pub fn read_regular_text(path: &Path, cap: u64, what: &str, hint: &str) -> Result<String> {
    let bytes = read_regular(path, cap, what, hint)?;
    String::from_utf8(bytes).map_err(|e| {
        anyhow::anyhow!(
            "{what} {} is not UTF-8 text (invalid byte at offset {})",
            path.display(),
            e.utf8_error().valid_up_to()
        )
    })
}

/// Current UTC time as RFC 3339 with whole seconds (`2026-11-27T17:05:03Z`), via `humantime`.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

/// Formats seconds since the Unix epoch as RFC 3339 UTC (`humantime`).
pub fn rfc3339(secs: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
        .to_string()
}

/// Values per thread below which [`parallel_by_size`] does not start another thread.
const VALUES_PER_THREAD: usize = 1 << 20;

/// Maps `f` over `items` on up to `max_threads` scoped threads and returns the results in
/// input order. Items are assigned longest-processing-time first by `size` (their value
/// count); at most one thread per MiB of values is used, so small work (and emulators such as
/// qemu-user, where creating a thread can hang) stays on the calling thread. Each item is
/// moved into `f`, so whatever it owns is freed as soon as it is processed.
pub fn parallel_by_size<T: Send, R: Send>(
    items: Vec<T>,
    size: impl Fn(&T) -> usize,
    max_threads: usize,
    f: impl Fn(T) -> R + Sync,
) -> Vec<R> {
    let sizes: Vec<usize> = items.iter().map(&size).collect();
    let total: usize = sizes.iter().sum();
    let threads = max_threads
        .min(items.len())
        .min(total / VALUES_PER_THREAD + 1)
        .max(1);
    if threads == 1 {
        return items.into_iter().map(f).collect();
    }
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(sizes[i]));
    let mut load = vec![0usize; threads];
    let mut bucket_of = vec![0usize; items.len()];
    for i in order {
        let b = (0..threads).min_by_key(|&b| load[b]).expect("threads >= 1");
        load[b] += sizes[i];
        bucket_of[i] = b;
    }
    let mut buckets: Vec<Vec<(usize, T)>> = (0..threads).map(|_| Vec::new()).collect();
    for (i, item) in items.into_iter().enumerate() {
        buckets[bucket_of[i]].push((i, item));
    }
    let mut out: Vec<Option<R>> = (0..bucket_of.len()).map(|_| None).collect();
    let f = &f;
    std::thread::scope(|scope| {
        let handles: Vec<_> = buckets
            .into_iter()
            .map(|part| {
                scope.spawn(move || {
                    part.into_iter()
                        .map(|(i, item)| (i, f(item)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for h in handles {
            for (i, r) in h.join().expect("a worker thread panicked") {
                out[i] = Some(r);
            }
        }
    });
    out.into_iter()
        .map(|r| r.expect("every item processed"))
        .collect()
}

/// The cores [`parallel_by_size`] may use by default: the available parallelism, at most 16.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(16))
}

/// What a memory size accepts, for error messages.
pub const SIZE_FORMAT: &str =
    "a size such as 512MiB, 8GiB, 1.5GiB, 2G, 500MB or a plain number of bytes";

/// Parses a memory size (`--max-memory`): a number (fractions allowed) with an optional unit,
/// case-insensitive, spaces allowed between them. Binary units: `KiB`, `MiB`, `GiB`, `TiB` and
/// their short forms `K`, `M`, `G`, `T` (as `ulimit`, Docker and the JVM read them); decimal
/// (SI) units: `kB`, `MB`, `GB`, `TB`; `B` or no unit: bytes. The result must be at least one
/// byte and fit in `u64`; errors describe the format ([`SIZE_FORMAT`]).
pub fn parse_size(s: &str) -> std::result::Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = (&t[..split], t[split..].trim());
    let bad = || format!("{s:?} is not a memory size: expected {SIZE_FORMAT}");
    let value: f64 = num.parse().map_err(|_| bad())?;
    let scale: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        _ => return Err(bad()),
    };
    let bytes = (value * scale as f64).round();
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(format!("{s:?} is more bytes than a 64-bit size holds"));
    }
    if bytes < 1.0 {
        return Err(format!("{s:?}: a memory size must be at least 1 byte"));
    }
    Ok(bytes as u64)
}

/// A byte count for people: `512 B`, `1.5 KiB`, `15.2 GiB` (binary units, one decimal).
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut v = bytes as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_known_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_795_797_903), "2026-11-27T16:45:03Z");
        // 2100 is not a leap year.
        assert_eq!(rfc3339(4_107_542_400), "2100-03-01T00:00:00Z");
        assert_eq!(rfc3339(1_735_689_599), "2024-12-31T23:59:59Z");
    }

    #[test]
    fn open_regular_refuses_directories_fifos_and_devices_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let t0 = std::time::Instant::now();
        for (path, kind) in [
            (dir.path(), "is a directory"),
            (fifo.as_path(), "is a named pipe (FIFO)"),
            (Path::new("/dev/zero"), "is a character device"),
        ] {
            let e = format!("{:#}", open_regular(path, "text file").unwrap_err());
            assert!(e.contains(kind) && e.contains("text file"), "{e}");
            assert!(e.contains("not a regular file"), "{e}");
            let e = format!("{:#}", read_regular(path, 10, "x", "hint").unwrap_err());
            assert!(e.contains(kind), "{e}");
        }
        assert!(t0.elapsed() < std::time::Duration::from_secs(5));
        let e = format!(
            "{:#}",
            open_regular(&dir.path().join("no"), "model").unwrap_err()
        );
        assert!(
            e.contains("cannot open model") && e.contains("No such file"),
            "{e}"
        );
    }

    #[test]
    fn reads_stop_one_byte_past_the_cap() {
        // An endless source: read up to the cap + 1 and refused, naming the cap and the hint.
        let e = read_capped(std::io::repeat(0), 1000, "the input", "cut it").unwrap_err();
        let e = format!("{e:#}");
        assert!(
            e.contains("the input is larger than 1000 B (1000 bytes)"),
            "{e}"
        );
        assert!(e.ends_with("cut it"), "{e}");
        assert_eq!(read_capped(&b"12345"[..], 5, "x", "").unwrap(), b"12345");
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"hello").unwrap();
        assert_eq!(read_regular(&p, 5, "f", "").unwrap(), b"hello");
        assert_eq!(read_regular_text(&p, 5, "f", "").unwrap(), "hello");
        // A known size over the cap: refused before reading, naming the size.
        let e = format!(
            "{:#}",
            read_regular(&p, 4, "the file", "smaller").unwrap_err()
        );
        assert!(e.contains("has 5 bytes, more than 4 B"), "{e}");
        std::fs::write(&p, b"a\xffb").unwrap();
        let e = format!("{:#}", read_regular_text(&p, 5, "f", "").unwrap_err());
        assert!(e.contains("not UTF-8") && e.contains("offset 1"), "{e}");
    }

    #[test]
    fn write_atomic_files_are_readable_by_others() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.csv");
        write_atomic(&p, b"x").unwrap();
        // The same read permissions as a file created the ordinary way (same umask).
        let plain = dir.path().join("plain");
        std::fs::write(&plain, b"x").unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o444;
        assert_eq!(mode(&p), mode(&plain), "{:o}", mode(&p));
    }

    #[test]
    fn write_atomic_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub").join("x.txt");
        write_atomic(&p, b"hello").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"hello");
        assert_eq!(std::fs::read_dir(p.parent().unwrap()).unwrap().count(), 1);
    }

    #[test]
    fn parallel_by_size_keeps_order_on_any_thread_count() {
        // Sizes above 1 MiB of values so several threads really run.
        let items: Vec<usize> = (0..23).map(|i| (i % 5 + 1) << 19).collect();
        let want: Vec<usize> = items.iter().map(|x| x * 3 + 1).collect();
        for threads in [1, 2, 3, 8] {
            let got = parallel_by_size(items.clone(), |&x| x, threads, |x| x * 3 + 1);
            assert_eq!(got, want, "{threads} threads");
        }
        // Small work stays on the calling thread.
        let here = std::thread::current().id();
        let ids = parallel_by_size(vec![1usize; 8], |&x| x, 8, |_| std::thread::current().id());
        assert!(ids.iter().all(|&id| id == here));
        assert!(parallel_by_size(Vec::<usize>::new(), |&x| x, 4, |x| x).is_empty());
    }

    #[test]
    fn sizes_parse_in_binary_and_decimal_units() {
        assert_eq!(parse_size("512MiB"), Ok(512 << 20));
        assert_eq!(parse_size("8GiB"), Ok(8 << 30));
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        assert_eq!(parse_size("2g"), Ok(2 << 30));
        assert_eq!(parse_size("1.5 GiB"), Ok(3 << 29));
        assert_eq!(parse_size("500MB"), Ok(500_000_000));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size(" 10 b "), Ok(10));
        assert_eq!(parse_size("1k"), Ok(1024));
        for bad in [
            "",
            "nonsense",
            "GiB",
            "12 parsecs",
            "1.2.3G",
            "-5G",
            "0",
            "0.1B",
        ] {
            assert!(parse_size(bad).is_err(), "{bad:?}");
        }
        assert!(parse_size("nonsense").unwrap_err().contains("512MiB"));
        assert!(parse_size("99999999999TiB").unwrap_err().contains("64-bit"));
    }

    #[test]
    fn bytes_format_in_binary_units() {
        assert_eq!(format_bytes(0), "0 B");
        assert_eq!(format_bytes(1023), "1023 B");
        assert_eq!(format_bytes(1536), "1.5 KiB");
        assert_eq!(format_bytes(15 << 30), "15.0 GiB");
        assert_eq!(format_bytes(u64::MAX), "16.0 EiB");
    }
}
