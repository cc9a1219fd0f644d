//! Shared helpers for the workspace-level tests (moto server, built binaries, temp dirs).
