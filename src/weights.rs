//! Model weights in Hugging Face naming and layout: seeded random initialisation or import from
//! a safetensors checkpoint, with shape checks.
//!
//! Names and layouts follow `transformers`:
//! - GPT-2 (`GPT2LMHeadModel`): `transformer.wte.weight [V, D]`, `transformer.wpe.weight [P, D]`,
//!   `transformer.h.{i}.ln_1.{weight,bias}`, `…attn.c_attn.weight [D, 3D]` (Conv1D: `[in, out]`),
//!   `…attn.c_proj.weight [D, D]`, `…ln_2.*`, `…mlp.c_fc.weight [D, I]`, `…mlp.c_proj.weight [I, D]`
//!   (each with a bias), `transformer.ln_f.{weight,bias}`.
//! - Llama (`LlamaForCausalLM`): `model.embed_tokens.weight [V, D]`,
//!   `model.layers.{i}.input_layernorm.weight`, `…self_attn.{q,k,v,o}_proj.weight` (Linear:
//!   `[out, in]`), `…post_attention_layernorm.weight`, `…mlp.{gate,up,down}_proj.weight`,
//!   `model.norm.weight`, and `lm_head.weight [V, D]` when embeddings are untied.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};
use rand_xoshiro::Xoshiro256PlusPlus;

mod gpt2;
mod llama;
mod spec;

use gpt2::gpt2_specs;
use llama::llama_specs;
pub use spec::{Init, ParamSpec};

use crate::arch::parts::Naming;
use crate::arch::{Arch, Family};

/// Values per independent random stream in [`Weights::random`].
const RANDOM_CHUNK: usize = 1 << 18;

/// Seed of chunk `chunk` of tensor `tensor` under `seed` (SplitMix64 finalizer over the three:
/// distinct inputs give unrelated streams).
fn chunk_seed(seed: u64, tensor: u64, chunk: u64) -> u64 {
    let mut z = seed
        ^ tensor.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ chunk.wrapping_mul(0xD1B5_4A32_D192_ED03);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A dense row-major f32 tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    /// Dimensions, outermost first.
    pub shape: Vec<usize>,
    /// `shape.iter().product()` values, row-major.
    pub data: Vec<f32>,
}

impl Tensor {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// True when the tensor holds no element.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

/// The parameters of an arch, in canonical order, with HF names and shapes.
///
/// Random init follows GPT-2 / `transformers` (`_init_weights`): weights N(0, 0.02), biases 0,
/// norm scales 1, and residual output projections (`c_proj`, `o_proj`, `down_proj`) N(0,
/// 0.02/sqrt(2 n_layer)) as in the GPT-2 paper.
pub fn param_specs(arch: &Arch) -> Vec<ParamSpec> {
    let mut out = Vec::new();
    let mut p = |name: String, shape: Vec<usize>, init: Init, embedding: bool| {
        out.push(ParamSpec {
            name,
            shape,
            init,
            embedding,
        })
    };
    match arch.family {
        Family::Gpt2 => gpt2_specs(arch, &mut p),
        Family::Llama => llama_specs(arch, &mut p),
    }
    out
}

/// Tensors in a checkpoint that are buffers, not parameters, and are skipped on import.
fn is_known_buffer(name: &str) -> bool {
    name.ends_with(".attn.bias")
        || name.ends_with(".attn.masked_bias")
        || name.ends_with("rotary_emb.inv_freq")
}

/// All parameters of one arch, keyed by HF name, in HF layout.
#[derive(Clone, Debug)]
pub struct Weights {
    /// Parameters by HF name.
    pub tensors: BTreeMap<String, Tensor>,
    /// Where they came from (`random(seed=…)` or the checkpoint path), for reports.
    pub source: String,
}

impl Weights {
    /// Checks that these weights hold every parameter of `arch` with its Hugging Face shape
    /// (and the arch its rules), listing every problem in one error; returns the parameter
    /// specs. The one check behind ONNX emission, the reference forward pass and the wgpu
    /// upload, so later lookups by name cannot fail.
    pub fn check(&self, arch: &Arch) -> Result<Vec<ParamSpec>> {
        arch.validate()?;
        let specs = param_specs(arch);
        let mut problems = Vec::new();
        for spec in &specs {
            match self.tensors.get(&spec.name) {
                None => problems.push(format!("missing `{}`", spec.name)),
                Some(t)
                    if t.shape != spec.shape
                        || t.data.len() != spec.shape.iter().product::<usize>() =>
                {
                    problems.push(format!(
                        "`{}` has shape {:?} ({} values), expected {:?}",
                        spec.name,
                        t.shape,
                        t.data.len(),
                        spec.shape
                    ))
                }
                Some(_) => {}
            }
        }
        if !problems.is_empty() {
            bail!(
                "weights ({}) do not fit arch {}: {}",
                self.source,
                arch.id(),
                problems.join("; ")
            );
        }
        Ok(specs)
    }

    /// Seeded random weights (see [`param_specs`] for the scheme). The same arch and seed give
    /// bit-identical weights on every platform and with any number of cores (xoshiro256++ streams
    /// of 2^18 values, each seeded from the seed, the tensor and the chunk, and `rand_distr`'s
    /// ziggurat normal), generated in parallel. (Before lts 0.1.0's issue 10 one stream ran over
    /// every tensor in turn, so seeds give other values than they did then.)
    pub fn random(arch: &Arch, seed: u64) -> Weights {
        Weights::random_on(arch, seed, crate::util::default_threads())
    }

    /// [`Weights::random`] on at most `threads` threads (the values do not depend on it).
    fn random_on(arch: &Arch, seed: u64, threads: usize) -> Weights {
        let specs = param_specs(arch);
        // Every chunk of RANDOM_CHUNK values of every tensor is an independent stream, seeded
        // from (seed, tensor index, chunk index): the values do not depend on how many threads
        // fill them, and the chunks are spread over the cores.
        let mut data: Vec<Vec<f32>> = specs
            .iter()
            .map(|s| vec![0.0f32; s.shape.iter().product()])
            .collect();
        let mut jobs: Vec<(usize, usize, &mut [f32])> = Vec::new();
        for (t, d) in data.iter_mut().enumerate() {
            if let Init::Normal(_) = specs[t].init {
                for (c, chunk) in d.chunks_mut(RANDOM_CHUNK).enumerate() {
                    jobs.push((t, c, chunk));
                }
            }
        }
        let fill = |(t, c, chunk): (usize, usize, &mut [f32])| {
            let Init::Normal(std) = specs[t].init else {
                return;
            };
            let dist = Normal::new(0.0f32, std).expect("std is finite and positive");
            let mut rng = Xoshiro256PlusPlus::seed_from_u64(chunk_seed(seed, t as u64, c as u64));
            for x in chunk.iter_mut() {
                *x = dist.sample(&mut rng);
            }
        };
        // Chunks are equal-sized, so the pool's balancing spreads them evenly; small models
        // stay on this thread.
        crate::util::parallel_by_size(jobs, |(_, _, c)| c.len(), threads, fill);
        let mut tensors = BTreeMap::new();
        for (spec, mut d) in specs.into_iter().zip(data) {
            if let Init::Ones = spec.init {
                d.fill(1.0);
            }
            tensors.insert(
                spec.name,
                Tensor {
                    shape: spec.shape,
                    data: d,
                },
            );
        }
        Weights {
            tensors,
            source: format!("random(seed={seed})"),
        }
    }

    /// The single-stream generator `lts` used before issue 10: one xoshiro256++ stream over
    /// every tensor in [`param_specs`] order. Same scheme and distribution as [`Weights::random`],
    /// other values. Kept because the Hugging Face reference numbers in the tests were computed
    /// from its weights.
    pub fn random_single_stream(arch: &Arch, seed: u64) -> Weights {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let mut tensors = BTreeMap::new();
        for spec in param_specs(arch) {
            let n: usize = spec.shape.iter().product();
            let data = match spec.init {
                Init::Zeros => vec![0.0; n],
                Init::Ones => vec![1.0; n],
                Init::Normal(std) => {
                    let dist = Normal::new(0.0f32, std).expect("std is finite and positive");
                    (0..n).map(|_| dist.sample(&mut rng)).collect()
                }
            };
            tensors.insert(
                spec.name,
                Tensor {
                    shape: spec.shape,
                    data,
                },
            );
        }
        Weights {
            tensors,
            source: format!("random-single-stream(seed={seed})"),
        }
    }

    /// Looks up a parameter; panics on a missing name (a bug: weights are checked on creation).
    pub fn get(&self, name: &str) -> &Tensor {
        self.tensors
            .get(name)
            .unwrap_or_else(|| panic!("weight `{name}` missing (weights not built for this arch?)"))
    }

    /// Total number of parameter values held.
    pub fn count(&self) -> u64 {
        self.tensors.values().map(|t| t.len() as u64).sum()
    }

    /// Refuses weights holding a NaN or infinite value, naming the first such tensor (in name
    /// order), the index and the value: a model computing with them gives NaN logits, and a
    /// perplexity of NaN is no result. One pass over the values.
    pub fn check_finite(&self) -> Result<()> {
        for (name, t) in &self.tensors {
            if let Some(i) = t.data.iter().position(|x| !x.is_finite()) {
                bail!(
                    "weights ({}): tensor `{name}` holds {} at index {i} of {}: the model file is damaged or was saved from a diverged training run; use another file",
                    self.source,
                    t.data[i],
                    t.data.len()
                );
            }
        }
        Ok(())
    }

    /// Loads a safetensors checkpoint in HF naming for `arch` (a regular file of at most
    /// [`safetensors_cap`] bytes), checking that every expected
    /// tensor is present with the expected shape. F32, F16 and BF16 tensors are accepted
    /// (converted to f32). GPT-2 checkpoints without the `transformer.` prefix (as published by
    /// OpenAI/HF) are accepted; buffers (`attn.bias`, `rotary_emb.inv_freq`) and a tied
    /// `lm_head.weight` are ignored; any other extra tensor is an error (wrong arch?).
    pub fn from_safetensors(arch: &Arch, path: &Path) -> Result<Weights> {
        let cap = safetensors_cap(arch);
        let bytes = crate::util::read_regular(
            path,
            cap,
            "weights file",
            &format!(
                "the weights of this arch take at most {} ({} parameters in f32, with buffers and the header): check --arch and --weights",
                crate::util::format_bytes(cap),
                arch.params().total
            ),
        )?;
        let st = safetensors::SafeTensors::deserialize(&bytes).with_context(|| {
            format!(
                "{} is not a valid safetensors file (expected a Hugging Face `model.safetensors`)",
                path.display()
            )
        })?;
        let mut available: BTreeMap<String, String> = BTreeMap::new();
        for name in st.names() {
            let canonical =
                if arch.parts().naming == Naming::Gpt2 && !name.starts_with("transformer.") {
                    if name == "lm_head.weight" {
                        name.to_string()
                    } else {
                        format!("transformer.{name}")
                    }
                } else {
                    name.to_string()
                };
            available.insert(canonical, name.to_string());
        }
        let mut tensors = BTreeMap::new();
        let mut problems = Vec::new();
        for spec in param_specs(arch) {
            let Some(file_name) = available.remove(&spec.name) else {
                problems.push(format!(
                    "missing tensor `{}` (expected shape {:?})",
                    spec.name, spec.shape
                ));
                continue;
            };
            let view = st.tensor(&file_name)?;
            if view.shape() != spec.shape.as_slice() {
                problems.push(format!(
                    "tensor `{}` has shape {:?} but the arch needs {:?}",
                    file_name,
                    view.shape(),
                    spec.shape
                ));
                continue;
            }
            let data = to_f32(&view).with_context(|| format!("tensor `{file_name}`"))?;
            tensors.insert(
                spec.name,
                Tensor {
                    shape: spec.shape,
                    data,
                },
            );
        }
        let tied_head = arch.tie_embeddings && available.contains_key("lm_head.weight");
        let extra: Vec<&String> = available
            .keys()
            .filter(|n| !is_known_buffer(n) && (!tied_head || n.as_str() != "lm_head.weight"))
            .collect();
        if !extra.is_empty() {
            let shown: Vec<_> = extra.iter().take(5).map(|s| format!("`{s}`")).collect();
            problems.push(format!(
                "{} tensor(s) not used by this arch: {}{}",
                extra.len(),
                shown.join(", "),
                if extra.len() > 5 { ", …" } else { "" }
            ));
        }
        if !problems.is_empty() {
            let shown: Vec<_> = problems.iter().take(8).cloned().collect();
            bail!(
                "weights file {} does not fit arch {} ({} problem(s)):\n  - {}{}\nCheck that the arch file describes the checkpoint (n_layer, d_model, d_inner, heads, vocab_size, n_positions, tie_embeddings).",
                path.display(),
                arch.id(),
                problems.len(),
                shown.join("\n  - "),
                if problems.len() > 8 { "\n  - …" } else { "" }
            );
        }
        Ok(Weights {
            tensors,
            source: path.display().to_string(),
        })
    }

    /// Writes all parameters as an F32 safetensors file in HF naming (readable by
    /// `transformers`/`safetensors`). Writes to a temporary file and renames, so a crash never
    /// leaves a partial file.
    pub fn save_safetensors(&self, path: &Path) -> Result<()> {
        let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = self
            .tensors
            .iter()
            .map(|(name, t)| {
                let view = safetensors::tensor::TensorView::new(
                    safetensors::Dtype::F32,
                    t.shape.clone(),
                    bytemuck::cast_slice(&t.data),
                )
                .expect("shape matches data");
                (name.clone(), view)
            })
            .collect();
        let bytes = safetensors::serialize(views, None)?;
        crate::util::write_atomic(path, &bytes)
    }
}

fn to_f32(view: &safetensors::tensor::TensorView<'_>) -> Result<Vec<f32>> {
    let raw = view.data();
    Ok(match view.dtype() {
        safetensors::Dtype::F32 => raw
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        safetensors::Dtype::F16 => raw
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        safetensors::Dtype::BF16 => raw
            .chunks_exact(2)
            .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        other => bail!("dtype {other:?} is not supported (use F32, F16 or BF16)"),
    })
}

/// Largest safetensors file [`Weights::from_safetensors`] reads for `arch`: every parameter in
/// f32, an untied LM head, GPT-2's `attn.bias` masks (`n_positions`^2 per layer, as old
/// checkpoints store them) and the 100 MB header the safetensors format allows at most.
pub fn safetensors_cap(arch: &Arch) -> u64 {
    let d = arch.d_model as u64;
    let head = arch.vocab_size as u64 * d;
    let masks = arch.n_layer as u64 * (arch.n_positions as u64).pow(2);
    (arch.params().total + head + masks)
        .saturating_mul(4)
        .saturating_add(100_000_000 + 8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_weights_do_not_depend_on_the_thread_count() {
        // gpt2-small's token table spans many chunks, so the threads split tensors.
        let arch = Arch::preset("gpt2-tiny").unwrap();
        let one = Weights::random_on(&arch, 5, 1);
        for threads in [2, 3, 7] {
            assert_eq!(
                one.tensors,
                Weights::random_on(&arch, 5, threads).tensors,
                "{threads} threads"
            );
        }
        let mut big = Arch::preset("gpt2-tiny").unwrap();
        // A table of 9+ chunks (over 2 MiB values, so several threads really run).
        big.vocab_size = 9 * RANDOM_CHUNK / big.d_model + 7;
        let a = Weights::random_on(&big, 1, 1);
        let b = Weights::random_on(&big, 1, 4);
        assert_eq!(a.tensors, b.tensors);
        // Chunks are distinct streams: the second chunk does not repeat the first.
        let wte = &a.get("transformer.wte.weight").data;
        assert_ne!(wte[..64], wte[RANDOM_CHUNK..RANDOM_CHUNK + 64]);
        // And the distribution is still N(0, 0.02).
        let n = wte.len() as f64;
        let mean = wte.iter().map(|&x| x as f64).sum::<f64>() / n;
        let std = (wte.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n).sqrt();
        assert!(
            mean.abs() < 1e-3 && (std - 0.02).abs() < 1e-3,
            "{mean} {std}"
        );
    }

    #[test]
    fn random_weights_match_param_count_and_are_seeded() {
        for name in ["gpt2-tiny", "llama-tiny"] {
            let arch = Arch::preset(name).unwrap();
            let w = Weights::random(&arch, 7);
            assert_eq!(w.count(), arch.params().total, "{name}");
            let emb: u64 = param_specs(&arch)
                .iter()
                .filter(|s| s.embedding)
                .map(|s| s.shape.iter().product::<usize>() as u64)
                .sum();
            assert_eq!(emb, arch.params().embedding, "{name}");
            let w2 = Weights::random(&arch, 7);
            assert_eq!(w.tensors, w2.tensors);
            let w3 = Weights::random(&arch, 8);
            assert_ne!(w.tensors, w3.tensors);
        }
    }

    #[test]
    fn safetensors_round_trip_and_shape_error() {
        let dir = tempfile::tempdir().unwrap();
        let arch = Arch::preset("llama-tiny").unwrap();
        let w = Weights::random(&arch, 1);
        let path = dir.path().join("model.safetensors");
        w.save_safetensors(&path).unwrap();
        let back = Weights::from_safetensors(&arch, &path).unwrap();
        assert_eq!(back.tensors, w.tensors);

        // Same file read with a wider arch: every mismatching tensor is named.
        let mut other = arch.clone();
        other.d_inner[1] = 64;
        let e = format!(
            "{:#}",
            Weights::from_safetensors(&other, &path).unwrap_err()
        );
        assert!(
            e.contains("model.layers.1.mlp.gate_proj.weight") && e.contains("[48, 32]"),
            "{e}"
        );
        assert!(e.contains("[64, 32]"), "{e}");

        // A file larger than any weights of the arch: refused by its size, before reading.
        let big = dir.path().join("big.safetensors");
        let f = std::fs::File::create(&big).unwrap();
        f.set_len(safetensors_cap(&arch) + 1).unwrap();
        let e = format!("{:#}", Weights::from_safetensors(&arch, &big).unwrap_err());
        assert!(
            e.contains("more than") && e.contains("check --arch and --weights"),
            "{e}"
        );

        let junk = dir.path().join("junk.safetensors");
        std::fs::write(&junk, b"not a safetensors file").unwrap();
        let e = format!("{:#}", Weights::from_safetensors(&arch, &junk).unwrap_err());
        assert!(e.contains("not a valid safetensors"), "{e}");
    }
}
