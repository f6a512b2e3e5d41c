//! Embeds the charm tree (`charms/`) in the binary: generates a table of every file with its
//! relative path, contents and mode, so a single `0km` file is the whole tool.

use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            walk(&p, out);
        } else if p.is_file() {
            out.push(p);
        }
    }
}

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("manifest dir"));
    let charms = root.join("charms");
    println!("cargo:rerun-if-changed=charms");
    let mut files = Vec::new();
    walk(&charms, &mut files);
    let mut code = String::from("pub static CHARM_FILES: &[EmbeddedFile] = &[\n");
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
        let rel = f.strip_prefix(&charms).expect("under charms/");
        let mode = std::fs::metadata(f).expect("stat").permissions().mode();
        let mode = if mode & 0o111 != 0 { 0o755 } else { 0o644 };
        writeln!(
            code,
            "    EmbeddedFile {{ path: {:?}, data: include_bytes!({:?}), mode: 0o{:o} }},",
            rel.to_str().expect("utf-8 path"),
            f.to_str().expect("utf-8 path"),
            mode
        )
        .expect("write");
    }
    code.push_str("];\n");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("out dir")).join("charm_files.rs");
    std::fs::write(out, code).expect("write charm_files.rs");
}
