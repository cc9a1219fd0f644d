//! Child output: one file per job under the log directory, each line prefixed with the
//! child's index, attempt and stream, so a 10,000-child array makes one file, not 10,000.
//! The file is created at the first line, so jobs whose children print nothing leave none.

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

/// The log file of one job.
pub(crate) struct JobLog {
    path: PathBuf,
    file: Mutex<Option<BufWriter<File>>>,
    /// Set once opening or writing failed, so a full disk is reported once, not per line.
    broken: AtomicBool,
}

impl JobLog {
    pub fn new(path: PathBuf) -> Self {
        Self { path, file: Mutex::new(None), broken: AtomicBool::new(false) }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether anything was written (the file exists).
    pub fn written(&self) -> bool {
        self.file.lock().unwrap_or_else(PoisonError::into_inner).is_some()
    }

    /// Appends one line; a whole line is written under the lock, so lines of children
    /// running at the same time never interleave.
    pub fn write_line(&self, prefix: &str, line: &str) {
        if self.broken.load(Ordering::Relaxed) {
            return;
        }
        let mut file = self.file.lock().unwrap_or_else(PoisonError::into_inner);
        if file.is_none() {
            match self.open() {
                Ok(opened) => *file = Some(BufWriter::new(opened)),
                Err(err) => return self.give_up(&err),
            }
        }
        if let Some(out) = file.as_mut()
            && let Err(err) = writeln!(out, "{prefix} {line}")
        {
            self.give_up(&err);
        }
    }

    /// Pushes buffered lines to the file (at the end of each attempt).
    pub fn flush(&self) {
        let mut file = self.file.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(out) = file.as_mut()
            && let Err(err) = out.flush()
        {
            self.give_up(&err);
        }
    }

    fn open(&self) -> std::io::Result<File> {
        if let Some(dir) = self.path.parent() {
            fs::create_dir_all(dir)?;
        }
        OpenOptions::new().create(true).append(true).open(&self.path)
    }

    fn give_up(&self, err: &std::io::Error) {
        if !self.broken.swap(true, Ordering::Relaxed) {
            tracing::warn!(path = %self.path.display(), %err, "cannot write the job's log; its output is dropped");
        }
    }
}
