//! The workload an exported file records ([`RecordedWorkload`]) and the flags that override it:
//! `lts export` records one (the search's, for a candidate of a run, or its own flags'),
//! `lts measure --onnx` and `lts quantize` default to it, with a `note:` when a flag overrides
//! it.

use super::*;
use crate::workload::RecordedWorkload;

/// The workload flags of a command, each `None` when not given (so "given" and "default" can be
/// told apart).
#[derive(Clone, Debug, Default)]
pub struct WorkloadFlags {
    /// `--mode`.
    pub mode: Option<Mode>,
    /// `--seq-len`, `--prompt-len`, `--new-tokens`, `--logits`.
    pub lengths: LengthArgs,
    /// `--batch`.
    pub batch: Option<usize>,
    /// `--input-seed`.
    pub seed: Option<u64>,
}

impl WorkloadFlags {
    /// Whether any flag that shapes the work (mode, lengths, logits, batch) was given.
    pub fn any(&self) -> bool {
        let l = &self.lengths;
        self.mode.is_some()
            || l.seq_len.is_some()
            || l.prompt_len.is_some()
            || l.new_tokens.is_some()
            || l.logits.is_some()
            || self.batch.is_some()
    }
}

/// The graph of an ONNX file, which decides the modes that can time it.
#[derive(Clone, Debug)]
pub struct FileGraph {
    /// The file, as messages name it.
    pub name: String,
    /// Prefill or decode.
    pub kind: GraphKind,
    /// The logits its prefill graph computes.
    pub logits: Logits,
}

/// What flags changed of a recorded workload, for a `note:`.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    /// The recorded values that changed: `seq-len 64`, `prefill 64 (last-position logits)`.
    pub was: String,
    /// Their new values.
    pub now: String,
    /// The flags that asked for them: `--seq-len`, `--seq-len and --batch`.
    pub flags: String,
    /// `asks` or `ask`, to go with `flags`.
    pub verb: &'static str,
}

/// A workload resolved from a recorded one and the flags given.
#[derive(Clone, Debug)]
pub struct Resolved {
    /// The workload to time (or record); not yet checked against an arch.
    pub workload: Workload,
    /// Notes to print: defaults shrunk to fit, a mode taken from the file's graph.
    pub notes: Vec<String>,
    /// What the flags changed of the recorded workload (`None`: nothing, or nothing recorded).
    pub change: Option<Change>,
}

/// The mode a graph of `kind` times by itself.
fn kind_mode(kind: GraphKind) -> Mode {
    match kind {
        GraphKind::Prefill => Mode::Prefill,
        GraphKind::Decode => Mode::Decode,
    }
}

/// Whether a file holding a graph of `kind` can time `mode` (generate builds both graphs from
/// the file's weights).
fn runs_on(mode: Mode, kind: GraphKind) -> bool {
    mode == Mode::Generate || mode == kind_mode(kind)
}

/// The workload of `flags` over `recorded` (a file's or a run's) for `n_positions` positions:
/// a flag given wins, then the recorded value, then the default. A file's graph limits the
/// mode: with no `--mode`, a recorded mode its graph cannot time gives way to the graph's own
/// (with a note); a `--mode` it cannot time, or a `--logits` its prefill graph does not compute,
/// is an error naming the fix. Lengths carry over from a recorded prefill or decode to either,
/// and from a recorded generation to a generation.
pub fn resolve(
    recorded: Option<&RecordedWorkload>,
    flags: &WorkloadFlags,
    n_positions: usize,
    file: Option<&FileGraph>,
) -> Result<Resolved> {
    let rec = recorded.map(|r| &r.workload);
    let fits = |m: Mode| file.is_none_or(|f| runs_on(m, f.kind));
    let mode = match (flags.mode, rec) {
        (Some(m), _) => m,
        (None, Some(r)) if fits(r.mode) => r.mode,
        (None, _) => file.map_or(Mode::Prefill, |f| kind_mode(f.kind)),
    };
    let mut notes = Vec::new();
    if let Some(f) = file {
        if !runs_on(mode, f.kind) {
            bail!(
                "{} is a {} graph and cannot time --mode {}: pass --mode {}, or time the {} graph `lts export` wrote beside it",
                f.name,
                f.kind,
                mode.as_str(),
                kind_mode(f.kind).as_str(),
                mode.as_str()
            );
        }
        if let (None, Some(r)) = (flags.mode, recorded) {
            if r.workload.mode != mode {
                notes.push(format!(
                    "{} is a {} graph but was exported for {} ({}): timing {} (the {} graph beside it times that workload)",
                    f.name,
                    f.kind,
                    r.workload.describe(),
                    r.source,
                    mode.as_str(),
                    r.workload.mode.as_str()
                ));
            }
        }
    }
    let lengths = carried_lengths(rec, mode, &flags.lengths, n_positions);
    let (mut workload, note) = workload_from(mode, n_positions, &lengths)?;
    notes.extend(note);
    if mode == Mode::Prefill {
        let file_logits = file
            .filter(|f| f.kind == GraphKind::Prefill)
            .map(|f| f.logits);
        if let (Some(f), Some(given), Some(own)) = (file, flags.lengths.logits, file_logits) {
            if given != own {
                bail!(
                    "{} was exported with --logits {}: drop --logits {} or export again with it",
                    f.name,
                    own.as_str(),
                    given.as_str()
                );
            }
        }
        let recorded_logits = rec.filter(|r| r.mode == Mode::Prefill).map(|r| r.logits);
        workload.logits = flags
            .lengths
            .logits
            .or(file_logits)
            .or(recorded_logits)
            .unwrap_or(Logits::Last);
    }
    workload.batch = flags.batch.or(rec.map(|r| r.batch)).unwrap_or(1);
    workload.seed = flags.seed.or(rec.map(|r| r.seed)).unwrap_or(0);
    let change = rec.and_then(|r| change(r, &workload, flags));
    Ok(Resolved {
        workload,
        notes,
        change,
    })
}

/// The length flags with the recorded lengths filled in where none was given: the prompt or
/// context length from a recorded prefill or decode for either (a decode keeps one position
/// free for its new token), prompt and new tokens from a recorded generation for a generation.
fn carried_lengths(
    rec: Option<&Workload>,
    mode: Mode,
    given: &LengthArgs,
    n_positions: usize,
) -> LengthArgs {
    let mut lengths = given.clone();
    let Some(r) = rec else {
        return lengths;
    };
    let generate = (r.mode == Mode::Generate, mode == Mode::Generate);
    if generate.0 != generate.1 {
        return lengths;
    }
    if lengths.seq_len.is_none() && lengths.prompt_len.is_none() {
        let s = if mode == Mode::Decode && r.mode != Mode::Decode {
            r.seq_len.min(n_positions.saturating_sub(1)).max(1)
        } else {
            r.seq_len
        };
        if mode == Mode::Generate {
            lengths.prompt_len = Some(s);
        } else {
            lengths.seq_len = Some(s);
        }
    }
    if mode == Mode::Generate && lengths.new_tokens.is_none() {
        lengths.new_tokens = Some(r.new_tokens);
    }
    lengths
}

/// What `flags` changed of the recorded workload `r` in `w`; `None` when no flag changed it.
fn change(r: &Workload, w: &Workload, flags: &WorkloadFlags) -> Option<Change> {
    let l = &flags.lengths;
    let mut parts: Vec<(String, String, &'static str)> = Vec::new();
    if w.mode != r.mode {
        if flags.mode.is_some() {
            parts.push((r.describe(), w.describe(), "--mode"));
        }
    } else {
        let (name, flag) = match w.mode {
            Mode::Generate => ("prompt-len", "--prompt-len"),
            _ => ("seq-len", "--seq-len"),
        };
        let given_len = l.seq_len.is_some() || l.prompt_len.is_some();
        if w.seq_len != r.seq_len && given_len {
            parts.push((
                format!("{name} {}", r.seq_len),
                format!("{name} {}", w.seq_len),
                flag,
            ));
        }
        if w.new_tokens != r.new_tokens && l.new_tokens.is_some() {
            parts.push((
                format!("new-tokens {}", r.new_tokens),
                format!("new-tokens {}", w.new_tokens),
                "--new-tokens",
            ));
        }
        if w.mode == Mode::Prefill && w.logits != r.logits && l.logits.is_some() {
            parts.push((
                format!("logits {}", r.logits.as_str()),
                format!("logits {}", w.logits.as_str()),
                "--logits",
            ));
        }
    }
    if w.batch != r.batch && flags.batch.is_some() {
        parts.push((
            format!("batch {}", r.batch),
            format!("batch {}", w.batch),
            "--batch",
        ));
    }
    if parts.is_empty() {
        return None;
    }
    let join = |f: &dyn Fn(&(String, String, &'static str)) -> String| {
        parts.iter().map(f).collect::<Vec<_>>().join(", ")
    };
    let flag_list: Vec<&str> = parts.iter().map(|p| p.2).collect();
    Some(Change {
        was: join(&|p| p.0.clone()),
        now: join(&|p| p.1.clone()),
        flags: flag_list.join(" and "),
        verb: if flag_list.len() == 1 { "asks" } else { "ask" },
    })
}

/// The workload the search in run folder `dir` timed its candidates on (its `run.json`).
pub fn run_workload(dir: &Path) -> Result<RecordedWorkload> {
    let info = crate::search::read_run_info(dir)?;
    Ok(RecordedWorkload {
        workload: info.config.workload,
        source: format!("the search's workload, run {}", info.run_id),
    })
}

/// `lts measure --onnx FILE`: the workload to time, from the file's recorded one and the flags,
/// with the notes to print (the file records none; a flag overrides it).
pub fn for_measured_file(
    info: &graph::OnnxInfo,
    file: &FileGraph,
    flags: &WorkloadFlags,
) -> Result<(Workload, Vec<String>)> {
    let r = resolve(
        info.workload.as_ref(),
        flags,
        info.arch.n_positions,
        Some(file),
    )?;
    let mut notes = Vec::new();
    match &info.workload {
        None if !flags.any() => notes.push(format!(
            "{} records no workload (exported before lts recorded one): timing {}; pass --mode and --seq-len (or --prompt-len) to choose",
            file.name,
            r.workload.describe()
        )),
        Some(rec) => {
            if let Some(c) = &r.change {
                notes.push(format!(
                    "{} was exported for {} ({}); timing {} as {} {}",
                    file.name, c.was, rec.source, c.now, c.flags, c.verb
                ));
            }
        }
        None => {}
    }
    notes.extend(r.notes);
    Ok((r.workload, notes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorded(mode: Mode, seq_len: usize, new_tokens: usize) -> RecordedWorkload {
        RecordedWorkload {
            workload: Workload {
                mode,
                seq_len,
                new_tokens,
                ..Workload::default()
            },
            source: "the search's workload, run r1".into(),
        }
    }

    fn file(kind: GraphKind) -> FileGraph {
        FileGraph {
            name: "x.onnx".into(),
            kind,
            logits: Logits::Last,
        }
    }

    fn flags() -> WorkloadFlags {
        WorkloadFlags::default()
    }

    #[test]
    fn no_flag_times_the_recorded_workload() {
        let rec = recorded(Mode::Prefill, 64, 0);
        let r = resolve(Some(&rec), &flags(), 1024, Some(&file(GraphKind::Prefill))).unwrap();
        assert_eq!(r.workload, rec.workload);
        assert!(r.notes.is_empty() && r.change.is_none(), "{r:?}");
        let rec = recorded(Mode::Generate, 32, 16);
        for kind in [GraphKind::Prefill, GraphKind::Decode] {
            let r = resolve(Some(&rec), &flags(), 1024, Some(&file(kind))).unwrap();
            assert_eq!(r.workload, rec.workload);
        }
    }

    #[test]
    fn a_flag_wins_and_is_named() {
        let rec = recorded(Mode::Prefill, 64, 0);
        let mut f = flags();
        f.lengths.seq_len = Some(192);
        let r = resolve(Some(&rec), &f, 1024, Some(&file(GraphKind::Prefill))).unwrap();
        assert_eq!(r.workload.seq_len, 192);
        let c = r.change.unwrap();
        assert_eq!(
            (c.was.as_str(), c.now.as_str(), c.flags.as_str(), c.verb),
            ("seq-len 64", "seq-len 192", "--seq-len", "asks")
        );
        // The same value as recorded: nothing changed.
        f.lengths.seq_len = Some(64);
        let r = resolve(Some(&rec), &f, 1024, None).unwrap();
        assert!(r.change.is_none());
        f.batch = Some(4);
        let c = resolve(Some(&rec), &f, 1024, None).unwrap().change.unwrap();
        assert_eq!((c.flags.as_str(), c.verb), ("--batch", "asks"));
        f.lengths.seq_len = Some(8);
        let c = resolve(Some(&rec), &f, 1024, None).unwrap().change.unwrap();
        assert_eq!(c.was, "seq-len 64, batch 1");
        assert_eq!((c.flags.as_str(), c.verb), ("--seq-len and --batch", "ask"));
    }

    #[test]
    fn a_graph_limits_the_mode() {
        // A decode graph exported for a prefill search times decode, with a note.
        let rec = recorded(Mode::Prefill, 64, 0);
        let r = resolve(Some(&rec), &flags(), 64, Some(&file(GraphKind::Decode))).unwrap();
        assert_eq!(r.workload.mode, Mode::Decode);
        // Decode after 63: one position stays free for the new token.
        assert_eq!(r.workload.seq_len, 63);
        assert!(r.notes[0].contains("is a decode graph"), "{:?}", r.notes);
        assert!(r.change.is_none());
        // Asking a prefill graph for decode is an error naming the fix.
        let mut f = flags();
        f.mode = Some(Mode::Decode);
        let e = resolve(Some(&rec), &f, 1024, Some(&file(GraphKind::Prefill)))
            .unwrap_err()
            .to_string();
        assert!(e.contains("pass --mode prefill"), "{e}");
        // And a --logits its prefill graph does not compute.
        let mut f = flags();
        f.lengths.logits = Some(Logits::All);
        let e = resolve(Some(&rec), &f, 1024, Some(&file(GraphKind::Prefill)))
            .unwrap_err()
            .to_string();
        assert!(e.contains("exported with --logits last"), "{e}");
    }

    #[test]
    fn nothing_recorded_keeps_the_old_defaults() {
        let r = resolve(None, &flags(), 1024, Some(&file(GraphKind::Prefill))).unwrap();
        assert_eq!(r.workload, Workload::default());
        let r = resolve(None, &flags(), 1024, None).unwrap();
        assert_eq!(r.workload, Workload::default());
    }

    #[test]
    fn lengths_carry_only_where_they_mean_the_same() {
        let rec = recorded(Mode::Generate, 32, 16);
        let mut f = flags();
        f.mode = Some(Mode::Prefill);
        let r = resolve(Some(&rec), &f, 1024, None).unwrap();
        assert_eq!(r.workload.seq_len, crate::workload::DEFAULT_SEQ_LEN);
        let c = r.change.unwrap();
        assert_eq!(c.flags, "--mode");
        let mut f = flags();
        f.lengths.new_tokens = Some(8);
        let r = resolve(Some(&rec), &f, 1024, None).unwrap();
        assert_eq!((r.workload.seq_len, r.workload.new_tokens), (32, 8));
    }

    #[test]
    fn an_exported_arch_json_with_its_workload_loads() {
        let arch = crate::arch::Arch::preset("gpt2-tiny").unwrap();
        let mut v: serde_json::Value = serde_json::from_str(&arch.to_json_pretty()).unwrap();
        v["workload"] =
            serde_json::json!({"mode": "prefill", "batch": 1, "seq_len": 64, "seed": 0});
        v["workload_source"] = "lts export's defaults".into();
        assert_eq!(crate::arch::Arch::from_json(&v.to_string()).unwrap(), arch);
        // Other unknown keys are still refused.
        v["colour"] = "blue".into();
        assert!(crate::arch::Arch::from_json(&v.to_string()).is_err());
    }
}
