//! What defines a search run: the algorithm, the evaluator, the counts, the two protocols and
//! the limits, with their defaults (LTS's, or the space's own `[search]` table) and the checks
//! that refuse a run that cannot work before anything is created. Stored whole in `run.json`.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::space::SearchSpace;
use crate::backend::ort::OrtOptions;
use crate::job::BackendSpec;
use crate::measure::Protocol;
use crate::quant::Scheme;
use crate::thermal::ThermalSettings;
use crate::workload::{Mode, Workload, DEFAULT_SEQ_LEN};

/// Search algorithm.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Algo {
    /// LTS evolutionary search (parents from the Pareto front, mutation, crossover).
    Lts,
    /// Uniform random sampling with the same budget (baseline).
    Random,
}

impl crate::choice::Choice for Algo {
    const ALL: &'static [(Self, &'static str, &'static str)] = &[
        (
            Algo::Lts,
            "lts",
            "LTS evolutionary search (parents from the Pareto front, mutation, crossover)",
        ),
        (
            Algo::Random,
            "random",
            "uniform random sampling with the same budget (baseline)",
        ),
    ];
}

/// How candidates are evaluated.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum EvaluatorSpec {
    /// Real measurement with a backend.
    Measure {
        /// Backend and settings.
        backend: BackendSpec,
    },
    /// Analytic cost model (FLOPs / throughput): no measurement; previews and tests only.
    CostModel {
        /// Assumed GFLOP/s.
        gflops: f64,
    },
}

/// Everything that defines a search run (stored in `run.json`; `--resume` reads it back).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct SearchConfig {
    /// The search space (stored whole, so a resume does not depend on the file).
    pub space: SearchSpace,
    /// Algorithm.
    pub algo: Algo,
    /// Seed of the candidate sequence.
    pub seed: u64,
    /// Initial population (random valid candidates).
    pub population: usize,
    /// Iterations after the initial population.
    pub iterations: usize,
    /// Parents drawn from the front per iteration.
    pub parents: usize,
    /// Mutants per iteration.
    pub mutations: usize,
    /// Crossovers per iteration.
    pub crossovers: usize,
    /// Per-gene resampling probability of a mutation (LTS: 0.3).
    pub mutation_prob: f64,
    /// Per-gene probability of taking the second parent's gene in a crossover (LTS: 0.5).
    pub crossover_prob: f64,
    /// What one timed run computes (prefill or decode objective).
    pub workload: Workload,
    /// Screening protocol.
    pub short_protocol: Protocol,
    /// Full protocol (every frontier point).
    pub full_protocol: Protocol,
    /// Measurement or cost model.
    pub evaluator: EvaluatorSpec,
    /// Seed of the random weights of every candidate.
    pub weights_seed: u64,
    /// Upper bound on total parameters.
    pub max_params: u64,
    /// Upper bound on the memory of the space's largest candidate, in bytes (`--max-memory`);
    /// `None` (and in runs written before it existed): 80% of this machine's memory
    /// ([`crate::workload::MemoryLimit::default_for_machine`]).
    #[serde(default)]
    pub max_memory: Option<u64>,
    /// Thermal sampling and cool-down around each candidate (from the device profile).
    #[serde(default)]
    pub thermal: ThermalSettings,
    /// Device profile the run was started with.
    #[serde(default)]
    pub device_profile: Option<String>,
    /// Post-training quantization schemes applied to every final frontier member
    /// (`--quantize`), each timed interleaved with its fp32 graph and judged against it
    /// ([`super::quantized`]); empty: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub quantize: Vec<Scheme>,
    /// Measure on board agents instead of this machine (`--agent`, or one class of a
    /// `--agents` fleet file): the candidates are shared among them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub agents: Vec<AgentSpec>,
}

/// A board agent that measures candidates (`lts search --agent`, `--agents`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct AgentSpec {
    /// `tcp://HOST:PORT`.
    pub addr: String,
    /// The key file (its path: the key itself is never written into a run).
    pub key_file: std::path::PathBuf,
    /// Its class in the fleet file (`default` for `--agent`).
    #[serde(default)]
    pub class: String,
}

/// Hard upper bound on each count of a search (`--population`, `--iterations`, `--parents`,
/// `--mutations`, `--crossovers`): LTS uses 100, 30, 20, 40 and 40; a million is more than any
/// search can measure, and keeps the candidate counts the runner derives from them (tries per
/// proposal, capacities) far inside `usize`.
pub const MAX_COUNT: usize = 1_000_000;

/// Hard upper bound on [`SearchConfig::budget`], the candidates a run may propose: every one
/// is kept in memory with its records (a few KiB), and a million measured at 0.1 s at least
/// would take days.
pub const MAX_BUDGET: usize = 1_000_000;

impl SearchConfig {
    /// Candidates the run measures at most: population + iterations x (mutations + crossovers)
    /// (saturating; [`SearchConfig::validate`] refuses budgets above [`MAX_BUDGET`]).
    pub fn budget(&self) -> usize {
        self.iterations
            .saturating_mul(self.mutations.saturating_add(self.crossovers))
            .saturating_add(self.population)
    }

    /// The short protocol used by default: a quick screen (no timed warm-up beyond one run,
    /// 5 runs and 0.1 s at least, no precision target).
    pub fn default_short_protocol() -> Protocol {
        Protocol {
            warmup_s: 0.05,
            min_runs: 5,
            min_duration_s: 0.1,
            target_ci_rel: 0.0,
            ..Protocol::default()
        }
    }

    /// The full protocol used by default for frontier candidates: [`Protocol::default`] (0.2 s
    /// warm-up, at least 10 runs, LTS's own count) with a precision stopping rule and tighter
    /// time limits, so that a quiet candidate stops at its minimums and a noisy one gets more
    /// runs, but never stalls the search:
    /// - `target_ci_rel = 0.02`: time until the median's 95% interval is within +-2%
    ///   (`--target-ci`; why 2%: see [`Protocol`]);
    /// - `min_duration_s = 0.1` (was 0.3 s before the precision rule): the interval now decides
    ///   when there are enough samples, so the duration floor only keeps millisecond-scale
    ///   models from stopping after a 10 ms burst; from 10 ms per run up (every gpt2-flex and
    ///   llama-flex candidate at seq 192) `min_runs` binds and a quiet candidate stops at 10
    ///   runs (`--full-min-duration-s`);
    /// - `max_duration_s = 10` (was 120 s): the most a noisy candidate's timed loop may take
    ///   (`--full-max-duration-s`). Not lower, because it also bounds the minimums: a candidate
    ///   that needs more than `max_duration_s / min_runs` per run is marked invalid. On the
    ///   shared 2-core VM under load (load average ~7.6), the largest gpt2-flex candidates
    ///   (~100M decoder parameters) took ~0.7 s per run, 7 s for 10 runs, so a 5 s cap would
    ///   have invalidated them (`cargo bench --bench candidate`). Raise it on slow boards.
    ///
    /// The screening protocol ([`SearchConfig::default_short_protocol`]) keeps a fixed count:
    /// its 5 runs cannot give a +-2% interval (at 95% the interval needs n >= 6 and is then
    /// [min, max]).
    pub fn default_full_protocol() -> Protocol {
        Protocol {
            min_duration_s: 0.1,
            max_duration_s: 10.0,
            target_ci_rel: 0.02,
            ..Protocol::default()
        }
    }

    /// Defaults for `space`: its `[search]` values, else LTS's (population 100, 30 iterations,
    /// 20 parents, 40 mutations, 40 crossovers, seq 192).
    pub fn for_space(space: SearchSpace) -> SearchConfig {
        let d = space.search.clone();
        SearchConfig {
            algo: Algo::Lts,
            seed: 0,
            population: d.population.unwrap_or(100),
            iterations: d.iterations.unwrap_or(30),
            parents: d.parents.unwrap_or(20),
            mutations: d.mutations.unwrap_or(40),
            crossovers: d.crossovers.unwrap_or(40),
            mutation_prob: 0.3,
            crossover_prob: 0.5,
            workload: Workload {
                mode: Mode::Prefill,
                seq_len: d.seq_len.unwrap_or(DEFAULT_SEQ_LEN.min(space.n_positions)),
                ..Workload::default()
            },
            short_protocol: SearchConfig::default_short_protocol(),
            full_protocol: SearchConfig::default_full_protocol(),
            evaluator: EvaluatorSpec::Measure {
                backend: BackendSpec::ort(OrtOptions::default()),
            },
            weights_seed: 0,
            max_params: crate::arch::DEFAULT_MAX_PARAMS,
            max_memory: None,
            thermal: ThermalSettings::default(),
            device_profile: None,
            quantize: Vec::new(),
            agents: Vec::new(),
            space,
        }
    }

    /// Checks the settings; errors name the flag. Counts are bounded ([`MAX_COUNT`],
    /// [`MAX_BUDGET`]) and the space's largest candidate must fit `max_memory`
    /// ([`crate::workload::estimate_memory`] of [`SearchSpace::largest_archs`]), so a search
    /// that cannot run is refused before its folder is created.
    pub fn validate(&self) -> Result<()> {
        anyhow::ensure!(self.population >= 1, "--population must be >= 1");
        for (flag, v) in [
            ("--population", self.population),
            ("--iterations", self.iterations),
            ("--parents", self.parents),
            ("--mutations", self.mutations),
            ("--crossovers", self.crossovers),
        ] {
            anyhow::ensure!(
                v <= MAX_COUNT,
                "{flag} {v} is above the bound of {MAX_COUNT}"
            );
        }
        let budget = self.budget();
        anyhow::ensure!(
            budget <= MAX_BUDGET,
            "the run would propose up to {budget} candidates (--population + --iterations x (--mutations + --crossovers)), above the bound of {MAX_BUDGET}: lower --iterations, --mutations or --crossovers"
        );
        anyhow::ensure!(
            self.algo == Algo::Random || self.iterations == 0 || self.parents >= 1,
            "--parents must be >= 1"
        );
        anyhow::ensure!(
            (0.0..=1.0).contains(&self.mutation_prob),
            "--mutation-prob must be in [0, 1]"
        );
        anyhow::ensure!(
            (0.0..=1.0).contains(&self.crossover_prob),
            "--crossover-prob must be in [0, 1]"
        );
        self.short_protocol.validate().context("short protocol")?;
        self.full_protocol.validate().context("full protocol")?;
        // Every candidate of the space has the space's positions.
        self.workload
            .check_positions(self.space.n_positions, "the space")?;
        // A space with nothing to propose would end with "0 candidates, N pruned".
        self.space.check_admissible(self.max_params)?;
        let [a, b] = self.space.largest_archs();
        let estimate = crate::workload::estimate_memory(&a, &self.workload)
            .zip(crate::workload::estimate_memory(&b, &self.workload))
            .map(|(x, y)| x.max(y));
        crate::workload::MemoryLimit::resolve(self.max_memory).check(
            estimate,
            &format!(
                "the largest candidate of space `{}` (every knob at its maximum)",
                self.space.name
            ),
        )?;
        self.validate_quantize()?;
        for a in &self.agents {
            crate::remote::host::AgentAddr::parse(&a.addr)?;
        }
        match &self.evaluator {
            EvaluatorSpec::CostModel { gflops } => anyhow::ensure!(
                *gflops > 0.0 && gflops.is_finite(),
                "--cost-gflops must be > 0"
            ),
            // The search names the cost model as its own evaluator kind; a job backend of that
            // name appears only in the jobs a fleet is sent.
            EvaluatorSpec::Measure { backend } if !backend.backend().computes() => anyhow::bail!(
                "run.json: evaluator `measure` with backend `cost-model` is written as evaluator `cost-model`"
            ),
            // A GPU's adapter, precision and timer are checked against it before the run folder
            // is created (`commands::search::search`); nothing about them is wrong on every machine.
            EvaluatorSpec::Measure { backend } => backend.backend().validate()?,
        }
        Ok(())
    }

    /// `--quantize` needs real ONNX Runtime measurements (quantized graphs run nowhere else, and
    /// a cost model cannot tell int8 from fp32); fp32 is the baseline of every variant, not a
    /// scheme to list; each scheme at most once.
    fn validate_quantize(&self) -> Result<()> {
        if self.quantize.is_empty() {
            return Ok(());
        }
        match &self.evaluator {
            EvaluatorSpec::Measure { backend } if backend.backend().supports_quantized() => {}
            EvaluatorSpec::Measure { backend } if backend.backend().computes() => anyhow::bail!(
                "--quantize: quantized graphs run on ONNX Runtime only; drop --quantize or use --backend ort"
            ),
            EvaluatorSpec::CostModel { .. } | EvaluatorSpec::Measure { .. } => anyhow::bail!(
                "--quantize needs measured latencies (the cost model cannot tell a quantized graph from fp32); drop --quantize or use --backend ort"
            ),
        }
        for (i, q) in self.quantize.iter().enumerate() {
            anyhow::ensure!(
                !q.is_fp32(),
                "--quantize: fp32 is the baseline every variant is timed and judged against; list only quantized schemes (e.g. int8-dynamic,int4:b32)"
            );
            anyhow::ensure!(
                !self.quantize[..i].contains(q),
                "--quantize lists {q} twice"
            );
        }
        Ok(())
    }
}
