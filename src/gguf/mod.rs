//! GGUF files (llama.cpp's model format): header, metadata, tensor table, and tensor data
//! dequantised to f32; [`llama`] maps a Llama-family file to an [`crate::arch::Arch`] and
//! [`crate::weights::Weights`] in Hugging Face layout.
//!
//! Source of truth: llama.cpp (`ggml-org/llama.cpp`) `ggml/include/gguf.h` (the layout comment
//! at its top, `enum gguf_type`, `GGUF_DEFAULT_ALIGNMENT 32`, `general.alignment`) and
//! `ggml/src/gguf.cpp` (`gguf_init_from_reader`: what a reader checks). A file is, little-endian:
//! 1. magic `GGUF`; version `u32` (1 is refused, as llama.cpp does; 2 and 3 are read: v3 only
//!    added big-endian files, which are refused here like any version whose low 16 bits are 0);
//! 2. tensor count `i64`, metadata count `i64`;
//! 3. each metadata pair: key (string), value type `i32`, value; an array is element type
//!    `i32`, count `u64`, elements (llama.cpp refuses arrays of arrays, and so does this reader);
//!    a string is a `u64` length and that many bytes (no terminator);
//! 4. each tensor: name (string), `n_dims` `u32` (at most `GGML_MAX_DIMS` = 4), `n_dims` sizes
//!    `i64` innermost first (`ne[0]` is the row length), ggml type `i32`, offset `u64` from the
//!    start of the data section (a multiple of the alignment);
//! 5. padding to the alignment (`general.alignment`, a `u32` power of two, default 32), then
//!    the tensor data.
//!
//! Every count and length is checked against the bytes left in the file before anything is
//! allocated from it, and every size with checked arithmetic, so a hostile file gets an error
//! naming the file, the problem and the offset, never a huge allocation. Metadata values of
//! every type (u64, i64 and f64 included) are read; an array is kept as one typed vector
//! ([`MetaArray`]), so metadata costs about its size in the file, which is capped
//! ([`MAX_METADATA_BYTES`], [`MAX_METADATA_PAIRS`]); so is the tensor count ([`MAX_TENSORS`]).
//! Only a regular file is opened ([`crate::util::open_regular`]): a FIFO would block.

pub mod llama;
mod meta;
pub mod quant;
pub mod vocab;

pub use meta::{MetaArray, MetaValue, StrArray, MAX_METADATA_BYTES, MAX_METADATA_PAIRS};

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::weights::Tensor;
use quant::GgmlType;

/// `GGUF_DEFAULT_ALIGNMENT` (gguf.h).
pub const DEFAULT_ALIGNMENT: u64 = 32;

/// `GGML_MAX_DIMS` (ggml.h): the most dimensions a tensor may have.
pub const MAX_DIMS: u32 = 4;

/// The most tensors a GGUF file may have: Llama-3.1-405B has 1,138, so 65,536 leaves a wide
/// margin while bounding the table (about 100 bytes a tensor) before it is read.
pub const MAX_TENSORS: u64 = 1 << 16;

/// One entry of the tensor table.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    /// GGUF name (`blk.0.attn_q.weight`).
    pub name: String,
    /// Sizes innermost first, as in the file (`ne[0]` is the row length).
    pub dims: Vec<u64>,
    /// ggml type id (`enum ggml_type`).
    pub type_id: u32,
    /// The type, when `lts` can dequantise it.
    pub ggml_type: Option<GgmlType>,
    /// Offset of the data from the start of the file.
    pub offset: u64,
    /// Bytes of data (known for supported types; 0 otherwise).
    pub n_bytes: u64,
}

impl TensorInfo {
    /// Number of values.
    pub fn len(&self) -> u64 {
        self.dims.iter().product()
    }

    /// True when the tensor has no value.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Shape outermost first (row-major, as `crate::weights::Tensor` and Hugging Face have it).
    pub fn shape(&self) -> Vec<usize> {
        self.dims.iter().rev().map(|&d| d as usize).collect()
    }

    /// The type's name as ggml.h spells it.
    pub fn type_name(&self) -> String {
        match quant::type_name(self.type_id) {
            Some(n) => n.to_string(),
            None => format!("type {}", self.type_id),
        }
    }
}

/// An open GGUF file: its metadata and tensor table, with the data read on demand.
#[derive(Debug)]
pub struct Gguf {
    /// The file's path, for messages.
    pub path: PathBuf,
    /// Format version (2 or 3).
    pub version: u32,
    /// Every metadata pair.
    pub metadata: BTreeMap<String, MetaValue>,
    /// The tensor table, in file order.
    pub tensors: Vec<TensorInfo>,
    /// Data alignment.
    pub alignment: u64,
    /// Offset of the data section from the start of the file.
    pub data_offset: u64,
    /// File size in bytes.
    pub file_len: u64,
    file: File,
}

/// Reads the header with a running offset and the file size, so every read is bounded.
struct Reader<'a> {
    inner: BufReader<&'a File>,
    pos: u64,
    len: u64,
    /// Where the metadata must end ([`MAX_METADATA_BYTES`] after it starts); past the
    /// metadata, the end of the file.
    metadata_end: u64,
    path: &'a Path,
}

impl<'a> Reader<'a> {
    fn left(&self) -> u64 {
        self.len - self.pos
    }

    fn err(&self, what: &str) -> anyhow::Error {
        anyhow::anyhow!(
            "{}: {what} (at byte offset {}; the file has {} bytes)",
            self.path.display(),
            self.pos,
            self.len
        )
    }

    fn bytes<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        if self.left() < N as u64 {
            return Err(self.err(&format!(
                "truncated file: {N} bytes of {what} run past its end"
            )));
        }
        let mut b = [0u8; N];
        self.inner
            .read_exact(&mut b)
            .map_err(|e| self.err(&format!("cannot read {what}: {e}")))?;
        self.pos += N as u64;
        Ok(b)
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.bytes(what)?))
    }

    fn i32(&mut self, what: &str) -> Result<i32> {
        Ok(i32::from_le_bytes(self.bytes(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.bytes(what)?))
    }

    fn i64(&mut self, what: &str) -> Result<i64> {
        Ok(i64::from_le_bytes(self.bytes(what)?))
    }

    fn string(&mut self, what: &str) -> Result<String> {
        let start = self.pos;
        let n = self.u64(&format!("the length of {what}"))?;
        if n > self.left() {
            return Err(self.err(&format!(
                "truncated file or bad length: {what} claims {n} bytes but only {} are left",
                self.left()
            )));
        }
        self.within_metadata_cap(n, what)?;
        let mut b = vec![0u8; n as usize];
        self.inner
            .read_exact(&mut b)
            .map_err(|e| self.err(&format!("cannot read {what}: {e}")))?;
        self.pos += n;
        String::from_utf8(b).map_err(|_| {
            anyhow::anyhow!(
                "{}: {what} at byte offset {start} is not valid UTF-8",
                self.path.display()
            )
        })
    }
}

impl Gguf {
    /// Opens and parses a GGUF file: header, metadata and tensor table, checking every size
    /// against the file (the tensor data is read later, tensor by tensor).
    pub fn open(path: &Path) -> Result<Gguf> {
        let file = crate::util::open_regular(path, "GGUF file")?;
        let file_len = file
            .metadata()
            .with_context(|| format!("cannot stat {}", path.display()))?
            .len();
        let mut r = Reader {
            inner: BufReader::with_capacity(1 << 16, &file),
            pos: 0,
            len: file_len,
            metadata_end: file_len,
            path,
        };
        let magic = r.bytes::<4>("the magic")?;
        if &magic != b"GGUF" {
            bail!(
                "{}: not a GGUF file: the magic is {:?}, expected \"GGUF\"",
                path.display(),
                String::from_utf8_lossy(&magic)
            );
        }
        let version = r.u32("the version")?;
        match version {
            2 | 3 => {}
            1 => bail!(
                "{}: GGUF version 1 is not supported (llama.cpp dropped it too); re-convert the model",
                path.display()
            ),
            v if v & 0xFFFF == 0 => bail!(
                "{}: GGUF version {v} (0x{v:08x}): a big-endian file? lts reads little-endian GGUF v2 and v3",
                path.display()
            ),
            v => bail!(
                "{}: unknown GGUF version {v}: lts reads versions 2 and 3",
                path.display()
            ),
        }
        let n_tensors = r.i64("the tensor count")?;
        let n_kv = r.i64("the metadata count")?;
        // A metadata pair takes at least 8 (key length) + 4 (type) + 1 bytes, a tensor entry at
        // least 8 (name length) + 4 (n_dims) + 4 (type) + 8 (offset).
        for (n, min, what) in [(n_kv, 13u64, "metadata pairs"), (n_tensors, 24, "tensors")] {
            if n < 0 || (n as u64).checked_mul(min).is_none_or(|b| b > r.left()) {
                return Err(r.err(&format!(
                    "bad header: {n} {what} cannot fit in the {} bytes left",
                    r.left()
                )));
            }
        }
        if n_kv as u64 > MAX_METADATA_PAIRS {
            return Err(r.err(&format!(
                "{n_kv} metadata pairs, more than the {MAX_METADATA_PAIRS} lts reads (real models have a few dozen): not a model file lts can use"
            )));
        }
        if n_tensors as u64 > MAX_TENSORS {
            return Err(r.err(&format!(
                "{n_tensors} tensors, more than the {MAX_TENSORS} lts reads (Llama-3.1-405B has 1,138): not a model file lts can use"
            )));
        }
        r.metadata_end = r.pos.saturating_add(MAX_METADATA_BYTES);
        let mut metadata = BTreeMap::new();
        for i in 0..n_kv {
            let key = r.string(&format!("metadata key {i}"))?;
            if key.is_empty() {
                return Err(r.err(&format!("metadata key {i} is empty")));
            }
            let ty = r.i32(&format!("the value type of `{key}`"))?;
            let v = r.value(ty, &key)?;
            if metadata.insert(key.clone(), v).is_some() {
                return Err(r.err(&format!("duplicate metadata key `{key}`")));
            }
        }
        let alignment = match metadata.get("general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some(MetaValue::U32(a)) if a.is_power_of_two() => *a as u64,
            Some(v) => bail!(
                "{}: `general.alignment` must be a u32 power of two, got {v:?}",
                path.display()
            ),
        };
        r.metadata_end = file_len;
        let mut infos = Vec::with_capacity(n_tensors as usize);
        for i in 0..n_tensors {
            infos.push(read_tensor_info(&mut r, i)?);
        }
        let header_end = r.pos;
        let data_offset = header_end.div_ceil(alignment) * alignment;
        let mut names = std::collections::BTreeSet::new();
        let mut tensors = Vec::with_capacity(infos.len());
        for (name, dims, type_id, rel) in infos {
            if !names.insert(name.clone()) {
                bail!("{}: duplicate tensor name `{name}`", path.display());
            }
            tensors.push(place_tensor(
                path,
                file_len,
                data_offset,
                alignment,
                name,
                dims,
                type_id,
                rel,
            )?);
        }
        Ok(Gguf {
            path: path.to_path_buf(),
            version,
            metadata,
            tensors,
            alignment,
            data_offset,
            file_len,
            file,
        })
    }

    /// A metadata value.
    pub fn get(&self, key: &str) -> Option<&MetaValue> {
        self.metadata.get(key)
    }

    /// A string value.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        match self.metadata.get(key)? {
            MetaValue::String(s) => Some(s),
            _ => None,
        }
    }

    /// An integer value of any integer type, when it is non-negative and fits a `u64`.
    pub fn get_u64(&self, key: &str) -> Option<u64> {
        u64::try_from(self.metadata.get(key)?.as_i128()?).ok()
    }

    /// A float value (f32 or f64).
    pub fn get_f64(&self, key: &str) -> Option<f64> {
        self.metadata.get(key)?.as_f64()
    }

    /// An array of strings (`tokenizer.ggml.tokens`, `tokenizer.ggml.merges`).
    pub fn get_str_array(&self, key: &str) -> Option<Vec<String>> {
        match self.metadata.get(key)? {
            MetaValue::Array(a) => Some(a.as_strs()?.iter().map(str::to_string).collect()),
            _ => None,
        }
    }

    /// An array of integers of any integer type that fit an `i64` (`tokenizer.ggml.token_type`).
    pub fn get_i64_array(&self, key: &str) -> Option<Vec<i64>> {
        match self.metadata.get(key)? {
            MetaValue::Array(a) => a.ints()?.map(|x| i64::try_from(x).ok()).collect(),
            _ => None,
        }
    }

    /// The tensor table entry named `name`.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// The raw bytes of a tensor (bounds were checked at open).
    pub fn tensor_bytes(&self, t: &TensorInfo) -> Result<Vec<u8>> {
        let mut f = &self.file;
        let mut b = vec![0u8; t.n_bytes as usize];
        f.seek(SeekFrom::Start(t.offset))
            .and_then(|_| f.read_exact(&mut b))
            .with_context(|| {
                format!(
                    "{}: cannot read the data of tensor `{}` ({} bytes at offset {})",
                    self.path.display(),
                    t.name,
                    t.n_bytes,
                    t.offset
                )
            })?;
        Ok(b)
    }

    /// A tensor dequantised to f32, shape outermost first.
    pub fn dequantize(&self, t: &TensorInfo) -> Result<Tensor> {
        let Some(ty) = t.ggml_type else {
            bail!(
                "{}: tensor `{}` is {}, which lts cannot dequantise (supported: {})",
                self.path.display(),
                t.name,
                t.type_name(),
                quant::SUPPORTED
                    .iter()
                    .map(|t| t.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        };
        let bytes = self.tensor_bytes(t)?;
        let data = quant::dequantize(ty, &bytes, t.len() as usize)
            .with_context(|| format!("{}: tensor `{}`", self.path.display(), t.name))?;
        Ok(Tensor {
            shape: t.shape(),
            data,
        })
    }
}

/// One tensor entry as read: name, sizes (innermost first), type id, offset in the data.
type RawInfo = (String, Vec<u64>, u32, u64);

fn read_tensor_info(r: &mut Reader, i: i64) -> Result<RawInfo> {
    let name = r.string(&format!("the name of tensor {i}"))?;
    let n_dims = r.u32(&format!("the dimension count of `{name}`"))?;
    if n_dims > MAX_DIMS {
        return Err(r.err(&format!(
            "tensor `{name}` has {n_dims} dimensions; GGUF allows at most {MAX_DIMS}"
        )));
    }
    let mut dims = Vec::with_capacity(n_dims as usize);
    for _ in 0..n_dims {
        let d = r.i64(&format!("a size of `{name}`"))?;
        if d < 0 {
            return Err(r.err(&format!("tensor `{name}` has a negative size {d}")));
        }
        dims.push(d as u64);
    }
    let ty = r.i32(&format!("the type of `{name}`"))?;
    let type_id = match u32::try_from(ty).ok().filter(|&t| quant::type_name(t).is_some()) {
        Some(t) => t,
        None => {
            return Err(r.err(&format!(
                "tensor `{name}` has unknown ggml type {ty} (not in llama.cpp's ggml.h `enum ggml_type`)"
            )))
        }
    };
    let rel = r.u64(&format!("the data offset of `{name}`"))?;
    Ok((name, dims, type_id, rel))
}

/// Checks a tensor's size, alignment and bounds and gives its absolute offset.
#[allow(clippy::too_many_arguments)]
fn place_tensor(
    path: &Path,
    file_len: u64,
    data_offset: u64,
    alignment: u64,
    name: String,
    dims: Vec<u64>,
    type_id: u32,
    rel: u64,
) -> Result<TensorInfo> {
    let p = path.display();
    let n = dims
        .iter()
        .try_fold(1u64, |a, &d| a.checked_mul(d))
        .with_context(|| {
            format!("{p}: tensor `{name}` has sizes {dims:?} whose product overflows")
        })?;
    let ggml_type = GgmlType::from_id(type_id);
    let n_bytes = match ggml_type {
        Some(ty) => ty.bytes_for(n).with_context(|| {
            format!(
                "{p}: tensor `{name}` ({}, sizes {dims:?}) is not a whole number of {}-value blocks",
                ty.name(),
                ty.block_len()
            )
        })?,
        None => 0,
    };
    if !rel.is_multiple_of(alignment) {
        bail!("{p}: tensor `{name}` has data offset {rel}, not a multiple of the alignment {alignment}");
    }
    let offset = data_offset.checked_add(rel);
    match offset.and_then(|o| o.checked_add(n_bytes)) {
        Some(end) if end <= file_len => {}
        _ => bail!(
            "{p}: tensor `{name}` data out of bounds: {n_bytes} bytes at offset {} (data section at {data_offset} + {rel}) run past the end of the file ({file_len} bytes)",
            offset.map_or("overflow".to_string(), |o| o.to_string())
        ),
    }
    Ok(TensorInfo {
        name,
        dims,
        type_id,
        ggml_type,
        offset: data_offset + rel,
        n_bytes,
    })
}

impl Reader<'_> {
    /// Refuses to go on when `need` more bytes would take the metadata past
    /// [`MAX_METADATA_BYTES`] (`metadata_end` is where that is).
    pub(super) fn within_metadata_cap(&self, need: u64, what: &str) -> Result<()> {
        if self
            .pos
            .checked_add(need)
            .is_none_or(|e| e > self.metadata_end)
        {
            return Err(self.err(&format!(
                "{what} takes {need} bytes, past the {} lts reads as GGUF metadata: not a model file lts can use",
                crate::util::format_bytes(MAX_METADATA_BYTES)
            )));
        }
        Ok(())
    }

    /// One scalar value of type `ty` (every type but an array).
    fn scalar(&mut self, ty: i32, key: &str) -> Result<MetaValue> {
        Ok(match ty {
            0 => MetaValue::U8(self.bytes::<1>(key)?[0]),
            1 => MetaValue::I8(self.bytes::<1>(key)?[0] as i8),
            2 => MetaValue::U16(u16::from_le_bytes(self.bytes(key)?)),
            3 => MetaValue::I16(i16::from_le_bytes(self.bytes(key)?)),
            4 => MetaValue::U32(self.u32(key)?),
            5 => MetaValue::I32(self.i32(key)?),
            6 => MetaValue::F32(f32::from_le_bytes(self.bytes(key)?)),
            7 => MetaValue::Bool(self.bytes::<1>(key)?[0] != 0),
            8 => MetaValue::String(self.string(&format!("the value of `{key}`"))?),
            10 => MetaValue::U64(self.u64(key)?),
            11 => MetaValue::I64(self.i64(key)?),
            12 => MetaValue::F64(f64::from_le_bytes(self.bytes(key)?)),
            t => {
                return Err(self.err(&format!(
                    "metadata `{key}` has unknown value type {t} (known: 0 to 12, gguf.h `enum gguf_type`)"
                )))
            }
        })
    }

    /// One metadata value of type `ty`; an array is read into one typed vector.
    pub(super) fn value(&mut self, ty: i32, key: &str) -> Result<MetaValue> {
        if ty != 9 {
            return self.scalar(ty, key);
        }
        let elem = self.i32(&format!("the element type of `{key}`"))?;
        let n = self.u64(&format!("the length of `{key}`"))?;
        let min = match meta::elem_bytes(elem) {
            Some(b) => b,
            None if elem == 9 => return Err(self.err(&format!(
                "metadata `{key}` is an array of arrays, which GGUF readers (llama.cpp's gguf.cpp) refuse"
            ))),
            None => return Err(self.err(&format!(
                "metadata `{key}` is an array of unknown value type {elem} (known: 0 to 12, gguf.h `enum gguf_type`)"
            ))),
        };
        let need = n.checked_mul(min);
        if need.is_none_or(|b| b > self.left()) {
            return Err(self.err(&format!(
                "truncated file or bad length: array `{key}` claims {n} elements of at least {min} bytes but only {} bytes are left",
                self.left()
            )));
        }
        self.within_metadata_cap(
            need.unwrap_or(u64::MAX),
            &format!("array `{key}` ({n} elements)"),
        )?;
        // n elements fit in the bytes left and under the cap (checked above): sized exactly.
        let n = n as usize;
        macro_rules! nums {
            ($variant:ident, $t:ty, $bytes:literal) => {{
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    v.push(<$t>::from_le_bytes(self.bytes::<$bytes>(key)?));
                }
                MetaArray::$variant(v)
            }};
        }
        Ok(MetaValue::Array(match elem {
            0 => nums!(U8, u8, 1),
            1 => nums!(I8, i8, 1),
            2 => nums!(U16, u16, 2),
            3 => nums!(I16, i16, 2),
            4 => nums!(U32, u32, 4),
            5 => nums!(I32, i32, 4),
            6 => nums!(F32, f32, 4),
            7 => {
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    v.push(self.bytes::<1>(key)?[0] != 0);
                }
                MetaArray::Bool(v)
            }
            8 => {
                let mut s = StrArray {
                    text: String::new(),
                    ends: Vec::with_capacity(n),
                };
                for i in 0..n {
                    s.push(&self.string(&format!("element {i} of `{key}`"))?);
                }
                MetaArray::String(s)
            }
            10 => nums!(U64, u64, 8),
            11 => nums!(I64, i64, 8),
            _ => nums!(F64, f64, 8),
        }))
    }
}
