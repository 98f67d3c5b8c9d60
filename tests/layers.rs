//! The layers call only downward: a module names no module of a layer above it.
//!
//! From the top: the binary's assembly (`main.rs`, `cli.rs`, `server.rs`), `http/`,
//! `jobs/`, the engine and accounts, `resources/`, the unit of work (`ctx.rs`),
//! `store/`, and the ground (`clock`, `ids`, `crypto`, `error`, `network`). Rust
//! lets any module name any other, so this test reads the sources: a
//! `crate::<module>` path in code (comments aside) that points at a layer above
//! the file's own fails it.

use std::path::{Path, PathBuf};

/// Layers from the top; a file may name its own layer and any below it.
const LAYERS: &[(&str, &[&str])] = &[
    ("assembly", &["main", "cli", "server"]),
    ("http", &["http"]),
    ("jobs", &["jobs"]),
    ("engine", &["engine", "accounts"]),
    ("resources", &["resources"]),
    ("ctx", &["ctx"]),
    ("store", &["store"]),
    ("ground", &["clock", "ids", "crypto", "error", "network"]),
];

fn layer_of_module(module: &str) -> Option<usize> {
    LAYERS.iter().position(|(_, mods)| mods.contains(&module))
}

/// The top-level module a source file belongs to (`src/http/app.rs` → `http`).
fn module_of(root: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(root.join("src")).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    Some(first.trim_end_matches(".rs").to_string())
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The modules a line of code names as `crate::<module>` (or `payground::`).
fn named_modules(line: &str) -> Vec<String> {
    let code = line.split("//").next().unwrap_or("");
    let mut out = Vec::new();
    for prefix in ["crate::", "$crate::"] {
        let mut rest = code;
        while let Some(at) = rest.find(prefix) {
            rest = &rest[at + prefix.len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.push(name);
            }
        }
    }
    out
}

#[test]
fn no_module_names_a_layer_above_its_own() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    assert!(files.len() > 30, "found only {} source files", files.len());
    let mut upward = Vec::new();
    for file in &files {
        let Some(module) = module_of(&root, file) else {
            continue;
        };
        if module == "lib" {
            continue;
        }
        let Some(own) = layer_of_module(&module) else {
            panic!(
                "{}: module `{module}` is in no layer; add it to LAYERS",
                file.display()
            );
        };
        let text = std::fs::read_to_string(file).expect("a readable source file");
        for (n, line) in text.lines().enumerate() {
            for named in named_modules(line) {
                // Macros exported at the crate root (`crate::execute!`) name no module.
                let Some(theirs) = layer_of_module(&named) else {
                    continue;
                };
                if theirs < own {
                    upward.push(format!(
                        "{}:{}: {} names {} ({} above {})",
                        file.strip_prefix(&root).unwrap_or(file).display(),
                        n + 1,
                        module,
                        named,
                        LAYERS[theirs].0,
                        LAYERS[own].0
                    ));
                }
            }
        }
    }
    assert!(
        upward.is_empty(),
        "calls up the layers:\n{}",
        upward.join("\n")
    );
}

#[test]
fn the_checker_sees_an_upward_path() {
    assert_eq!(named_modules("use crate::http::app::App;"), ["http"]);
    assert_eq!(
        named_modules("let x = crate::jobs::webhooks::start(); // crate::http"),
        ["jobs"]
    );
    assert!(named_modules("//! see crate::http").is_empty());
    assert!(layer_of_module("http") < layer_of_module("resources"));
}
