//! Every HTTP client the shipped code builds goes through
//! `batchq_core::tls::http_client_builder`, which installs `ring` as the
//! TLS provider first. The functions' reqwest has no provider of its own,
//! so a client built with `reqwest::Client::builder()` fails there at run
//! time, while test builds (whose reqwest brings aws-lc-rs) would never
//! show it.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            // Test code may build plain clients.
            if !path.ends_with("tests") {
                rust_files(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn shipped_code_builds_http_clients_only_through_the_tls_module() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut files = Vec::new();
    for dir in ["shared/src", "cli/src", "functions"] {
        rust_files(&root.join(dir), &mut files);
    }
    assert!(files.len() > 50, "found only {} files", files.len());
    let offenders: Vec<String> = files
        .iter()
        .filter(|f| !f.ends_with("shared/src/tls.rs"))
        .filter(|f| {
            let text = std::fs::read_to_string(f).unwrap();
            // Unit tests at the end of a file may build their own clients.
            let shipped = text.split("#[cfg(test)]").next().unwrap_or_default();
            shipped.contains("reqwest::Client::builder()") || shipped.contains("reqwest::Client::new()")
        })
        .map(|f| f.strip_prefix(root).unwrap().display().to_string())
        .collect();
    assert!(
        offenders.is_empty(),
        "build clients with batchq_core::tls::http_client_builder(): {offenders:?}"
    );
}
