//! The nton domain: run plan, EFS layout, stage logic and the Batch job-status model.
//!
//! Invariant: no AWS SDK and no network here. Everything is plain data and files, so every
//! rule of the pipeline is unit-tested without AWS.

pub mod batch;
pub mod fsutil;
pub mod layout;
pub mod plan;
pub mod results;
pub mod stage;
pub mod status;
