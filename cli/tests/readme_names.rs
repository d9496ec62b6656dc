//! The README and the pages of docs/ name only things that exist: every
//! `batchq SUBCOMMAND --flag` is in the command line `batchq --help` and
//! `batchq SUBCOMMAND --help` describe, every `make TARGET` is a Makefile
//! target, and every environment variable (`BATCHQ_*`, `OPENAI_*`, `AWS_*`,
//! …) is named by some source file, script or template of the repository.
//!
//! Commands, flags and targets are read from code: shell blocks and inline
//! code spans (output blocks, ```text, are not commands). Environment
//! variables are read everywhere, prose included.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Prefixes of the environment variables the documentation is held to.
const ENV_PREFIXES: &[&str] = &[
    "BATCHQ_",
    "OPENAI_",
    "AWS_",
    "AZURE_",
    "ANTHROPIC_",
    "GROQ_",
    "TOGETHER_",
    "LOAD_",
    "BENCH_",
    "PROPTEST_",
];

/// What exists: the command line, the Makefile's targets, and every
/// upper-case name the repository's code uses.
struct Truth {
    /// Subcommand -> its flags (global ones included), without `--`.
    commands: BTreeMap<String, BTreeSet<String>>,
    top_flags: BTreeSet<String>,
    /// Phrases the CLI prints after its own name (`batchq serving http://…`).
    printed: String,
    make_targets: BTreeSet<String>,
    names_in_code: BTreeSet<String>,
}

fn help(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_batchq"))
        .args(args)
        .arg("--help")
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "batchq {args:?} --help: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// The `--long` flags of a clap help text (lines that start with a flag).
fn flags_of(help: &str) -> BTreeSet<String> {
    help.lines()
        .map(str::trim_start)
        .filter(|l| l.starts_with('-'))
        .flat_map(|l| {
            l.split([' ', ',', '=', '['])
                .filter_map(|t| t.strip_prefix("--"))
                .filter(|f| !f.is_empty())
                .map(|f| f.trim_end_matches(|c: char| !c.is_ascii_alphanumeric()).to_owned())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The subcommands listed under `Commands:` of a clap help text.
fn subcommands_of(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

fn source_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            if ![".git", "target", ".venv", ".tmp", "docs", "fuzz-corpus", "node_modules"].contains(&name.as_str()) {
                source_files(&path, out);
            }
        } else {
            let ext = path
                .extension()
                .map(|e| e.to_string_lossy().into_owned())
                .unwrap_or_default();
            let code = ["rs", "sh", "py", "yaml", "yml", "toml", "json"].contains(&ext.as_str())
                || name == "Makefile"
                || (ext.is_empty() && path.parent().and_then(Path::file_name).is_some_and(|d| d == ".ci"));
            // This file names misspelt variables on purpose.
            if code && !path.ends_with("cli/tests/readme_names.rs") {
                out.push(path);
            }
        }
    }
}

/// Upper-case identifiers (`[A-Z][A-Z0-9_]+`) of a text.
fn upper_names(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
        .filter(|w| w.len() > 2 && w.starts_with(|c: char| c.is_ascii_uppercase()))
}

fn truth() -> Truth {
    let top = help(&[]);
    let top_flags = flags_of(&top);
    let mut commands = BTreeMap::new();
    for sub in subcommands_of(&top) {
        let flags = if sub == "help" {
            BTreeSet::new()
        } else {
            // A command with subcommands of its own (`batchq webhooks add
            // --url`): its flags are theirs too.
            let text = help(&[&sub]);
            let mut flags = flags_of(&text);
            for nested in subcommands_of(&text).iter().filter(|n| *n != "help") {
                flags.extend(flags_of(&help(&[&sub, nested])));
            }
            flags
        };
        commands.insert(sub, flags);
    }
    assert!(commands.len() >= 10, "batchq --help lists {:?}", commands.keys());

    let mut cli_sources = Vec::new();
    source_files(&root().join("cli/src"), &mut cli_sources);
    let printed = cli_sources
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect::<Vec<_>>()
        .join("\n");

    let makefile = std::fs::read_to_string(root().join("Makefile")).unwrap();
    let mut make_targets = BTreeSet::new();
    for line in makefile.lines() {
        if let Some(list) = line.strip_prefix(".PHONY:") {
            make_targets.extend(list.split_whitespace().map(str::to_owned));
        } else if let Some((target, rest)) = line.split_once(':') {
            if !rest.starts_with('=')
                && !target.is_empty()
                && target.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            {
                make_targets.insert(target.to_owned());
            }
        }
    }
    assert!(
        make_targets.contains("demo") && make_targets.contains("test"),
        "{make_targets:?}"
    );

    let mut files = Vec::new();
    source_files(&root(), &mut files);
    let mut names_in_code = BTreeSet::new();
    for file in files {
        if let Ok(text) = std::fs::read_to_string(&file) {
            names_in_code.extend(upper_names(&text).map(str::to_owned));
        }
    }
    assert!(
        names_in_code.contains("BATCHQ_SUBMIT_MAX_AGE_SECS"),
        "the source scan found too little"
    );

    Truth {
        commands,
        top_flags,
        printed,
        make_targets,
        names_in_code,
    }
}

/// Pieces of a Markdown page that are code a reader may type: the lines of
/// shell blocks (comments dropped) and the inline code spans elsewhere.
fn code_snippets(markdown: &str) -> Vec<String> {
    let mut snippets = Vec::new();
    let mut fence: Option<String> = None;
    for line in markdown.lines() {
        let trimmed = line.trim_start();
        if let Some(info) = trimmed.strip_prefix("```") {
            fence = match fence {
                Some(_) => None,
                None => Some(info.trim().to_owned()),
            };
            continue;
        }
        match fence.as_deref() {
            Some("" | "sh" | "bash" | "shell" | "console") => {
                let code = line.split(" #").next().unwrap();
                if !code.trim_start().starts_with('#') {
                    snippets.push(code.to_owned());
                }
            }
            Some(_) => {}
            None => snippets.extend(line.split('`').skip(1).step_by(2).map(str::to_owned)),
        }
    }
    snippets
}

/// A token without the quoting and bracketing around it.
fn bare(token: &str) -> &str {
    token
        .trim_start_matches(['[', '(', '"', '\'', '{'])
        .trim_end_matches([']', ')', '"', '\'', ',', '.', ';', ':', '}'])
}

fn is_placeholder(word: &str) -> bool {
    word.is_empty() || word.starts_with(['<', '$', '…']) || word.chars().all(|c| !c.is_ascii_lowercase())
}

/// Everything `text` (the page `page`) names that does not exist.
fn problems(page: &str, text: &str, truth: &Truth) -> Vec<String> {
    let mut found = Vec::new();
    for snippet in code_snippets(text) {
        let snippet = snippet.replace("\\|", "/");
        for segment in snippet.split(['|', ';', '&', '(', ')', '>', '<']) {
            // The command: the first word after any `NAME=value` assignments
            // (`--stack-name batchq` or "another batchq process" name none).
            let raw: Vec<&str> = segment
                .split_whitespace()
                .skip_while(|t| t.contains('=') || *t == "$")
                .collect();
            let Some((&command, rest)) = raw.split_first() else {
                continue;
            };
            // `batchq:` starts a message of batchq's, not a command.
            let command = command.trim_matches(['[', ']', '(', ')', '"', '\'']);
            let rest: Vec<&str> = rest.iter().map(|t| bare(t)).collect();
            if command == "batchq" || command.ends_with("/batchq") {
                check_batchq(page, &rest, truth, &mut found);
            } else if command == "make" {
                let target = rest.iter().find(|t| !t.contains('=') && !t.starts_with('-'));
                if let Some(target) = target.filter(|t| !is_placeholder(t)) {
                    if !truth.make_targets.contains(*target) {
                        found.push(format!("{page}: `make {target}`: no such Makefile target"));
                    }
                }
            }
        }
    }
    for name in env_names(text) {
        let known = match name.strip_suffix('_') {
            // `BATCHQ_HTTP_*`: some variable starts so.
            Some(_) => truth
                .names_in_code
                .iter()
                .any(|n| n.starts_with(&name) && n.len() > name.len()),
            None => truth.names_in_code.contains(&name),
        };
        if !known {
            found.push(format!("{page}: {name}: no source file names this variable"));
        }
    }
    found.sort();
    found.dedup();
    found
}

fn check_batchq(page: &str, rest: &[&str], truth: &Truth, found: &mut Vec<String>) {
    let Some(&first) = rest.first() else { return };
    if let Some(flag) = first.strip_prefix("--") {
        let flag = flag.split('=').next().unwrap();
        if !truth.top_flags.contains(flag) {
            found.push(format!("{page}: `batchq --{flag}`: no such flag"));
        }
        return;
    }
    if is_placeholder(first) {
        return;
    }
    let Some(flags) = truth.commands.get(first) else {
        let phrase = format!("batchq {first}");
        let printed = truth.printed.match_indices(&phrase).any(|(i, _)| {
            !truth.printed[i + phrase.len()..].starts_with(|c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        });
        if !printed {
            found.push(format!("{page}: `batchq {first}`: no such command"));
        }
        return;
    };
    for token in &rest[1..] {
        if let Some(flag) = token.strip_prefix("--") {
            let flag = flag.split('=').next().unwrap();
            if !flag.is_empty() && !flags.contains(flag) {
                found.push(format!("{page}: `batchq {first} --{flag}`: no such flag"));
            }
        }
    }
}

/// Environment variable names of a text: upper-case words with one of
/// `ENV_PREFIXES`; `NAME_*` is kept as the prefix `NAME_`.
fn env_names(text: &str) -> BTreeSet<String> {
    let is_name_char = |c: char| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_';
    let mut names = BTreeSet::new();
    let mut previous: Option<char> = None;
    let mut skip_to = 0;
    for (i, c) in text.char_indices() {
        let starts_word = !previous.is_some_and(|p| p.is_ascii_alphanumeric() || p == '_');
        previous = Some(c);
        if i < skip_to || !starts_word || !ENV_PREFIXES.iter().any(|p| text[i..].starts_with(p)) {
            continue;
        }
        let end = text[i..].find(|c: char| !is_name_char(c)).map_or(text.len(), |n| i + n);
        if !text[end..].starts_with(|c: char| c.is_ascii_lowercase()) {
            names.insert(text[i..end].to_owned());
        }
        skip_to = end;
    }
    names
}

/// README.md and every page of docs/.
fn documentation() -> BTreeMap<String, String> {
    let mut pages = BTreeMap::new();
    pages.insert(
        "README.md".to_owned(),
        std::fs::read_to_string(root().join("README.md")).unwrap(),
    );
    for entry in std::fs::read_dir(root().join("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            let name = format!("docs/{}", path.file_name().unwrap().to_string_lossy());
            pages.insert(name, std::fs::read_to_string(&path).unwrap());
        }
    }
    pages
}

#[test]
fn the_readme_and_docs_name_only_commands_flags_targets_and_variables_that_exist() {
    let truth = truth();
    let pages = documentation();
    assert!(pages.len() >= 10, "{:?}", pages.keys());
    let found: Vec<String> = pages
        .iter()
        .flat_map(|(page, text)| problems(page, text, &truth))
        .collect();
    assert!(
        found.is_empty(),
        "the documentation names what does not exist:\n{}",
        found.join("\n")
    );
}

#[test]
fn a_misspelt_command_flag_target_or_variable_in_a_copy_of_the_readme_fails_the_check() {
    let truth = truth();
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    assert_eq!(problems("README.md", &readme, &truth), Vec::<String>::new());

    // Each misspelling alone, built at run time so that no file names it.
    let variable = ["BATCHQ", "SUBMIT", "MAX", "AGE", "SECONDS"].join("_");
    let cases = [
        (
            "batchq init",
            "batchq intit".to_owned(),
            "`batchq intit`: no such command",
        ),
        (
            "--timeout 25h",
            "--timeuot 25h".to_owned(),
            "`batchq wait --timeuot`: no such flag",
        ),
        (
            "make demo",
            "make demos".to_owned(),
            "`make demos`: no such Makefile target",
        ),
        (
            "BATCHQ_SUBMIT_MAX_AGE_SECS",
            variable.clone(),
            "BATCHQ_SUBMIT_MAX_AGE_SECONDS: no source file names this variable",
        ),
    ];
    for (right, wrong, expected) in cases {
        assert!(
            readme.contains(right),
            "the README no longer says {right:?}; pick another example"
        );
        let copy = readme.replacen(right, &wrong, 1);
        let found = problems("README.md", &copy, &truth);
        assert_eq!(
            found,
            [format!("README.md: {expected}")],
            "after {right:?} -> {wrong:?}"
        );
    }
}

#[test]
fn names_are_read_from_shell_blocks_and_code_spans_not_from_output_or_prose() {
    let page = "Run `batchq serve --addr 127.0.0.1:8080` and `make demo`; batchq nonsense in prose.\n\
                \n```sh\nbatchq enqueue f.jsonl --api \"$API\" | head   # batchq bogus\n```\n\
                \n```text\nbatchq nothing --at-all\n```\n";
    let truth = truth();
    assert_eq!(problems("page", page, &truth), Vec::<String>::new());
    let not_commands = "`aws cloudformation describe-stacks --stack-name batchq --query X`, \
                        `another batchq process (pid N)`, `BENCH_ARGS=--quick make bench`, \
                        `batchq: store embedded:./batchq-data (no BATCHQ_STORE)`, `batchq serving http://ADDR`";
    assert_eq!(problems("page", not_commands, &truth), Vec::<String>::new());
    let commands = "`VAR=1 batchq serv`, `$ batchq wait --timout 1m`, `BENCH_ARGS=--quick make benches`";
    assert_eq!(
        problems("page", commands, &truth),
        [
            "page: `batchq serv`: no such command",
            "page: `batchq wait --timout`: no such flag",
            "page: `make benches`: no such Makefile target",
        ]
    );
    let snippets = code_snippets(page);
    assert!(
        snippets.iter().any(|s| s.starts_with("batchq serve --addr")),
        "{snippets:?}"
    );
    assert!(
        snippets.iter().all(|s| !s.contains("bogus") && !s.contains("nothing")),
        "{snippets:?}"
    );
    assert_eq!(
        env_names("`OPENAI_API_KEY=sk-…`, BATCHQ_HTTP_* and AWS_Lambda, not XBATCHQ_Y"),
        BTreeSet::from(["OPENAI_API_KEY".to_owned(), "BATCHQ_HTTP_".to_owned()])
    );
}
