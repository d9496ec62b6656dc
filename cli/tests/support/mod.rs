//! What several test files of the CLI share.

use std::io::{BufRead, BufReader};
use std::process::Child;

/// Reads the first line a started `batchq serve` prints on stdout (piped)
/// and returns the URL it serves on, `http://HOST:PORT`: the line is
/// `batchq serving URL`, or with `--json` an object with `serving`.
pub fn serving_url(child: &mut Child) -> String {
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().expect("serve's stdout is piped"))
        .read_line(&mut line)
        .expect("read serve's first line");
    let line = line.trim();
    if let Some(url) = line.strip_prefix("batchq serving ") {
        return url.to_owned();
    }
    let v: serde_json::Value = serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("serve's first line is neither `batchq serving URL` nor JSON ({e}): {line:?}"));
    v["serving"]
        .as_str()
        .unwrap_or_else(|| panic!("no serving URL in {line:?}"))
        .to_owned()
}
