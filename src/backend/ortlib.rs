//! Finding and installing the ONNX Runtime shared library (`ort` is built with `load-dynamic`).
//!
//! Search order (first hit wins):
//! 1. `ORT_DYLIB_PATH`, the variable `ort` itself honours (an error if it names a missing file);
//! 2. the library bundled next to the binary, as `scripts/cross.sh` packages it for a board:
//!    `<dir of lts>/lib/libonnxruntime.so.<version>` or `<dir of lts>/libonnxruntime.so.<version>`;
//! 3. the cache this tool fills (`lts setup`): `$LTS_CACHE_DIR`, else `$XDG_CACHE_HOME/lts`, else
//!    `~/.cache/lts`, holding `onnxruntime-<version>-<arch>/libonnxruntime.so.<version>`; when it
//!    is empty, `lts setup` runs automatically once, with a one-line notice on stderr (set
//!    `LTS_NO_AUTO_SETUP=1` to forbid that);
//! 4. an installed Python `onnxruntime` package (`python3 -c "import onnxruntime"`), version
//!    1.31 or newer.
//!
//! `lts setup` takes the library from the official PyPI wheel `onnxruntime==1.31.1` (fetched with
//! `pip download`, whose index hashes pip verifies), because `ort`'s own download host is not
//! reachable from build machines. `--target aarch64` fetches the board's library from a host.
//! The wheel is unpacked in Rust (the `zip` crate), so `lts setup --wheel FILE` installs from a
//! wheel copied to a machine without Python or network; pip is needed only to download.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// ONNX Runtime version `lts setup` installs (the version `ort 2.0.0-rc.15` targets).
pub const ORT_VERSION: &str = "1.31.1";

/// Oldest ONNX Runtime minor version `ort` accepts.
const MIN_MINOR: u32 = 31;

/// CPU architectures `lts setup` can fetch a library for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// 64-bit x86 (PyPI platform `manylinux_2_28_x86_64`).
    X86_64,
    /// 64-bit ARM: Raspberry Pi 4/5 with a 64-bit OS, Jetson (`manylinux_2_28_aarch64`).
    Aarch64,
}

impl crate::choice::Choice for Target {
    const ALL: &'static [(Self, &'static str, &'static str)] = &[
        (
            Target::X86_64,
            "x86_64",
            "64-bit x86 (PyPI platform manylinux_2_28_x86_64)",
        ),
        (
            Target::Aarch64,
            "aarch64",
            "64-bit ARM: Raspberry Pi 4/5 with a 64-bit OS, Jetson (manylinux_2_28_aarch64)",
        ),
    ];
}

impl Target {
    /// The architecture this binary was built for, if `lts setup` supports it.
    pub fn host() -> Option<Target> {
        match std::env::consts::ARCH {
            "x86_64" => Some(Target::X86_64),
            "aarch64" => Some(Target::Aarch64),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Target::X86_64 => "x86_64",
            Target::Aarch64 => "aarch64",
        }
    }
}

/// Where the library was found, for reports and `lts device`.
#[derive(Clone, Debug, PartialEq)]
pub struct Located {
    /// Path of the shared library.
    pub path: PathBuf,
    /// Which rule found it: `ORT_DYLIB_PATH`, `bundled next to the lts binary`, `cache`,
    /// `cache (installed now)` or `python`.
    pub how: &'static str,
}

/// The cache directory `lts setup` writes to: `LTS_CACHE_DIR`, else `lts/` in the platform's
/// cache directory (`dirs::cache_dir`: `$XDG_CACHE_HOME` or `~/.cache` on Linux).
pub fn cache_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("LTS_CACHE_DIR").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(d));
    }
    dirs::cache_dir().map(|d| d.join("lts"))
}

/// File name of the library inside the wheel and the cache.
fn lib_file_name() -> String {
    format!("libonnxruntime.so.{ORT_VERSION}")
}

/// Path the cache holds the library at for `target`.
pub fn cached_library(dir: &Path, target: Target) -> PathBuf {
    dir.join(format!("onnxruntime-{ORT_VERSION}-{}", target.as_str()))
        .join(lib_file_name())
}

/// Finds the library following the module's search order, installing it into the cache when
/// allowed. The error says exactly what to run.
pub fn locate() -> Result<Located> {
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        let path = PathBuf::from(p);
        if !path.is_file() {
            bail!(
                "ORT_DYLIB_PATH is set to {}, which is not a file.\n\
                 Point it at libonnxruntime.so (ONNX Runtime >= 1.{MIN_MINOR}), or unset it and run `lts setup`.",
                path.display()
            );
        }
        return Ok(Located {
            path,
            how: "ORT_DYLIB_PATH",
        });
    }
    if let Some(path) = bundled_library() {
        return Ok(Located {
            path,
            how: "bundled next to the lts binary",
        });
    }
    let host = Target::host();
    let cache = cache_dir();
    if let (Some(dir), Some(t)) = (&cache, host) {
        let p = cached_library(dir, t);
        if p.is_file() {
            return Ok(Located {
                path: p,
                how: "cache",
            });
        }
    }
    let auto = std::env::var_os("LTS_NO_AUTO_SETUP").is_none_or(|v| v.is_empty() || v == "0");
    let mut setup_error = None;
    if let (true, Some(dir), Some(t)) = (auto, &cache, host) {
        eprintln!(
            "lts: ONNX Runtime not found; fetching onnxruntime=={ORT_VERSION} from PyPI into {} (once; `lts setup` does this by hand)",
            dir.display()
        );
        match setup(t, dir, false) {
            Ok(path) => {
                return Ok(Located {
                    path,
                    how: "cache (installed now)",
                })
            }
            Err(e) => setup_error = Some(format!("{e:#}")),
        }
    }
    if let Some(path) = python_onnxruntime() {
        return Ok(Located {
            path,
            how: "python",
        });
    }
    let mut msg = String::from("ONNX Runtime library not found.\n");
    if host.is_none() {
        msg.push_str(&format!(
            "PyPI has no ONNX Runtime build for this CPU ({}): bring your own libonnxruntime.so (>= 1.{MIN_MINOR}, built from source) and set ORT_DYLIB_PATH, or use --backend wgpu.\n",
            std::env::consts::ARCH
        ));
    }
    if let Some(e) = setup_error {
        msg.push_str(&format!("Automatic setup failed: {e}\n"));
    }
    msg.push_str(&format!(
        "Fix it with one of:\n  lts setup                                  # fetch onnxruntime=={ORT_VERSION} from PyPI into {}\n  export ORT_DYLIB_PATH=/path/to/libonnxruntime.so   # a library you already have (>= 1.{MIN_MINOR})\n  python3 -m pip install onnxruntime=={ORT_VERSION}   # lts also looks inside an installed Python package",
        cache
            .map(|c| c.display().to_string())
            .unwrap_or_else(|| "$LTS_CACHE_DIR (set it: HOME is unset)".into())
    ));
    bail!(msg)
}

/// The pinned library shipped beside the executable (`lib/` or the same folder), if any.
fn bundled_library() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    [
        dir.join("lib").join(lib_file_name()),
        dir.join(lib_file_name()),
    ]
    .into_iter()
    .find(|p| p.is_file())
}

/// The library inside an installed Python `onnxruntime` package, if its version is new enough.
fn python_onnxruntime() -> Option<PathBuf> {
    let out = Command::new("python3")
        .args([
            "-c",
            "import onnxruntime, os; print(os.path.join(os.path.dirname(onnxruntime.__file__), 'capi'))",
        ])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let capi = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    let mut best: Option<(u32, PathBuf)> = None;
    for entry in std::fs::read_dir(&capi).ok()?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(version) = name.strip_prefix("libonnxruntime.so.") {
            let minor = version.split('.').nth(1).and_then(|m| m.parse().ok())?;
            if minor >= MIN_MINOR && best.as_ref().is_none_or(|(b, _)| minor > *b) {
                best = Some((minor, entry.path()));
            }
        }
    }
    best.map(|(_, p)| p)
}

/// Largest library `lts setup` unpacks from a wheel (the real one is about 29 MB): an entry that
/// declares more is refused before anything is extracted.
pub const MAX_LIBRARY_BYTES: u64 = 512 * 1024 * 1024;

/// Exact file name of the PyPI wheel `lts setup` fetches for `target` (what `pip download
/// --platform manylinux_2_28_<arch> --python-version 3.11 --implementation cp` picks), e.g.
/// `onnxruntime-1.31.1-cp311-cp311-manylinux_2_28_aarch64.whl`.
pub fn wheel_file_name(target: Target) -> String {
    format!(
        "onnxruntime-{ORT_VERSION}-cp311-cp311-manylinux_2_28_{}.whl",
        target.as_str()
    )
}

/// How to provision by hand, for errors: which wheel to download elsewhere and how to pass it.
fn manual_wheel_hint(target: Target) -> String {
    let wheel = wheel_file_name(target);
    let (target_flag, board_note) = match (Some(target) == Target::host(), target) {
        (false, _) => (format!(" --target {}", target.as_str()), ""),
        (true, Target::X86_64) => (
            String::new(),
            "; add `--target aarch64` when unpacking a board's library",
        ),
        (true, Target::Aarch64) => (String::new(), ""),
    };
    format!(
        "Download {wheel} on another machine (https://pypi.org/project/onnxruntime/{ORT_VERSION}/#files, \
         or `pip download --no-deps --only-binary=:all: --platform manylinux_2_28_{arch} \
         --python-version 3.11 --implementation cp onnxruntime=={ORT_VERSION}`), copy it here and run \
         `lts setup --wheel {wheel}{target_flag}` (no Python or network needed{board_note}).",
        arch = target.as_str()
    )
}

/// What [`install_wheel`] installed.
#[derive(Clone, Debug, PartialEq)]
pub struct WheelInstall {
    /// Where the library was written (see [`cached_library`]).
    pub path: PathBuf,
    /// ONNX Runtime version of the library, from its name inside the wheel (e.g. `1.31.1`).
    pub version: String,
    /// A line for stderr when the version is not the pinned [`ORT_VERSION`] but new enough.
    pub notice: Option<String>,
}

/// Fetches the pinned `onnxruntime` wheel for `target` with pip and extracts the library into
/// `dir` (see [`cached_library`]) with [`install_wheel`]'s Rust unpacking. Returns the library
/// path. With `force` false, an existing library is kept. Atomic: the library appears only once
/// fully written. Without python3 or pip the error names the wheel to download elsewhere.
pub fn setup(target: Target, dir: &Path, force: bool) -> Result<PathBuf> {
    let dest = cached_library(dir, target);
    if dest.is_file() && !force {
        return Ok(dest);
    }
    let _lock = lock_cache(dir)?;
    if dest.is_file() && !force {
        return Ok(dest);
    }
    let work = dir.join(format!(".download-{}", std::process::id()));
    std::fs::create_dir_all(&work)
        .with_context(|| format!("cannot create cache directory {}", work.display()))?;
    let result = download_wheel(target, &work)
        .and_then(|wheel| extract_library(&wheel, target, &dest, MAX_LIBRARY_BYTES));
    let _ = std::fs::remove_dir_all(&work);
    let installed = result?;
    if let Some(n) = installed.notice {
        eprintln!("lts: {n}");
    }
    Ok(installed.path)
}

/// Unpacks the library from a wheel file the user copied (`lts setup --wheel FILE`) into `dir`,
/// at the path [`setup`] uses, so `lts` finds it exactly as after a download. No network and no
/// Python. Checks that the wheel holds `onnxruntime/capi/libonnxruntime.so.<version>`, that the
/// version is at least 1.[`MIN_MINOR`] (another version than [`ORT_VERSION`] comes with a
/// notice, and is stored under the pinned name) and that the library's ELF machine matches
/// `target`. Replaces a library already there, atomically.
pub fn install_wheel(wheel: &Path, target: Target, dir: &Path) -> Result<WheelInstall> {
    let dest = cached_library(dir, target);
    let _lock = lock_cache(dir)?;
    extract_library(wheel, target, &dest, MAX_LIBRARY_BYTES)
}

/// Takes the cache's setup lock: several lts processes may start at once on a fresh machine (a
/// test suite, a fleet script); one installs, the others wait for it and reuse the result.
/// `lts fetch` takes the same lock. Held until the returned file is dropped.
pub fn lock_cache(dir: &Path) -> Result<std::fs::File> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create cache directory {}", dir.display()))?;
    let lock = std::fs::File::create(dir.join(".setup.lock"))
        .with_context(|| format!("cannot create a lock file in {}", dir.display()))?;
    // SAFETY: flock on a file descriptor we own; released when the file is dropped.
    unsafe {
        libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX);
    }
    Ok(lock)
}

/// Runs `python3 -m pip download` for the pinned wheel into `work`; returns the wheel's path.
fn download_wheel(target: Target, work: &Path) -> Result<PathBuf> {
    let platform = format!("manylinux_2_28_{}", target.as_str());
    let hint = format!(
        "{} Or set ORT_DYLIB_PATH to a library you have.",
        manual_wheel_hint(target)
    );
    pip_download(
        &format!("onnxruntime=={ORT_VERSION}"),
        &[
            "--only-binary=:all:",
            "--platform",
            &platform,
            "--python-version",
            "3.11",
            "--implementation",
            "cp",
        ],
        work,
        &hint,
    )
}

/// Runs `python3 -m pip download --no-deps <extra> -d <work> <requirement>` and returns the
/// wheel it saved. Every error (no python3, no pip, pip failing) names `requirement` and ends
/// with `hint`, which says how to provision by hand. Shared by `lts setup` and `lts fetch`.
pub fn pip_download(requirement: &str, extra: &[&str], work: &Path, hint: &str) -> Result<PathBuf> {
    let out = match Command::new("python3")
        .args(["-m", "pip", "download", "--no-deps"])
        .args(extra)
        .arg("--disable-pip-version-check")
        .arg("-d")
        .arg(work)
        .arg(requirement)
        .output()
    {
        Ok(out) => out,
        Err(e) => bail!(
            "cannot fetch {requirement}: python3 is not available here ({e}), so `python3 -m pip \
             download` cannot run. {hint} Or install Python 3 with pip (Debian: apt-get install \
             python3-pip)."
        ),
    };
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        if stderr.contains("No module named pip") {
            bail!(
                "cannot fetch {requirement}: python3 has no pip module, so `python3 -m pip \
                 download` cannot run. {hint} Or install pip (Debian: apt-get install python3-pip)."
            );
        }
        bail!(
            "`pip download {requirement}` failed:\n{}\n{hint}",
            stderr.trim()
        );
    }
    std::fs::read_dir(work)?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "whl"))
        .with_context(|| format!("pip reported success for {requirement} but left no wheel"))
}

/// ELF `e_machine` values of the architectures `lts setup` knows.
const EM_X86_64: u16 = 62;
const EM_AARCH64: u16 = 183;

impl Target {
    /// The ELF `e_machine` value of libraries built for this architecture.
    fn elf_machine(self) -> u16 {
        match self {
            Target::X86_64 => EM_X86_64,
            Target::Aarch64 => EM_AARCH64,
        }
    }
}

/// A readable name for an ELF `e_machine` value.
fn machine_name(machine: u16) -> String {
    match machine {
        EM_X86_64 => "x86_64".into(),
        EM_AARCH64 => "aarch64".into(),
        3 => "x86 (32-bit)".into(),
        40 => "arm (32-bit)".into(),
        243 => "riscv".into(),
        21 => "ppc64".into(),
        22 => "s390x".into(),
        m => format!("ELF machine {m}"),
    }
}

/// The `e_machine` field of an ELF header (offset 18 for 32- and 64-bit files, in the byte
/// order `EI_DATA` names), or `None` when `head` is not the start of an ELF file.
fn elf_machine(head: &[u8]) -> Option<u16> {
    if head.len() < 20 || &head[..4] != b"\x7fELF" {
        return None;
    }
    let bytes = [head[18], head[19]];
    match head[5] {
        1 => Some(u16::from_le_bytes(bytes)),
        2 => Some(u16::from_be_bytes(bytes)),
        _ => None,
    }
}

/// Accepts a library version from a wheel: `Ok(None)` for [`ORT_VERSION`], `Ok(Some(notice))` for
/// another version that `ort` accepts (1.[`MIN_MINOR`] or newer), an error for an older one.
fn check_version(version: &str, wheel: &Path) -> Result<Option<String>> {
    if version == ORT_VERSION {
        return Ok(None);
    }
    let mut parts = version.split('.').map(|p| p.parse::<u32>().ok());
    let (major, minor) = match (parts.next().flatten(), parts.next().flatten()) {
        (Some(major), Some(minor)) => (major, minor),
        _ => bail!(
            "{} holds libonnxruntime.so.{version}, whose version lts cannot read. Use the \
             onnxruntime=={ORT_VERSION} wheel (lts setup fetches it, or see `lts setup --help`).",
            wheel.display()
        ),
    };
    if major < 1 || (major == 1 && minor < MIN_MINOR) {
        bail!(
            "{} holds ONNX Runtime {version}, older than 1.{MIN_MINOR}, the oldest that lts (ort \
             2.0.0-rc.15) can load. Use the onnxruntime=={ORT_VERSION} wheel instead \
             (`lts setup` downloads it; without Python, download it elsewhere and pass it with \
             `lts setup --wheel FILE`).",
            wheel.display()
        );
    }
    Ok(Some(format!(
        "note: {} holds ONNX Runtime {version}, not the pinned {ORT_VERSION}; lts accepts 1.{MIN_MINOR} \
         or newer and installs it under the pinned file name (`lts device` shows the version loaded).",
        wheel.display()
    )))
}

/// The wheel's library entry and its version: `onnxruntime/capi/libonnxruntime.so.<version>`,
/// the pinned one when present, else the newest.
fn library_entry<'a>(names: impl Iterator<Item = &'a str>) -> Option<(String, String)> {
    let prefix = "onnxruntime/capi/libonnxruntime.so.";
    let mut best: Option<(Vec<u32>, String, String)> = None;
    for name in names {
        let Some(version) = name.strip_prefix(prefix) else {
            continue;
        };
        if version.is_empty() || !version.chars().all(|c| c.is_ascii_digit() || c == '.') {
            continue;
        }
        if version == ORT_VERSION {
            return Some((name.to_owned(), version.to_owned()));
        }
        let key: Vec<u32> = version.split('.').map(|p| p.parse().unwrap_or(0)).collect();
        if best.as_ref().is_none_or(|(b, _, _)| key > *b) {
            best = Some((key, name.to_owned(), version.to_owned()));
        }
    }
    best.map(|(_, name, version)| (name, version))
}

/// Reads the library out of `wheel`, checks it (entry present, size at most `max_bytes`,
/// version, ELF machine of `target`) and writes it to `dest` atomically. Every failure is an
/// error that names the problem and the fix.
fn extract_library(
    wheel: &Path,
    target: Target,
    dest: &Path,
    max_bytes: u64,
) -> Result<WheelInstall> {
    use std::io::Read;

    let shown = wheel.display();
    let hint = manual_wheel_hint(target);
    if let Err(e) = std::fs::metadata(wheel) {
        if e.kind() == std::io::ErrorKind::NotFound {
            bail!("wheel file {shown} does not exist. Check the path. {hint}")
        }
        bail!("cannot open wheel file {shown}: {e}. Check the path and its permissions.")
    }
    // A directory, a FIFO (whose open would block) or a device is refused before it is opened.
    let file = crate::util::open_regular(wheel, "wheel file")
        .map_err(|e| anyhow::anyhow!("{e:#}: the .whl file. {hint}"))?;
    let mut archive = match zip::ZipArchive::new(std::io::BufReader::new(file)) {
        Ok(a) => a,
        Err(e) => {
            let mut magic = [0u8; 4];
            let starts_like_zip = std::fs::File::open(wheel)
                .and_then(|mut f| f.read_exact(&mut magic))
                .is_ok()
                && &magic == b"PK\x03\x04";
            if starts_like_zip {
                bail!(
                    "{shown} is a damaged or truncated zip ({e}): probably an incomplete download \
                     or copy. Copy the wheel again and compare its size (or sha256) with PyPI's. {hint}"
                );
            }
            bail!("{shown} is not a zip file, so not a wheel ({e}). {hint}");
        }
    };
    let names: Vec<String> = archive
        .file_names()
        .filter_map(|n| n.ok().map(|n| n.into_owned()))
        .collect();
    let Some((member, version)) = library_entry(names.iter().map(String::as_str)) else {
        bail!(
            "{shown} holds no onnxruntime/capi/libonnxruntime.so.<version>: it is not an ONNX \
             Runtime wheel for Linux (onnxruntime-gpu and other packages differ). {hint}"
        );
    };
    let notice = check_version(&version, wheel)?;
    let mut entry = archive.by_name(&member).with_context(|| {
        format!("cannot read {member} in {shown}: the wheel is damaged. {hint}")
    })?;
    let declared = entry.size();
    if declared > max_bytes {
        bail!(
            "{member} in {shown} declares {declared} bytes, more than the {max_bytes} bytes lts \
             unpacks (the real library is about 30 MB): this is not a genuine ONNX Runtime wheel. {hint}"
        );
    }
    let mut bytes = Vec::with_capacity(declared as usize);
    (&mut entry)
        .take(max_bytes + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot unpack {member} from {shown} ({e}): the wheel is damaged or truncated. \
                 Copy it again. {hint}"
            )
        })?;
    if bytes.len() as u64 != declared {
        bail!(
            "{member} in {shown} unpacked to {} bytes instead of the {declared} it declares: the \
             wheel is damaged. Copy it again. {hint}",
            bytes.len()
        );
    }
    let want = target.elf_machine();
    match elf_machine(&bytes) {
        None => bail!(
            "{member} in {shown} is not an ELF shared library, so not a Linux ONNX Runtime. {hint}"
        ),
        Some(m) if m != want => {
            let other = [Target::X86_64, Target::Aarch64]
                .into_iter()
                .find(|t| t.elf_machine() == m)
                .map(|t| {
                    let why = if Some(t) == Target::host() {
                        "to install it for this machine"
                    } else {
                        "if you meant to unpack it for a board"
                    };
                    format!(", or pass `--target {}` {why}", t.as_str())
                })
                .unwrap_or_default();
            bail!(
                "{shown} holds a library for {}, but the target is {}{}. Use the {} wheel ({}){other}.",
                machine_name(m),
                target.as_str(),
                if Some(target) == Target::host() {
                    " (this machine)"
                } else {
                    ""
                },
                target.as_str(),
                wheel_file_name(target),
            )
        }
        Some(_) => {}
    }
    crate::util::write_atomic(dest, &bytes)?;
    Ok(WheelInstall {
        path: dest.to_path_buf(),
        version,
        notice,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::io::Write;

    /// A minimal 64-bit little-endian ELF header (64 bytes) with `machine`, then `tail`.
    fn fake_elf(machine: u16, tail: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; 64];
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = 2; // ELFCLASS64
        b[5] = 1; // ELFDATA2LSB
        b[6] = 1; // EV_CURRENT
        b[16..18].copy_from_slice(&3u16.to_le_bytes()); // ET_DYN
        b[18..20].copy_from_slice(&machine.to_le_bytes());
        b.extend_from_slice(tail);
        b
    }

    /// Writes a deflate zip holding `entries` (name, bytes) to `path`.
    fn write_zip(path: &Path, entries: &[(&str, &[u8])]) {
        let mut z = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        for (name, bytes) in entries {
            z.start_file(*name, opts).unwrap();
            z.write_all(bytes).unwrap();
        }
        z.finish().unwrap();
    }

    /// A fake wheel for `version` whose library has ELF machine `machine`; returns its bytes.
    fn fake_wheel(path: &Path, version: &str, machine: u16) -> Vec<u8> {
        let lib = fake_elf(machine, &[7u8; 5000]);
        let member = format!("onnxruntime/capi/libonnxruntime.so.{version}");
        write_zip(
            path,
            &[
                ("onnxruntime/__init__.py", b"# fake\n"),
                (&member, &lib),
                ("onnxruntime/capi/libonnxruntime_providers_shared.so", b"x"),
            ],
        );
        lib
    }

    fn err_text(r: Result<WheelInstall>) -> String {
        format!("{:#}", r.expect_err("must fail"))
    }

    #[test]
    fn wheel_names_are_the_ones_pip_downloads() {
        assert_eq!(
            wheel_file_name(Target::X86_64),
            "onnxruntime-1.31.1-cp311-cp311-manylinux_2_28_x86_64.whl"
        );
        assert_eq!(
            wheel_file_name(Target::Aarch64),
            "onnxruntime-1.31.1-cp311-cp311-manylinux_2_28_aarch64.whl"
        );
    }

    #[test]
    fn elf_machine_reads_both_byte_orders() {
        assert_eq!(elf_machine(&fake_elf(EM_X86_64, &[])), Some(62));
        assert_eq!(elf_machine(&fake_elf(EM_AARCH64, &[])), Some(183));
        let mut be = fake_elf(0, &[]);
        be[5] = 2;
        be[18..20].copy_from_slice(&21u16.to_be_bytes());
        assert_eq!(elf_machine(&be), Some(21));
        assert_eq!(elf_machine(b"\x7fELF"), None);
        assert_eq!(elf_machine(&[0u8; 64]), None);
    }

    #[test]
    fn wheel_extraction_writes_the_exact_bytes_where_lts_looks() {
        let tmp = tempfile::tempdir().unwrap();
        let wheel = tmp.path().join("w.whl");
        let lib = fake_wheel(&wheel, ORT_VERSION, EM_AARCH64);
        let cache = tmp.path().join("cache");
        let got = install_wheel(&wheel, Target::Aarch64, &cache).unwrap();
        assert_eq!(got.path, cached_library(&cache, Target::Aarch64));
        assert_eq!(got.version, ORT_VERSION);
        assert_eq!(got.notice, None);
        assert_eq!(std::fs::read(&got.path).unwrap(), lib);
        // Only the library is left in its folder: no temporary file.
        let dir = got.path.parent().unwrap();
        assert_eq!(std::fs::read_dir(dir).unwrap().count(), 1);
        // Installing again replaces it.
        let lib2 = fake_wheel(&wheel, ORT_VERSION, EM_AARCH64);
        install_wheel(&wheel, Target::Aarch64, &cache).unwrap();
        assert_eq!(std::fs::read(&got.path).unwrap(), lib2);
    }

    #[test]
    fn wheel_for_the_wrong_arch_names_both() {
        let tmp = tempfile::tempdir().unwrap();
        let wheel = tmp.path().join("w.whl");
        fake_wheel(&wheel, ORT_VERSION, EM_AARCH64);
        let cache = tmp.path().join("cache");
        let e = err_text(install_wheel(&wheel, Target::X86_64, &cache));
        assert!(
            e.contains("library for aarch64") && e.contains("target is x86_64"),
            "{e}"
        );
        assert!(e.contains("--target aarch64"), "{e}");
        assert!(
            e.contains("onnxruntime-1.31.1-cp311-cp311-manylinux_2_28_x86_64.whl"),
            "{e}"
        );
        assert!(!cached_library(&cache, Target::X86_64).exists());
    }

    #[test]
    fn wheel_without_the_library_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let wheel = tmp.path().join("w.whl");
        write_zip(
            &wheel,
            &[
                ("onnxruntime/__init__.py", b"x"),
                ("onnxruntime/capi/libonnxruntime.so.abc", b"x"),
            ],
        );
        let e = err_text(install_wheel(&wheel, Target::X86_64, tmp.path()));
        assert!(
            e.contains("holds no onnxruntime/capi/libonnxruntime.so.<version>"),
            "{e}"
        );
        assert!(e.contains("lts setup --wheel"), "{e}");
    }

    #[test]
    fn missing_file_and_non_zip_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let missing = tmp.path().join("nope.whl");
        let e = err_text(install_wheel(&missing, Target::X86_64, tmp.path()));
        assert!(e.contains("nope.whl does not exist"), "{e}");

        let text = tmp.path().join("text.whl");
        std::fs::write(&text, b"<html>404 Not Found</html>").unwrap();
        let e = err_text(install_wheel(&text, Target::X86_64, tmp.path()));
        assert!(e.contains("text.whl is not a zip file"), "{e}");

        let e = err_text(install_wheel(tmp.path(), Target::X86_64, tmp.path()));
        assert!(e.contains("is a directory, not a regular file"), "{e}");
        // A FIFO used to block forever in open().
        let fifo = tmp.path().join("fifo.whl");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = err_text(install_wheel(&fifo, Target::X86_64, tmp.path()));
        assert!(
            e.contains("is a named pipe (FIFO), not a regular file"),
            "{e}"
        );
    }

    #[test]
    fn truncated_wheel_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let wheel = tmp.path().join("w.whl");
        fake_wheel(&wheel, ORT_VERSION, EM_X86_64);
        let bytes = std::fs::read(&wheel).unwrap();
        std::fs::write(&wheel, &bytes[..bytes.len() / 2]).unwrap();
        let e = err_text(install_wheel(&wheel, Target::X86_64, tmp.path()));
        assert!(e.contains("damaged or truncated zip"), "{e}");
        assert!(e.contains("Copy the wheel again"), "{e}");
    }

    #[test]
    fn corrupted_library_data_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let wheel = tmp.path().join("w.whl");
        // Stored (not deflated) so one flipped byte is a CRC error, not a deflate error.
        let lib = fake_elf(EM_X86_64, &[7u8; 5000]);
        let mut z = zip::ZipWriter::new(std::fs::File::create(&wheel).unwrap());
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        z.start_file(
            format!("onnxruntime/capi/libonnxruntime.so.{ORT_VERSION}"),
            opts,
        )
        .unwrap();
        z.write_all(&lib).unwrap();
        z.finish().unwrap();
        let mut bytes = std::fs::read(&wheel).unwrap();
        let at = bytes.windows(4).position(|w| w == b"\x7fELF").unwrap() + 1000;
        bytes[at] ^= 0xff;
        std::fs::write(&wheel, &bytes).unwrap();
        let cache = tmp.path().join("cache");
        let e = err_text(install_wheel(&wheel, Target::X86_64, &cache));
        assert!(e.contains("damaged or truncated"), "{e}");
        assert!(!cached_library(&cache, Target::X86_64).exists());
    }

    #[test]
    fn old_versions_are_refused_and_newer_ones_noted() {
        let tmp = tempfile::tempdir().unwrap();
        let wheel = tmp.path().join("w.whl");
        fake_wheel(&wheel, "1.20.0", EM_X86_64);
        let e = err_text(install_wheel(&wheel, Target::X86_64, tmp.path()));
        assert!(e.contains("ONNX Runtime 1.20.0, older than 1.31"), "{e}");
        assert!(!cached_library(tmp.path(), Target::X86_64).exists());

        let lib = fake_wheel(&wheel, "1.32.0", EM_X86_64);
        let got = install_wheel(&wheel, Target::X86_64, tmp.path()).unwrap();
        assert_eq!(got.version, "1.32.0");
        let notice = got.notice.unwrap();
        assert!(
            notice.contains("1.32.0") && notice.contains("not the pinned 1.31.1"),
            "{notice}"
        );
        assert_eq!(std::fs::read(&got.path).unwrap(), lib);
    }

    #[test]
    fn oversized_entries_are_refused_before_extraction() {
        let tmp = tempfile::tempdir().unwrap();
        let wheel = tmp.path().join("w.whl");
        fake_wheel(&wheel, ORT_VERSION, EM_X86_64);
        let dest = tmp.path().join("lib.so");
        let e = format!(
            "{:#}",
            extract_library(&wheel, Target::X86_64, &dest, 1000).unwrap_err()
        );
        assert!(e.contains("more than the 1000 bytes"), "{e}");
        assert!(!dest.exists());
        assert_eq!(MAX_LIBRARY_BYTES, 512 << 20);
    }

    #[test]
    fn manual_hint_names_the_wheel_and_the_flags() {
        let h = manual_wheel_hint(Target::Aarch64);
        assert!(
            h.contains(
                "lts setup --wheel onnxruntime-1.31.1-cp311-cp311-manylinux_2_28_aarch64.whl"
            ),
            "{h}"
        );
        if Target::host() != Some(Target::Aarch64) {
            assert!(h.contains("--target aarch64`"), "{h}");
        }
    }

    #[test]
    fn cache_layout_names_version_and_arch() {
        let p = cached_library(Path::new("/c"), Target::Aarch64);
        assert_eq!(
            p,
            PathBuf::from(format!(
                "/c/onnxruntime-{ORT_VERSION}-aarch64/libonnxruntime.so.{ORT_VERSION}"
            ))
        );
    }
}
