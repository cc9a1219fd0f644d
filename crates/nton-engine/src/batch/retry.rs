//! `retryStrategy` as AWS Batch applies it to a failed attempt: `evaluateOnExit` rules in
//! order, the first whose conditions all match decides RETRY or EXIT, and no match retries
//! while attempts remain.

use nton_core::batch::BatchApiError;

use super::client_error;
use super::spec::{EvaluateOnExit, RetryAction, RetryStrategy};

/// AWS's limits on a retry strategy.
const MAX_ATTEMPTS: u32 = 10;
const MAX_RULES: usize = 5;
const MAX_PATTERN_CHARS: usize = 512;

/// What a failed attempt reports to the rules.
#[derive(Clone, Copy, Debug)]
pub(crate) struct FailedAttempt<'a> {
    pub status_reason: &'a str,
    /// The container's `reason`; absent for an ordinary non-zero exit.
    pub reason: Option<&'a str>,
    pub exit_code: Option<i32>,
}

/// RETRY or EXIT for a failed attempt, before counting attempts.
pub(crate) fn decide(rules: &[EvaluateOnExit], attempt: FailedAttempt<'_>) -> RetryAction {
    let exit_code = attempt.exit_code.map(|c| c.to_string());
    rules
        .iter()
        .find(|rule| {
            // An absent value is matched as the empty string, so the documented catch-all
            // `onReason: "*"` also catches an ordinary exit, which has no container reason.
            matches(rule.on_status_reason.as_deref(), attempt.status_reason)
                && matches(rule.on_reason.as_deref(), attempt.reason.unwrap_or(""))
                && matches(rule.on_exit_code.as_deref(), exit_code.as_deref().unwrap_or(""))
        })
        .map_or(RetryAction::Retry, |rule| rule.action)
}

fn matches(pattern: Option<&str>, text: &str) -> bool {
    pattern.is_none_or(|p| glob(p, text))
}

/// AWS's glob: exact, or a prefix when the pattern ends with `*`.
pub(crate) fn glob(pattern: &str, text: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => text.starts_with(prefix),
        None => text == pattern,
    }
}

pub(crate) fn validate(strategy: &RetryStrategy) -> Result<(), BatchApiError> {
    if !(1..=MAX_ATTEMPTS).contains(&strategy.attempts) {
        return Err(client_error(format!(
            "Error executing request, Exception : RetryStrategy attempts must be between 1 and {MAX_ATTEMPTS}, got {}",
            strategy.attempts
        )));
    }
    if strategy.evaluate_on_exit.len() > MAX_RULES {
        return Err(client_error(format!(
            "Error executing request, Exception : RetryStrategy evaluateOnExit can have at most {MAX_RULES} entries, got {}",
            strategy.evaluate_on_exit.len()
        )));
    }
    for rule in &strategy.evaluate_on_exit {
        for (field, pattern) in [
            ("onStatusReason", &rule.on_status_reason),
            ("onReason", &rule.on_reason),
            ("onExitCode", &rule.on_exit_code),
        ] {
            if let Some(pattern) = pattern {
                validate_pattern(field, pattern)?;
            }
        }
    }
    Ok(())
}

fn validate_pattern(field: &str, pattern: &str) -> Result<(), BatchApiError> {
    let body = pattern.strip_suffix('*').unwrap_or(pattern);
    let problem = if pattern.is_empty() || pattern.chars().count() > MAX_PATTERN_CHARS {
        Some(format!("must be 1 to {MAX_PATTERN_CHARS} characters"))
    } else if body.contains('*') {
        Some("can contain '*' only at the end".to_string())
    } else if field == "onExitCode" && !body.chars().all(|c| c.is_ascii_digit()) {
        Some("can contain only numbers and a final '*'".to_string())
    } else {
        None
    };
    match problem {
        Some(problem) => Err(client_error(format!(
            "Error executing request, Exception : evaluateOnExit {field} '{pattern}' {problem}"
        ))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(
        status: Option<&str>,
        reason: Option<&str>,
        code: Option<&str>,
        action: RetryAction,
    ) -> EvaluateOnExit {
        EvaluateOnExit {
            on_status_reason: status.map(str::to_string),
            on_reason: reason.map(str::to_string),
            on_exit_code: code.map(str::to_string),
            action,
        }
    }

    fn exited(code: i32) -> FailedAttempt<'static> {
        FailedAttempt {
            status_reason: "Essential container in task exited",
            reason: None,
            exit_code: Some(code),
        }
    }

    #[test]
    fn glob_is_exact_or_a_prefix_with_a_final_star() {
        assert!(glob("Host EC2*", "Host EC2 (instance i-1) terminated."));
        assert!(!glob("Host EC2*", "host EC2 terminated"));
        assert!(glob("1", "1"));
        assert!(!glob("1", "10"));
        assert!(glob("1*", "10"));
        assert!(glob("*", ""));
    }

    #[test]
    fn no_rules_or_no_match_retries() {
        assert_eq!(decide(&[], exited(1)), RetryAction::Retry);
        let rules = [rule(None, None, Some("3"), RetryAction::Exit)];
        assert_eq!(decide(&rules, exited(2)), RetryAction::Retry);
        assert_eq!(decide(&rules, exited(3)), RetryAction::Exit);
    }

    #[test]
    fn the_first_matching_rule_decides() {
        let rules = [
            rule(Some("Essential*"), None, None, RetryAction::Retry),
            rule(None, Some("*"), None, RetryAction::Exit),
        ];
        assert_eq!(decide(&rules, exited(1)), RetryAction::Retry);
        let spawn_failure = FailedAttempt {
            status_reason: "CannotStartContainerError: not found",
            reason: Some("CannotStartContainerError: not found"),
            exit_code: None,
        };
        assert_eq!(decide(&rules, spawn_failure), RetryAction::Exit);
    }

    #[test]
    fn every_condition_of_a_rule_must_match() {
        let rules = [rule(Some("Essential*"), None, Some("137"), RetryAction::Exit)];
        assert_eq!(decide(&rules, exited(1)), RetryAction::Retry);
        assert_eq!(decide(&rules, exited(137)), RetryAction::Exit);
    }

    #[test]
    fn the_templates_rules_exit_on_an_ordinary_failure() {
        // cloudformation/pipeline.yaml: infrastructure reasons retry, anything else exits.
        let rules = [
            rule(Some("Host EC2*"), None, None, RetryAction::Retry),
            rule(Some("CannotPullContainerError*"), None, None, RetryAction::Retry),
            rule(Some("ResourceInitializationError*"), None, None, RetryAction::Retry),
            rule(None, Some("*"), None, RetryAction::Exit),
        ];
        assert_eq!(decide(&rules, exited(1)), RetryAction::Exit);
        let host_lost = FailedAttempt {
            status_reason: "Host EC2 (instance i-0abc) terminated.",
            reason: None,
            exit_code: None,
        };
        assert_eq!(decide(&rules, host_lost), RetryAction::Retry);
    }

    #[test]
    fn validation_follows_aws_limits() {
        let ok = RetryStrategy {
            attempts: 10,
            evaluate_on_exit: vec![rule(None, None, Some("12*"), RetryAction::Exit)],
        };
        assert!(validate(&ok).is_ok());
        for bad in [
            RetryStrategy { attempts: 0, evaluate_on_exit: vec![] },
            RetryStrategy { attempts: 11, evaluate_on_exit: vec![] },
            RetryStrategy {
                attempts: 2,
                evaluate_on_exit: vec![rule(Some("a*b"), None, None, RetryAction::Exit)],
            },
            RetryStrategy {
                attempts: 2,
                evaluate_on_exit: vec![rule(None, None, Some("1a"), RetryAction::Exit)],
            },
            RetryStrategy {
                attempts: 2,
                evaluate_on_exit: vec![rule(None, Some("x"), None, RetryAction::Exit); 6],
            },
        ] {
            let err = validate(&bad).unwrap_err();
            assert_eq!(err.code, "ClientException", "{bad:?}");
        }
    }
}
