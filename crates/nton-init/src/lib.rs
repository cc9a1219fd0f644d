//! The init Lambda: plans a run and writes every node's prep files to EFS.
//!
//! [`handle`] is a plain synchronous function of the event and an [`InitConfig`]: the Lambda
//! binary calls it through `lambda_runtime`, the local engine calls it in-process. It does file
//! I/O only, under the configured data root; no AWS SDK.

mod config;
mod error;
mod handler;
mod lambda_env;

pub use config::{ConfigError, InitConfig, MAX_RETENTION_HOURS};
pub use error::InitError;
pub use handler::{Prepared, handle, prepare};
pub use lambda_env::check_lambda_env;
