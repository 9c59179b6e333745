//! Pareto machinery for the LiteTransformerSearch (LTS) evolutionary search: dominance,
//! the non-dominated front, exact hypervolume (a scalar to track search progress), and the
//! LTS parent weighting / sampling.
//!
//! Conventions: every objective vector is a MINIMISATION vector (`&[f64]`). The caller turns
//! "maximise decoder parameters" into a cost, e.g. `-params` or `max_params - params` (the LTS
//! paper code uses `max(proxies) - proxy`, see `_update_pareto_frontier` in
//! `archai/nlp/nas/evolution.py`, microsoft/archai branch `neurips-lts`).
//!
//! Sources (see `shared/reference/lts.md`, "Search algorithm (paper code)"):
//! - Javaheripour et al., "LiteTransformerSearch: Training-free Neural Architecture Search for
//!   Efficient Language Models", NeurIPS 2022 (arXiv 2203.02094).
//! - Paper code: microsoft/archai, branch `neurips-lts`, `archai/nlp/nas/evolution.py`
//!   (`_update_pareto_frontier`, `_calculate_weighted_count`, `search`) and
//!   `archai/nlp/nas/nas_utils/pareto_frontier.py`.
//! - Later rewrite: microsoft/archai `archai/discrete_search/algos/utils/multi_objective.py`
//!   (`_find_pareto_frontier_points`) and `archai/discrete_search/algos/evolution_pareto.py`.
//! - Hypervolume: Zitzler & Thiele, "Multiobjective optimization using evolutionary algorithms
//!   -- a comparative case study", PPSN 1998 (definition); the 3-D case here is the classic
//!   "slicing objectives" (HSO) scheme of While, Hingston, Barone & Huband, IEEE TEVC 10(1),
//!   2006, with the 2-D slices computed exactly by a sweep.

use rand::distr::weighted::WeightedIndex;
use rand::distr::Distribution;

/// Weak Pareto dominance for minimisation: `a` dominates `b` iff `a[i] <= b[i]` for every
/// objective and `a[i] < b[i]` for at least one.
///
/// This is the textbook definition and the one of archai's rewrite
/// (`_find_pareto_frontier_points` in `archai/discrete_search/algos/utils/multi_objective.py`
/// drops a point when another one is `<=` in every dimension, after deduplicating equal rows).
///
/// Consequences:
/// - Equal points do not dominate each other, so duplicates (e.g. two architectures with the
///   same measured numbers) both stay on the front. (archai's rewrite keeps only one of a set of
///   equal rows via `np.unique`; we keep all of them and let the caller deduplicate by gene key.)
/// - The LTS paper code (branch `neurips-lts`) instead dropped a point only if another was
///   *strictly* better in every objective (see [`strictly_dominates`]). That keeps weakly
///   dominated points, e.g. a model with the same latency but fewer decoder parameters than a
///   front member, which is never a useful choice; with measured latencies that tie rarely
///   but with parameter counts and ONNX file sizes that tie often, the paper variant inflates the
///   front with such points and wastes parent slots on them. We therefore use weak dominance.
///
/// Vectors of different lengths never dominate each other (returns `false`). Any NaN makes the
/// comparison false, so a point with NaN never dominates anything; [`pareto_front`] also keeps
/// NaN points off the front.
pub fn dominates(a: &[f64], b: &[f64]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut strictly_better_somewhere = false;
    for (&x, &y) in a.iter().zip(b) {
        match x.partial_cmp(&y) {
            Some(std::cmp::Ordering::Less) => strictly_better_somewhere = true,
            Some(std::cmp::Ordering::Equal) => {}
            // Worse, or NaN involved.
            _ => return false,
        }
    }
    strictly_better_somewhere
}

/// Strict dominance, the rule of the LTS paper code (`neurips-lts`,
/// `archai/nlp/nas/nas_utils/pareto_frontier.py`): `a` dominates `b` iff `a[i] < b[i]` in
/// EVERY objective. Provided for comparison and tests; the search uses [`dominates`].
///
/// Vectors of different (or zero) lengths never dominate; NaN never compares as better.
pub fn strictly_dominates(a: &[f64], b: &[f64]) -> bool {
    !a.is_empty() && a.len() == b.len() && a.iter().zip(b).all(|(&x, &y)| x < y)
}

/// Indices (ascending) of the points that no other point [`dominates`] (weak dominance, see
/// there). A point with NaN in any objective is never on the front (and, since NaN never
/// compares as better, it does not knock anyone else off). Equal points are all kept.
///
/// O(n^2 * d); fine for the few thousand architectures one LTS run evaluates (~2,500).
pub fn pareto_front(points: &[Vec<f64>]) -> Vec<usize> {
    (0..points.len())
        .filter(|&i| {
            let p = &points[i];
            !p.iter().any(|v| v.is_nan())
                && !points
                    .iter()
                    .enumerate()
                    .any(|(j, q)| j != i && dominates(q, p))
        })
        .collect()
}

/// Exact hypervolume (Lebesgue measure) of the region dominated by `points` and bounded by
/// `reference`, for minimisation: the volume of the union of the boxes `[p, reference]`.
///
/// Only points strictly better than the reference in EVERY objective contribute; others (and
/// points with NaN) are ignored; a coordinate of `-inf` makes the volume infinite. Dominated
/// points are harmless (they add nothing), so the result does not depend on point order or on
/// dominated extras.
///
/// Algorithm (exact, no sampling):
/// - 1-D: `reference - min(p)`.
/// - 2-D: sort by the first objective, sweep and add one strip per new best second objective
///   (O(n log n)).
/// - 3-D: slice along the third objective ("hypervolume by slicing objectives", While et al.
///   2006): between consecutive distinct third-objective values the cross-section is the 2-D
///   hypervolume of the points already passed (O(n^2 log n), fine for fronts of < 500 points).
///
/// Returns `0.0` when no point counts. Invalid input (dimension not 1, 2 or 3, a point whose
/// length differs from the reference's, NaN in the reference) gives `f64::NAN`, so a bad value
/// shows up in logs instead of panicking a search; use [`try_hypervolume`] to get `None` instead.
pub fn hypervolume(points: &[Vec<f64>], reference: &[f64]) -> f64 {
    try_hypervolume(points, reference).unwrap_or(f64::NAN)
}

/// [`hypervolume`] with explicit failure: `None` when the dimension is not 1, 2 or 3, when a
/// point's length differs from the reference's, or when the reference contains NaN;
/// `Some(0.0)` when no point is strictly inside the reference box.
pub fn try_hypervolume(points: &[Vec<f64>], reference: &[f64]) -> Option<f64> {
    let d = reference.len();
    if !(1..=3).contains(&d) || reference.iter().any(|r| r.is_nan()) {
        return None;
    }
    if points.iter().any(|p| p.len() != d) {
        return None;
    }
    let inside: Vec<&[f64]> = points
        .iter()
        .map(|p| p.as_slice())
        .filter(|p| p.iter().zip(reference).all(|(&x, &r)| x < r))
        .collect();
    if inside.is_empty() {
        return Some(0.0);
    }
    let hv = match d {
        1 => {
            let best = inside.iter().map(|p| p[0]).fold(f64::INFINITY, f64::min);
            reference[0] - best
        }
        2 => {
            let mut xy: Vec<(f64, f64)> = inside.iter().map(|p| (p[0], p[1])).collect();
            hv2d_sorted(&mut xy, reference[0], reference[1])
        }
        _ => {
            let mut pts: Vec<(f64, f64, f64)> = inside.iter().map(|p| (p[0], p[1], p[2])).collect();
            pts.sort_by(|a, b| a.2.total_cmp(&b.2));
            let mut volume = 0.0;
            let mut slice: Vec<(f64, f64)> = Vec::with_capacity(pts.len());
            let mut i = 0;
            while i < pts.len() {
                let z = pts[i].2;
                // Add every point at this z level to the slice.
                while i < pts.len() && pts[i].2 == z {
                    slice.push((pts[i].0, pts[i].1));
                    i += 1;
                }
                let z_next = if i < pts.len() {
                    pts[i].2
                } else {
                    reference[2]
                };
                let mut xy = slice.clone();
                volume += hv2d_sorted(&mut xy, reference[0], reference[1]) * (z_next - z);
            }
            volume
        }
    };
    Some(hv)
}

/// 2-D hypervolume of `xy` (all strictly inside the reference box) by a sweep in ascending x.
/// Each point whose y improves on the best so far adds the strip
/// `[x, rx] x [y, best_y_so_far]`.
fn hv2d_sorted(xy: &mut [(f64, f64)], rx: f64, ry: f64) -> f64 {
    xy.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
    let mut area = 0.0;
    let mut best_y = ry;
    for &(x, y) in xy.iter() {
        if y < best_y {
            area += (rx - x) * (best_y - y);
            best_y = y;
        }
    }
    area
}

/// LTS parent-selection weights for the members of the current front, from how often each one
/// was used before (`use_counts[i]` belongs to front member `i`); larger weight = more likely to
/// be picked. Weights are in `[0.5, 1]` and NOT normalised (sampling normalises).
///
/// What we implement, exactly as the LTS paper code does it (`_calculate_weighted_count` in
/// `archai/nlp/nas/evolution.py`, branch `neurips-lts`; `lts.md`: "parents drawn from the
/// current Pareto front, weighted by 1/(1 + scaled count of earlier use)"):
///
/// ```text
/// range  = max - min            (or max when all counts are equal)
/// scaled = (count - min) / range     in [0, 1]
/// weight = 1 / (1 + scaled)          in [0.5, 1]
/// ```
///
/// i.e. min-max scaling, so the least-used member always gets weight 1 and the most-used 0.5.
/// (In the paper code `count` is how many times the gene key was seen in the working
/// population; the caller decides what it counts.) This differs from the simpler
/// `scaled = count / max` only when the smallest count is not 0. One deliberate fix: when all
/// counts are 0 the paper code divides 0 by 0 (NaN weights); here every weight is 1 (uniform).
///
/// archai's later rewrite (`archai/discrete_search/algos/evolution_pareto.py`) does not
/// weight at all: it mutates every front member and draws crossover pairs uniformly.
pub fn parent_weights(use_counts: &[usize]) -> Vec<f64> {
    let (Some(&min), Some(&max)) = (use_counts.iter().min(), use_counts.iter().max()) else {
        return Vec::new();
    };
    let range = if max == min { max } else { max - min };
    use_counts
        .iter()
        .map(|&c| {
            let scaled = if range == 0 {
                0.0
            } else {
                (c - min) as f64 / range as f64
            };
            1.0 / (1.0 + scaled)
        })
        .collect()
}

/// Draws `k` parents WITH replacement from the front, weighted by [`parent_weights`] of
/// `use_counts` (as the paper code's `np.random.choice(len(pareto), size=parent_size, p=weights)`).
///
/// `front` holds population indices (e.g. from [`pareto_front`]); `use_counts[i]` is the use
/// count of `front[i]`. Returns the chosen population indices (values of `front`), in draw order.
/// An empty front (or `k == 0`) gives an empty vector. Reproducible for a seeded `rng`.
///
/// # Panics
/// If `use_counts.len() != front.len()` (a caller bug).
pub fn select_parents(
    front: &[usize],
    use_counts: &[usize],
    k: usize,
    rng: &mut impl rand::Rng,
) -> Vec<usize> {
    assert_eq!(
        front.len(),
        use_counts.len(),
        "select_parents: use_counts must have one entry per front member"
    );
    if front.is_empty() || k == 0 {
        return Vec::new();
    }
    let weights = parent_weights(use_counts);
    // Weights are finite and in [0.5, 1], so construction cannot fail.
    let dist = WeightedIndex::new(&weights).expect("parent weights are positive and finite");
    (0..k).map(|_| front[dist.sample(rng)]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_xoshiro::Xoshiro256PlusPlus;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * (1.0 + a.abs().max(b.abs()))
    }

    #[test]
    fn dominance_basic_cases() {
        // Equal points do not dominate each other.
        assert!(!dominates(&[1.0, 2.0], &[1.0, 2.0]));
        // Better in one, equal in the other: dominates (weak), but not strictly.
        assert!(dominates(&[1.0, 2.0], &[1.0, 3.0]));
        assert!(!dominates(&[1.0, 3.0], &[1.0, 2.0]));
        assert!(!strictly_dominates(&[1.0, 2.0], &[1.0, 3.0]));
        // Better in all.
        assert!(dominates(&[0.0, 0.0], &[1.0, 1.0]));
        assert!(strictly_dominates(&[0.0, 0.0], &[1.0, 1.0]));
        // Trade-off: neither dominates.
        assert!(!dominates(&[0.0, 2.0], &[1.0, 1.0]));
        assert!(!dominates(&[1.0, 1.0], &[0.0, 2.0]));
        // 3-D.
        assert!(dominates(&[1.0, 1.0, 1.0], &[1.0, 1.0, 2.0]));
        assert!(!dominates(&[1.0, 1.0, 3.0], &[1.0, 2.0, 2.0]));
        assert!(dominates(&[-5.0, 1.0, 0.5], &[-4.0, 1.0, 0.5]));
        // Mismatched lengths and NaN.
        assert!(!dominates(&[0.0], &[1.0, 1.0]));
        assert!(!dominates(&[f64::NAN, 0.0], &[1.0, 1.0]));
        assert!(!dominates(&[0.0, 0.0], &[f64::NAN, 1.0]));
        assert!(!dominates(&[], &[]));
    }

    #[test]
    fn front_of_known_set() {
        let pts = vec![
            vec![1.0, 5.0], // 0 front
            vec![2.0, 3.0], // 1 front
            vec![3.0, 3.0], // 2 dominated by 1 (weakly)
            vec![4.0, 1.0], // 3 front
            vec![5.0, 4.0], // 4 dominated
            vec![2.0, 3.0], // 5 duplicate of 1: stays
            vec![0.5, 9.0], // 6 front
        ];
        assert_eq!(pareto_front(&pts), vec![0, 1, 3, 5, 6]);
        // The paper's strict rule would have kept point 2: point 1 is better in x but only
        // equal in y.
        assert!(!pts.iter().any(|q| strictly_dominates(q, &pts[2])));
    }

    #[test]
    fn front_3d_and_empty() {
        let pts = vec![
            vec![1.0, 1.0, 1.0],
            vec![0.0, 2.0, 2.0],
            vec![2.0, 2.0, 2.0],
            vec![1.0, 1.0, 0.5],
        ];
        assert_eq!(pareto_front(&pts), vec![1, 3]);
        assert!(pareto_front(&[]).is_empty());
        assert_eq!(pareto_front(&[vec![3.0, 4.0]]), vec![0]);
    }

    #[test]
    fn nan_points_never_on_front() {
        let pts = vec![
            vec![f64::NAN, 0.0],
            vec![1.0, 1.0],
            vec![0.0, f64::NAN],
            vec![2.0, 2.0],
        ];
        assert_eq!(pareto_front(&pts), vec![1]);
        let all_nan = vec![vec![f64::NAN, f64::NAN]];
        assert!(pareto_front(&all_nan).is_empty());
    }

    #[test]
    fn hv_1d_and_errors() {
        assert_eq!(try_hypervolume(&[vec![2.0], vec![3.0]], &[10.0]), Some(8.0));
        assert_eq!(
            try_hypervolume(&[vec![1.0, 2.0, 3.0, 4.0]], &[5.0; 4]),
            None
        );
        assert_eq!(try_hypervolume(&[vec![1.0]], &[5.0, 5.0]), None);
        assert_eq!(try_hypervolume(&[], &[]), None);
        assert_eq!(try_hypervolume(&[vec![1.0, 1.0]], &[f64::NAN, 2.0]), None);
        assert!(hypervolume(&[vec![1.0]], &[5.0, 5.0]).is_nan());
        assert_eq!(try_hypervolume(&[], &[1.0, 1.0]), Some(0.0));
    }

    #[test]
    fn hv_2d_staircase() {
        // Reference (4, 4). Boxes: (1,3)->3*1=3; (2,2) adds strip x in [2,4], y in [2,3] = 2;
        // (3,1) adds x in [3,4], y in [1,2] = 1. Total 6.
        let pts = vec![vec![1.0, 3.0], vec![2.0, 2.0], vec![3.0, 1.0]];
        assert!(close(hypervolume(&pts, &[4.0, 4.0]), 6.0));
        // Single point: rectangle.
        assert!(close(
            hypervolume(&[vec![0.5, 1.5]], &[2.0, 3.0]),
            1.5 * 1.5
        ));
        // Uneven staircase, ref (10, 10): (0,8): 10*2=20; (3,5): 7*3=21; (7,1): 3*4=12 -> 53.
        let pts = vec![vec![7.0, 1.0], vec![0.0, 8.0], vec![3.0, 5.0]];
        assert!(close(hypervolume(&pts, &[10.0, 10.0]), 53.0));
    }

    #[test]
    fn hv_3d_unit_cubes() {
        // One corner point: unit cube.
        assert!(close(
            hypervolume(&[vec![0.0, 0.0, 0.0]], &[1.0, 1.0, 1.0]),
            1.0
        ));
        // Three points, ref (2,2,2): each box has volume 2, each pairwise intersection 1, the
        // triple intersection 1: 6 - 3 + 1 = 4.
        let pts = vec![
            vec![0.0, 1.0, 1.0],
            vec![1.0, 0.0, 1.0],
            vec![1.0, 1.0, 0.0],
        ];
        assert!(close(hypervolume(&pts, &[2.0, 2.0, 2.0]), 4.0));
        // Adding (0,0,0) fills the whole 2x2x2 cube.
        let mut more = pts.clone();
        more.push(vec![0.0, 0.0, 0.0]);
        assert!(close(hypervolume(&more, &[2.0, 2.0, 2.0]), 8.0));
    }

    /// Exact count of unit cells dominated, for integer points in [0, n)^3 and ref (n, n, n).
    fn brute_force_cells(points: &[Vec<f64>], n: usize) -> f64 {
        let mut count = 0usize;
        for i in 0..n {
            for j in 0..n {
                for k in 0..n {
                    let c = [i as f64, j as f64, k as f64];
                    if points.iter().any(|p| p.iter().zip(&c).all(|(a, b)| a <= b)) {
                        count += 1;
                    }
                }
            }
        }
        count as f64
    }

    #[test]
    fn hv_3d_matches_brute_force_and_is_order_invariant() {
        use rand::Rng;
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(7);
        let n = 8;
        for _ in 0..20 {
            let m = rng.random_range(1..25);
            let mut pts: Vec<Vec<f64>> = (0..m)
                .map(|_| (0..3).map(|_| rng.random_range(0..n) as f64).collect())
                .collect();
            let r = [n as f64; 3];
            let hv = hypervolume(&pts, &r);
            assert!(close(hv, brute_force_cells(&pts, n)), "{pts:?}");
            pts.reverse();
            assert!(close(hypervolume(&pts, &r), hv));
            // Dominated extras change nothing.
            let front: Vec<Vec<f64>> = pareto_front(&pts)
                .into_iter()
                .map(|i| pts[i].clone())
                .collect();
            assert!(close(hypervolume(&front, &r), hv));
        }
    }

    #[test]
    fn hv_2d_invariance_and_monotonicity() {
        let base = vec![vec![1.0, 6.0], vec![3.0, 4.0], vec![6.0, 2.0]];
        let r = [8.0, 8.0];
        let hv = hypervolume(&base, &r);
        // Order.
        let shuffled = vec![base[2].clone(), base[0].clone(), base[1].clone()];
        assert!(close(hypervolume(&shuffled, &r), hv));
        // Dominated point added: same.
        let mut with_dominated = base.clone();
        with_dominated.push(vec![4.0, 5.0]);
        assert!(close(hypervolume(&with_dominated, &r), hv));
        // Non-dominated point added: strictly larger.
        let mut with_new = base.clone();
        with_new.push(vec![2.0, 3.0]);
        assert!(hypervolume(&with_new, &r) > hv + 1e-12);
        // 3-D monotonicity too.
        let p3 = vec![vec![1.0, 2.0, 3.0], vec![3.0, 1.0, 2.0]];
        let r3 = [4.0, 4.0, 4.0];
        let h3 = hypervolume(&p3, &r3);
        let mut p3b = p3.clone();
        p3b.push(vec![2.0, 3.0, 1.0]);
        assert!(hypervolume(&p3b, &r3) > h3 + 1e-12);
    }

    #[test]
    fn hv_ignores_points_outside_reference() {
        let r = [4.0, 4.0];
        let pts = vec![vec![1.0, 1.0]];
        let hv = hypervolume(&pts, &r);
        assert!(close(hv, 9.0));
        let mut more = pts.clone();
        more.push(vec![-1.0, 5.0]); // outside in y
        more.push(vec![4.0, 0.0]); // on the boundary: not strictly better
        more.push(vec![f64::NAN, 0.0]);
        assert!(close(hypervolume(&more, &r), hv));
        assert_eq!(try_hypervolume(&[vec![5.0, 5.0]], &r), Some(0.0));
    }

    #[test]
    fn parent_weights_favour_rarely_used() {
        let w = parent_weights(&[0, 5, 10]);
        assert!(close(w[0], 1.0));
        assert!(close(w[1], 1.0 / 1.5));
        assert!(close(w[2], 0.5));
        // Min-max scaling as in the paper code: least used always gets 1.
        let w = parent_weights(&[4, 6, 8]);
        assert!(close(w[0], 1.0) && close(w[1], 1.0 / 1.5) && close(w[2], 0.5));
        // All equal (including all zero): uniform, no NaN.
        assert_eq!(parent_weights(&[3, 3]), vec![1.0, 1.0]);
        assert_eq!(parent_weights(&[0, 0, 0]), vec![1.0, 1.0, 1.0]);
        assert!(parent_weights(&[]).is_empty());
    }

    #[test]
    fn select_parents_reproducible_and_weighted() {
        let front = vec![10, 20, 30];
        let counts = vec![0, 0, 100];
        let a = select_parents(
            &front,
            &counts,
            50,
            &mut Xoshiro256PlusPlus::seed_from_u64(42),
        );
        let b = select_parents(
            &front,
            &counts,
            50,
            &mut Xoshiro256PlusPlus::seed_from_u64(42),
        );
        assert_eq!(a, b);
        assert_eq!(a.len(), 50);
        assert!(a.iter().all(|i| front.contains(i)));
        // Over many draws the heavily used member (weight 0.5 vs 1, 1) gets ~20% not ~33%.
        let many = select_parents(
            &front,
            &counts,
            20_000,
            &mut Xoshiro256PlusPlus::seed_from_u64(1),
        );
        let share = many.iter().filter(|&&i| i == 30).count() as f64 / many.len() as f64;
        assert!((share - 0.2).abs() < 0.02, "share {share}");
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(0);
        assert!(select_parents(&[], &[], 5, &mut rng).is_empty());
        assert!(select_parents(&front, &counts, 0, &mut rng).is_empty());
    }
}
