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
