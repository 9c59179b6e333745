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

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// ONNX Runtime version `lts setup` installs (the version `ort 2.0.0-rc.15` targets).
pub const ORT_VERSION: &str = "1.31.1";

/// Oldest ONNX Runtime minor version `ort` accepts.
const MIN_MINOR: u32 = 31;

/// CPU architectures `lts setup` can fetch a library for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    /// 64-bit x86 (PyPI platform `manylinux_2_28_x86_64`).
    #[value(name = "x86_64")]
    X86_64,
    /// 64-bit ARM: Raspberry Pi 4/5 with a 64-bit OS, Jetson (`manylinux_2_28_aarch64`).
    #[value(name = "aarch64")]
    Aarch64,
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

/// The cache directory `lts setup` writes to.
pub fn cache_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("LTS_CACHE_DIR").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(d));
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(d).join("lts"));
    }
    std::env::var_os("HOME")
        .filter(|d| !d.is_empty())
        .map(|h| PathBuf::from(h).join(".cache").join("lts"))
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

/// Fetches the pinned `onnxruntime` wheel for `target` with pip and extracts the library into
/// `dir` (see [`cached_library`]). Returns the library path. With `force` false, an existing
/// library is kept. Atomic: the library appears only once fully written.
pub fn setup(target: Target, dir: &Path, force: bool) -> Result<PathBuf> {
    let dest = cached_library(dir, target);
    if dest.is_file() && !force {
        return Ok(dest);
    }
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create cache directory {}", dir.display()))?;
    // Several lts processes may start at once on a fresh machine (a test suite, a fleet
    // script): one downloads, the others wait for it and reuse the result.
    let lock = std::fs::File::create(dir.join(".setup.lock"))
        .with_context(|| format!("cannot create a lock file in {}", dir.display()))?;
    // SAFETY: flock on a file descriptor we own; released when `lock` is dropped.
    unsafe {
        libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX);
    }
    if dest.is_file() && !force {
        return Ok(dest);
    }
    let work = dir.join(format!(".download-{}", std::process::id()));
    std::fs::create_dir_all(&work)
        .with_context(|| format!("cannot create cache directory {}", work.display()))?;
    let result = fetch_into(target, &work, &dest);
    let _ = std::fs::remove_dir_all(&work);
    result.map(|()| dest)
}

fn fetch_into(target: Target, work: &Path, dest: &Path) -> Result<()> {
    let platform = format!("manylinux_2_28_{}", target.as_str());
    let out = Command::new("python3")
        .args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:"])
        .args(["--platform", &platform, "--python-version", "3.11", "--implementation", "cp"])
        .arg("--disable-pip-version-check")
        .arg("-d")
        .arg(work)
        .arg(format!("onnxruntime=={ORT_VERSION}"))
        .output()
        .context("cannot run `python3 -m pip`: install Python 3 with pip (Debian: apt-get install python3-pip), or set ORT_DYLIB_PATH")?;
    if !out.status.success() {
        bail!(
            "`pip download onnxruntime=={ORT_VERSION}` for {platform} failed:\n{}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let wheel = std::fs::read_dir(work)?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "whl"))
        .context("pip reported success but left no wheel")?;
    let member = format!("onnxruntime/capi/{}", lib_file_name());
    let tmp = dest.with_file_name(format!(
        ".{}.partial-{}",
        lib_file_name(),
        std::process::id()
    ));
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let script = "import sys, zipfile, shutil\nwith zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], 'wb') as dst:\n    shutil.copyfileobj(src, dst)\n";
    let status = Command::new("python3")
        .args(["-c", script])
        .arg(&wheel)
        .arg(&member)
        .arg(&tmp)
        .status()
        .context("cannot run python3 to unpack the wheel")?;
    if !status.success() {
        let _ = std::fs::remove_file(&tmp);
        bail!("could not extract {member} from {}", wheel.display());
    }
    std::fs::rename(&tmp, dest)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
