//! The exit statuses of `batchq`, in one place: `--help` prints this table,
//! docs/cli.md documents it, and `cli/tests/contract.rs` (`exit_statuses_are_the_ones_help_lists`) pins each one.

/// Why `batchq` exits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// The command did all its work. Also when whoever read stdout stopped
    /// reading (`batchq jobs | head -2`): that is not a failure.
    Ok,
    /// The command failed; the reason is on stderr.
    Failure,
    /// The command line is wrong (an unknown flag, a bad value such as
    /// `--timeout 5y`, `--api` with a command that works on the store).
    Usage,
    /// The command ran, but part of its work failed: `enqueue` rejected lines
    /// or found conflicts, `submit` or `poll` reported errors or abandoned
    /// jobs, `export` or `import` left requests out (the report lists them).
    Partial,
    /// The store could not be reached: the AWS endpoint (the emulator) is not
    /// listening or AWS refuses, or the data directory is held or unreadable.
    StorageUnavailable,
    /// `wait` gave up after `--timeout` with work still queued or in flight.
    TimedOut,
    /// Stopped by Ctrl-C (SIGINT) or SIGTERM before the work was done.
    Interrupted,
}

impl Exit {
    /// Every status, in the order `--help` and docs/cli.md list them.
    pub const ALL: [Exit; 7] = [
        Exit::Ok,
        Exit::Failure,
        Exit::Usage,
        Exit::Partial,
        Exit::StorageUnavailable,
        Exit::TimedOut,
        Exit::Interrupted,
    ];

    pub fn code(self) -> u8 {
        match self {
            Exit::Ok => 0,
            Exit::Failure => 1,
            Exit::Usage => 2,
            Exit::Partial => 3,
            Exit::StorageUnavailable => 4,
            Exit::TimedOut => 5,
            Exit::Interrupted => 130,
        }
    }

    /// One line for `--help`.
    pub fn meaning(self) -> &'static str {
        match self {
            Exit::Ok => "done (also when the reader of stdout stopped early, as `| head` does)",
            Exit::Failure => "the command failed; the reason is on stderr",
            Exit::Usage => "the command line is wrong (unknown flag, bad value)",
            Exit::Partial => {
                "it ran, but part of its work failed: enqueue rejected lines or found conflicts, submit or \
                 poll reported errors or abandoned jobs, export or import left requests out (listed on stdout)"
            }
            Exit::StorageUnavailable => {
                "the store cannot be reached (AWS endpoint down or refusing, data directory held or unreadable)"
            }
            Exit::TimedOut => "wait gave up after --timeout",
            Exit::Interrupted => "stopped by Ctrl-C or SIGTERM",
        }
    }

    /// The table `batchq --help` ends with.
    pub fn help_table() -> String {
        let mut out = String::from("Exit status:\n");
        for e in Exit::ALL {
            out.push_str(&format!("  {:>3}  {}\n", e.code(), e.meaning()));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_exit_status_has_its_own_code() {
        let mut codes: Vec<u8> = Exit::ALL.iter().map(|e| e.code()).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), Exit::ALL.len());
        // clap exits 2 on a usage error by itself: that must be ours too.
        assert_eq!(Exit::Usage.code(), 2);
    }

    #[test]
    fn docs_cli_md_lists_every_exit_status_and_no_other() {
        let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/cli.md")).unwrap();
        let table = doc.split("## Exit status").nth(1).expect("an Exit status section");
        let table = table.split("\n## ").next().unwrap();
        let mut documented: Vec<u8> = table
            .lines()
            .filter_map(|l| l.strip_prefix("| ")?.split(' ').next()?.parse().ok())
            .collect();
        documented.sort_unstable();
        let mut codes: Vec<u8> = Exit::ALL.iter().map(|e| e.code()).collect();
        codes.sort_unstable();
        assert_eq!(documented, codes);
    }
}
