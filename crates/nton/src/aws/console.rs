//! Where the AWS commands write: results (an ARN, a summary, JSON) on one stream, progress
//! and notes (stack events, per-stage counts) on the other, so `nton start --json | jq` and
//! `ARN=$(nton start ...)` see only results. Tests capture both streams.

use std::io::Write;
use std::sync::{Arc, Mutex};

/// The two output streams of a command.
pub struct Console {
    out: Box<dyn Write + Send>,
    log: Box<dyn Write + Send>,
}

impl Console {
    /// Results on stdout, progress on stderr.
    pub fn stdio() -> Console {
        Console { out: Box::new(std::io::stdout()), log: Box::new(std::io::stderr()) }
    }

    /// A console writing into memory: `(console, results, progress)`.
    pub fn capture() -> (Console, Captured, Captured) {
        let out = Captured::default();
        let log = Captured::default();
        let console = Console { out: Box::new(out.clone()), log: Box::new(log.clone()) };
        (console, out, log)
    }

    /// Writes one result line. A closed pipe (`nton start | head -c0`) is not worth failing
    /// a deploy over, so write errors are ignored here and below.
    pub fn result(&mut self, line: impl std::fmt::Display) {
        let _ = writeln!(self.out, "{line}");
        let _ = self.out.flush();
    }

    /// Writes one progress or note line.
    pub fn note(&mut self, line: impl std::fmt::Display) {
        let _ = writeln!(self.log, "{line}");
        let _ = self.log.flush();
    }
}

/// A shared in-memory buffer that a [`Console::capture`] writes into.
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    /// Everything written so far, as text.
    pub fn text(&self) -> String {
        let bytes = self.0.lock().map(|b| b.clone()).unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self.0.lock() {
            Ok(mut bytes) => {
                bytes.extend_from_slice(buf);
                Ok(buf.len())
            }
            Err(_) => Err(std::io::Error::other("captured output lock poisoned")),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
