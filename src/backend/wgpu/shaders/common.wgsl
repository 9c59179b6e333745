// Shared helpers, prepended to every kernel after the storage-type header
// (`alias S = f32|f16; alias S4 = vec4<S>;`). Arithmetic is f32 throughout; S is the storage type.

// GPT-2's `gelu_new`: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))). The tanh argument is
// clamped so no implementation overflows an exp inside tanh (tanh(15) == 1 in f32).
fn gelu_new(x: f32) -> f32 {
    let u = 0.7978845608028654 * (x + 0.044715 * x * x * x);
    return 0.5 * x * (1.0 + tanh(clamp(u, -15.0, 15.0)));
}

// SiLU: x / (1 + exp(-x)), written so exp never overflows.
fn silu(x: f32) -> f32 {
    if (x >= 0.0) {
        return x / (1.0 + exp(-x));
    }
    let e = exp(x);
    return x * e / (1.0 + e);
}

// Per-submission values shared by every dispatch of a forward (one uniform buffer per model,
// written before each submission), so one recorded plan serves every cache length.
struct Step {
    // Positions already in the KV cache before this forward's tokens.
    past: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

// Matmul epilogue flags.
const FLAG_BIAS: u32 = 1u;
const FLAG_GELU: u32 = 2u;
const FLAG_RESIDUAL: u32 = 4u;
