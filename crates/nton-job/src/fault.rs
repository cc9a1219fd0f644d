//! Fault injection, for failure drills on AWS and for the local engine's tests.
//!
//! - `NTON_FAULT_FAIL` = comma list of `stage:node`, e.g. `procure:3,egress:0`: that stage on
//!   that node exits 1 with "fault injected: ..." before touching any file.
//! - `NTON_FAULT_DELAY_MS` = comma list of `stage:node:ms`, e.g. `process:2:1500`: that stage on
//!   that node sleeps that long before working (to drive timeouts, ordering and stuck checks).
//!
//! Set them in a job's container overrides (or the engine's environment) to rehearse what a
//! failed node looks like end to end: the watcher's cause, the `Fail` state, a re-run.
//! A malformed value is an error naming the variable, never silently ignored.

use std::str::FromStr;
use std::time::Duration;

use nton_core::plan::MAX_NODES;
use nton_core::stage::Stage;

use crate::config::ConfigError;

/// Longest injected delay: one hour, the default attempt timeout of the job definitions.
pub const MAX_DELAY_MS: u64 = 3_600_000;

/// The faults to inject, for any stage and node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    fail: Vec<(Stage, u32)>,
    delay: Vec<(Stage, u32, u64)>,
}

impl Faults {
    /// Parses the two variables (each optional; empty means none).
    pub fn from_vars(fail: Option<&str>, delay_ms: Option<&str>) -> Result<Faults, ConfigError> {
        let mut faults = Faults::default();
        for entry in entries(fail) {
            let invalid =
                |rule: String| ConfigError::invalid("NTON_FAULT_FAIL", fail.unwrap_or(""), rule);
            let parts: Vec<&str> = entry.split(':').collect();
            let [stage, node] = parts[..] else {
                return Err(invalid(format!("entry {entry:?} must be stage:node, e.g. procure:3")));
            };
            faults
                .fail
                .push((parse_stage(stage).map_err(&invalid)?, parse_node(node).map_err(&invalid)?));
        }
        for entry in entries(delay_ms) {
            let invalid = |rule: String| {
                ConfigError::invalid("NTON_FAULT_DELAY_MS", delay_ms.unwrap_or(""), rule)
            };
            let parts: Vec<&str> = entry.split(':').collect();
            let [stage, node, ms] = parts[..] else {
                return Err(invalid(format!(
                    "entry {entry:?} must be stage:node:ms, e.g. process:2:1500"
                )));
            };
            let ms = match ms.parse::<u64>() {
                Ok(ms) if ms <= MAX_DELAY_MS => ms,
                _ => {
                    return Err(invalid(format!(
                        "in entry {entry:?}, {ms:?} must be a whole number of milliseconds from 0 to {MAX_DELAY_MS}"
                    )));
                }
            };
            faults.delay.push((
                parse_stage(stage).map_err(&invalid)?,
                parse_node(node).map_err(&invalid)?,
                ms,
            ));
        }
        Ok(faults)
    }

    /// Whether `stage` on `node` must fail.
    pub fn fails(&self, stage: Stage, node: u32) -> bool {
        self.fail.contains(&(stage, node))
    }

    /// How long `stage` on `node` must wait before working (entries for the same pair add up).
    pub fn delay(&self, stage: Stage, node: u32) -> Duration {
        let ms = self
            .delay
            .iter()
            .filter(|(s, n, _)| *s == stage && *n == node)
            .map(|(_, _, ms)| ms)
            .sum();
        Duration::from_millis(ms)
    }
}

/// The non-empty, trimmed entries of a comma list.
fn entries(value: Option<&str>) -> impl Iterator<Item = &str> {
    value.unwrap_or("").split(',').map(str::trim).filter(|entry| !entry.is_empty())
}

fn parse_stage(text: &str) -> Result<Stage, String> {
    Stage::from_str(text).map_err(|err| err.to_string())
}

fn parse_node(text: &str) -> Result<u32, String> {
    match text.parse::<u32>() {
        Ok(node) if node < MAX_NODES => Ok(node),
        _ => Err(format!("node {text:?} must be a whole number from 0 to {}", MAX_NODES - 1)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_set_injects_nothing() {
        let faults = Faults::from_vars(None, Some(" ")).unwrap();
        assert_eq!(faults, Faults::default());
        for stage in Stage::ALL {
            assert!(!faults.fails(stage, 0));
            assert_eq!(faults.delay(stage, 0), Duration::ZERO);
        }
    }

    #[test]
    fn failures_and_delays_apply_to_their_stage_and_node_only() {
        let faults = Faults::from_vars(
            Some("procure:3, egress:0"),
            Some("process:2:1500,process:2:500,egress:9999:0"),
        )
        .unwrap();
        assert!(faults.fails(Stage::Procure, 3));
        assert!(faults.fails(Stage::Egress, 0));
        assert!(!faults.fails(Stage::Process, 3));
        assert!(!faults.fails(Stage::Procure, 0));
        assert_eq!(faults.delay(Stage::Process, 2), Duration::from_millis(2000));
        assert_eq!(faults.delay(Stage::Process, 3), Duration::ZERO);
        assert_eq!(faults.delay(Stage::Procure, 2), Duration::ZERO);
    }

    #[test]
    fn malformed_values_name_the_variable_and_the_entry() {
        let cases = [
            (
                Some("procure"),
                None,
                "NTON_FAULT_FAIL=\"procure\" is invalid: entry \"procure\" must be stage:node, e.g. procure:3",
            ),
            (
                Some("procure:1:2"),
                None,
                "NTON_FAULT_FAIL=\"procure:1:2\" is invalid: entry \"procure:1:2\" must be stage:node, e.g. procure:3",
            ),
            (
                Some("download:1"),
                None,
                "NTON_FAULT_FAIL=\"download:1\" is invalid: unknown stage \"download\": expected procure, process or egress",
            ),
            (
                Some("egress:-1"),
                None,
                "NTON_FAULT_FAIL=\"egress:-1\" is invalid: node \"-1\" must be a whole number from 0 to 9999",
            ),
            (
                Some("egress:10000"),
                None,
                "NTON_FAULT_FAIL=\"egress:10000\" is invalid: node \"10000\" must be a whole number from 0 to 9999",
            ),
            (
                None,
                Some("process:2"),
                "NTON_FAULT_DELAY_MS=\"process:2\" is invalid: entry \"process:2\" must be stage:node:ms, e.g. process:2:1500",
            ),
            (
                None,
                Some("process:2:soon"),
                "NTON_FAULT_DELAY_MS=\"process:2:soon\" is invalid: in entry \"process:2:soon\", \"soon\" must be a whole number of milliseconds from 0 to 3600000",
            ),
            (
                None,
                Some("process:2:3600001"),
                "NTON_FAULT_DELAY_MS=\"process:2:3600001\" is invalid: in entry \"process:2:3600001\", \"3600001\" must be a whole number of milliseconds from 0 to 3600000",
            ),
            (
                None,
                Some("Process:2:5"),
                "NTON_FAULT_DELAY_MS=\"Process:2:5\" is invalid: unknown stage \"Process\": expected procure, process or egress",
            ),
        ];
        for (fail, delay, message) in cases {
            assert_eq!(Faults::from_vars(fail, delay).unwrap_err().to_string(), message);
        }
    }
}
