//! The nton CLI as a library: argument definitions, commands and their reporters. `main.rs`
//! only parses and dispatches.

pub mod aws;
pub mod cli;
pub mod confirm;
pub mod exit;
pub mod local_watch;
pub mod progress;
pub mod report;
pub mod retry;
pub mod run;
pub mod timeline;
