//! What can go wrong in a stage, always naming the node and the file.

use std::io;
use std::path::{Path, PathBuf};

/// A stage failed on one node. Every variant names the node and the file, so a failed array
/// child's log line says where to look without reading code.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    /// An input file that an earlier step should have written is not there.
    #[error("node {node}: {} is missing{}", path.display(), hint_text(hint))]
    Missing { node: u32, path: PathBuf, hint: &'static str },
    /// A file is not valid JSON (truncated, or not JSON at all).
    #[error("node {node}: {} is not valid JSON: {source}", path.display())]
    InvalidJson { node: u32, path: PathBuf, source: serde_json::Error },
    /// A file is readable but not what the stage expects.
    #[error("node {node}: {} has the wrong shape: {detail}", path.display())]
    WrongShape { node: u32, path: PathBuf, detail: String },
    /// Reading or writing a file failed.
    #[error("node {node}: {}: {source}", path.display())]
    Io { node: u32, path: PathBuf, source: io::Error },
    /// Copying a result to its egress destination failed (the key names workflow and node).
    #[error("egress of {key}: copying {} to {}: {source}", from.display(), to.display())]
    Copy { key: String, from: PathBuf, to: PathBuf, source: io::Error },
}

fn hint_text(hint: &str) -> String {
    if hint.is_empty() { String::new() } else { format!(" ({hint})") }
}

impl StageError {
    /// An io error on `path`; NotFound becomes [`StageError::Missing`] with `hint`.
    pub fn io(node: u32, path: &Path, source: io::Error, hint: &'static str) -> StageError {
        if source.kind() == io::ErrorKind::NotFound {
            StageError::Missing { node, path: path.to_path_buf(), hint }
        } else {
            StageError::Io { node, path: path.to_path_buf(), source }
        }
    }

    /// A JSON error on `path`: syntax errors and truncation are invalid JSON, the rest is a
    /// wrong shape (valid JSON, wrong fields or types).
    pub fn json(node: u32, path: &Path, source: serde_json::Error) -> StageError {
        use serde_json::error::Category;
        match source.classify() {
            Category::Syntax | Category::Eof => {
                StageError::InvalidJson { node, path: path.to_path_buf(), source }
            }
            Category::Data => StageError::WrongShape {
                node,
                path: path.to_path_buf(),
                detail: source.to_string(),
            },
            Category::Io => {
                StageError::Io { node, path: path.to_path_buf(), source: source.into() }
            }
        }
    }

    /// The node, when the error is about one node's file.
    pub fn node(&self) -> Option<u32> {
        match self {
            StageError::Missing { node, .. }
            | StageError::InvalidJson { node, .. }
            | StageError::WrongShape { node, .. }
            | StageError::Io { node, .. } => Some(*node),
            StageError::Copy { .. } => None,
        }
    }

    /// The file the error is about (for a copy, the source).
    pub fn path(&self) -> &Path {
        match self {
            StageError::Missing { path, .. }
            | StageError::InvalidJson { path, .. }
            | StageError::WrongShape { path, .. }
            | StageError::Io { path, .. } => path,
            StageError::Copy { from, .. } => from,
        }
    }
}
