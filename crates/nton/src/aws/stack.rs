//! CloudFormation, the parts every stack command shares: describing a stack, making and
//! reading change sets, following a stack's events (new ones only) until it settles, and the
//! reasons of the resources that failed.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use aws_sdk_cloudformation::Client;
use aws_sdk_cloudformation::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_cloudformation::types::{Change, StackEvent};

use super::console::Console;
use crate::exit::CommandError;

/// One AWS call failed: names the call and the target, with the service's code and message
/// (the SDK's own Display says only "service error").
pub(crate) fn aws_error<E>(what: impl std::fmt::Display, error: &E) -> CommandError
where
    E: ProvideErrorMetadata + std::error::Error,
{
    CommandError::environment(format!("{what}: {}", error_text(error)))
}

/// `Code: message` of an AWS error, or its full context when the service sent neither.
pub(crate) fn error_text<E>(error: &E) -> String
where
    E: ProvideErrorMetadata + std::error::Error,
{
    match (error.code(), error.message()) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (None, Some(message)) => message.to_string(),
        // No code: a network failure (the context says which), or an answer that is not the
        // service's (a proxy's or emulator's error page), whose body the context quotes whole.
        _ => {
            let context = DisplayErrorContext(error).to_string();
            match context.char_indices().nth(MAX_ERROR_TEXT) {
                Some((cut, _)) => format!("{}...", &context[..cut]),
                None => context,
            }
        }
    }
}

/// Longest error context quoted in a message.
const MAX_ERROR_TEXT: usize = 400;

/// A stack as deploy and teardown need it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct StackState {
    pub id: String,
    pub status: String,
    pub reason: Option<String>,
    pub outputs: BTreeMap<String, String>,
    pub parameters: BTreeMap<String, String>,
}

/// Describes a stack by name or id; `None` when it does not exist (CloudFormation answers a
/// `ValidationError` "does not exist" then, not an empty list).
pub(crate) async fn describe(cfn: &Client, name: &str) -> Result<Option<StackState>, CommandError> {
    let answer = match cfn.describe_stacks().stack_name(name).send().await {
        Ok(answer) => answer,
        Err(error) => {
            if error.code() == Some("ValidationError")
                && error.message().is_some_and(|m| m.contains("does not exist"))
            {
                return Ok(None);
            }
            return Err(aws_error(format!("DescribeStacks {name}"), &error));
        }
    };
    let Some(stack) = answer.stacks().first() else {
        return Ok(None);
    };
    Ok(Some(StackState {
        id: stack.stack_id().unwrap_or(name).to_string(),
        status: stack.stack_status().map(|s| s.as_str().to_string()).unwrap_or_default(),
        reason: stack.stack_status_reason().map(str::to_string),
        outputs: stack
            .outputs()
            .iter()
            .filter_map(|o| Some((o.output_key()?.to_string(), o.output_value()?.to_string())))
            .collect(),
        parameters: stack
            .parameters()
            .iter()
            .filter_map(|p| {
                Some((
                    p.parameter_key()?.to_string(),
                    p.parameter_value().unwrap_or_default().to_string(),
                ))
            })
            .collect(),
    }))
}

/// Whether a status is final (nothing more will happen without a new request).
/// `UPDATE_COMPLETE_CLEANUP_IN_PROGRESS` is not: the old resources are still being removed.
pub(crate) fn is_settled(status: &str) -> bool {
    !status.ends_with("_IN_PROGRESS")
}

/// Whether a change set failed only because it changes nothing. CloudFormation says so in
/// words, not a code: the first text is the service's, the second the one CreateChangeSet
/// itself raises on some endpoints (moto among them).
pub(crate) fn is_no_changes(reason: &str) -> bool {
    reason.contains("didn't contain changes") || reason.contains("No updates are to be performed")
}

/// One line per change of a change set: `Add  AWS::S3::Bucket  ResultsBucket`, with whether
/// an update replaces the resource (the line a reviewer most needs).
pub(crate) fn change_line(change: &Change) -> Option<String> {
    let rc = change.resource_change()?;
    let action = rc.action().map(|a| a.as_str()).unwrap_or("?");
    let mut line = format!(
        "{action:<8} {:<36} {}",
        rc.resource_type().unwrap_or("?"),
        rc.logical_resource_id().unwrap_or("?")
    );
    if let Some(replacement) = rc.replacement() {
        match replacement.as_str() {
            "True" => line.push_str("  (REPLACED)"),
            "Conditional" => line.push_str("  (may be replaced)"),
            _ => {}
        }
    }
    Some(line)
}

/// Follows one stack's events, printing each new one once, oldest first.
pub(crate) struct EventFollower {
    stack_id: String,
    seen: HashSet<String>,
    /// `LogicalId (Type): reason` of every failed resource seen so far.
    pub failures: Vec<String>,
}

/// Pages read per poll at most: a poll normally needs one; this bounds a stack with a huge
/// history when the baseline was lost.
const MAX_EVENT_PAGES: usize = 20;

impl EventFollower {
    /// Starts after the events the stack already has, so only what follows is printed.
    pub async fn after_existing(cfn: &Client, stack_id: &str) -> Result<Self, CommandError> {
        let mut follower = EventFollower {
            stack_id: stack_id.to_string(),
            seen: HashSet::new(),
            failures: Vec::new(),
        };
        for event in follower.fetch_new(cfn).await? {
            follower.seen.insert(event_id(&event));
        }
        Ok(follower)
    }

    /// Events newer than the last one seen, oldest first.
    async fn fetch_new(&self, cfn: &Client) -> Result<Vec<StackEvent>, CommandError> {
        let mut fresh = Vec::new();
        let mut token: Option<String> = None;
        'pages: for _ in 0..MAX_EVENT_PAGES {
            let answer = cfn
                .describe_stack_events()
                .stack_name(&self.stack_id)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| aws_error(format!("DescribeStackEvents {}", self.stack_id), &e))?;
            // Newest first: stop at the first event already printed.
            for event in answer.stack_events() {
                if self.seen.contains(&event_id(event)) {
                    break 'pages;
                }
                fresh.push(event.clone());
            }
            match answer.next_token() {
                Some(next) if !next.is_empty() => token = Some(next.to_string()),
                _ => break,
            }
        }
        fresh.reverse();
        Ok(fresh)
    }

    /// Prints the events that arrived since the last call.
    pub async fn poll(&mut self, cfn: &Client, console: &mut Console) -> Result<(), CommandError> {
        for event in self.fetch_new(cfn).await? {
            if !self.seen.insert(event_id(&event)) {
                continue;
            }
            console.note(event_line(&event));
            if let Some(failure) = failure_of(&event) {
                self.failures.push(failure);
            }
        }
        Ok(())
    }

    /// Prints events until the stack settles; returns its final status. A stack that no
    /// longer exists when described by id counts as `DELETE_COMPLETE`.
    pub async fn until_settled(
        &mut self,
        cfn: &Client,
        console: &mut Console,
        poll: Duration,
    ) -> Result<String, CommandError> {
        loop {
            self.poll(cfn, console).await?;
            let status = match describe(cfn, &self.stack_id).await? {
                Some(stack) => stack.status,
                None => "DELETE_COMPLETE".to_string(),
            };
            if is_settled(&status) {
                // The last events may land between the poll above and the describe.
                if status != "DELETE_COMPLETE" {
                    self.poll(cfn, console).await?;
                }
                return Ok(status);
            }
            tokio::time::sleep(poll).await;
        }
    }
}

/// `LogicalId (Type): reason` for an event that records a failure (`CREATE_FAILED`,
/// `UPDATE_FAILED`, `DELETE_FAILED`...), the line a failed deploy or teardown ends with.
pub(crate) fn failure_of(event: &StackEvent) -> Option<String> {
    let status = event.resource_status()?.as_str();
    if !status.ends_with("_FAILED") {
        return None;
    }
    Some(format!(
        "{} ({}): {}",
        event.logical_resource_id().unwrap_or("?"),
        event.resource_type().unwrap_or("?"),
        event.resource_status_reason().filter(|r| !r.is_empty()).unwrap_or("no reason given")
    ))
}

fn event_id(event: &StackEvent) -> String {
    event.event_id().unwrap_or_default().to_string()
}

/// `  12:03:04  CREATE_COMPLETE       AWS::S3::Bucket            ResultsBucket  reason`
fn event_line(event: &StackEvent) -> String {
    let time = event
        .timestamp()
        .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t.secs()).ok())
        .map(|t| format!("{:02}:{:02}:{:02}", t.hour(), t.minute(), t.second()))
        .unwrap_or_else(|| "--:--:--".to_string());
    let mut line = format!(
        "  {time}  {:<28} {:<36} {}",
        event.resource_status().map(|s| s.as_str()).unwrap_or("?"),
        event.resource_type().unwrap_or("?"),
        event.logical_resource_id().unwrap_or("?")
    );
    if let Some(reason) = event.resource_status_reason().filter(|r| !r.is_empty()) {
        line.push_str("  ");
        line.push_str(reason);
    }
    line
}

/// The stack's resources: `(logical id, physical id, type)`.
pub(crate) async fn resources(
    cfn: &Client,
    stack: &str,
) -> Result<Vec<(String, String, String)>, CommandError> {
    let mut all = Vec::new();
    let mut pages = cfn.list_stack_resources().stack_name(stack).into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| aws_error(format!("ListStackResources {stack}"), &e))?;
        for summary in page.stack_resource_summaries() {
            all.push((
                summary.logical_resource_id().unwrap_or_default().to_string(),
                summary.physical_resource_id().unwrap_or_default().to_string(),
                summary.resource_type().unwrap_or_default().to_string(),
            ));
        }
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_cloudformation::types::ResourceStatus;

    #[test]
    fn settled_statuses() {
        for done in
            ["CREATE_COMPLETE", "UPDATE_ROLLBACK_COMPLETE", "ROLLBACK_FAILED", "DELETE_COMPLETE"]
        {
            assert!(is_settled(done), "{done}");
        }
        for busy in
            ["CREATE_IN_PROGRESS", "UPDATE_COMPLETE_CLEANUP_IN_PROGRESS", "REVIEW_IN_PROGRESS"]
        {
            assert!(!is_settled(busy), "{busy}");
        }
    }

    fn event(status: ResourceStatus, reason: &str) -> StackEvent {
        StackEvent::builder()
            .event_id("e1")
            .stack_id("arn:aws:cloudformation:eu-west-1:123456789012:stack/s/1")
            .stack_name("s")
            .logical_resource_id("ComputeEnvironment")
            .resource_type("AWS::Batch::ComputeEnvironment")
            .resource_status(status)
            .resource_status_reason(reason)
            .timestamp(aws_sdk_cloudformation::primitives::DateTime::from_secs(3_723))
            .build()
    }

    #[test]
    fn failed_events_give_the_resource_and_the_reason() {
        let failed = event(ResourceStatus::CreateFailed, "Subnet not found");
        assert_eq!(
            failure_of(&failed).as_deref(),
            Some("ComputeEnvironment (AWS::Batch::ComputeEnvironment): Subnet not found")
        );
        let no_reason = event(ResourceStatus::DeleteFailed, "");
        assert_eq!(
            failure_of(&no_reason).as_deref(),
            Some("ComputeEnvironment (AWS::Batch::ComputeEnvironment): no reason given")
        );
        assert_eq!(failure_of(&event(ResourceStatus::CreateComplete, "")), None);
        assert_eq!(
            event_line(&failed),
            "  01:02:03  CREATE_FAILED                AWS::Batch::ComputeEnvironment       \
             ComputeEnvironment  Subnet not found"
        );
    }

    #[test]
    fn no_changes_is_recognised_in_both_wordings() {
        assert!(is_no_changes(
            "The submitted information didn't contain changes. Submit different information to create a change set."
        ));
        assert!(is_no_changes("No updates are to be performed."));
        assert!(!is_no_changes("Template format error: Unresolved resource dependencies [X]"));
    }
}
