//! What a stage did on one node, for its log line.

use serde::Serialize;

/// Files written (or copied) and their total bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct StageReport {
    pub files: usize,
    pub bytes: u64,
}

impl StageReport {
    /// Adds one file of `bytes`.
    pub fn add(&mut self, bytes: u64) {
        self.files += 1;
        self.bytes += bytes;
    }
}
