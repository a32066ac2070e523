//! The architecture, enforced: the adapter's top-level modules form layers, each importing only
//! the layers below it, and the st2 crates depend on nothing of the adapter. A new top-level
//! module must be placed in [`LAYERS`]; an import that points up, or a cycle, fails here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The adapter's top-level modules, bottom first. A module may import those before it.
const LAYERS: &[&str] = &[
    "core",
    "telemetry",
    "events",
    "server",
    "config",
    "app",
    "cli",
];

/// Workspace crates that must stand alone: they may not depend on any crate named here.
const STANDALONE: &[(&str, &[&str])] = &[
    (
        "crates/st2-basics",
        &["portarium-st2", "st2-client", "st2-emulator"],
    ),
    ("crates/st2-client", &["portarium-st2", "st2-emulator"]),
    (
        "crates/st2-emulator",
        &["portarium-st2", "st2-client", "st2-basics"],
    ),
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().map(Result::unwrap) {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The source without its unit-test module (tests may reach anywhere).
fn without_tests(text: &str) -> &str {
    match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    }
}

/// Every `crate::<module>` a file names, with the line it is on.
fn crate_paths(text: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let mut rest = line;
        while let Some(i) = rest.find("crate::") {
            let after = &rest[i + "crate::".len()..];
            let name: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            // `$crate::` and `portarium_st2::crate::` are not this crate's paths.
            let before = rest[..i].chars().last();
            if !name.is_empty() && !matches!(before, Some('$' | '_' | ':')) {
                found.push((n + 1, name));
            }
            rest = after;
        }
    }
    found
}

/// `(importer, imported) -> first place` for every import between top-level modules.
fn module_edges() -> BTreeMap<(String, String), String> {
    let src = root().join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut edges = BTreeMap::new();
    for file in files {
        let rel = file.strip_prefix(&src).unwrap();
        let top = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let top = top.trim_end_matches(".rs").to_string();
        if top == "lib" || top == "main" {
            continue;
        }
        assert!(
            LAYERS.contains(&top.as_str()),
            "src/{} is in top-level module `{top}`, which has no layer: add it to LAYERS in tests/it/layering.rs and to docs/architecture.md",
            rel.display()
        );
        let text = std::fs::read_to_string(&file).unwrap();
        for (line, imported) in crate_paths(without_tests(&text)) {
            if imported != top && LAYERS.contains(&imported.as_str()) {
                edges
                    .entry((top.clone(), imported))
                    .or_insert_with(|| format!("src/{}:{line}", rel.display()));
            }
        }
    }
    edges
}

fn rank(module: &str) -> usize {
    LAYERS.iter().position(|m| *m == module).unwrap()
}

#[test]
fn no_module_imports_one_above_it() {
    let upward: Vec<String> = module_edges()
        .into_iter()
        .filter(|((from, to), _)| rank(to) > rank(from))
        .map(|((from, to), at)| format!("{at}: `{from}` imports `{to}`, which is above it"))
        .collect();
    assert!(
        upward.is_empty(),
        "imports must point down the layers {LAYERS:?}:\n{}",
        upward.join("\n")
    );
}

#[test]
fn no_two_modules_form_a_cycle() {
    let edges = module_edges();
    let mut graph: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (from, to) in edges.keys() {
        graph.entry(from).or_default().insert(to);
    }
    // Reachability by repeated expansion; the graph has a handful of nodes.
    for start in LAYERS {
        let mut seen: BTreeSet<&str> = BTreeSet::new();
        let mut todo: Vec<&str> = graph.get(start).into_iter().flatten().copied().collect();
        while let Some(m) = todo.pop() {
            assert_ne!(m, *start, "`{start}` reaches itself through its imports");
            if seen.insert(m) {
                todo.extend(graph.get(m).into_iter().flatten().copied());
            }
        }
    }
}

#[test]
fn the_st2_crates_depend_on_nothing_of_the_adapter() {
    for (krate, forbidden) in STANDALONE {
        let manifest = std::fs::read_to_string(root().join(krate).join("Cargo.toml")).unwrap();
        for name in build_and_runtime_dependencies(&manifest) {
            assert!(
                !forbidden.contains(&name),
                "{krate}/Cargo.toml depends on {name}: it must stand alone"
            );
        }
        let mut files = Vec::new();
        rust_files(&root().join(krate).join("src"), &mut files);
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            for name in *forbidden {
                let path = format!("{}::", name.replace('-', "_"));
                assert!(
                    !text.contains(&path),
                    "{} names {path}: {krate} must stand alone",
                    file.display()
                );
            }
        }
    }
}

/// The names a manifest's `[dependencies]` and `[build-dependencies]` sections (plain or per
/// target) declare, in the `name = ...` and `[dependencies.name]` forms. Dev-dependencies are
/// left out: a crate's tests may use the emulator without the crate itself depending on it.
fn build_and_runtime_dependencies(manifest: &str) -> Vec<&str> {
    let mut names = Vec::new();
    // Inside a `[dependencies]`-like section, whose keys are dependency names.
    let mut listing = false;
    for line in manifest.lines().map(str::trim) {
        if let Some(header) = line.strip_prefix('[') {
            let header = header.trim_end_matches(']');
            let counted = header
                .rsplit_once("dependencies")
                .filter(|(before, _)| !before.ends_with("dev-"));
            // `[dependencies.name]`: one dependency, its keys are its settings.
            let one = counted.and_then(|(_, after)| after.strip_prefix('.'));
            names.extend(one);
            listing = counted.is_some_and(|(_, after)| after.is_empty());
            continue;
        }
        let name = line.split(['=', ' ', '.']).next().unwrap_or("");
        if listing && !name.is_empty() && !name.starts_with('#') {
            names.push(name);
        }
    }
    names
}

#[test]
fn the_manifest_check_reads_only_build_and_runtime_dependencies() {
    let manifest = "[package]\nname = \"portarium-st2\"\n\
                    [dependencies]\nst2-basics = { path = \"../st2-basics\" }\ntokio.workspace = true\n\
                    [target.'cfg(unix)'.dependencies]\nlibc = \"0.2\"\n\
                    [build-dependencies.cc]\nversion = \"1\"\n\
                    [dev-dependencies]\nst2-emulator = { path = \"../st2-emulator\" }\n\
                    [dev-dependencies.regex]\nversion = \"1\"\n";
    assert_eq!(
        build_and_runtime_dependencies(manifest),
        ["st2-basics", "tokio", "libc", "cc"]
    );
}

#[test]
fn the_checker_sees_an_upward_import() {
    let found = crate_paths("use crate::server::App; // crate::cli\n$crate::x");
    assert_eq!(found, [(1, "server".to_string()), (1, "cli".to_string())]);
}
