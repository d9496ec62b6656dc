//! Links the Lambda bootstrap as a non-PIE executable (see
//! docs/performance.md, issue #20): a position-independent executable
//! carries a dynamic relocation for every pointer in its data (vtables,
//! string tables), about a megabyte here, which the loader applies at each
//! cold start. Only this package's binaries; its tests and every other
//! crate link as before.
fn main() {
    println!("cargo:rustc-link-arg-bins=-no-pie");
}
