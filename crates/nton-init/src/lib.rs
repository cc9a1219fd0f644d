//! The init Lambda: plans a run and writes every node's prep files to EFS.
//!
//! [`handle`] is a plain synchronous function of the event and an [`InitConfig`]: the Lambda
//! binary calls it through `lambda_runtime`; `nton run` registers it with the local engine for
//! the `nton-init` image and calls it in-process. It does file
//! I/O only, under the configured data root; no AWS SDK.

mod config;
mod error;
mod handler;

pub use config::{
    ConfigError, DEFAULT_RUN_TIMEOUT_HOURS, EVENTS_PER_POLL, HISTORY_EVENT_LIMIT, HISTORY_RESERVE,
    InitConfig, MAX_RETENTION_HOURS, MAX_RUN_TIMEOUT_HOURS, check_poll_interval, min_poll_seconds,
};
pub use error::InitError;
pub use handler::{Prepared, handle, prepare};
