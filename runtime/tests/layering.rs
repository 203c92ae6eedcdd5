//! The runtime's modules depend on each other in one direction only (issue 41, item 6): lib.rs,
//! then the runtime and its builder, then the Shinjuku dispatcher and the timer core, then the
//! waiting primitives and `sync`, then the workers, then green threads, preemption and queues
//! underneath (docs/architecture.md, "Layers"). This test reads `runtime/src` and fails on any
//! import cycle between top-level modules, or between the sibling files of one folder (a folder's
//! `mod.rs` holds what its files share and starts them, so edges to and from it are not counted
//! inside the folder). It caught the three cycles the issue named: dispatcher/runtime/
//! timer_core/worker (through `SharedHandler` and `wait::WaitSlot`), overload/stats, and the
//! worker's api/sched/switch; plus preempt's decide/entry.
//!
//! A reference is any path through `crate::` or `super::` outside comments and `#[cfg(test)]`
//! modules, `use` groups included. Doc links are comments, so they do not count.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A module: its path below the crate root (`["worker", "switch"]`), and whether it is a folder.
#[derive(Debug)]
struct Module {
    path: Vec<String>,
    file: PathBuf,
    is_folder: bool,
}

fn modules(src: &Path) -> Vec<Module> {
    let mut out = Vec::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("readable source dir") {
            let p = entry.expect("dir entry").path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            if p.extension().and_then(|e| e.to_str()) != Some("rs") {
                continue;
            }
            let rel = p.strip_prefix(src).unwrap();
            let mut path: Vec<String> = rel.iter().map(|c| c.to_string_lossy().into_owned()).collect();
            let last = path.pop().unwrap();
            let stem = last.trim_end_matches(".rs").to_string();
            let is_folder = stem == "mod";
            if stem != "mod" && stem != "lib" {
                path.push(stem);
            }
            // Unit-test files are `#[cfg(test)] mod tests;`: not part of the layering.
            if path.last().is_some_and(|s| s == "tests") {
                continue;
            }
            out.push(Module { path, file: p, is_folder });
        }
    }
    out
}

/// The source without comments and without `#[cfg(test)]` modules (from the attribute to the
/// end of the file: the project keeps them last).
fn code_of(text: &str) -> String {
    let cut = text.find("#[cfg(test)]\nmod ").or_else(|| text.find("#[cfg(all(test")).unwrap_or(text.len());
    text[..cut]
        .lines()
        .map(|l| match l.find("//") {
            // A `//` inside a string literal is rare in this code and would only hide a reference.
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every path the code names through `crate::` or `super::`, resolved to an absolute module path
/// prefix (`["worker", "switch", "wake_here"]`); `use` groups (`{a, b::c}`) are expanded.
fn references(m: &Module, code: &str) -> Vec<Vec<String>> {
    let parent: Vec<String> =
        if m.is_folder || m.path.is_empty() { m.path.clone() } else { m.path[..m.path.len() - 1].to_vec() };
    let bytes = code.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let (base, rest_at) = if bytes[i..].starts_with(b"crate::") && !ident_before(bytes, i) {
            (Vec::new(), i + "crate::".len())
        } else if bytes[i..].starts_with(b"super::") && !ident_before(bytes, i) {
            let mut base = parent.clone();
            let mut j = i + "super::".len();
            while bytes[j..].starts_with(b"super::") {
                base.pop();
                j += "super::".len();
            }
            // `super` of a file is its folder; of a folder's mod.rs, the folder's parent.
            if m.is_folder {
                base.pop();
            }
            (base, j)
        } else {
            i += 1;
            continue;
        };
        let (paths, end) = parse_tree(code, rest_at);
        for p in paths {
            let mut full = base.clone();
            full.extend(p);
            out.push(full);
        }
        i = end.max(i + 1);
    }
    out
}

fn ident_before(bytes: &[u8], i: usize) -> bool {
    i > 0 && (bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_' || bytes[i - 1] == b':')
}

/// Parses `a::b::{c, d::e}` from `at`: the paths it names and where it ends.
fn parse_tree(code: &str, at: usize) -> (Vec<Vec<String>>, usize) {
    let b = code.as_bytes();
    let mut i = at;
    let mut prefix = Vec::new();
    loop {
        let start = i;
        while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
            i += 1;
        }
        if i > start {
            prefix.push(code[start..i].to_string());
        }
        let group = if b[i..].starts_with(b"::{") {
            Some(i + 3)
        } else if i == start && b.get(i) == Some(&b'{') {
            Some(i + 1) // `crate::{...}`
        } else {
            None
        };
        if let Some(at) = group {
            i = at;
            let mut out = Vec::new();
            loop {
                while i < b.len() && (b[i].is_ascii_whitespace() || b[i] == b',') {
                    i += 1;
                }
                if i >= b.len() || b[i] == b'}' {
                    return (out, i + 1);
                }
                let (inner, end) = parse_tree(code, i);
                for p in inner {
                    let mut full = prefix.clone();
                    full.extend(p);
                    out.push(full);
                }
                // Skip `as name` and anything else up to the next item.
                i = end;
                while i < b.len() && b[i] != b',' && b[i] != b'}' {
                    i += 1;
                }
            }
        }
        if b[i..].starts_with(b"::") && i + 2 < b.len() && (b[i + 2].is_ascii_alphabetic() || b[i + 2] == b'_') {
            i += 2;
            continue;
        }
        return (vec![prefix], i);
    }
}

/// The node a reference lands on at `depth` (1: top-level module; 2: a file of a folder).
fn node_of(path: &[String], known: &BTreeSet<Vec<String>>, depth: usize) -> Option<Vec<String>> {
    let longest = (1..=path.len()).rev().map(|k| path[..k].to_vec()).find(|p| known.contains(p))?;
    Some(longest[..longest.len().min(depth)].to_vec())
}

fn find_cycle(edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Option<Vec<Vec<String>>> {
    // Depth-first search with colours; returns the first cycle found.
    fn visit(
        v: &Vec<String>,
        edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        colour: &mut BTreeMap<Vec<String>, u8>,
        stack: &mut Vec<Vec<String>>,
    ) -> Option<Vec<Vec<String>>> {
        colour.insert(v.clone(), 1);
        stack.push(v.clone());
        for w in edges.get(v).into_iter().flatten() {
            match colour.get(w).copied().unwrap_or(0) {
                1 => {
                    let at = stack.iter().position(|s| s == w).unwrap();
                    let mut cycle = stack[at..].to_vec();
                    cycle.push(w.clone());
                    return Some(cycle);
                }
                0 => {
                    if let Some(c) = visit(w, edges, colour, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        colour.insert(v.clone(), 2);
        None
    }
    let mut colour = BTreeMap::new();
    for v in edges.keys() {
        if colour.get(v).copied().unwrap_or(0) == 0 {
            if let Some(c) = visit(v, edges, &mut colour, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

/// The dependency edges between nodes at `depth`; at depth 2 only between siblings of one folder.
fn edges(mods: &[Module], depth: usize) -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let known: BTreeSet<Vec<String>> = mods.iter().map(|m| m.path.clone()).collect();
    let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for m in mods {
        if m.path.is_empty() || (depth == 2 && (m.path.len() < 2 || m.is_folder && m.path.len() == 2)) {
            continue; // lib.rs is the top; at depth 2, a folder's mod.rs is not a sibling
        }
        let from = m.path[..m.path.len().min(depth)].to_vec();
        let code = code_of(&std::fs::read_to_string(&m.file).expect("readable source"));
        for r in references(m, &code) {
            let Some(to) = node_of(&r, &known, depth) else { continue };
            if to == from || to.is_empty() {
                continue;
            }
            if depth == 2 && (to.len() < 2 || to[0] != from[0]) {
                continue; // not a sibling in the same folder
            }
            edges.entry(from.clone()).or_default().insert(to);
        }
    }
    edges
}

fn show(cycle: &[Vec<String>]) -> String {
    cycle.iter().map(|p| p.join("::")).collect::<Vec<_>>().join(" -> ")
}

fn src() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn top_level_modules_depend_one_way() {
    let mods = modules(&src());
    let e = edges(&mods, 1);
    assert!(e.len() >= 10, "the reader found the runtime's modules and their references: {e:?}");
    assert!(
        e.get(&vec!["worker".to_string()]).is_some_and(|w| w.contains(&vec!["green".to_string()])),
        "the reader sees that the workers use green threads: {e:?}"
    );
    if let Some(c) = find_cycle(&e) {
        panic!("import cycle between runtime modules: {}", show(&c));
    }
}

#[test]
fn the_files_of_each_folder_depend_one_way() {
    let mods = modules(&src());
    let e = edges(&mods, 2);
    let w = |s: &str| vec!["worker".to_string(), s.to_string()];
    assert!(
        e.get(&w("sched")).is_some_and(|to| to.contains(&w("switch"))),
        "the reader sees that the scheduler uses the switch: {e:?}"
    );
    if let Some(c) = find_cycle(&e) {
        panic!("import cycle between the files of a folder: {}", show(&c));
    }
}

/// The reader itself: a cycle written in a scratch tree is found, with `use` groups and `super`.
#[test]
fn the_reader_finds_a_cycle_through_a_use_group() {
    let dir = std::env::temp_dir().join(format!("synergy-layering-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("a")).unwrap();
    std::fs::write(dir.join("lib.rs"), "mod a;\nmod b;\n").unwrap();
    std::fs::write(dir.join("a/mod.rs"), "mod x;\nmod y;\n").unwrap();
    std::fs::write(dir.join("a/x.rs"), "use super::{y::f, z};\n// crate::b::ignored\n").unwrap();
    std::fs::write(dir.join("a/y.rs"), "pub fn f() { super::x::g(); crate::b::h(); }\n").unwrap();
    std::fs::write(dir.join("b.rs"), "use crate::{a::x::g as gg};\n").unwrap();
    let mods = modules(&dir);
    let top = find_cycle(&edges(&mods, 1)).map(|c| show(&c));
    let inner = find_cycle(&edges(&mods, 2)).map(|c| show(&c));
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(top.as_deref().is_some_and(|c| c.contains('a') && c.contains('b')), "a <-> b: {top:?}");
    assert!(inner.as_deref().is_some_and(|c| c.contains("a::x") && c.contains("a::y")), "x <-> y: {inner:?}");
}
