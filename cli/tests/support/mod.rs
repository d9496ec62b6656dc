//! What several test files of the CLI share.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// A `batchq serve` a test started, killed when dropped.
#[allow(dead_code)] // not every test file that shares this module starts one
pub struct Serve {
    child: Child,
    /// Where it serves, `http://127.0.0.1:PORT`.
    pub url: String,
}

#[allow(dead_code)]
impl Serve {
    /// Runs `batchq init`, then `batchq serve` on a free loopback port with
    /// submit and poll every second; `batchq` builds a command carrying the
    /// test's environment.
    pub fn start(batchq: impl Fn(&[&str]) -> Command) -> Serve {
        Self::start_polling_every(batchq, "1s")
    }

    /// [`Serve::start`] with the scheduled poll every `poll_every` (a test
    /// of what else triggers a poll wants it rare).
    pub fn start_polling_every(batchq: impl Fn(&[&str]) -> Command, poll_every: &str) -> Serve {
        let init = batchq(&["init"]).output().unwrap();
        assert!(init.status.success(), "{}", String::from_utf8_lossy(&init.stderr));
        let mut child = batchq(&[
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--submit-every",
            "1s",
            "--poll-every",
            poll_every,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
        let url = serving_url(&mut child);
        Serve { child, url }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

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
