//! Imports run one way: no cycle between the crate's top-level modules, nor between sibling
//! modules (the children of one module). See ARCHITECTURE.md for the intended arrows.
//!
//! The checker reads every file under `src/` and under `mock/src/` (each its own crate), drops comments and string literals, and follows
//! each `crate::` and `super::` path (in `use` trees and in code) to the module it names,
//! through the `use` re-exports of the modules on the way (`crate::Error` is `error`). An edge
//! `a -> b` is recorded between the two children of the closest common ancestor. A module
//! declaring its child is not an import; a child using its parent is not a sibling edge.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
};

/// The source folders checked, one per crate of the workspace: the client and its mock.
const CRATES: &[&str] = &["src", "mock/src"];

/// Import edges tolerated until the work removing them lands, as `(crate folder, from module,
/// to module)` with module paths from that crate's root: the check ignores these edges, and
/// each one must still lie on a cycle. Empty it once the cycles are gone.
const ALLOWED_FOR_NOW: &[(&str, &str, &str)] = &[];

/// The mock's layers, lowest first: a module imports only modules of its own layer or below
/// (within a layer, the cycle check keeps the imports one way). `lib.rs`, with every
/// `impl MockVeracity`, sits above them all.
const MOCK_LAYERS: &[(&str, &[&str])] = &[
    (
        "leaves",
        &[
            "blob_admin",
            "body",
            "ids",
            "paths",
            "pkce",
            "reply",
            "sas",
            "stats",
        ],
    ),
    ("registries", &["fault", "storage", "tokens", "users"]),
    ("state", &["state"]),
    (
        "handlers",
        &[
            "authorize",
            "fault_reply",
            "gateway",
            "grants",
            "storage_sas",
            "token",
        ],
    ),
    ("server", &["server"]),
];

type ModPath = Vec<String>;
/// A cycle: its modules (full paths), and the edges between them.
type Cycle = (Vec<String>, Vec<(String, String)>);

#[derive(Default)]
struct Crate {
    /// Every module, with the text of the file it lives in (inline modules share it).
    modules: BTreeSet<ModPath>,
    /// `(module, name) -> full path` for every `use` in a module (re-exports included).
    uses: BTreeMap<(ModPath, String), ModPath>,
    /// `(from module, path as written, resolved from the crate root)`.
    references: Vec<(ModPath, ModPath)>,
}

/// Replaces comments and string/char literals by spaces, keeping the layout.
fn strip(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            let mut depth = 0;
            while i < b.len() {
                if b[i..].starts_with(b"/*") {
                    depth += 1;
                    i += 2;
                } else if b[i..].starts_with(b"*/") {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            out.push(' ');
        } else if b[i] == b'r'
            && (b[i + 1..].starts_with(b"\"") || b[i + 1..].starts_with(b"#"))
            && (i == 0
                || !is_ident(b[i - 1])
                || (b[i - 1] == b'b' && (i < 2 || !is_ident(b[i - 2]))))
        {
            // Raw string r"..." / r#"..."#.
            let mut j = i + 1;
            let mut hashes = 0;
            while j < b.len() && b[j] == b'#' {
                hashes += 1;
                j += 1;
            }
            if j < b.len() && b[j] == b'"' {
                let close: Vec<u8> = std::iter::once(b'"')
                    .chain(std::iter::repeat_n(b'#', hashes))
                    .collect();
                j += 1;
                while j < b.len() && !b[j..].starts_with(&close) {
                    j += 1;
                }
                i = j + close.len();
                out.push_str("\"\"");
            } else {
                out.push('r');
                i += 1;
            }
        } else if b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else if b[i] == b'\'' {
            // A char literal ('a', '\n', '\u{..}'), not a lifetime ('a).
            let end = if b.get(i + 1) == Some(&b'\\') {
                b[i + 2..]
                    .iter()
                    .position(|&c| c == b'\'')
                    .map(|p| i + 2 + p)
            } else if b.get(i + 2) == Some(&b'\'') {
                Some(i + 2)
            } else {
                None
            };
            match end {
                Some(e) => {
                    out.push_str("' '");
                    i = e + 1;
                }
                None => {
                    out.push('\'');
                    i += 1;
                }
            }
        } else {
            let c = src[i..].chars().next().unwrap();
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// A tiny token stream: identifiers, `::`, and single punctuation characters.
fn tokens(src: &str) -> Vec<String> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_whitespace() {
            i += 1;
        } else if is_ident(b[i]) {
            let s = i;
            while i < b.len() && is_ident(b[i]) {
                i += 1;
            }
            out.push(src[s..i].to_owned());
        } else if b[i..].starts_with(b"::") {
            out.push("::".into());
            i += 2;
        } else {
            let c = src[i..].chars().next().unwrap();
            out.push(c.to_string());
            i += c.len_utf8();
        }
    }
    out
}

/// Expands a `use` tree or path starting at `t[*i]` into full paths (prefix included).
/// Returns `(path, bound name)` pairs.
fn path_tree(t: &[String], i: &mut usize, prefix: &ModPath, out: &mut Vec<(ModPath, String)>) {
    let mut path = prefix.clone();
    loop {
        match t.get(*i).map(String::as_str) {
            Some("{") => {
                *i += 1;
                while t.get(*i).is_some_and(|s| s != "}") {
                    path_tree(t, i, &path, out);
                    if t.get(*i).is_some_and(|s| s == ",") {
                        *i += 1;
                    }
                }
                *i += 1;
                return;
            }
            Some("*") => {
                *i += 1;
                return;
            }
            Some(id) if is_ident(id.as_bytes()[0]) => {
                *i += 1;
                match id {
                    "self" => {}
                    "super" => {
                        path.pop();
                    }
                    _ => path.push(id.to_owned()),
                }
                if t.get(*i).is_some_and(|s| s == "::") {
                    *i += 1;
                    continue;
                }
                let mut name = path.last().cloned().unwrap_or_default();
                if t.get(*i).is_some_and(|s| s == "as") {
                    name = t.get(*i + 1).cloned().unwrap_or_default();
                    *i += 2;
                }
                out.push((path, name));
                return;
            }
            _ => {
                out.push((path.clone(), path.last().cloned().unwrap_or_default()));
                return;
            }
        }
    }
}

impl Crate {
    fn from_files(files: &[(ModPath, String)]) -> Self {
        let mut krate = Crate::default();
        for (module, _) in files {
            krate.modules.insert(module.clone());
        }
        for (file_module, text) in files {
            let t = tokens(&strip(text));
            // Inline modules: (path, brace depth at which they close).
            let mut stack: Vec<(ModPath, usize)> = vec![(file_module.clone(), 0)];
            let mut depth = 0usize;
            let mut i = 0;
            while i < t.len() {
                let here = stack.last().unwrap().0.clone();
                match t[i].as_str() {
                    "{" => depth += 1,
                    "}" => {
                        depth -= 1;
                        if stack.len() > 1 && stack.last().unwrap().1 == depth {
                            stack.pop();
                        }
                    }
                    "mod" if t.get(i + 2).is_some_and(|s| s == "{") => {
                        let mut inner = here.clone();
                        inner.push(t[i + 1].clone());
                        krate.modules.insert(inner.clone());
                        stack.push((inner, depth));
                        depth += 1;
                        i += 3;
                        continue;
                    }
                    "use" if i == 0 || t[i - 1] != "::" => {
                        i += 1;
                        let mut found = Vec::new();
                        use_tree(&t, &mut i, &here, &krate.modules, &mut found);
                        for (path, name) in found {
                            krate.references.push((here.clone(), path.clone()));
                            krate.uses.insert((here.clone(), name), path);
                        }
                        continue;
                    }
                    "crate" | "super"
                        if (i == 0 || (t[i - 1] != "::" && t[i - 1] != "$"))
                            && t.get(i + 1).is_some_and(|s| s == "::") =>
                    {
                        if t.get(i.wrapping_sub(1)).is_some_and(|s| s == "(")
                            && t.get(i.wrapping_sub(2)).is_some_and(|s| s == "pub")
                        {
                            // `pub(crate)`, `pub(super)`.
                            i += 1;
                            continue;
                        }
                        let prefix = absolute(&t, &mut i, &here, &krate.modules).unwrap();
                        let mut found = Vec::new();
                        path_tree(&t, &mut i, &prefix, &mut found);
                        for (path, _) in found {
                            krate.references.push((here.clone(), path));
                        }
                        continue;
                    }
                    _ => {}
                }
                i += 1;
            }
        }
        krate
    }

    /// The module a path from the crate root lands in, following `use` re-exports.
    fn resolve(&self, path: &[String], hops: usize) -> ModPath {
        let mut module: ModPath = Vec::new();
        for (n, seg) in path.iter().enumerate() {
            let mut next = module.clone();
            next.push(seg.clone());
            if self.modules.contains(&next) {
                module = next;
                continue;
            }
            if hops < 8
                && let Some(target) = self.uses.get(&(module.clone(), seg.clone()))
            {
                let mut full = target.clone();
                full.extend(path[n + 1..].iter().cloned());
                return self.resolve(&full, hops + 1);
            }
            break;
        }
        module
    }

    /// Edges between siblings: `parent -> {(from child, to child)}`.
    fn edges(&self) -> BTreeMap<ModPath, BTreeSet<(String, String)>> {
        let mut edges: BTreeMap<ModPath, BTreeSet<(String, String)>> = BTreeMap::new();
        for (from, path) in &self.references {
            let to = self.resolve(path, 0);
            let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
            if common < from.len() && common < to.len() {
                edges
                    .entry(from[..common].to_vec())
                    .or_default()
                    .insert((from[common].clone(), to[common].clone()));
            }
        }
        edges
    }

    /// Every strongly connected component of more than one module, as full module paths.
    fn cycles(&self) -> Vec<Cycle> {
        self.cycles_without(&BTreeSet::new())
    }

    /// The cycles left once the `(from, to)` edges named in `ignored` (full paths) are dropped.
    fn cycles_without(&self, ignored: &BTreeSet<(String, String)>) -> Vec<Cycle> {
        let mut found = Vec::new();
        for (parent, mut edges) in self.edges() {
            let name = |m: &String| {
                let mut p = parent.clone();
                p.push(m.clone());
                p.join("::")
            };
            edges.retain(|(a, b)| !ignored.contains(&(name(a), name(b))));
            let nodes: BTreeSet<&String> = edges.iter().flat_map(|(a, b)| [a, b]).collect();
            let reach = |start: &String| {
                let mut seen = BTreeSet::from([start.clone()]);
                let mut todo = vec![start.clone()];
                while let Some(n) = todo.pop() {
                    for (a, b) in &edges {
                        if *a == n && seen.insert(b.clone()) {
                            todo.push(b.clone());
                        }
                    }
                }
                seen
            };
            let mut done = BTreeSet::new();
            for n in &nodes {
                if done.contains(*n) {
                    continue;
                }
                let component: BTreeSet<String> = reach(n)
                    .into_iter()
                    .filter(|m| reach(m).contains(*n))
                    .collect();
                done.extend(component.iter().cloned());
                if component.len() > 1 {
                    let inside: Vec<(String, String)> = edges
                        .iter()
                        .filter(|(a, b)| component.contains(a) && component.contains(b))
                        .map(|(a, b)| (name(a), name(b)))
                        .collect();
                    found.push((component.iter().map(name).collect(), inside));
                }
            }
        }
        found
    }
}

/// The tree of a `use` item at `t[*i]`, whose first segments are not resolved yet: a
/// prefix-less group (`use {a::B, c::{self, D}};`, `pub use {…}`) resolves each member on
/// its own; a leading `::` or an external crate's name skips the member.
fn use_tree(
    t: &[String],
    i: &mut usize,
    here: &ModPath,
    modules: &BTreeSet<ModPath>,
    out: &mut Vec<(ModPath, String)>,
) {
    match t.get(*i).map(String::as_str) {
        Some("::") => {
            // `use ::std::…;`: an external crate by definition.
            *i += 1;
            let mut throwaway = Vec::new();
            path_tree(t, i, &Vec::new(), &mut throwaway);
        }
        Some("{") => {
            *i += 1;
            while t.get(*i).is_some_and(|s| s != "}") {
                let before = *i;
                use_tree(t, i, here, modules, out);
                if t.get(*i).is_some_and(|s| s == ",") {
                    *i += 1;
                }
                if *i == before {
                    *i += 1;
                }
            }
            *i += 1;
        }
        _ => match absolute(t, i, here, modules) {
            Some(prefix) => path_tree(t, i, &prefix, out),
            None => {
                // An external crate (`std`, `http`, ...): skip the member.
                let mut throwaway = Vec::new();
                path_tree(t, i, &Vec::new(), &mut throwaway);
            }
        },
    }
}

/// `crate::`, `super::` (repeated) or `self::` at `t[*i]`: the module it starts from, with
/// `*i` moved past the `::`. `None` for any other first segment.
fn absolute(
    t: &[String],
    i: &mut usize,
    here: &ModPath,
    modules: &BTreeSet<ModPath>,
) -> Option<ModPath> {
    let mut base = match t.get(*i).map(String::as_str) {
        Some("crate") => Vec::new(),
        Some("super") => here[..here.len().saturating_sub(1)].to_vec(),
        Some("self") => here.clone(),
        // `use child::Item;` names a child module relative to this one (Rust 2018 paths).
        Some(id) => {
            let mut child = here.clone();
            child.push(id.to_owned());
            if modules.contains(&child) {
                return Some(here.clone());
            }
            return None;
        }
        None => return None,
    };
    *i += 1;
    if t.get(*i).is_some_and(|s| s == "::") {
        *i += 1;
    }
    while t.get(*i).is_some_and(|s| s == "super") {
        base.pop();
        *i += 2;
    }
    Some(base)
}

/// Every `.rs` file under `dir` (a crate's source folder, from the workspace root), with its
/// module path.
fn source_files(dir: &str) -> Vec<(ModPath, String)> {
    fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut paths = Vec::new();
    walk(&src, &mut paths);
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            let rel = p.strip_prefix(&src).unwrap().with_extension("");
            let mut module: ModPath = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if module.last().is_some_and(|l| l == "mod" || l == "lib") {
                module.pop();
            }
            (module, std::fs::read_to_string(&p).unwrap())
        })
        .collect()
}

/// The edges `ALLOWED_FOR_NOW` tolerates in the crate under `dir`.
fn allowed(dir: &str) -> BTreeSet<(String, String)> {
    ALLOWED_FOR_NOW
        .iter()
        .filter(|(krate, _, _)| *krate == dir)
        .map(|(_, from, to)| (from.to_string(), to.to_string()))
        .collect()
}

#[test]
fn no_import_cycle_between_modules() {
    let mut report = String::new();
    for dir in CRATES {
        let krate = Crate::from_files(&source_files(dir));
        for (component, edges) in krate.cycles_without(&allowed(dir)) {
            let edges: Vec<String> = edges.iter().map(|(a, b)| format!("{a} -> {b}")).collect();
            report.push_str(&format!(
                "{dir}: cycle among {component:?}: {}\n",
                edges.join(", ")
            ));
        }
    }
    assert!(
        report.is_empty(),
        "import cycles between modules:\n{report}"
    );
}

#[test]
fn the_allowed_for_now_list_holds_only_edges_of_cycles_that_still_exist() {
    for dir in CRATES {
        let cycles = Crate::from_files(&source_files(dir)).cycles();
        for edge in allowed(dir) {
            assert!(
                cycles.iter().any(|(_, edges)| edges.contains(&edge)),
                "{dir}: {} -> {} is on no cycle any more: remove it from ALLOWED_FOR_NOW",
                edge.0,
                edge.1
            );
        }
    }
}

fn files(list: &[(&str, &str)]) -> Vec<(ModPath, String)> {
    list.iter()
        .map(|(m, s)| {
            let path = m.split("::").filter(|s| !s.is_empty()).map(String::from);
            (path.collect(), s.to_string())
        })
        .collect()
}

#[test]
fn the_checker_finds_cycles_through_re_exports_groups_and_super() {
    let krate = Crate::from_files(&files(&[
        ("", "mod a; mod b; mod c; pub use b::Thing;"),
        ("a", "use crate::{Thing, c::{self, X as Y}};\nmod x; mod y;"),
        ("a::x", "use super::y::Z; // use crate::b;\n"),
        ("a::y", "fn f() { let s = \"crate::b::Q\"; super::x::g(); }"),
        ("b", "pub struct Thing; fn f() { crate::a::call(); }"),
        (
            "c",
            "#[cfg(test)] mod tests { use super::*; use crate::c::Z; }",
        ),
    ]));
    let cycles = krate.cycles();
    let names: Vec<Vec<String>> = cycles.iter().map(|(c, _)| c.clone()).collect();
    assert_eq!(
        names,
        vec![
            vec!["a".to_string(), "b".to_string()],
            vec!["a::x".to_string(), "a::y".to_string()],
        ]
    );
}

#[test]
fn the_checker_sees_no_cycle_in_a_one_way_crate() {
    let krate = Crate::from_files(&files(&[
        ("", "mod leaf; mod mid; mod top; pub use leaf::Leaf;"),
        ("leaf", "pub struct Leaf; pub(crate) fn f() {}"),
        ("mid", "use crate::Leaf; fn g() { crate::leaf::f(); }"),
        ("top", "use crate::{mid, leaf::Leaf};"),
    ]));
    assert!(krate.cycles().is_empty());
    assert_eq!(krate.edges().get(&Vec::new()).map(|e| e.len()), Some(3));
}

#[test]
fn every_module_says_its_one_job_in_its_first_doc_line() {
    for (module, text) in CRATES.iter().flat_map(|dir| source_files(dir)) {
        let first = text.lines().next().unwrap_or("");
        assert!(
            first.starts_with("//! ") && first.len() > 20,
            "module {:?} must open with a `//!` line saying its one job, not {first:?}",
            module.join("::")
        );
    }
}

#[test]
fn a_cycle_written_only_through_use_trees_is_caught() {
    // `a -> b` only through the root's prefix-less `pub use {…}` re-export, `b -> a` only
    // through a nested `use crate::{…}` tree.
    let krate = Crate::from_files(&files(&[
        (
            "",
            "mod a; mod b; mod c; pub use {a::{A, self as alpha}, b::B};",
        ),
        ("a", "pub struct A; fn f() -> crate::B { todo!() }"),
        (
            "b",
            "use crate::{c::{self}, alpha::{A as _}}; pub struct B;",
        ),
        ("c", ""),
    ]));
    let names: Vec<Vec<String>> = krate.cycles().into_iter().map(|(c, _)| c).collect();
    assert_eq!(names, vec![vec!["a".to_string(), "b".to_string()]]);
}

#[test]
fn use_trees_without_a_cycle_pass() {
    let krate = Crate::from_files(&files(&[
        (
            "",
            "mod a; mod b; mod c; pub use {a::{A, self as alpha}, b::B};",
        ),
        ("a", "pub struct A; fn f() -> crate::c::C { todo!() }"),
        (
            "b",
            "use crate::{c::{self}, alpha::{A as _}}; pub struct B;",
        ),
        ("c", "pub struct C;"),
    ]));
    assert!(krate.cycles().is_empty());
    let edges = krate.edges().remove(&Vec::new()).unwrap_or_default();
    let edges: Vec<(&str, &str)> = edges
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    assert_eq!(edges, vec![("a", "c"), ("b", "a"), ("b", "c")]);
}

#[test]
fn the_mock_imports_only_its_own_layer_or_those_below() {
    let layer = |module: &str| MOCK_LAYERS.iter().position(|(_, m)| m.contains(&module));
    let krate = Crate::from_files(&source_files("mock/src"));
    for module in krate.modules.iter().filter(|m| m.len() == 1) {
        assert!(
            layer(&module[0]).is_some(),
            "mock module {} is in no layer of MOCK_LAYERS",
            module[0]
        );
    }
    let root = krate.edges().remove(&Vec::new()).unwrap_or_default();
    let upward: Vec<String> = root
        .iter()
        .filter(|(from, to)| layer(from) < layer(to))
        .map(|(from, to)| format!("{from} -> {to}"))
        .collect();
    assert!(
        upward.is_empty(),
        "mock imports reaching up a layer: {upward:?}"
    );
}
