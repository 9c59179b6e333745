//! The matrix multiply kernels (`matmul_tiled.wgsl`, `matmul_naive.wgsl`): epilogues, which
//! kernel fits a shape, and the launch.

use super::dispatch::Dispatch;
use super::pipelines::{groups, Kernels};
use crate::backend::wgpu::params::MatmulParams;
use crate::backend::wgpu::Gpu;

/// Output tile edge of the tiled matmul (`matmul_tiled.wgsl`): one workgroup per 64x64 tile.
pub const TILE: u32 = 64;

/// Epilogue of a matrix multiply (bit flags shared with `common.wgsl`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Epilogue {
    /// Add `bias[n]`.
    pub bias: bool,
    /// Apply GPT-2's `gelu_new` after the bias.
    pub gelu: bool,
    /// Accumulate into C (the residual stream) instead of overwriting it.
    pub residual: bool,
}

impl Epilogue {
    fn flags(self) -> u32 {
        (self.bias as u32) | (self.gelu as u32) << 1 | (self.residual as u32) << 2
    }
}

/// Which matrix-multiply kernel runs a product.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatmulKernel {
    /// 64x64 tiles in workgroup memory, vec4 loads (`matmul_tiled.wgsl`).
    Tiled,
    /// One invocation per output, scalar loads (`matmul_naive.wgsl`).
    Naive,
}

impl MatmulKernel {
    /// The kernel the forward pass uses for an `[m, k] x [k, n]` product: tiled unless the
    /// product is skinny (m < 16, decode) or the vec4 loads do not divide the shape.
    pub fn choose(m: usize, n: usize, k: usize, trans_b: bool) -> MatmulKernel {
        if Self::tiled_fits(n, k, trans_b) && m >= 16 {
            MatmulKernel::Tiled
        } else {
            MatmulKernel::Naive
        }
    }

    /// Whether the tiled kernel's vec4 loads can take this shape.
    pub fn tiled_fits(n: usize, k: usize, trans_b: bool) -> bool {
        k.is_multiple_of(4) && (trans_b || n.is_multiple_of(4))
    }
}

/// Parameters of one matrix multiply `C[m, c_off + n] (+)= epi(A[m, k] B)`.
#[derive(Clone, Copy, Debug)]
pub struct MatmulShape {
    /// Rows of A and C.
    pub m: usize,
    /// Columns of the product (rows of B when `trans_b`).
    pub n: usize,
    /// Inner dimension.
    pub k: usize,
    /// B is `[n, k]` (Linear weights, LM head) rather than `[k, n]` (Conv1D weights).
    pub trans_b: bool,
    /// Row stride of C in elements (>= `c_off + n`).
    pub ldc: usize,
    /// First column of C written.
    pub c_off: usize,
}

impl MatmulShape {
    /// A plain `[m, k] x [k, n]` (or `x [n, k]^T`) product into a dense `[m, n]` C.
    pub fn dense(m: usize, n: usize, k: usize, trans_b: bool) -> MatmulShape {
        MatmulShape {
            m,
            n,
            k,
            trans_b,
            ldc: n,
            c_off: 0,
        }
    }
}

impl Kernels {
    /// A matrix multiply with `kernel` (the caller checked [`MatmulKernel::tiled_fits`] for
    /// `Tiled`). `bias` is bound always; it is read only when `epi.bias`.
    #[allow(clippy::too_many_arguments)]
    pub fn matmul(
        &self,
        gpu: &Gpu,
        label: &str,
        kernel: MatmulKernel,
        s: MatmulShape,
        epi: Epilogue,
        a: &wgpu::Buffer,
        b: &wgpu::Buffer,
        bias: &wgpu::Buffer,
        c: &wgpu::Buffer,
    ) -> Dispatch {
        let params = MatmulParams {
            M: s.m as u32,
            N: s.n as u32,
            K: s.k as u32,
            flags: epi.flags(),
            ldc: s.ldc as u32,
            c_off: s.c_off as u32,
            ..Default::default()
        };
        let tb = s.trans_b as usize;
        let (pipeline, grid) = match kernel {
            MatmulKernel::Tiled => (
                &self.tiled[tb],
                (groups(s.n, TILE as usize), groups(s.m, TILE as usize), 1),
            ),
            MatmulKernel::Naive => (&self.naive[tb], (groups(s.n, 64), s.m as u32, 1)),
        };
        self.dispatch(
            gpu,
            format!("{label} ({kernel:?} matmul {}x{}x{})", s.m, s.n, s.k),
            pipeline,
            &params,
            &[a, b, bias, c],
            grid,
        )
    }
}
