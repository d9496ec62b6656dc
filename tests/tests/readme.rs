//! The README's configuration table is the one in `config::VARS`.

use batchq_core::config::VARS;

fn readme_config_rows() -> Vec<(String, String)> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let section = readme
        .split("## Configuration")
        .nth(1)
        .expect("README has a Configuration section");
    let section = section.split("\n## ").next().unwrap();
    section
        .lines()
        .filter(|l| l.starts_with("| `"))
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
fn readme_documents_every_variable_with_its_default() {
    let rows = readme_config_rows();
    let documented: Vec<&str> = rows.iter().map(|(n, _)| n.as_str()).collect();
    let read: Vec<&str> = VARS.iter().map(|v| v.name).collect();
    assert_eq!(
        documented, read,
        "README table and config::VARS differ (names or order)"
    );
    for ((name, default), var) in rows.iter().zip(VARS) {
        let expected = if var.default.is_empty() { "(unset)" } else { var.default };
        assert_eq!(default, expected, "README default of {name}");
    }
}

#[test]
fn readme_quick_start_is_clone_make_demo_make_test() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let section = readme
        .split("## Quick start")
        .nth(1)
        .expect("README has a Quick start section");
    let block = section
        .split("```bash\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("the quick start has a bash block");
    let commands: Vec<&str> = block.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    assert_eq!(commands.len(), 3, "{commands:?}");
    assert!(commands[0].starts_with("git clone "), "{commands:?}");
    assert_eq!(&commands[1..], ["make demo", "make test"]);
}
