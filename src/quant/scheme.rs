//! The quantization schemes `lts` emits, as one serde enum ([`Scheme`]) written into results as
//! given, and their command-line spelling (`int8-dynamic`, `int8-static:entropy`, `int4:b32`...).
//!
//! The methods follow "An Empirical Study of Low Precision Quantization for TinyML" (post-training
//! quantization compared apples to apples) and ONNX Runtime's own quantization tool
//! (`onnxruntime/python/tools/quantization`: `quantize_dynamic`, `quantize_static`,
//! `MatMulNBitsQuantizer`), whose graphs ours are compared with in `scripts/compare_ort_quant.py`.

use std::fmt;

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

/// How activation ranges are chosen from calibration histograms (`int8-static`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
#[serde(rename_all = "lowercase")]
pub enum Calibration {
    /// The observed minimum and maximum.
    Minmax,
    /// The range holding `percentile` % of the observed values (outliers clipped).
    Percentile,
    /// The clipping range that minimises the expected quantisation MSE.
    Mse,
    /// The clipping threshold minimising the KL divergence between the original and the
    /// quantised distribution (TensorRT's entropy calibration).
    Entropy,
}

impl Calibration {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Calibration::Minmax => "minmax",
            Calibration::Percentile => "percentile",
            Calibration::Mse => "mse",
            Calibration::Entropy => "entropy",
        }
    }
}

/// The default `--percentile` of percentile calibration.
pub const DEFAULT_PERCENTILE: f64 = 99.99;

/// Block sizes `int4` accepts (MatMulNBits: a power of two, at least 16).
pub const INT4_BLOCKS: [usize; 5] = [16, 32, 64, 128, 256];

/// A quantization scheme and its options.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "scheme", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Scheme {
    /// The unquantized model (the baseline others are compared with).
    Fp32,
    /// fp16 weights, cast to fp32 before each use (fp32 compute).
    Fp16,
    /// int8 weights (symmetric), activations quantized at run time to uint8
    /// (`DynamicQuantizeLinear` + `MatMulInteger`, as `quantize_dynamic` emits).
    Int8Dynamic {
        /// One scale per output channel (default) instead of one per tensor.
        per_channel: bool,
        /// Also quantize the LM head.
        head: bool,
        /// Weights left in fp32: every weight multiply whose initializer name contains one of
        /// these (`:keep=down_proj`), like ONNX Runtime's `nodes_to_exclude` (mixed precision).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        keep: Vec<String>,
    },
    /// QDQ: int8 weights and activations quantized with ranges from a calibration pass.
    Int8Static {
        /// How activation ranges are chosen.
        calibration: Calibration,
        /// The percentile of [`Calibration::Percentile`].
        percentile: f64,
        /// Symmetric int8 activations instead of asymmetric uint8 (the default).
        symmetric: bool,
        /// One weight scale per output channel (default) instead of one per tensor.
        per_channel: bool,
        /// Also quantize the LM head.
        head: bool,
        /// Weights left in fp32: every weight multiply whose initializer name contains one of
        /// these (`:keep=down_proj`), like ONNX Runtime's `nodes_to_exclude` (mixed precision).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        keep: Vec<String>,
    },
    /// 4-bit weights in blocks along K (`com.microsoft.MatMulNBits`), fp32 activations.
    Int4 {
        /// Weights per block (a scale, and a zero point when `zero_point`, per block).
        block_size: usize,
        /// Asymmetric blocks with a zero point each (default: symmetric, zero point 8).
        zero_point: bool,
        /// Also quantize the LM head (the tied embedding stays fp32 for the lookup).
        head: bool,
        /// Weights left in fp32: every weight multiply whose initializer name contains one of
        /// these (`:keep=down_proj`), like ONNX Runtime's `nodes_to_exclude` (mixed precision).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        keep: Vec<String>,
    },
}

const SYNTAX: &str = "schemes: fp32, fp16, int8-dynamic[:per-channel|per-tensor][:head], \
int8-static[:minmax|percentile|mse|entropy][:p=99.99][:asym|sym][:per-channel|per-tensor][:head], \
int4[:b16|b32|b64|b128|b256][:sym|zp][:head]; the first of each choice is the default; any int \
scheme also takes :keep=NAME[+NAME...] (weights whose name contains NAME stay fp32)";

/// The group of options `o` belongs to for scheme `name`, where the options of one group
/// exclude each other (`int8-static:mse:entropy` names two calibration methods), and the
/// group's valid spellings.
fn option_group(name: &str, o: &str) -> Option<(&'static str, &'static str)> {
    const CALIBRATION: (&str, &str) = (
        "calibration method",
        "minmax, percentile, percentile:p=N, p=N, mse or entropy",
    );
    Some(match (name, o) {
        ("int8-static", "minmax" | "percentile" | "mse" | "entropy") => CALIBRATION,
        ("int8-static", o) if o.starts_with("p=") => CALIBRATION,
        ("int8-static", "sym" | "asym") => (
            "activation symmetry",
            "asym (uint8, the default) or sym (int8)",
        ),
        ("int8-dynamic" | "int8-static", "per-channel" | "per-tensor") => (
            "weight scale granularity",
            "per-channel (the default) or per-tensor",
        ),
        ("int4", "sym" | "zp") => (
            "int4 zero point",
            "sym (no zero point, the default) or zp (a zero point per block)",
        ),
        ("int4", o) if o.starts_with('b') && o[1..].parse::<usize>().is_ok() => {
            ("int4 block size", "one of b16, b32, b64, b128, b256")
        }
        _ => return None,
    })
}

/// Refuses two options of one group ([`option_group`]) in `opts`, naming both and the valid
/// spellings; `percentile` with `p=N` is one choice, not two.
fn check_exclusive(s: &str, name: &str, opts: &[&str]) -> Result<()> {
    let mut seen: Vec<(&str, &str)> = Vec::new();
    for &o in opts {
        let Some((group, valid)) = option_group(name, o) else {
            continue;
        };
        if let Some(&(_, prev)) = seen.iter().find(|(g, _)| *g == group) {
            let pct = |x: &str| x == "percentile" || x.starts_with("p=");
            if !(pct(prev) && pct(o)) {
                bail!(
                    "scheme `{s}`: `{prev}` and `{o}` both set the {group}: give only one ({valid}); {SYNTAX}"
                );
            }
        }
        seen.push((group, o));
    }
    Ok(())
}

impl Scheme {
    /// Parses one scheme as written on the command line (`int8-static:entropy:sym`), with
    /// `percentile` the `--percentile` value used when the spelling gives none. Errors list what
    /// is accepted.
    pub fn parse(s: &str, percentile: f64) -> Result<Scheme> {
        let mut parts = s.trim().split(':');
        let name = parts.next().unwrap_or_default();
        let opts: Vec<&str> = parts.collect();
        let mut seen = std::collections::BTreeSet::new();
        for o in &opts {
            let key = o.split('=').next().unwrap_or(o);
            if !seen.insert(key) {
                bail!("scheme `{s}` gives `{key}` twice ({SYNTAX})");
            }
        }
        let mut keep: Vec<String> = Vec::new();
        let mut opts = opts;
        if let Some(i) = opts.iter().position(|o| o.starts_with("keep=")) {
            if name == "fp32" || name == "fp16" {
                bail!("scheme `{s}`: {name} quantizes no weight multiply, so there is nothing to keep");
            }
            keep = opts[i][5..].split('+').map(str::to_string).collect();
            if keep
                .iter()
                .any(|k| k.is_empty() || k.contains(char::is_whitespace))
            {
                bail!(
                    "scheme `{s}`: `keep=` needs weight-name parts joined by `+`, such as keep=down_proj or keep=layers.11.mlp+layers.12.mlp"
                );
            }
            opts.remove(i);
        }
        check_exclusive(s, name, &opts)?;
        let bad = |o: &str| -> anyhow::Error {
            anyhow::anyhow!("scheme `{s}`: unknown option `{o}` for {name} ({SYNTAX})")
        };
        let scheme = match name {
            "fp32" | "fp16" => {
                if let Some(o) = opts.first() {
                    return Err(bad(o));
                }
                if name == "fp32" {
                    Scheme::Fp32
                } else {
                    Scheme::Fp16
                }
            }
            "int8-dynamic" => {
                let (mut per_channel, mut head) = (true, false);
                for o in &opts {
                    match *o {
                        "per-tensor" => per_channel = false,
                        "per-channel" => per_channel = true,
                        "head" => head = true,
                        _ => return Err(bad(o)),
                    }
                }
                Scheme::Int8Dynamic {
                    per_channel,
                    head,
                    keep,
                }
            }
            "int8-static" => {
                let mut calibration = Calibration::Minmax;
                let (mut symmetric, mut per_channel, mut head) = (false, true, false);
                let mut pct = percentile;
                for o in &opts {
                    match *o {
                        "minmax" => calibration = Calibration::Minmax,
                        "percentile" => calibration = Calibration::Percentile,
                        "mse" => calibration = Calibration::Mse,
                        "entropy" => calibration = Calibration::Entropy,
                        "sym" => symmetric = true,
                        "asym" => symmetric = false,
                        "per-tensor" => per_channel = false,
                        "per-channel" => per_channel = true,
                        "head" => head = true,
                        o if o.starts_with("p=") => {
                            pct = o[2..].parse().map_err(|_| {
                                anyhow::anyhow!(
                                    "scheme `{s}`: `{o}` is not a percentile such as p=99.99"
                                )
                            })?;
                            calibration = Calibration::Percentile;
                        }
                        _ => return Err(bad(o)),
                    }
                }
                check_percentile(pct)?;
                Scheme::Int8Static {
                    calibration,
                    percentile: pct,
                    symmetric,
                    per_channel,
                    head,
                    keep,
                }
            }
            "int4" => {
                let (mut block_size, mut zero_point, mut head) = (32, false, false);
                for o in &opts {
                    match *o {
                        "zp" => zero_point = true,
                        "sym" => zero_point = false,
                        "head" => head = true,
                        o if o.starts_with('b') && o[1..].parse::<usize>().is_ok() => {
                            block_size = o[1..].parse().expect("checked");
                            if !INT4_BLOCKS.contains(&block_size) {
                                bail!(
                                    "scheme `{s}`: block size {block_size} is not one of {INT4_BLOCKS:?} (MatMulNBits needs a power of two >= 16)"
                                );
                            }
                        }
                        _ => return Err(bad(o)),
                    }
                }
                Scheme::Int4 {
                    block_size,
                    zero_point,
                    head,
                    keep,
                }
            }
            "" => bail!("empty scheme ({SYNTAX})"),
            other => bail!("unknown scheme `{other}` ({SYNTAX})"),
        };
        Ok(scheme)
    }

    /// Parses a comma-separated list (`--scheme fp32,int8-dynamic,int4:b32`); duplicates are
    /// an error.
    pub fn parse_list(s: &str, percentile: f64) -> Result<Vec<Scheme>> {
        let mut out: Vec<Scheme> = Vec::new();
        for part in s.split(',') {
            let scheme = Scheme::parse(part, percentile)?;
            if out.contains(&scheme) {
                bail!("scheme `{scheme}` is listed twice");
            }
            out.push(scheme);
        }
        Ok(out)
    }

    /// Whether the scheme needs a calibration pass (activation ranges).
    pub fn needs_calibration(&self) -> bool {
        matches!(self, Scheme::Int8Static { .. })
    }

    /// Name parts of the weights the scheme leaves in fp32 (`:keep=`).
    pub fn kept(&self) -> &[String] {
        match self {
            Scheme::Int8Dynamic { keep, .. }
            | Scheme::Int8Static { keep, .. }
            | Scheme::Int4 { keep, .. } => keep,
            Scheme::Fp32 | Scheme::Fp16 => &[],
        }
    }

    /// Whether this is the unquantized baseline.
    pub fn is_fp32(&self) -> bool {
        *self == Scheme::Fp32
    }
}

/// Checks a percentile of percentile calibration: in (0, 100].
pub fn check_percentile(p: f64) -> Result<()> {
    if !(p > 0.0 && p <= 100.0) {
        bail!("--percentile {p} must be in (0, 100], e.g. 99.99");
    }
    Ok(())
}

/// `:keep=a+b`, or nothing when `keep` is empty.
fn write_keep(f: &mut fmt::Formatter<'_>, keep: &[String]) -> fmt::Result {
    if keep.is_empty() {
        return Ok(());
    }
    write!(f, ":keep={}", keep.join("+"))
}

impl fmt::Display for Scheme {
    /// The canonical spelling: the name and the options that differ from the defaults, in the
    /// order [`Scheme::parse`] documents (`int8-static:entropy:sym`, `int4:b64:zp`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scheme::Fp32 => write!(f, "fp32"),
            Scheme::Fp16 => write!(f, "fp16"),
            Scheme::Int8Dynamic {
                per_channel,
                head,
                keep,
            } => {
                write!(f, "int8-dynamic")?;
                if !per_channel {
                    write!(f, ":per-tensor")?;
                }
                if *head {
                    write!(f, ":head")?;
                }
                write_keep(f, keep)
            }
            Scheme::Int8Static {
                calibration,
                percentile,
                symmetric,
                per_channel,
                head,
                keep,
            } => {
                write!(f, "int8-static:{}", calibration.as_str())?;
                if *calibration == Calibration::Percentile && *percentile != DEFAULT_PERCENTILE {
                    write!(f, ":p={percentile}")?;
                }
                if *symmetric {
                    write!(f, ":sym")?;
                }
                if !per_channel {
                    write!(f, ":per-tensor")?;
                }
                if *head {
                    write!(f, ":head")?;
                }
                write_keep(f, keep)
            }
            Scheme::Int4 {
                block_size,
                zero_point,
                head,
                keep,
            } => {
                write!(f, "int4:b{block_size}")?;
                if *zero_point {
                    write!(f, ":zp")?;
                }
                if *head {
                    write!(f, ":head")?;
                }
                write_keep(f, keep)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_parse_and_print_back() {
        for s in [
            "fp32",
            "fp16",
            "int8-dynamic",
            "int8-dynamic:per-tensor:head",
            "int8-static:minmax",
            "int8-static:percentile",
            "int8-static:percentile:p=99.9",
            "int8-static:mse:sym",
            "int8-static:entropy:per-tensor:head",
            "int4:b32",
            "int4:b128:zp:head",
            "int8-dynamic:keep=down_proj",
            "int8-static:entropy:head:keep=layers.11.mlp+c_proj",
            "int4:b64:keep=down_proj",
        ] {
            let scheme = Scheme::parse(s, DEFAULT_PERCENTILE).unwrap();
            assert_eq!(scheme.to_string(), s);
            assert_eq!(
                Scheme::parse(&scheme.to_string(), DEFAULT_PERCENTILE).unwrap(),
                scheme
            );
            // Serde form round-trips too (what results hold).
            let json = serde_json::to_string(&scheme).unwrap();
            assert_eq!(serde_json::from_str::<Scheme>(&json).unwrap(), scheme);
        }
        // Defaults.
        assert_eq!(
            Scheme::parse("int8-static", 99.0).unwrap(),
            Scheme::Int8Static {
                calibration: Calibration::Minmax,
                percentile: 99.0,
                symmetric: false,
                per_channel: true,
                head: false,
                keep: Vec::new(),
            }
        );
        assert_eq!(Scheme::parse("int4", 99.0).unwrap().to_string(), "int4:b32");
        assert_eq!(
            Scheme::parse_list("fp32,int8-dynamic,int4:b64", 99.99)
                .unwrap()
                .len(),
            3
        );
    }

    #[test]
    fn bad_spellings_name_the_problem() {
        let e = |s: &str| {
            Scheme::parse_list(s, DEFAULT_PERCENTILE)
                .unwrap_err()
                .to_string()
        };
        assert!(e("int3").contains("unknown scheme `int3`"));
        assert!(e("int4:b48").contains("block size 48"));
        assert!(e("int4:b0").contains("block size 0"));
        assert!(e("int8-dynamic:entropy").contains("unknown option `entropy`"));
        assert!(e("fp16:head").contains("unknown option"));
        assert!(e("int8-static:p=0").contains("(0, 100]"));
        assert!(e("int8-static:p=100.5").contains("(0, 100]"));
        assert!(e("int8-static:p=x").contains("not a percentile"));
        assert!(e("int4:zp:zp").contains("twice"));
        assert!(e("int4,int4:b32").contains("listed twice"));
        assert!(e("").contains("empty scheme"));
        assert!(e("fp16:keep=x").contains("nothing to keep"));
        assert!(e("int4:keep=").contains("joined by `+`"));
        assert!(e("int4:keep=a++b").contains("joined by `+`"));
        assert!(e("int4:keep=a:keep=b").contains("twice"));
        assert!(Scheme::parse("int8-static:percentile", 0.0).is_err());
    }

    #[test]
    fn contradictory_options_are_refused_naming_both() {
        let e = |s: &str| {
            Scheme::parse(s, DEFAULT_PERCENTILE)
                .unwrap_err()
                .to_string()
        };
        for (s, a, b, valid) in [
            (
                "int8-static:mse:entropy",
                "mse",
                "entropy",
                "minmax, percentile",
            ),
            (
                "int8-static:entropy:p=99.9",
                "entropy",
                "p=99.9",
                "mse or entropy",
            ),
            ("int8-static:sym:asym", "sym", "asym", "asym (uint8"),
            (
                "int8-static:per-tensor:per-channel",
                "per-tensor",
                "per-channel",
                "per-channel (the default)",
            ),
            (
                "int8-dynamic:per-tensor:per-channel",
                "per-tensor",
                "per-channel",
                "or per-tensor",
            ),
            (
                "int8-dynamic:per-channel:head:per-tensor",
                "per-channel",
                "per-tensor",
                "or per-tensor",
            ),
            ("int4:b32:zp:sym", "zp", "sym", "sym (no zero point"),
            ("int4:b32:b64", "b32", "b64", "b16, b32"),
        ] {
            let msg = e(s);
            assert!(
                msg.contains(&format!("`{a}` and `{b}` both set the")) && msg.contains(valid),
                "{s}: {msg}"
            );
        }
        // One choice spelled two ways, and each group once, are fine.
        let p = Scheme::parse("int8-static:percentile:p=99.9", DEFAULT_PERCENTILE).unwrap();
        assert_eq!(p.to_string(), "int8-static:percentile:p=99.9");
        let p = Scheme::parse("int8-static:p=99.9:percentile", DEFAULT_PERCENTILE).unwrap();
        assert_eq!(p.to_string(), "int8-static:percentile:p=99.9");
        for s in ["int8-static:mse:sym:per-tensor:head", "int4:zp:b64:head"] {
            assert!(Scheme::parse(s, DEFAULT_PERCENTILE).is_ok(), "{s}");
        }
    }

    #[test]
    fn every_documented_option_parses_and_its_display_round_trips() {
        // The explicit defaults (`:sym` of int4, `:asym`, `:per-channel`) are documented and
        // print as nothing; `:zp` is kept.
        for (s, shown) in [
            ("int4:sym", "int4:b32"),
            ("int4:b32:zp", "int4:b32:zp"),
            ("int4:zp:b32", "int4:b32:zp"),
            ("int8-static:asym", "int8-static:minmax"),
            ("int8-static:per-channel:entropy", "int8-static:entropy"),
            ("int8-dynamic:per-channel", "int8-dynamic"),
        ] {
            let scheme = Scheme::parse(s, DEFAULT_PERCENTILE).unwrap();
            assert_eq!(scheme.to_string(), shown, "{s}");
            assert_eq!(
                Scheme::parse(shown, DEFAULT_PERCENTILE).unwrap(),
                scheme,
                "{s}"
            );
        }
        for o in ["per-channel|per-tensor", "asym|sym", "sym|zp"] {
            assert!(SYNTAX.contains(o), "{o} is accepted but not documented");
        }
        // Every combination of one choice per group round-trips through its display.
        for cal in ["", ":minmax", ":percentile", ":p=99.5", ":mse", ":entropy"] {
            for sym in ["", ":sym", ":asym"] {
                for gran in ["", ":per-tensor", ":per-channel"] {
                    for head in ["", ":head"] {
                        let s = format!("int8-static{cal}{sym}{gran}{head}");
                        let scheme = Scheme::parse(&s, DEFAULT_PERCENTILE).unwrap();
                        let back = Scheme::parse(&scheme.to_string(), DEFAULT_PERCENTILE);
                        assert_eq!(back.unwrap(), scheme, "{s}");
                    }
                }
            }
        }
        for b in INT4_BLOCKS {
            for zp in ["", ":sym", ":zp"] {
                let s = format!("int4:b{b}{zp}");
                let scheme = Scheme::parse(&s, DEFAULT_PERCENTILE).unwrap();
                assert_eq!(scheme.to_string().contains(":zp"), zp == ":zp", "{s}");
                let back = Scheme::parse(&scheme.to_string(), DEFAULT_PERCENTILE);
                assert_eq!(back.unwrap(), scheme, "{s}");
            }
        }
    }
}
