//! `batchq-bench`'s arguments: a bad flag or value is refused (exit 2, a
//! message naming it) before anything runs, rather than ignored; `--help`
//! documents every flag and the variables it reads.

use std::process::Command;

fn bench(args: &[&str], only: Option<&str>) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_batchq-bench"));
    cmd.args(args).env_remove("BATCHQ_BENCH_ONLY");
    if let Some(v) = only {
        cmd.env("BATCHQ_BENCH_ONLY", v);
    }
    cmd.output().unwrap()
}

#[test]
fn a_bad_flag_or_value_exits_2_naming_it() {
    for (args, only, named) in [
        (&["--qiuck"][..], None, "--qiuck"),
        (&["--rss-requests", "many"][..], None, "--rss-requests"),
        (&["--rss-requests", "0"][..], None, "--rss-requests"),
        (&["--rss-requests"][..], None, "--rss-requests"),
        (&["--only", "everything"][..], None, "everything"),
        (&[][..], Some("embeded"), "BATCHQ_BENCH_ONLY=\"embeded\""),
        (&["extra"][..], None, "extra"),
    ] {
        let out = bench(args, only);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?} {only:?}: {err}");
        assert!(err.contains(named), "{args:?} {only:?}: {err}");
        assert!(
            out.stdout.is_empty(),
            "nothing ran: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

#[test]
fn help_documents_every_flag_and_variable() {
    let out = bench(&["--help"], None);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for word in [
        "--quick",
        "--rss-requests",
        "--out",
        "--only",
        "--embedded-ingest",
        "AWS_ENDPOINT_URL",
        "BATCHQ_BENCH_ONLY",
        "BENCH_FUNCTION_ENV",
        "BENCH_WRAP",
    ] {
        assert!(help.contains(word), "{word} missing from --help:\n{help}");
    }
}
