//! Extracts the library's SDK doc examples for `tests/doc_examples`.
//!
//! The library's rustdoc examples that need an AWS SDK client crate cannot be doctests:
//! the library has no AWS SDK dev-dependency. They are fenced ```` ```ignore ```` with the
//! hidden first line `# // SDK example: compiled [and run] by integration/tests/doc_examples`.
//! This script copies each into a module of `$OUT_DIR/doc_examples.rs` (hidden lines
//! unhidden, as rustdoc does), so the test binary compiles every one of them, and calls
//! `main` of those marked "and run". The examples stay written once, in the library's docs.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

const MARK: &str = "# // SDK example: compiled";

fn main() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../src");
    println!("cargo::rerun-if-changed={}", src.display());
    let mut files = Vec::new();
    collect(&src, &mut files);
    files.sort();
    let mut out = String::new();
    let mut n = 0;
    for file in &files {
        let text = std::fs::read_to_string(file).expect("read a source file");
        let mut lines = text.lines().map(str::trim_start).peekable();
        while let Some(line) = lines.next() {
            let Some(prefix) = ["//! ", "/// "].into_iter().find(|p| line.starts_with(p)) else {
                continue;
            };
            if line[prefix.len()..].trim() != "```ignore" {
                continue;
            }
            let Some(mark) = lines.peek().and_then(|l| l.strip_prefix(prefix)) else {
                continue;
            };
            if !mark.starts_with(MARK) {
                continue;
            }
            let run = mark.contains("and run");
            lines.next();
            n += 1;
            let rel = file.strip_prefix(&src).unwrap().display().to_string();
            writeln!(
                out,
                "/// From `src/{rel}`.\n#[allow(dead_code, unused_imports)]\nmod example_{n} {{"
            )
            .unwrap();
            for code in lines.by_ref() {
                let code = code
                    .strip_prefix(prefix.trim_end())
                    .expect("a doc comment line");
                let code = code.strip_prefix(' ').unwrap_or(code);
                if code.trim() == "```" {
                    break;
                }
                let code = match code.strip_prefix('#') {
                    Some(rest) if rest.is_empty() || rest.starts_with(' ') => rest.trim_start(),
                    _ => code,
                };
                writeln!(out, "    {code}").unwrap();
            }
            if run {
                writeln!(
                    out,
                    "    #[test]\n    fn runs() {{\n        main();\n    }}"
                )
                .unwrap();
            }
            writeln!(out, "}}").unwrap();
        }
    }
    writeln!(
        out,
        "/// How many SDK examples the library's docs hold.\npub const EXAMPLES: usize = {n};"
    )
    .unwrap();
    let dest = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("doc_examples.rs");
    std::fs::write(dest, out).expect("write doc_examples.rs");
}

fn collect(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src/") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            collect(&path, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
}
