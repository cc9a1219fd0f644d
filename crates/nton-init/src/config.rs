//! The init Lambda's configuration, read once from the environment.

use std::path::PathBuf;
use std::time::Duration;

use nton_core::plan::{PlanDefaults, PlanError};
/// The one configuration error both Lambdas fail with (`nton-lambda`).
pub use nton_lambda::ConfigError;

/// Longest retention: ten years, in hours. Longer means "never" and is spelled 0.
pub const MAX_RETENTION_HOURS: u64 = 87_600;

/// The run timeout when `NTON_RUN_TIMEOUT_HOURS` is unset: the template's default.
pub const DEFAULT_RUN_TIMEOUT_HOURS: u64 = 12;
/// Longest run timeout: a year, Step Functions' limit for a Standard execution.
pub const MAX_RUN_TIMEOUT_HOURS: u64 = 8_760;

/// Step Functions ends a Standard execution whose history reaches 25,000 events.
pub const HISTORY_EVENT_LIMIT: u64 = 25_000;
/// Events one turn of the poll loop adds: the Watch task (entered, scheduled, started,
/// succeeded, exited), the IsDone choice (entered, exited), the Wait (entered, exited).
pub const EVENTS_PER_POLL: u64 = 9;
/// Events kept for everything but the polls: the start, init, the submissions, the cleanup,
/// and about 300 retried Lambda or Batch calls (3 events each).
pub const HISTORY_RESERVE: u64 = 1_000;

/// The shortest poll interval that cannot fill the history within `timeout_seconds`: every turn
/// of the loop waits `pollSeconds`, so a run makes at most `timeout / pollSeconds` polls, and
/// those must fit in [`HISTORY_EVENT_LIMIT`] less [`HISTORY_RESERVE`].
pub fn min_poll_seconds(timeout_seconds: u64) -> u64 {
    let max_polls = (HISTORY_EVENT_LIMIT - HISTORY_RESERVE) / EVENTS_PER_POLL;
    timeout_seconds.div_ceil(max_polls).max(1)
}

/// Refuses a poll interval below [`min_poll_seconds`] for the run timeout.
pub fn check_poll_interval(poll_seconds: u64, timeout_seconds: u64) -> Result<(), String> {
    let floor = min_poll_seconds(timeout_seconds);
    if poll_seconds < floor {
        return Err(format!(
            "pollSeconds: {poll_seconds} is below {floor}, the shortest poll interval for a run \
             timeout of {timeout_seconds} s: more polls could fill Step Functions' \
             {HISTORY_EVENT_LIMIT}-event execution history ({EVENTS_PER_POLL} events each) \
             before the timeout"
        ));
    }
    Ok(())
}

/// Where init writes and what it assumes when an event leaves fields out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InitConfig {
    /// `NTON_DATA_ROOT`: the directory runs live under (the EFS mount in AWS).
    pub data_root: PathBuf,
    /// `NTON_IDS`, `NTON_IDS_PER_NODE`, `NTON_POLL_SECONDS`.
    pub defaults: PlanDefaults,
    /// `NTON_RETENTION_HOURS`: run directories older than this are removed at each init;
    /// `None` (0) never removes anything.
    pub retention: Option<Duration>,
    /// `NTON_RUN_TIMEOUT_HOURS` in seconds: the state machine's `TimeoutSeconds` (the template
    /// sets both from RunTimeoutHours). Bounds the poll interval and is handed to the watcher.
    pub run_timeout_seconds: u64,
}

impl InitConfig {
    /// A configuration for `data_root` with the default plan (400 ids, 40 per node, 30 s) and
    /// no pruning.
    pub fn new(data_root: impl Into<PathBuf>) -> InitConfig {
        InitConfig {
            data_root: data_root.into(),
            defaults: PlanDefaults::default(),
            retention: None,
            run_timeout_seconds: DEFAULT_RUN_TIMEOUT_HOURS * 3600,
        }
    }

    /// Reads the process environment: `NTON_DATA_ROOT` (required), `NTON_IDS` (400),
    /// `NTON_IDS_PER_NODE` (40), `NTON_POLL_SECONDS` (30), `NTON_RETENTION_HOURS` (168; 0 =
    /// never prune), `NTON_RUN_TIMEOUT_HOURS` (12).
    pub fn from_env() -> Result<InitConfig, ConfigError> {
        InitConfig::from_lookup(|name| std::env::var(name).ok())
    }

    /// [`InitConfig::from_env`] over any lookup, so tests need not change the process
    /// environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<InitConfig, ConfigError> {
        let data_root = match lookup("NTON_DATA_ROOT") {
            Some(root) if !root.trim().is_empty() => PathBuf::from(root),
            _ => {
                return Err(ConfigError::Missing {
                    var: "NTON_DATA_ROOT",
                    expected: "the directory runs live under, e.g. /mnt/efs",
                });
            }
        };
        let builtin = PlanDefaults::default();
        let ids = integer(&lookup, "NTON_IDS", u64::from(builtin.ids))?;
        let ids_per_node = integer(&lookup, "NTON_IDS_PER_NODE", u64::from(builtin.ids_per_node))?;
        let poll_seconds = integer(&lookup, "NTON_POLL_SECONDS", u64::from(builtin.poll_seconds))?;
        let defaults = PlanDefaults::new(ids, ids_per_node, poll_seconds)
            .map_err(|err| plan_error(&lookup, err))?;
        let hours = integer(&lookup, "NTON_RETENTION_HOURS", 168)?;
        if hours > MAX_RETENTION_HOURS {
            return Err(ConfigError::Invalid {
                var: "NTON_RETENTION_HOURS",
                value: hours.to_string(),
                reason: format!(
                    "must be an integer in 0..={MAX_RETENTION_HOURS} (0 = never prune)"
                ),
            });
        }
        let timeout_hours = integer(&lookup, "NTON_RUN_TIMEOUT_HOURS", DEFAULT_RUN_TIMEOUT_HOURS)?;
        if !(1..=MAX_RUN_TIMEOUT_HOURS).contains(&timeout_hours) {
            return Err(ConfigError::Invalid {
                var: "NTON_RUN_TIMEOUT_HOURS",
                value: timeout_hours.to_string(),
                reason: format!("must be an integer in 1..={MAX_RUN_TIMEOUT_HOURS}"),
            });
        }
        let run_timeout_seconds = timeout_hours * 3600;
        check_poll_interval(u64::from(defaults.poll_seconds), run_timeout_seconds).map_err(
            |reason| ConfigError::Invalid {
                var: "NTON_POLL_SECONDS",
                value: lookup("NTON_POLL_SECONDS").unwrap_or_else(|| "(default)".to_string()),
                reason: format!("{reason} (NTON_RUN_TIMEOUT_HOURS={timeout_hours})"),
            },
        )?;
        Ok(InitConfig {
            data_root,
            defaults,
            retention: (hours > 0).then(|| Duration::from_secs(hours * 3600)),
            run_timeout_seconds,
        })
    }
}

/// Reads an unsigned integer variable, or `default` when it is unset or empty.
fn integer(
    lookup: &impl Fn(&str) -> Option<String>,
    var: &'static str,
    default: u64,
) -> Result<u64, ConfigError> {
    match lookup(var) {
        None => Ok(default),
        Some(text) if text.trim().is_empty() => Ok(default),
        Some(text) => text.trim().parse::<u64>().map_err(|_| ConfigError::Invalid {
            var,
            value: text.clone(),
            reason: "must be a non-negative integer".to_string(),
        }),
    }
}

/// Puts the variable's name in front of a plan error about a default.
fn plan_error(lookup: &impl Fn(&str) -> Option<String>, err: PlanError) -> ConfigError {
    let var = match &err {
        PlanError::OutOfRange { field: "ids", .. } => "NTON_IDS",
        PlanError::OutOfRange { field: "idsPerNode", .. } => "NTON_IDS_PER_NODE",
        PlanError::OutOfRange { field: "pollSeconds", .. } => "NTON_POLL_SECONDS",
        _ => "NTON_IDS/NTON_IDS_PER_NODE",
    };
    let value = var
        .split('/')
        .map(|name| lookup(name).unwrap_or_else(|| "(default)".to_string()))
        .collect::<Vec<_>>()
        .join("/");
    ConfigError::Invalid { var, value, reason: err.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn from(vars: &[(&str, &str)]) -> Result<InitConfig, ConfigError> {
        let vars: HashMap<String, String> =
            vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        InitConfig::from_lookup(|name| vars.get(name).cloned())
    }

    #[test]
    fn only_the_data_root_is_required() {
        let config = from(&[("NTON_DATA_ROOT", "/mnt/efs")]).unwrap();
        assert_eq!(config.data_root, PathBuf::from("/mnt/efs"));
        assert_eq!(config.defaults, PlanDefaults::new(400, 40, 30).unwrap());
        assert_eq!(config.retention, Some(Duration::from_secs(168 * 3600)));
    }

    #[test]
    fn every_variable_is_read() {
        let config = from(&[
            ("NTON_DATA_ROOT", "/data"),
            ("NTON_IDS", "400000"),
            ("NTON_IDS_PER_NODE", "40"),
            ("NTON_POLL_SECONDS", " 5 "),
            ("NTON_RETENTION_HOURS", "0"),
            ("NTON_RUN_TIMEOUT_HOURS", "2"),
        ])
        .unwrap();
        assert_eq!(config.defaults, PlanDefaults::new(400_000, 40, 5).unwrap());
        assert_eq!(config.retention, None);
        assert_eq!(config.run_timeout_seconds, 7200);
        let config = from(&[("NTON_DATA_ROOT", "/data"), ("NTON_RETENTION_HOURS", "2")]).unwrap();
        assert_eq!(config.retention, Some(Duration::from_secs(7200)));
    }

    #[test]
    fn the_poll_interval_floor_keeps_the_history_below_its_limit() {
        // 24,000 events for polls at 9 each: 2,666 polls.
        assert_eq!(min_poll_seconds(3600), 2);
        assert_eq!(min_poll_seconds(12 * 3600), 17);
        assert_eq!(min_poll_seconds(24 * 3600), 33);
        assert_eq!(min_poll_seconds(48 * 3600), 65);
        for hours in [1, 2, 4, 8, 12, 24, 48, 8760] {
            let timeout = hours * 3600;
            let floor = min_poll_seconds(timeout);
            let polls = timeout.div_ceil(floor);
            assert!(polls * EVENTS_PER_POLL + HISTORY_RESERVE <= HISTORY_EVENT_LIMIT);
            // One second less would allow more polls than fit.
            let polls = timeout.div_ceil(floor - 1);
            assert!(floor == 1 || polls * EVENTS_PER_POLL + HISTORY_RESERVE > HISTORY_EVENT_LIMIT);
        }
        assert!(check_poll_interval(17, 43_200).is_ok());
        assert_eq!(
            check_poll_interval(16, 43_200).unwrap_err(),
            "pollSeconds: 16 is below 17, the shortest poll interval for a run timeout of 43200 \
             s: more polls could fill Step Functions' 25000-event execution history (9 events \
             each) before the timeout"
        );
    }

    #[test]
    fn a_poll_default_too_short_for_the_run_timeout_is_refused_naming_both() {
        let error = from(&[
            ("NTON_DATA_ROOT", "/data"),
            ("NTON_POLL_SECONDS", "30"),
            ("NTON_RUN_TIMEOUT_HOURS", "48"),
        ])
        .unwrap_err()
        .to_string();
        assert!(
            error.starts_with("NTON_POLL_SECONDS=\"30\" is invalid: pollSeconds: 30 is below 65"),
            "{error}"
        );
        assert!(error.ends_with("(NTON_RUN_TIMEOUT_HOURS=48)"), "{error}");
        for bad in ["0", "8761", "x"] {
            let error = from(&[("NTON_DATA_ROOT", "/data"), ("NTON_RUN_TIMEOUT_HOURS", bad)])
                .unwrap_err()
                .to_string();
            assert!(error.starts_with("NTON_RUN_TIMEOUT_HOURS="), "{error}");
        }
    }

    #[test]
    fn bad_values_name_the_variable_and_the_value() {
        assert_eq!(
            from(&[]).unwrap_err().to_string(),
            "NTON_DATA_ROOT is not set (must be the directory runs live under, e.g. /mnt/efs)"
        );
        assert!(matches!(
            from(&[("NTON_DATA_ROOT", " ")]),
            Err(ConfigError::Missing { var: "NTON_DATA_ROOT", .. })
        ));
        let root = ("NTON_DATA_ROOT", "/data");
        let cases = [
            (("NTON_IDS", "lots"), "NTON_IDS=\"lots\" is invalid: must be a non-negative integer"),
            (("NTON_IDS", "-1"), "NTON_IDS=\"-1\" is invalid: must be a non-negative integer"),
            (
                ("NTON_IDS", "0"),
                "NTON_IDS=\"0\" is invalid: ids: 0 is out of range (must be an integer in 1..=10000000)",
            ),
            (
                ("NTON_IDS_PER_NODE", "0"),
                "NTON_IDS_PER_NODE=\"0\" is invalid: idsPerNode: 0 is out of range \
                 (must be an integer in 1..=10000000)",
            ),
            (
                ("NTON_POLL_SECONDS", "99999999999"),
                "NTON_POLL_SECONDS=\"99999999999\" is invalid: pollSeconds: 99999999999 is out of \
                 range (must be an integer in 1..=3600)",
            ),
            (
                ("NTON_RETENTION_HOURS", "100000"),
                "NTON_RETENTION_HOURS=\"100000\" is invalid: must be an integer in 0..=87600 \
                 (0 = never prune)",
            ),
            (
                ("NTON_RETENTION_HOURS", "1.5"),
                "NTON_RETENTION_HOURS=\"1.5\" is invalid: must be a non-negative integer",
            ),
        ];
        for (var, expected) in cases {
            assert_eq!(from(&[root, var]).unwrap_err().to_string(), expected, "{var:?}");
        }
        assert_eq!(
            from(&[root, ("NTON_IDS", "20000"), ("NTON_IDS_PER_NODE", "1")])
                .unwrap_err()
                .to_string(),
            "NTON_IDS/NTON_IDS_PER_NODE=\"20000/1\" is invalid: ids/idsPerNode: 20000 ids in \
             groups of 1 make 20000 nodes; at most 10000 nodes are allowed"
        );
        assert_eq!(
            from(&[root, ("NTON_IDS_PER_NODE", "0.01")]).unwrap_err().to_string(),
            "NTON_IDS_PER_NODE=\"0.01\" is invalid: must be a non-negative integer"
        );
        // Only the per-node size set: the message shows the default it combined with.
        assert!(
            from(&[root, ("NTON_IDS", "400000"), ("NTON_IDS_PER_NODE", "39")])
                .unwrap_err()
                .to_string()
                .starts_with("NTON_IDS/NTON_IDS_PER_NODE=\"400000/39\"")
        );
    }
}
