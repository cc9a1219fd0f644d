//! One stack's deploy by a change set: created (or updated), described, executed unless it
//! has no changes or is a dry run, then followed through the stack's events until it settles.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_cloudformation::Client;
use aws_sdk_cloudformation::error::ProvideErrorMetadata;
use aws_sdk_cloudformation::types::{
    Capability, Change, ChangeSetStatus, ChangeSetType, Parameter, Tag,
};

use super::super::console::Console;
use super::super::params::{StackParameters, TemplateBody};
use super::super::stack::{self, EventFollower, StackState, aws_error};
use crate::exit::CommandError;

/// One stack's change set inputs.
pub(super) struct StackPlan<'a> {
    pub(super) name: &'a str,
    pub(super) template: &'a TemplateBody,
    /// Where the template was uploaded, when it is too large to send inline.
    pub(super) template_url: Option<&'a str>,
    pub(super) parameters: &'a StackParameters,
    pub(super) tags: &'a BTreeMap<String, String>,
    pub(super) role_arn: Option<&'a str>,
}

/// How one stack's deploy ended.
pub(super) enum Outcome {
    NoChanges,
    DryRun,
    /// Executed, not waited for (--no-wait).
    Started,
    Completed(String),
    Failed {
        status: String,
        reasons: Vec<String>,
    },
}

impl Outcome {
    pub(super) fn label(&self) -> &str {
        match self {
            Outcome::NoChanges => "NO_CHANGES",
            Outcome::DryRun => "DRY_RUN",
            Outcome::Started => "STARTED",
            Outcome::Completed(status) => status,
            Outcome::Failed { status, .. } => status,
        }
    }
}

pub(super) async fn deploy_stack(
    cfn: &Client,
    plan: &StackPlan<'_>,
    existing: Option<StackState>,
    dry_run: bool,
    wait: bool,
    poll: Duration,
    console: &mut Console,
) -> Result<Outcome, CommandError> {
    let name = plan.name;
    let mut existing = existing;
    if let Some(stack) = &existing {
        match stack.status.as_str() {
            // A create that failed and rolled back holds nothing but the stack record (and any
            // retained resources, which survive a delete too); it cannot be updated, only
            // replaced.
            "ROLLBACK_COMPLETE" if dry_run => {
                console.result(format!(
                    "{name}: ROLLBACK_COMPLETE; a deploy would delete and create it again"
                ));
                return Ok(Outcome::DryRun);
            }
            "ROLLBACK_COMPLETE" => {
                console.note(format!(
                    "{name}: ROLLBACK_COMPLETE after a failed create; deleting it to create it again"
                ));
                let mut follower = EventFollower::after_existing(cfn, &stack.id).await?;
                cfn.delete_stack()
                    .stack_name(&stack.id)
                    .set_role_arn(plan.role_arn.map(str::to_string))
                    .send()
                    .await
                    .map_err(|e| aws_error(format!("DeleteStack {name}"), &e))?;
                let status = follower.until_settled(cfn, console, poll).await?;
                if status != "DELETE_COMPLETE" {
                    return Err(CommandError::environment(format!(
                        "{name}: could not delete the rolled-back stack ({status}); {}",
                        follower.failures.join("; ")
                    )));
                }
                existing = None;
            }
            status if !stack::is_settled(status) && status != "REVIEW_IN_PROGRESS" => {
                return Err(CommandError::environment(format!(
                    "{name}: the stack is busy ({status}); wait until it settles and deploy again"
                )));
            }
            status if status.ends_with("_FAILED") => {
                return Err(CommandError::environment(format!(
                    "{name}: the stack is {status}{}; repair it in CloudFormation (continue the \
                     rollback, or delete it) before deploying",
                    stack.reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default()
                )));
            }
            _ => {}
        }
    }
    // A stack left in REVIEW_IN_PROGRESS (a create change set never executed) is created anew.
    let creating = existing.as_ref().is_none_or(|s| s.status == "REVIEW_IN_PROGRESS");
    let change_set_name = format!(
        "nton-{}",
        SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or_default()
    );

    let mut parameters: Vec<Parameter> = plan
        .parameters
        .values
        .iter()
        .map(|(key, value)| Parameter::builder().parameter_key(key).parameter_value(value).build())
        .collect();
    if !creating {
        for key in &plan.parameters.keep_previous {
            parameters
                .push(Parameter::builder().parameter_key(key).use_previous_value(true).build());
        }
    }
    let tags: Vec<Tag> =
        plan.tags.iter().map(|(key, value)| Tag::builder().key(key).value(value).build()).collect();

    let created = cfn
        .create_change_set()
        .stack_name(name)
        .change_set_name(&change_set_name)
        .change_set_type(if creating { ChangeSetType::Create } else { ChangeSetType::Update })
        .set_template_body(plan.template_url.is_none().then(|| plan.template.body.clone()))
        .set_template_url(plan.template_url.map(str::to_string))
        .set_parameters(Some(parameters))
        .capabilities(Capability::CapabilityNamedIam)
        .set_role_arn(plan.role_arn.map(str::to_string))
        .set_tags(Some(tags))
        .description(format!("nton deploy of {}", plan.template.name()))
        .send()
        .await;
    let created = match created {
        Ok(created) => created,
        Err(error) => {
            if error.message().is_some_and(stack::is_no_changes) {
                console.note(format!("{name}: no changes"));
                return Ok(Outcome::NoChanges);
            }
            let message = format!(
                "{name}: CreateChangeSet from {}: {}",
                plan.template.path.display(),
                stack::error_text(&error)
            );
            // A rejected template or parameter value is the user's to fix, not the network's.
            return Err(if error.code() == Some("ValidationError") {
                CommandError::bad_input(message)
            } else {
                CommandError::environment(message)
            });
        }
    };
    let change_set_id = created.id().unwrap_or(&change_set_name).to_string();
    let stack_id = created.stack_id().unwrap_or(name).to_string();

    let (status, reason, changes) = wait_for_change_set(cfn, name, &change_set_id, poll).await?;
    if status == ChangeSetStatus::Failed {
        let reason = reason.unwrap_or_default();
        delete_change_set(cfn, name, &change_set_id, creating, &stack_id).await;
        if stack::is_no_changes(&reason) {
            console.note(format!("{name}: no changes"));
            return Ok(Outcome::NoChanges);
        }
        return Err(CommandError::bad_input(format!("{name}: the change set failed: {reason}")));
    }

    let verb = if creating { "create" } else { "update" };
    if dry_run {
        console.result(format!(
            "{name}: would {verb} ({} change{})",
            changes.len(),
            if changes.len() == 1 { "" } else { "s" }
        ));
        for change in &changes {
            if let Some(line) = stack::change_line(change) {
                console.result(format!("  {line}"));
            }
        }
        delete_change_set(cfn, name, &change_set_id, creating, &stack_id).await;
        return Ok(Outcome::DryRun);
    }

    console.note(format!(
        "{name}: {verb} ({} change{})",
        changes.len(),
        if changes.len() == 1 { "" } else { "s" }
    ));
    for change in &changes {
        if let Some(line) = stack::change_line(change) {
            console.note(format!("  {line}"));
        }
    }
    let mut follower = EventFollower::after_existing(cfn, &stack_id).await?;
    cfn.execute_change_set()
        .stack_name(&stack_id)
        .change_set_name(&change_set_id)
        .send()
        .await
        .map_err(|e| aws_error(format!("{name}: ExecuteChangeSet {change_set_name}"), &e))?;
    if !wait {
        console.note(format!("{name}: {verb} started; not waiting (--no-wait)"));
        return Ok(Outcome::Started);
    }
    let status = follower.until_settled(cfn, console, poll).await?;
    if matches!(status.as_str(), "CREATE_COMPLETE" | "UPDATE_COMPLETE" | "IMPORT_COMPLETE") {
        return Ok(Outcome::Completed(status));
    }
    let mut reasons = std::mem::take(&mut follower.failures);
    if reasons.is_empty()
        && let Some(reason) = stack::describe(cfn, &stack_id).await?.and_then(|s| s.reason)
    {
        reasons.push(reason);
    }
    Ok(Outcome::Failed { status, reasons })
}

/// Waits for a change set to be computed; returns its status, reason and every change.
async fn wait_for_change_set(
    cfn: &Client,
    name: &str,
    change_set_id: &str,
    poll: Duration,
) -> Result<(ChangeSetStatus, Option<String>, Vec<Change>), CommandError> {
    // Change sets take seconds; polling faster than the stack wait keeps a deploy snappy.
    let poll = poll.min(Duration::from_secs(2));
    loop {
        let mut changes = Vec::new();
        let mut token: Option<String> = None;
        let (status, reason) = loop {
            let page = cfn
                .describe_change_set()
                .stack_name(name)
                .change_set_name(change_set_id)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| aws_error(format!("{name}: DescribeChangeSet"), &e))?;
            changes.extend(page.changes().iter().cloned());
            let status = page.status().cloned();
            let reason = page.status_reason().map(str::to_string);
            match page.next_token() {
                Some(next) if !next.is_empty() => token = Some(next.to_string()),
                _ => break (status, reason),
            }
        };
        match status {
            Some(ChangeSetStatus::CreateComplete) => {
                return Ok((ChangeSetStatus::CreateComplete, reason, changes));
            }
            Some(ChangeSetStatus::Failed) => return Ok((ChangeSetStatus::Failed, reason, changes)),
            _ => tokio::time::sleep(poll).await,
        }
    }
}

/// Removes a change set that will not be executed, and the empty stack record a CREATE change
/// set leaves behind (REVIEW_IN_PROGRESS), so a dry run leaves nothing in the account.
/// Best effort: a leftover change set costs nothing and is listed in the console.
async fn delete_change_set(cfn: &Client, name: &str, id: &str, creating: bool, stack_id: &str) {
    let _ = cfn.delete_change_set().stack_name(name).change_set_name(id).send().await;
    if creating
        && let Ok(Some(stack)) = stack::describe(cfn, stack_id).await
        && stack.status == "REVIEW_IN_PROGRESS"
    {
        let _ = cfn.delete_stack().stack_name(stack_id).send().await;
    }
}
