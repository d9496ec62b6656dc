//! `make test` runs every test file that builds its stores from
//! `BATCHQ_TEST_STORE` three times: on the in-memory store, on the emulator
//! and on the embedded store. A new such file must be named in the
//! Makefile's `STORE_TESTS`, or it would silently run on the memory store
//! alone.

use std::collections::BTreeSet;

const MARKERS: [&str; 4] = ["Pipeline::", "ApiEnv::", "Stores::new", "StoreKind::from_env"];

#[test]
fn every_test_file_on_the_chosen_store_is_run_on_the_emulator_too() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/tests");
    let mut following = BTreeSet::new();
    for entry in std::fs::read_dir(root).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        if name != "store_runs" && MARKERS.iter().any(|m| text.contains(m)) {
            following.insert(name);
        }
    }
    assert!(
        following.contains("crash_matrix"),
        "the scan finds the known files: {following:?}"
    );

    let makefile = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../Makefile")).unwrap();
    let listed: BTreeSet<String> = makefile
        .lines()
        .find_map(|l| l.strip_prefix("STORE_TESTS :="))
        .expect("the Makefile sets STORE_TESTS")
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        following, listed,
        "the Makefile's STORE_TESTS must name exactly the test files that follow BATCHQ_TEST_STORE"
    );
}
