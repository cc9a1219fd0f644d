//! The watcher's settings from its environment (the Lambda runtime's own variables are
//! `nton-lambda`'s), read once before the runtime starts, in Lambda and in a local run alike.

use nton_core::status::StatusOptions;
pub use nton_lambda::ConfigError;

/// Seconds of RUNNABLE, with none running, after which a stage is reported stuck.
pub const STUCK_AFTER_VAR: &str = "NTON_STUCK_AFTER_SECONDS";

/// Longest stuck threshold accepted: a day.
const MAX_STUCK_AFTER_SECONDS: i64 = 86_400;

/// The status options from `NTON_STUCK_AFTER_SECONDS` (default: [`StatusOptions::default`]).
pub fn status_options(var: impl Fn(&str) -> Option<String>) -> Result<StatusOptions, ConfigError> {
    let Some(text) = var(STUCK_AFTER_VAR) else {
        return Ok(StatusOptions::default());
    };
    match text.trim().parse::<i64>() {
        Ok(seconds) if (1..=MAX_STUCK_AFTER_SECONDS).contains(&seconds) => {
            Ok(StatusOptions { stuck_after_ms: seconds * 1000 })
        }
        _ => Err(ConfigError::Invalid {
            var: STUCK_AFTER_VAR,
            value: text,
            reason: format!(
                "must be a whole number of seconds from 1 to {MAX_STUCK_AFTER_SECONDS}"
            ),
        }),
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

    #[test]
    fn the_stuck_threshold_is_read_and_bounded() {
        assert_eq!(status_options(vars(&[])), Ok(StatusOptions::default()));
        assert_eq!(
            status_options(vars(&[(STUCK_AFTER_VAR, "120")])),
            Ok(StatusOptions { stuck_after_ms: 120_000 })
        );
        for bad in ["0", "-5", "1.5", "soon", "86401"] {
            assert_eq!(
                status_options(vars(&[(STUCK_AFTER_VAR, bad)])).unwrap_err().to_string(),
                format!(
                    "NTON_STUCK_AFTER_SECONDS={bad:?} is invalid: must be a whole number of \
                     seconds from 1 to 86400"
                ),
            );
        }
    }
}
