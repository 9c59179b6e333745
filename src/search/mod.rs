//! LiteTransformerSearch: evolutionary Pareto search over a search space (Javaheripour et al.,
//! NeurIPS 2022, and the reference implementation in microsoft/archai).
//!
//! Objectives: maximise decoder (non-embedding) parameters, the training-free perplexity proxy;
//! minimise latency (median of the prefill, or of one decode step with a KV cache); minimise peak
//! memory. Dominance is weak Pareto dominance ([`pareto::dominates`]).
//!
//! The algorithm ([`Algo::Lts`]): an initial population of random valid candidates; then each
//! iteration draws parents from the current Pareto front, weighted by how rarely each was used
//! ([`pareto::parent_weights`]), and produces mutants (each gene resampled with probability 0.3)
//! and uniform crossovers. Candidates are deduplicated by arch id, and constraints that need no
//! measurement (decoder-parameter range) are checked **before** measuring, unlike the reference
//! implementation, which measured first. [`Algo::Random`] samples the same number of candidates
//! uniformly, as a baseline.
//!
//! Measurement is two-stage: every candidate is measured with a short protocol; a candidate that
//! could be on the frontier given the confidence intervals (optimistic bounds for it,
//! pessimistic for the others) is measured again with the full protocol, until every frontier
//! point carries full-protocol statistics.
//!
//! Determinism and resume: the candidates of iteration `k` depend only on the seed, `k` and the
//! measurements recorded before; the journal keeps every measurement, so `--resume` replays the
//! run, reuses what was recorded and measures only the rest.
//!
//! Files: starting and resuming a run ([`run`]), the evolutionary loop (`evolve`), the frontier
//! and its hypervolume (`front`), what a run writes as it goes (`publish`), what a run takes and
//! returns, and the [`Reporter`] that renders its plots and `summary.md` ([`outcome`]; the
//! search hands over rows and never renders, `crate::report` does).

pub mod classes;
pub mod config;
mod evolve;
mod front;
pub mod objectives;
pub mod outcome;
pub mod pareto;
mod publish;
mod quant_phase;
pub mod quantized;
pub mod run;
pub mod space;
pub mod store;

pub use config::{Algo, EvaluatorSpec, SearchConfig, MAX_BUDGET, MAX_COUNT};
pub use outcome::{Outcome, Reporter, RunOptions, RunReport};
pub use run::{read_run_info, resume, run_folder, run_new};
pub use store::{HvReference, IterationLog, RunInfo};

/// The running search, for the `impl` blocks of `quant_phase`.
use evolve::Search;
