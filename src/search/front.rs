//! The search's frontier: feasibility under the space's constraints, the 3-objective Pareto
//! front, the candidates that could still be on it (to measure with the full protocol), and
//! its hypervolume.

use anyhow::Result;

use super::evolve::{Proposal, Search};
use super::objectives::Stage;
use super::pareto;
use super::store::{HvReference, Record};

impl Search {
    pub(super) fn feasible(&self, r: &Record) -> bool {
        let c = &self.cfg.space.constraints;
        let lat_ok = c.max_latency_ms.is_none_or(|m| r.eval.stats.median_ms <= m);
        let mem_ok = c.max_memory_mb.is_none_or(|m| {
            r.eval
                .peak_memory_bytes
                .is_none_or(|b| b as f64 <= m * 1024.0 * 1024.0)
        });
        lat_ok && mem_ok
    }

    /// Minimisation vector of a record: (-decoder params, latency, memory); `lat` picks the
    /// latency bound used (median, optimistic or pessimistic) and `mem_scale` scales memory.
    pub(super) fn objectives(r: &Record, lat: f64, mem_scale: f64) -> Vec<f64> {
        vec![
            -(r.params.decoder as f64),
            lat,
            r.eval.peak_memory_bytes.unwrap_or(0) as f64 * mem_scale,
        ]
    }

    /// Indices of candidates meeting the space's latency/memory constraints (best record).
    pub(super) fn feasible_indices(&self) -> Vec<usize> {
        (0..self.cands.len())
            .filter(|&i| self.feasible(self.cands[i].best()))
            .collect()
    }

    pub(super) fn compute_front(&self) -> Vec<usize> {
        let feasible = self.feasible_indices();
        let pts: Vec<Vec<f64>> = feasible
            .iter()
            .map(|&i| {
                let r = self.cands[i].best();
                Search::objectives(r, r.eval.stats.median_ms, 1.0)
            })
            .collect();
        pareto::pareto_front(&pts)
            .into_iter()
            .map(|k| feasible[k])
            .collect()
    }

    /// Candidates without a full measurement that are not dominated when they are given their
    /// optimistic bounds (lower end of the median's CI, memory -2%) and every other candidate
    /// its pessimistic ones (upper end, +2%).
    pub(super) fn near_front(&self) -> Vec<usize> {
        let feasible = self.feasible_indices();
        let pess: Vec<Vec<f64>> = feasible
            .iter()
            .map(|&i| {
                let r = self.cands[i].best();
                Search::objectives(r, r.eval.stats.median_ci_high_ms, 1.02)
            })
            .collect();
        feasible
            .iter()
            .enumerate()
            .filter(|(_, &i)| self.cands[i].full.is_none())
            .filter(|&(k, &i)| {
                let r = self.cands[i].best();
                let opt = Search::objectives(r, r.eval.stats.median_ci_low_ms, 0.98);
                !pess
                    .iter()
                    .enumerate()
                    .any(|(j, o)| j != k && pareto::dominates(o, &opt))
            })
            .map(|(_, &i)| i)
            .collect()
    }

    /// Full-protocol measurements until every frontier point has one.
    pub(super) fn finalize(&mut self) -> Result<()> {
        loop {
            let need = self.near_front();
            if need.is_empty() {
                break;
            }
            let ps: Vec<Proposal> = need
                .iter()
                .map(|&i| {
                    let r = &self.cands[i].short;
                    Proposal {
                        arch: r.arch.clone(),
                        id: r.arch_id.clone(),
                        genome: r.genome.clone(),
                        origin: r.origin,
                        parents: r.parents.clone(),
                        iteration: r.iteration,
                    }
                })
                .collect();
            let (fulls, done) = self.evaluate_all(&ps, Stage::Full);
            for (i, full) in need.into_iter().zip(fulls) {
                if full.is_some() {
                    self.cands[i].full = full;
                }
            }
            done?;
        }
        self.front = self.compute_front();
        debug_assert!(self.front.iter().all(|&i| self.cands[i].full.is_some()));
        Ok(())
    }

    pub(super) fn set_hv_reference(&mut self) {
        let max_lat = self
            .cands
            .iter()
            .map(|c| c.best().eval.stats.median_ms)
            .fold(0.0, f64::max);
        let max_mem = self
            .cands
            .iter()
            .map(|c| c.best().eval.peak_memory_bytes.unwrap_or(0) as f64)
            .fold(0.0, f64::max);
        self.info.hv_reference = Some(HvReference {
            max_decoder_params: self
                .cfg
                .space
                .constraints
                .decoder_params_max
                .map_or(self.cfg.space.max_decoder_params(), |m| {
                    m.min(self.cfg.space.max_decoder_params())
                }) as f64,
            latency_ms: 1.1 * max_lat.max(1e-9),
            memory_bytes: 1.1 * max_mem.max(1.0),
        });
    }

    /// Normalised 2-D and 3-D hypervolume of the current front.
    pub(super) fn hypervolumes(&self) -> (f64, f64) {
        let Some(h) = &self.info.hv_reference else {
            return (0.0, 0.0);
        };
        let pts3: Vec<Vec<f64>> = self
            .front
            .iter()
            .map(|&i| {
                let r = self.cands[i].best();
                vec![
                    1.0 - r.params.decoder as f64 / h.max_decoder_params,
                    r.eval.stats.median_ms / h.latency_ms,
                    r.eval.peak_memory_bytes.unwrap_or(0) as f64 / h.memory_bytes,
                ]
            })
            .collect();
        let pts2: Vec<Vec<f64>> = pts3.iter().map(|p| p[..2].to_vec()).collect();
        (
            pareto::hypervolume(&pts2, &[1.0, 1.0]),
            pareto::hypervolume(&pts3, &[1.0, 1.0, 1.0]),
        )
    }

    /// Members of the frontier that are also on the two-objective (params vs latency) one.
    pub(super) fn latency_front(&self) -> Vec<usize> {
        let pts: Vec<Vec<f64>> = self
            .front
            .iter()
            .map(|&i| {
                let r = self.cands[i].best();
                vec![-(r.params.decoder as f64), r.eval.stats.median_ms]
            })
            .collect();
        pareto::pareto_front(&pts)
            .into_iter()
            .map(|k| self.front[k])
            .collect()
    }
}
