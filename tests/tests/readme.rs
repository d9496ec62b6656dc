//! The documentation against the code: the configuration table of
//! docs/configuration.md is `config::VARS`, and every relative link of the
//! README and docs/ leads to a file and heading that exist.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use batchq_core::config::VARS;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn config_rows() -> Vec<(String, String)> {
    let page = std::fs::read_to_string(root().join("docs/configuration.md")).unwrap();
    let table = page
        .split("| variable | default | meaning |")
        .nth(1)
        .expect("docs/configuration.md has the variables table");
    table
        .lines()
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            (
                cells[1].trim_matches('`').to_owned(),
                cells[2].trim_matches('`').to_owned(),
            )
        })
        .collect()
}

#[test]
fn the_configuration_page_documents_every_variable_with_its_default() {
    let rows = config_rows();
    let documented: Vec<&str> = rows.iter().map(|(n, _)| n.as_str()).collect();
    let read: Vec<&str> = VARS.iter().map(|v| v.name).collect();
    assert_eq!(
        documented, read,
        "docs/configuration.md table and config::VARS differ (names or order)"
    );
    for ((name, default), var) in rows.iter().zip(VARS) {
        let expected = if var.default.is_empty() { "(unset)" } else { var.default };
        assert_eq!(default, expected, "documented default of {name}");
    }
}

/// Pages another branch of the same change adds (the command-line
/// reference): a link to one is checked, anchor included, once it exists.
const WRITTEN_ELSEWHERE: &[&str] = &["docs/cli.md"];

/// GitHub's anchor for a heading: lower case, punctuation dropped, spaces
/// as hyphens.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The lines of a Markdown page outside its fenced code blocks.
fn prose_lines(markdown: &str) -> impl Iterator<Item = &str> {
    let mut fenced = false;
    markdown.lines().filter(move |line| {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            return false;
        }
        !fenced
    })
}

/// The anchors of a Markdown page's headings (outside code blocks), with
/// GitHub's `-1`, `-2` suffixes for repeated ones.
fn anchors(markdown: &str) -> Vec<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut out = Vec::new();
    for line in prose_lines(markdown) {
        let hashes = line.chars().take_while(|&c| c == '#').count();
        if (1..=6).contains(&hashes) && line[hashes..].starts_with(' ') {
            let base = slug(&line[hashes..]);
            let n = seen.entry(base.clone()).or_insert(0);
            out.push(if *n == 0 { base.clone() } else { format!("{base}-{n}") });
            *n += 1;
        }
    }
    out
}

/// The `(target)` of every inline Markdown link outside code blocks and
/// code spans.
fn link_targets(markdown: &str) -> Vec<String> {
    let mut targets = Vec::new();
    for line in prose_lines(markdown) {
        // Drop code spans: odd pieces between backticks.
        let prose: String = line.split('`').step_by(2).collect::<Vec<_>>().join(" ");
        let mut rest = prose.as_str();
        while let Some(i) = rest.find("](") {
            let after = &rest[i + 2..];
            let Some(end) = after.find(')') else { break };
            targets.push(after[..end].to_owned());
            rest = &after[end..];
        }
    }
    targets
}

/// Every broken relative link of `pages` (paths relative to the repository
/// root, with their text), as "page: target (why)".
fn broken_links(pages: &BTreeMap<String, String>, exists: impl Fn(&str) -> bool) -> Vec<String> {
    let mut broken = Vec::new();
    for (page, text) in pages {
        let dir = Path::new(page).parent().unwrap_or(Path::new(""));
        for target in link_targets(text) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let (file, anchor) = match target.split_once('#') {
                Some((f, a)) => (f, Some(a)),
                None => (target.as_str(), None),
            };
            let resolved = if file.is_empty() {
                page.clone()
            } else {
                normalize(&dir.join(file))
            };
            if resolved.starts_with("../") {
                broken.push(format!("{page}: {target} (outside the repository)"));
                continue;
            }
            let text_of_target = pages.get(&resolved);
            if text_of_target.is_none() && !exists(&resolved) {
                if !WRITTEN_ELSEWHERE.contains(&resolved.as_str()) {
                    broken.push(format!("{page}: {target} (no file {resolved})"));
                }
                continue;
            }
            if let (Some(anchor), Some(target_text)) = (anchor, text_of_target) {
                if !anchors(target_text).iter().any(|a| a == anchor) {
                    broken.push(format!("{page}: {target} (no heading #{anchor} in {resolved})"));
                }
            }
        }
    }
    broken
}

/// `docs/../README.md` -> `README.md`, keeping a leading `..` that leaves the root.
fn normalize(path: &Path) -> String {
    let mut parts: Vec<String> = Vec::new();
    for c in path.components() {
        match c {
            std::path::Component::ParentDir => {
                if parts.last().is_some_and(|p| p != "..") {
                    parts.pop();
                } else {
                    parts.push("..".into());
                }
            }
            std::path::Component::CurDir => {}
            other => parts.push(other.as_os_str().to_string_lossy().into_owned()),
        }
    }
    parts.join("/")
}

/// README.md, docs/*.md and the other Markdown files they may link to.
fn documentation() -> BTreeMap<String, String> {
    let mut pages = BTreeMap::new();
    for page in ["README.md", "fake-openai/README.md"] {
        pages.insert(page.to_owned(), std::fs::read_to_string(root().join(page)).unwrap());
    }
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
fn every_relative_link_of_the_readme_and_docs_leads_to_a_file_and_heading() {
    let pages = documentation();
    assert!(pages.len() >= 10, "{:?}", pages.keys());
    let broken = broken_links(&pages, |p| root().join(p).exists());
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn the_link_check_catches_a_missing_file_a_missing_heading_and_a_way_out() {
    let pages: BTreeMap<String, String> = [
        (
            "README.md".to_owned(),
            "# Top\n\nSee [ops](docs/ops.md#deploy-to-aws), [gone](docs/gone.md), \
             [up](../secret.md), [here](#top), [ext](https://example.com/x#y) and \
             `[code](docs/nope.md)`.\n"
                .to_owned(),
        ),
        (
            "docs/ops.md".to_owned(),
            "# Ops\n\n## Deploy to AWS\n\n```sh\n# not a heading\n```\n\nBack to [the top](../README.md#top), \
             [a section](#not-a-heading).\n"
                .to_owned(),
        ),
    ]
    .into();
    let broken = broken_links(&pages, |_| false);
    assert_eq!(
        broken,
        [
            "README.md: docs/gone.md (no file docs/gone.md)",
            "README.md: ../secret.md (outside the repository)",
            "docs/ops.md: #not-a-heading (no heading #not-a-heading in docs/ops.md)",
        ],
    );
}

#[test]
fn anchors_follow_githubs_rules() {
    assert_eq!(
        anchors("## Enqueue many: `POST /v1/requests/bulk`\n## Limits\n## Limits\n"),
        ["enqueue-many-post-v1requestsbulk", "limits", "limits-1"]
    );
    assert_eq!(
        anchors("## Coming from the guide's `BatchProcessor`"),
        ["coming-from-the-guides-batchprocessor"]
    );
}
