//! GGUF metadata values (gguf.h `enum gguf_type`) and how the header reader reads them.
//!
//! An array is kept as one typed vector ([`MetaArray`]), never as one [`MetaValue`] per
//! element: a u8 array costs one byte per element in memory as in the file, and a string array
//! its text plus one offset per string ([`StrArray`]), so memory stays within the metadata's
//! size in the file, which [`MAX_METADATA_BYTES`] caps.

/// The most bytes the metadata section of a GGUF file may take (keys, types and values as
/// stored in the file). The largest real tokenizers take well under a quarter of it: SmolLM2's
/// 49,152 tokens and 48,900 merges about 1.5 MB, Llama 3's 128,256 tokens and 280,147 merges
/// about 7 MB, Gemma 3's 262,144 tokens with scores and types about 8 MB.
pub const MAX_METADATA_BYTES: u64 = 64 << 20;

/// The most metadata pairs a GGUF file may have (real files have a few dozen; each pair costs
/// a map entry of about a hundred bytes, whatever its size in the file).
pub const MAX_METADATA_PAIRS: u64 = 1 << 16;

/// One metadata value: every `enum gguf_type` of gguf.h.
#[derive(Clone, Debug, PartialEq)]
pub enum MetaValue {
    /// `GGUF_TYPE_UINT8` (0).
    U8(u8),
    /// `GGUF_TYPE_INT8` (1).
    I8(i8),
    /// `GGUF_TYPE_UINT16` (2).
    U16(u16),
    /// `GGUF_TYPE_INT16` (3).
    I16(i16),
    /// `GGUF_TYPE_UINT32` (4).
    U32(u32),
    /// `GGUF_TYPE_INT32` (5).
    I32(i32),
    /// `GGUF_TYPE_FLOAT32` (6).
    F32(f32),
    /// `GGUF_TYPE_BOOL` (7), stored as one byte.
    Bool(bool),
    /// `GGUF_TYPE_STRING` (8), UTF-8.
    String(String),
    /// `GGUF_TYPE_ARRAY` (9) of one element type (never itself an array).
    Array(MetaArray),
    /// `GGUF_TYPE_UINT64` (10).
    U64(u64),
    /// `GGUF_TYPE_INT64` (11).
    I64(i64),
    /// `GGUF_TYPE_FLOAT64` (12).
    F64(f64),
}

/// A metadata array: one vector of its element type.
#[derive(Clone, Debug, PartialEq)]
pub enum MetaArray {
    /// Of `GGUF_TYPE_UINT8`.
    U8(Vec<u8>),
    /// Of `GGUF_TYPE_INT8`.
    I8(Vec<i8>),
    /// Of `GGUF_TYPE_UINT16`.
    U16(Vec<u16>),
    /// Of `GGUF_TYPE_INT16`.
    I16(Vec<i16>),
    /// Of `GGUF_TYPE_UINT32`.
    U32(Vec<u32>),
    /// Of `GGUF_TYPE_INT32`.
    I32(Vec<i32>),
    /// Of `GGUF_TYPE_FLOAT32`.
    F32(Vec<f32>),
    /// Of `GGUF_TYPE_BOOL`.
    Bool(Vec<bool>),
    /// Of `GGUF_TYPE_STRING`.
    String(StrArray),
    /// Of `GGUF_TYPE_UINT64`.
    U64(Vec<u64>),
    /// Of `GGUF_TYPE_INT64`.
    I64(Vec<i64>),
    /// Of `GGUF_TYPE_FLOAT64`.
    F64(Vec<f64>),
}

/// Strings stored as one text and the end offset of each string in it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StrArray {
    /// Every string, one after the other.
    pub(super) text: String,
    /// Where each string ends in `text`.
    pub(super) ends: Vec<usize>,
}

impl StrArray {
    /// Number of strings.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// True when there is no string.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// String `i`.
    pub fn get(&self, i: usize) -> Option<&str> {
        let end = *self.ends.get(i)?;
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        Some(&self.text[start..end])
    }

    /// The strings in order.
    pub fn iter(&self) -> impl Iterator<Item = &str> + '_ {
        (0..self.len()).map(|i| self.get(i).expect("index in range"))
    }

    /// Appends a string.
    pub fn push(&mut self, s: &str) {
        self.text.push_str(s);
        self.ends.push(self.text.len());
    }
}

impl<S: AsRef<str>> FromIterator<S> for StrArray {
    fn from_iter<I: IntoIterator<Item = S>>(iter: I) -> StrArray {
        let mut a = StrArray::default();
        iter.into_iter().for_each(|s| a.push(s.as_ref()));
        a
    }
}

/// Calls `$body` with `$v` bound to the vector of any numeric or bool array variant, and
/// evaluates `$strings` for a string array.
macro_rules! each_vec {
    ($a:expr, $v:ident => $body:expr, $s:ident => $strings:expr) => {
        match $a {
            MetaArray::U8($v) => $body,
            MetaArray::I8($v) => $body,
            MetaArray::U16($v) => $body,
            MetaArray::I16($v) => $body,
            MetaArray::U32($v) => $body,
            MetaArray::I32($v) => $body,
            MetaArray::F32($v) => $body,
            MetaArray::Bool($v) => $body,
            MetaArray::U64($v) => $body,
            MetaArray::I64($v) => $body,
            MetaArray::F64($v) => $body,
            MetaArray::String($s) => $strings,
        }
    };
}

impl MetaArray {
    /// Number of elements.
    pub fn len(&self) -> usize {
        each_vec!(self, v => v.len(), s => s.len())
    }

    /// True when the array has no element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// gguf.h's type id of the elements (`enum gguf_type`).
    pub fn elem_type_id(&self) -> i32 {
        match self {
            MetaArray::U8(_) => 0,
            MetaArray::I8(_) => 1,
            MetaArray::U16(_) => 2,
            MetaArray::I16(_) => 3,
            MetaArray::U32(_) => 4,
            MetaArray::I32(_) => 5,
            MetaArray::F32(_) => 6,
            MetaArray::Bool(_) => 7,
            MetaArray::String(_) => 8,
            MetaArray::U64(_) => 10,
            MetaArray::I64(_) => 11,
            MetaArray::F64(_) => 12,
        }
    }

    /// Element `i` as a value.
    pub fn get(&self, i: usize) -> Option<MetaValue> {
        Some(match self {
            MetaArray::U8(v) => MetaValue::U8(*v.get(i)?),
            MetaArray::I8(v) => MetaValue::I8(*v.get(i)?),
            MetaArray::U16(v) => MetaValue::U16(*v.get(i)?),
            MetaArray::I16(v) => MetaValue::I16(*v.get(i)?),
            MetaArray::U32(v) => MetaValue::U32(*v.get(i)?),
            MetaArray::I32(v) => MetaValue::I32(*v.get(i)?),
            MetaArray::F32(v) => MetaValue::F32(*v.get(i)?),
            MetaArray::Bool(v) => MetaValue::Bool(*v.get(i)?),
            MetaArray::String(v) => MetaValue::String(v.get(i)?.to_string()),
            MetaArray::U64(v) => MetaValue::U64(*v.get(i)?),
            MetaArray::I64(v) => MetaValue::I64(*v.get(i)?),
            MetaArray::F64(v) => MetaValue::F64(*v.get(i)?),
        })
    }

    /// The elements as values, in order (one at a time: nothing is held but the current one).
    pub fn iter(&self) -> impl Iterator<Item = MetaValue> + '_ {
        (0..self.len()).map(|i| self.get(i).expect("index in range"))
    }

    /// The elements as integers, one at a time, for an array of any integer type (not bool).
    pub fn ints(&self) -> Option<Box<dyn Iterator<Item = i128> + '_>> {
        fn each<T: Copy + Into<i128>>(v: &[T]) -> Option<Box<dyn Iterator<Item = i128> + '_>> {
            Some(Box::new(v.iter().map(|&x| x.into())))
        }
        match self {
            MetaArray::U8(v) => each(v),
            MetaArray::I8(v) => each(v),
            MetaArray::U16(v) => each(v),
            MetaArray::I16(v) => each(v),
            MetaArray::U32(v) => each(v),
            MetaArray::I32(v) => each(v),
            MetaArray::U64(v) => each(v),
            MetaArray::I64(v) => each(v),
            _ => None,
        }
    }

    /// The strings, for a string array.
    pub fn as_strs(&self) -> Option<&StrArray> {
        match self {
            MetaArray::String(s) => Some(s),
            _ => None,
        }
    }
}

impl MetaValue {
    /// The value as an integer, for any integer type (not bool).
    pub fn as_i128(&self) -> Option<i128> {
        Some(match *self {
            MetaValue::U8(v) => v.into(),
            MetaValue::I8(v) => v.into(),
            MetaValue::U16(v) => v.into(),
            MetaValue::I16(v) => v.into(),
            MetaValue::U32(v) => v.into(),
            MetaValue::I32(v) => v.into(),
            MetaValue::U64(v) => v.into(),
            MetaValue::I64(v) => v.into(),
            _ => return None,
        })
    }

    /// The value as a float, for either float type.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            MetaValue::F32(v) => Some(v.into()),
            MetaValue::F64(v) => Some(v),
            _ => None,
        }
    }

    /// gguf.h's type id of the value (`enum gguf_type`).
    pub fn type_id(&self) -> i32 {
        match self {
            MetaValue::U8(_) => 0,
            MetaValue::I8(_) => 1,
            MetaValue::U16(_) => 2,
            MetaValue::I16(_) => 3,
            MetaValue::U32(_) => 4,
            MetaValue::I32(_) => 5,
            MetaValue::F32(_) => 6,
            MetaValue::Bool(_) => 7,
            MetaValue::String(_) => 8,
            MetaValue::Array(_) => 9,
            MetaValue::U64(_) => 10,
            MetaValue::I64(_) => 11,
            MetaValue::F64(_) => 12,
        }
    }

    /// gguf.cpp's name of the value's type (`u8`, `i32`, `str`, `arr`...).
    pub fn type_name(&self) -> &'static str {
        match self {
            MetaValue::U8(_) => "u8",
            MetaValue::I8(_) => "i8",
            MetaValue::U16(_) => "u16",
            MetaValue::I16(_) => "i16",
            MetaValue::U32(_) => "u32",
            MetaValue::I32(_) => "i32",
            MetaValue::F32(_) => "f32",
            MetaValue::Bool(_) => "bool",
            MetaValue::String(_) => "str",
            MetaValue::Array(_) => "arr",
            MetaValue::U64(_) => "u64",
            MetaValue::I64(_) => "i64",
            MetaValue::F64(_) => "f64",
        }
    }
}

/// Bytes of one element of type `ty` in the file (a string's: its length field), or `None`
/// for an array or an unknown type.
pub(super) fn elem_bytes(ty: i32) -> Option<u64> {
    Some(match ty {
        0 | 1 | 7 => 1,
        2 | 3 => 2,
        4..=6 => 4,
        8 | 10..=12 => 8,
        _ => return None,
    })
}
