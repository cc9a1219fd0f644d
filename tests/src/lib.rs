//! Shared helpers for the workspace-level tests: a moto server per test, a LocalStack endpoint
//! per test process and mock file, and the paths of the workspace's built binaries.

pub mod browser;
pub mod cli;
pub mod iam;
pub mod localstack;
pub mod moto;
pub mod recording;
pub mod reduce;
pub mod sfn_gen;

use std::path::PathBuf;

/// The workspace root (the folder holding the top-level `Cargo.toml`).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits inside the workspace")
        .to_path_buf()
}

/// A binary of this workspace, built next to the test executables (`target/<profile>/`).
/// `tests/run-all` builds them all before the tests; `cargo nextest run --workspace` does too.
pub fn workspace_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test knows its own path");
    // target/<profile>/deps/<test>-<hash> -> target/<profile>/<name>
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test executables live in target/<profile>/deps");
    let path = profile_dir.join(name);
    assert!(
        path.is_file(),
        "{} is missing: build the workspace binaries first (cargo build --workspace --bins)",
        path.display()
    );
    path
}

/// The directory holding the workspace binaries.
pub fn binary_dir() -> PathBuf {
    workspace_binary("nton-job").parent().expect("a binary has a directory").to_path_buf()
}
