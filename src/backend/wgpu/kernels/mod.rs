//! The WGSL kernels (`shaders/*.wgsl`) compiled for one device and one storage precision, and
//! the small helpers that bind them: uniform parameter blocks (the [`crate::backend::wgpu::params`] structs),
//! GPU buffers with byte accounting, the [`Dispatch`] list a forward pass is encoded from, and
//! the per-forward [`StepUniform`] (the KV-cache length) that lets one recorded list serve every
//! cache length.
//!
//! Every shader is assembled as `header + common.wgsl + kernel.wgsl` (+ `matmul_common.wgsl`
//! for the matrix multiplies, `reduce.wgsl` for kernels with workgroup reductions), where the
//! header selects the storage type (`alias S = f32` or `enable f16; alias S = f16`) and, for the
//! matrix multiplies, `const TRANS_B`.
//!
//! One file per op ([`matmul`], [`norm`], [`embed`], [`attention`], [`swiglu`]), the compiled
//! pipelines ([`pipelines`]) and what launches are encoded and read back with ([`dispatch`]).

pub mod attention;
pub mod dispatch;
pub mod embed;
pub mod matmul;
pub mod norm;
pub mod pipelines;
pub mod swiglu;

pub use attention::{AttnDims, MAX_HEAD_DIM};
pub use dispatch::{download, encode_pass, read_buffer, Alloc, Dispatch, StepUniform, Timestamps};
pub use matmul::{Epilogue, MatmulKernel, MatmulShape, TILE};
pub use pipelines::Kernels;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::wgpu::gpu_for_tests;
    use crate::backend::wgpu::{Gpu, Precision};

    fn lcg(n: usize, seed: u32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(2654435761).wrapping_add(1);
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(1664525).wrapping_add(1013904223);
                (s >> 8) as f32 / (1u32 << 24) as f32 - 0.5
            })
            .collect()
    }

    fn gelu(x: f64) -> f64 {
        0.5 * x * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x.powi(3))).tanh())
    }

    /// Runs one product on the GPU and returns C.
    #[allow(clippy::too_many_arguments)]
    fn run(
        gpu: &Gpu,
        k: &Kernels,
        kernel: MatmulKernel,
        s: MatmulShape,
        epi: Epilogue,
        a: &[f32],
        b: &[f32],
        bias: &[f32],
        c0: &[f32],
    ) -> Vec<f32> {
        let alloc = Alloc::new(gpu);
        let ab = alloc.init("a", &k.encode(a)).unwrap();
        let bb = alloc.init("b", &k.encode(b)).unwrap();
        let biasb = alloc.init("bias", &k.encode(bias)).unwrap();
        let cb = alloc.init("c", &k.encode(c0)).unwrap();
        let d = k.matmul(gpu, "test", kernel, s, epi, &ab, &bb, &biasb, &cb);
        gpu.queue.submit([encode_pass(gpu, &[d], None)]);
        gpu.wait().unwrap();
        let eb = k.elem_bytes() as u64;
        k.decode(&download(gpu, &cb, c0.len() as u64 * eb).unwrap())
    }

    /// Tiled and naive kernels against an f64 CPU product, both B layouts, partial tiles, a
    /// column offset into a wider C, and every epilogue.
    #[test]
    fn matmul_kernels_match_a_cpu_product() {
        let Some(gpu) = gpu_for_tests() else { return };
        let k = Kernels::new(&gpu, Precision::F32).unwrap();
        let (m, n, kk) = (70, 52, 44);
        let (ldc, c_off) = (60, 5);
        let a = lcg(m * kk, 1);
        let b = lcg(kk * n, 2);
        let bias = lcg(n, 3);
        let c0 = lcg(m * ldc, 4);
        for trans_b in [false, true] {
            for epi in [
                Epilogue::default(),
                Epilogue {
                    bias: true,
                    gelu: true,
                    residual: false,
                },
                Epilogue {
                    bias: true,
                    gelu: false,
                    residual: true,
                },
            ] {
                let mut want = c0.clone();
                for i in 0..m {
                    for j in 0..n {
                        let mut v: f64 = (0..kk)
                            .map(|t| {
                                let bv = if trans_b { b[j * kk + t] } else { b[t * n + j] };
                                a[i * kk + t] as f64 * bv as f64
                            })
                            .sum();
                        if epi.bias {
                            v += bias[j] as f64;
                        }
                        if epi.gelu {
                            v = gelu(v);
                        }
                        let idx = i * ldc + c_off + j;
                        if epi.residual {
                            v += c0[idx] as f64;
                        }
                        want[idx] = v as f32;
                    }
                }
                let s = MatmulShape {
                    m,
                    n,
                    k: kk,
                    trans_b,
                    ldc,
                    c_off,
                };
                for kernel in [MatmulKernel::Tiled, MatmulKernel::Naive] {
                    let got = run(&gpu, &k, kernel, s, epi, &a, &b, &bias, &c0);
                    for (idx, (g, w)) in got.iter().zip(&want).enumerate() {
                        assert!(
                            (g - w).abs() <= 1e-5 + 1e-5 * w.abs(),
                            "{kernel:?} trans_b {trans_b} {epi:?}: C[{idx}] = {g}, want {w}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn kernel_choice_follows_shape() {
        assert_eq!(
            MatmulKernel::choose(192, 768, 768, false),
            MatmulKernel::Tiled
        );
        assert_eq!(
            MatmulKernel::choose(1, 768, 768, false),
            MatmulKernel::Naive
        );
        // Odd N only works for the transposed layout (vec4 loads run along K).
        assert_eq!(
            MatmulKernel::choose(64, 50257, 768, true),
            MatmulKernel::Tiled
        );
        assert_eq!(
            MatmulKernel::choose(64, 50257, 768, false),
            MatmulKernel::Naive
        );
        assert_eq!(MatmulKernel::choose(64, 64, 30, true), MatmulKernel::Naive);
    }

    #[test]
    fn f16_round_trips_through_encode_and_decode() {
        let Some(gpu) = gpu_for_tests() else { return };
        if !gpu.has_f16 {
            return;
        }
        let k = Kernels::new(&gpu, Precision::F16).unwrap();
        let v = [1.0f32, -0.5, 0.1, 65504.0];
        let back = k.decode(&k.encode(&v));
        assert_eq!(back[..2], [1.0, -0.5]);
        assert!((back[2] - 0.1).abs() < 1e-4 && back[3] == 65504.0);
    }
}
