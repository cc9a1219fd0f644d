//! The bootstrap the two nton Lambdas (`nton-init`, `nton-watch`) share, before and around
//! `lambda_runtime::run`: the runtime's environment checked first, the runtime's own logging,
//! and [`ConfigError`], the one error a function's configuration fails with.
//!
//! `lambda_runtime` panics when its environment variables are missing or malformed; checking
//! them here first turns that into one clear line and exit code 2 (for example when someone
//! runs a function's binary on a laptop instead of inside Lambda).

use std::fmt::Display;
use std::process::ExitCode;

/// What a configuration error exits with: the function cannot start as configured.
pub const CONFIG_EXIT: u8 = 2;

/// A variable of the function's environment is missing or invalid; the message names it, its
/// value and what it must be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// `AWS_LAMBDA_RUNTIME_API` is unset: most often the binary was started by hand.
    #[error(
        "AWS_LAMBDA_RUNTIME_API is not set: this binary runs inside AWS Lambda; use `nton run` \
         to run the pipeline locally"
    )]
    NotInLambda,
    #[error("{var} is not set (must be {expected})")]
    Missing { var: &'static str, expected: &'static str },
    #[error("{var}={value:?} is invalid: {reason}")]
    Invalid { var: &'static str, value: String, reason: String },
}

/// The variable whose absence means "not inside Lambda".
pub const RUNTIME_API_VAR: &str = "AWS_LAMBDA_RUNTIME_API";

/// The other variables `lambda_runtime` reads at start-up, each set by Lambda itself.
const RUNTIME_VARS: [&str; 3] =
    ["AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_VERSION", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE"];

/// Checks the variables `lambda_runtime` needs; returns the runtime API address.
pub fn check_runtime_env(var: impl Fn(&str) -> Option<String>) -> Result<String, ConfigError> {
    let api = var(RUNTIME_API_VAR).filter(|api| !api.is_empty()).ok_or(ConfigError::NotInLambda)?;
    // The runtime client turns this value into a URI and panics if it cannot.
    if api.parse::<http::Uri>().is_err() {
        return Err(ConfigError::Invalid {
            var: RUNTIME_API_VAR,
            value: api,
            reason: "not a host:port address".to_string(),
        });
    }
    for name in RUNTIME_VARS {
        if var(name).is_none() {
            return Err(ConfigError::Missing {
                var: name,
                expected: "set by Lambda together with AWS_LAMBDA_RUNTIME_API; set it too to \
                           emulate Lambda",
            });
        }
    }
    let memory = var("AWS_LAMBDA_FUNCTION_MEMORY_SIZE").unwrap_or_default();
    if memory.parse::<i32>().is_err() {
        return Err(ConfigError::Invalid {
            var: "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
            value: memory,
            reason: "not a whole number of MiB".to_string(),
        });
    }
    Ok(api)
}

/// Checks the process environment for the runtime, then starts the runtime's own logging
/// (`lambda_runtime::tracing::init_default_subscriber`: level from `AWS_LAMBDA_LOG_LEVEL`, else
/// `RUST_LOG`, else INFO; JSON lines when `AWS_LAMBDA_LOG_FORMAT` is JSON, as the templates'
/// `LoggingConfig` sets it). Returns the runtime API address, or, having printed the one line
/// that says what is wrong, the exit code.
pub fn bootstrap(binary: &str) -> Result<String, ExitCode> {
    let api = check_runtime_env(|name| std::env::var(name).ok())
        .map_err(|error| config_failed(binary, &error))?;
    lambda_runtime::tracing::init_default_subscriber();
    Ok(api)
}

/// Prints `binary: error` for a configuration the function cannot start with; the exit code.
pub fn config_failed(binary: &str, error: &dyn Display) -> ExitCode {
    eprintln!("{binary}: {error}");
    ExitCode::from(CONFIG_EXIT)
}

/// What `lambda_runtime::run` ending in an error exits with, having said which API failed.
pub fn runtime_failed(binary: &str, api: &str, error: &dyn Display) -> ExitCode {
    eprintln!("{binary}: the Lambda runtime API at {api} failed: {error}");
    ExitCode::FAILURE
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> =
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |name| map.get(name).cloned()
    }

    const LAMBDA: [(&str, &str); 4] = [
        ("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9001"),
        ("AWS_LAMBDA_FUNCTION_NAME", "nton-watch"),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256"),
    ];

    #[test]
    fn inside_lambda_the_runtime_api_address_is_returned() {
        assert_eq!(check_runtime_env(vars(&LAMBDA)), Ok("127.0.0.1:9001".to_string()));
    }

    #[test]
    fn outside_lambda_says_so_in_one_line() {
        for unset in [&[][..], &[("AWS_LAMBDA_RUNTIME_API", "")][..]] {
            let message = check_runtime_env(vars(unset)).unwrap_err().to_string();
            assert_eq!(
                message,
                "AWS_LAMBDA_RUNTIME_API is not set: this binary runs inside AWS Lambda; use \
                 `nton run` to run the pipeline locally"
            );
            assert!(!message.contains('\n'));
        }
    }

    #[test]
    fn each_missing_or_bad_variable_is_named_with_its_value() {
        for (missing, _) in &LAMBDA[1..] {
            let vars_without: Vec<_> =
                LAMBDA.iter().copied().filter(|(name, _)| name != missing).collect();
            let error = check_runtime_env(vars(&vars_without)).unwrap_err();
            assert!(
                matches!(error, ConfigError::Missing { var, .. } if var == *missing),
                "{error}"
            );
            assert!(error.to_string().starts_with(&format!("{missing} is not set")), "{error}");
        }
        let mut bad_api = LAMBDA;
        bad_api[0].1 = "not an address";
        assert_eq!(
            check_runtime_env(vars(&bad_api)).unwrap_err().to_string(),
            "AWS_LAMBDA_RUNTIME_API=\"not an address\" is invalid: not a host:port address"
        );
        let mut bad_memory = LAMBDA;
        bad_memory[3].1 = "lots";
        assert_eq!(
            check_runtime_env(vars(&bad_memory)).unwrap_err().to_string(),
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE=\"lots\" is invalid: not a whole number of MiB"
        );
    }
}
