//! The environment the binary reads before it starts: the Lambda runtime's own variables and
//! nton's settings.
//!
//! `lambda_runtime` panics when its variables are missing or malformed; checking them here first
//! turns that into one clear line and a non-zero exit (for example when someone runs the binary
//! on a laptop instead of inside Lambda).

use nton_core::status::StatusOptions;

/// The message when the binary is started outside Lambda.
pub const NOT_IN_LAMBDA: &str = "AWS_LAMBDA_RUNTIME_API is not set: this binary runs inside AWS Lambda; use `nton run` to run the pipeline locally";

/// Seconds of RUNNABLE, with none running, after which a stage is reported stuck.
pub const STUCK_AFTER_VAR: &str = "NTON_STUCK_AFTER_SECONDS";

/// Longest stuck threshold accepted: a day.
const MAX_STUCK_AFTER_SECONDS: i64 = 86_400;

/// Checks the variables `lambda_runtime` needs; returns the runtime API address.
pub fn check_runtime_env(var: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let api = var("AWS_LAMBDA_RUNTIME_API")
        .filter(|api| !api.is_empty())
        .ok_or_else(|| NOT_IN_LAMBDA.to_string())?;
    // The runtime client turns this value into a URI and panics if it cannot.
    if api.parse::<http::Uri>().is_err() {
        return Err(format!("AWS_LAMBDA_RUNTIME_API={api:?} is not a host:port address"));
    }
    for name in [
        "AWS_LAMBDA_FUNCTION_NAME",
        "AWS_LAMBDA_FUNCTION_VERSION",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    ] {
        if var(name).is_none() {
            return Err(format!(
                "{name} is not set: the Lambda runtime sets it; this binary runs inside AWS Lambda"
            ));
        }
    }
    let memory = var("AWS_LAMBDA_FUNCTION_MEMORY_SIZE").unwrap_or_default();
    if memory.parse::<i32>().is_err() {
        return Err(format!(
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE={memory:?} is not a whole number of MiB"
        ));
    }
    Ok(api)
}

/// The status options from `NTON_STUCK_AFTER_SECONDS` (default: [`StatusOptions::default`]).
pub fn status_options(var: impl Fn(&str) -> Option<String>) -> Result<StatusOptions, String> {
    let Some(text) = var(STUCK_AFTER_VAR) else {
        return Ok(StatusOptions::default());
    };
    match text.trim().parse::<i64>() {
        Ok(seconds) if (1..=MAX_STUCK_AFTER_SECONDS).contains(&seconds) => {
            Ok(StatusOptions { stuck_after_ms: seconds * 1000 })
        }
        _ => Err(format!(
            "{STUCK_AFTER_VAR}={text:?} is not a whole number of seconds from 1 to {MAX_STUCK_AFTER_SECONDS}"
        )),
    }
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
    fn the_runtime_variables_are_checked_before_the_runtime_starts() {
        assert_eq!(check_runtime_env(vars(&LAMBDA)), Ok("127.0.0.1:9001".to_string()));
        assert_eq!(check_runtime_env(vars(&[])), Err(NOT_IN_LAMBDA.to_string()));
        assert_eq!(
            check_runtime_env(vars(&[("AWS_LAMBDA_RUNTIME_API", "")])),
            Err(NOT_IN_LAMBDA.to_string())
        );

        let mut bad_api = LAMBDA;
        bad_api[0].1 = "not an address";
        assert_eq!(
            check_runtime_env(vars(&bad_api)),
            Err("AWS_LAMBDA_RUNTIME_API=\"not an address\" is not a host:port address".to_string())
        );
        let mut no_name = LAMBDA.to_vec();
        no_name.remove(1);
        assert!(
            check_runtime_env(vars(&no_name))
                .unwrap_err()
                .starts_with("AWS_LAMBDA_FUNCTION_NAME is not set")
        );
        let mut bad_memory = LAMBDA;
        bad_memory[3].1 = "lots";
        assert_eq!(
            check_runtime_env(vars(&bad_memory)),
            Err("AWS_LAMBDA_FUNCTION_MEMORY_SIZE=\"lots\" is not a whole number of MiB".to_string())
        );
    }

    #[test]
    fn the_stuck_threshold_is_read_and_bounded() {
        assert_eq!(status_options(vars(&[])), Ok(StatusOptions::default()));
        assert_eq!(
            status_options(vars(&[(STUCK_AFTER_VAR, "120")])),
            Ok(StatusOptions { stuck_after_ms: 120_000 })
        );
        for bad in ["0", "-5", "1.5", "soon", "86401"] {
            assert_eq!(
                status_options(vars(&[(STUCK_AFTER_VAR, bad)])),
                Err(format!(
                    "NTON_STUCK_AFTER_SECONDS={bad:?} is not a whole number of seconds from 1 to 86400"
                )),
            );
        }
    }
}
