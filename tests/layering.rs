//! The module graph of `src/` flows one way: no file reaches, through `crate::`/`super::`
//! paths, a file that reaches it back (issue 12). Test modules (`#[cfg(test)]` blocks at the
//! end of a file) are left out: a test may use anything.
//!
//! Each `src/**/*.rs` file is a node (generated files, which refer only to themselves, have no
//! edges); a path `crate::a::b::Item` (or `super::x`, `self::x`,
//! `use crate::a::{b, c}`) is an edge to the longest module file it names. Cycles are found
//! with Tarjan's strongly connected components and printed with their edges.
//!
//! Across top-level modules the edges also run one way down the layers: the order of the
//! `pub mod` lines of `src/lib.rs`, lowest first ([`imports_run_down_the_layers_of_lib_rs`]).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Module path (`["search", "store"]`) of every file under `src/` (lib.rs = `[]`).
fn modules(src: &Path) -> BTreeMap<Vec<String>, PathBuf> {
    fn walk(dir: &Path, prefix: &[String], out: &mut BTreeMap<Vec<String>, PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let name = p.file_stem().unwrap().to_string_lossy().into_owned();
            if p.is_dir() {
                let mut pre = prefix.to_vec();
                pre.push(p.file_name().unwrap().to_string_lossy().into_owned());
                walk(&p, &pre, out);
            } else if p.extension().is_some_and(|e| e == "rs") {
                let mut m = prefix.to_vec();
                match name.as_str() {
                    "mod" => {}
                    "lib" if prefix.is_empty() => {}
                    "main" if prefix.is_empty() => continue,
                    _ => m.push(name),
                }
                out.insert(m, p);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(src, &[], &mut out);
    out
}

/// The code of a file without its trailing `#[cfg(test)]` module and without comments.
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let mut out = String::new();
    let mut lines = text.lines().peekable();
    while let Some(l) = lines.next() {
        let t = l.trim_start();
        if t.starts_with("#[cfg(test)]")
            && lines
                .peek()
                .is_some_and(|n| n.trim_start().starts_with("mod "))
        {
            break;
        }
        if t.starts_with("//") {
            continue;
        }
        out.push_str(l.split(" //").next().unwrap());
        out.push('\n');
    }
    out
}

/// Paths starting with `crate::`, `super::` or `self::` in `code`, expanded over one level of
/// `{a, b::c}` groups, as segment lists relative to the crate root.
fn paths(code: &str, module: &[String], is_mod_file: bool) -> Vec<Vec<String>> {
    let bytes: Vec<char> = code.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    while i < bytes.len() {
        let rest: String = bytes[i..bytes.len().min(i + 7)].iter().collect();
        let at_word_start = i == 0 || !ident(bytes[i - 1]) && bytes[i - 1] != ':';
        let base: Option<(Vec<String>, usize)> = if !at_word_start {
            None
        } else if rest.starts_with("crate::") {
            Some((Vec::new(), 7))
        } else if rest.starts_with("super::") {
            // The parent of a mod.rs module is its parent folder's module; of a plain file,
            // the folder it lives in.
            let mut m = module.to_vec();
            m.pop();
            let _ = is_mod_file;
            Some((m, 7))
        } else if rest.starts_with("self::") {
            Some((module.to_vec(), 6))
        } else if ident(bytes[i]) && !bytes[i].is_ascii_digit() {
            // `child::item` inside a module: relative to it (resolves to the module itself,
            // and is then ignored, unless it names a child module).
            let end = (i..bytes.len())
                .find(|&j| !ident(bytes[j]))
                .unwrap_or(bytes.len());
            let followed = end + 1 < bytes.len() && bytes[end] == ':' && bytes[end + 1] == ':';
            followed.then(|| (module.to_vec(), 0))
        } else {
            None
        };
        let Some((mut segs, skip)) = base else {
            i += 1;
            continue;
        };
        i += skip;
        // Read segments separated by `::`, stopping at anything else; a `{` group expands.
        loop {
            let start = i;
            while i < bytes.len() && ident(bytes[i]) {
                i += 1;
            }
            if i > start {
                let s: String = bytes[start..i].iter().collect();
                if s == "super" {
                    segs.pop();
                } else {
                    segs.push(s);
                }
            }
            if i + 1 < bytes.len() && bytes[i] == ':' && bytes[i + 1] == ':' {
                i += 2;
                if i < bytes.len() && bytes[i] == '{' {
                    let end = (i..bytes.len())
                        .find(|&j| bytes[j] == '}')
                        .unwrap_or(bytes.len());
                    let group: String = bytes[i + 1..end].iter().collect();
                    for item in group.split(',') {
                        let mut p = segs.clone();
                        p.extend(
                            item.trim()
                                .split("::")
                                .map(|s| s.trim().to_string())
                                .filter(|s| !s.is_empty() && s != "self"),
                        );
                        out.push(p);
                    }
                    i = end;
                    segs.clear();
                    break;
                }
                continue;
            }
            break;
        }
        if !segs.is_empty() {
            out.push(segs);
        }
    }
    out
}

/// The longest module of `mods` that `path` starts with.
fn resolve<'a>(
    mods: &'a BTreeMap<Vec<String>, PathBuf>,
    path: &[String],
) -> Option<&'a Vec<String>> {
    (0..=path.len())
        .rev()
        .find_map(|n| mods.get_key_value(&path[..n]).map(|(k, _)| k))
}

/// Strongly connected components with more than one node (Tarjan).
fn cycles(edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Vec<Vec<Vec<String>>> {
    struct T<'a> {
        edges: &'a BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        index: BTreeMap<&'a Vec<String>, usize>,
        low: BTreeMap<&'a Vec<String>, usize>,
        stack: Vec<&'a Vec<String>>,
        on: BTreeSet<&'a Vec<String>>,
        out: Vec<Vec<Vec<String>>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a Vec<String>) {
        let n = t.index.len();
        t.index.insert(v, n);
        t.low.insert(v, n);
        t.stack.push(v);
        t.on.insert(v);
        for w in t.edges.get(v).into_iter().flatten() {
            let w = t.edges.get_key_value(w).map(|(k, _)| k).unwrap();
            if !t.index.contains_key(w) {
                visit(t, w);
                let lw = t.low[w];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if t.on.contains(w) {
                let iw = t.index[w];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if t.low[v] == t.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on.remove(w);
                comp.push(w.clone());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                t.out.push(comp);
            }
        }
    }
    let mut t = T {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in edges.keys() {
        if !t.index.contains_key(v) {
            visit(&mut t, v);
        }
    }
    t.out
}

fn name(m: &[String]) -> String {
    if m.is_empty() {
        "lib".into()
    } else {
        m.join("::")
    }
}

#[test]
fn no_import_cycle_among_src_files() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mods = modules(&src);
    let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for (m, file) in &mods {
        let is_mod = file.file_name().unwrap() == "mod.rs";
        let set = edges.entry(m.clone()).or_default();
        // Generated code (prost) refers only to itself, with `super::` inside inline modules.
        if std::fs::read_to_string(file)
            .unwrap()
            .contains("@generated")
        {
            continue;
        }
        // A `mod.rs` (or lib.rs) only declares its children; it is their parent, not a user.
        for p in paths(&code(file), m, is_mod) {
            if let Some(to) = resolve(&mods, &p) {
                if to != m && !to.is_empty() {
                    set.insert(to.clone());
                }
            }
        }
    }
    let found = cycles(&edges);
    let report: Vec<String> = found
        .iter()
        .map(|c| {
            let members: BTreeSet<&Vec<String>> = c.iter().collect();
            let mut lines = vec![format!(
                "cycle among {}:",
                c.iter().map(|m| name(m)).collect::<Vec<_>>().join(", ")
            )];
            for a in c {
                for b in &edges[a] {
                    if members.contains(b) {
                        lines.push(format!("  {} -> {}", name(a), name(b)));
                    }
                }
            }
            lines.join("\n")
        })
        .collect();
    assert!(found.is_empty(), "{}", report.join("\n"));
}

#[test]
fn the_checker_finds_a_cycle() {
    let m = |s: &str| -> Vec<String> { s.split("::").map(String::from).collect() };
    let mut edges = BTreeMap::new();
    edges.insert(m("a"), BTreeSet::from([m("b")]));
    edges.insert(m("b"), BTreeSet::from([m("c")]));
    edges.insert(m("c"), BTreeSet::from([m("a")]));
    edges.insert(m("d"), BTreeSet::from([m("a")]));
    assert_eq!(cycles(&edges).len(), 1);
    let code = "use crate::search::{store::Record, space};\nfn f() { super::x::y(); crate::arch::Arch::id(); }";
    let ps = paths(code, &m("search::evaluate"), false);
    let rel = paths(
        "use store::Record; fn f() { space::x(); }",
        &m("search"),
        true,
    );
    assert!(rel.contains(&m("search::store::Record")), "{rel:?}");
    assert!(rel.contains(&m("search::space::x")), "{rel:?}");
    assert!(ps.contains(&m("search::store::Record")), "{ps:?}");
    assert!(ps.contains(&m("search::space")), "{ps:?}");
    assert!(ps.contains(&m("search::x::y")), "{ps:?}");
    assert!(ps.contains(&m("arch::Arch::id")), "{ps:?}");
}

/// Lines of a file's code before its trailing `#[cfg(test)]` module, and the length of every
/// `fn` in it (from its signature line to the closing brace at the same indentation).
fn function_lengths(text: &str) -> Vec<(String, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let end = (0..lines.len())
        .find(|&i| {
            lines[i].trim_start().starts_with("#[cfg(test)]")
                && lines
                    .get(i + 1)
                    .is_some_and(|n| n.trim_start().starts_with("mod "))
        })
        .unwrap_or(lines.len());
    let mut out = Vec::new();
    let mut i = 0;
    while i < end {
        let l = lines[i];
        let t = l.trim_start();
        let sig = t
            .trim_start_matches("pub ")
            .trim_start_matches("pub(crate) ")
            .trim_start_matches("pub(super) ")
            .trim_start_matches("const ")
            .trim_start_matches("unsafe ");
        if let Some(rest) = sig.strip_prefix("fn ") {
            let indent = l.len() - t.len();
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            // A declaration without a body (trait item) ends with `;` before any `{`.
            let mut j = i;
            while j < end && !lines[j].contains('{') && !lines[j].trim_end().ends_with(';') {
                j += 1;
            }
            if j < end && lines[j].contains('{') && !lines[j].trim_end().ends_with('}') {
                let close = format!("{}}}", " ".repeat(indent));
                let k = (j + 1..end)
                    .find(|&k| lines[k].starts_with(&close) && lines[k].trim() == "}")
                    .unwrap_or(end);
                out.push((name, k - i + 1));
                i = k;
            }
        }
        i += 1;
    }
    out
}

#[test]
fn files_and_functions_stay_readable() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut problems = Vec::new();
    for file in modules(&src).values() {
        let text = std::fs::read_to_string(file).unwrap();
        let rel = file.strip_prefix(&src).unwrap().display().to_string();
        // Generated files too (scripts/split-onnx-proto.py splits the ONNX types).
        let n = text.lines().count();
        if n > 1000 {
            problems.push(format!("src/{rel}: {n} lines (at most 1,000)"));
        }
        // A generated file's functions are its generator's.
        if text.contains("@generated") {
            continue;
        }
        for (name, len) in function_lengths(&text) {
            if len > 150 {
                problems.push(format!("src/{rel}: fn {name} is {len} lines (at most 150)"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn function_lengths_are_measured() {
    let text = "fn a() {\n    x();\n}\n\npub fn b(\n    y: u8,\n) -> u8 {\n    y\n}\n\
                trait T {\n    fn c(&self);\n}\n#[cfg(test)]\nmod tests {\n    fn d() {}\n}\n";
    assert_eq!(
        function_lengths(text),
        vec![("a".to_string(), 3), ("b".to_string(), 5)]
    );
}

/// Files that may test the family outside the arch module and the family's own files
/// (`gpt2.rs`, `llama.rs`): one registration per subsystem, the `match` that sends a family to
/// its own file (issue 22, item 3).
const FAMILY_REGISTRATIONS: &[(&str, &str)] = &[
    (
        "graph/mod.rs",
        "graph emission: sends a family to graph/gpt2.rs or graph/llama.rs",
    ),
    (
        "weights.rs",
        "parameter specs: the per-family table of names and shapes",
    ),
    (
        "reference/mod.rs",
        "reference forward: sends a family to reference/gpt2.rs or llama.rs",
    ),
];

/// Lines of `code` that test the family (`family ==`, `family !=`, `Family::Gpt2`,
/// `Family::Llama`) instead of asking one of its parts (`Arch::parts`).
fn family_checks(code: &str) -> Vec<String> {
    code.lines()
        .filter(|l| {
            ["family ==", "family !=", "Family::Gpt2", "Family::Llama"]
                .iter()
                .any(|p| l.contains(p))
        })
        .map(|l| l.trim().to_string())
        .collect()
}

#[test]
fn code_asks_a_part_not_the_family() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut problems = Vec::new();
    for file in modules(&src).values() {
        let rel = file.strip_prefix(&src).unwrap().display().to_string();
        let own = matches!(
            file.file_name().and_then(|n| n.to_str()),
            Some("gpt2.rs" | "llama.rs")
        );
        let registered = FAMILY_REGISTRATIONS.iter().any(|(f, _)| *f == rel);
        if rel == "arch.rs" || rel.starts_with("arch/") || own || registered {
            continue;
        }
        for line in family_checks(&code(file)) {
            problems.push(format!("src/{rel}: `{line}` (ask `arch.parts()` instead)"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn family_checks_are_found() {
    let text = "let a = arch.family == Family::Llama;\nlet b = arch.parts().mlp;\n\
                match f { Family::Gpt2 => 1, _ => 2 }\nif self.family != x {}\n";
    assert_eq!(family_checks(text).len(), 3);
}

/// Top-level modules in the order `src/lib.rs` declares them (`pub mod x;`), lowest layer first.
fn layer_order(src: &Path) -> Vec<String> {
    std::fs::read_to_string(src.join("lib.rs"))
        .unwrap()
        .lines()
        .filter_map(|l| l.trim().strip_prefix("pub mod "))
        .map(|l| l.trim_end_matches(';').trim().to_string())
        .collect()
}

/// Back edges allowed for now, each with the reason it is still there: `(from, to, why)`. An
/// entry no import needs any more fails the test, so the list only shrinks.
const ALLOWED_BACK_EDGES: &[(&str, &str, &str)] = &[];

/// Layers (issue 22): a top-level module imports only itself and the modules `src/lib.rs`
/// lists before it, so `lib.rs`'s `pub mod` order is the real layering, lowest first. Every
/// offending import is printed with its file and path.
#[test]
fn imports_run_down_the_layers_of_lib_rs() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let order = layer_order(&src);
    let rank = |m: &str| order.iter().position(|o| o == m);
    let mods = modules(&src);
    let mut problems = BTreeSet::new();
    let mut allowed_used = BTreeSet::new();
    for (m, file) in &mods {
        let Some(from) = m.first() else { continue };
        let text = std::fs::read_to_string(file).unwrap();
        if text.contains("@generated") {
            continue;
        }
        let is_mod = file.file_name().unwrap() == "mod.rs";
        for p in paths(&code(file), m, is_mod) {
            let Some(to) = resolve(&mods, &p).and_then(|t| t.first()) else {
                continue;
            };
            let (Some(a), Some(b)) = (rank(from), rank(to)) else {
                problems.insert(format!(
                    "{from} or {to} is not a `pub mod` line of src/lib.rs"
                ));
                continue;
            };
            if b <= a {
                continue;
            }
            match ALLOWED_BACK_EDGES
                .iter()
                .position(|(f, t, _)| f == from && t == to)
            {
                Some(k) => {
                    allowed_used.insert(k);
                }
                None => {
                    let rel = file.strip_prefix(&src).unwrap().display();
                    problems.insert(format!("{from} -> {to}: src/{rel} uses {}", p.join("::")));
                }
            }
        }
    }
    for (k, (f, t, _)) in ALLOWED_BACK_EDGES.iter().enumerate() {
        if !allowed_used.contains(&k) {
            problems.insert(format!(
                "{f} -> {t} is allowed but no longer imported: delete it"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "imports from a lower module to a higher one (order of src/lib.rs):\n{}",
        problems.into_iter().collect::<Vec<_>>().join("\n")
    );
}

/// Occurrences of `BackendSpec::Ort`, `::Wgpu` or `::CostModel` in `code`.
fn backend_variants(code: &str) -> usize {
    ["Ort", "Wgpu", "CostModel"]
        .iter()
        .map(|v| {
            let pat = format!("BackendSpec::{v}");
            code.match_indices(&pat)
                .filter(|(i, _)| {
                    !code[i + pat.len()..].starts_with(|c: char| c.is_alphanumeric() || c == '_')
                })
                .count()
        })
        .sum()
}

/// The backend seam (issue 22, item 1): outside `src/backend/` and the one clap mapping
/// (`cli/mod.rs`), no file names a `BackendSpec` variant, in a match or a construction;
/// callers ask [`lts::backend::Backend`] through `spec.backend()`. On the main before the
/// seam, 11 files named 40 variants.
#[test]
fn backend_variants_are_named_only_behind_the_seam() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut problems = Vec::new();
    for file in modules(&src).values() {
        let rel = file.strip_prefix(&src).unwrap().display().to_string();
        if rel.starts_with("backend/") || rel == "cli/mod.rs" {
            continue;
        }
        let n = backend_variants(&code(file));
        if n > 0 {
            problems.push(format!(
                "src/{rel}: {n} BackendSpec variant(s) named; ask spec.backend() \
                 (backend::Backend) or build one with BackendSpec::ort/wgpu/cost_model"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn backend_variants_are_counted() {
    let code = "match b { BackendSpec::Ort(o) => 1, BackendSpec::CostModel(_) => 2 }\n\
                let x = BackendSpec::OrtLike; let y = BackendSpec::Wgpu(w);";
    assert_eq!(backend_variants(code), 3);
}
