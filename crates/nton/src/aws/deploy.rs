//! `nton deploy`: the registry stack, then the pipeline stack, each by a change set (create or
//! update), following the stack's new events until it settles. "No changes" is a success; a
//! failed or rolled-back stack prints its failed resources' reasons and exits 1.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_cloudformation::Client;
use aws_sdk_cloudformation::error::ProvideErrorMetadata;
use aws_sdk_cloudformation::types::{
    Capability, Change, ChangeSetStatus, ChangeSetType, Parameter, Tag,
};
use serde_json::json;

use super::console::Console;
use super::params::{self, ParamsFile, StackKind, StackParameters, Template};
use super::stack::{self, EventFollower, StackState, aws_error};
use super::{DeployArgs, poll_interval};
use crate::exit::{self, CommandError};

/// The images every pipeline pulls; the registry stack holds one repository for each.
pub const IMAGE_NAMES: [&str; 3] = ["nton-job", "nton-init", "nton-watch"];

/// Deploys the stacks of one environment with an SDK config made by the caller.
pub async fn deploy_with(
    config: &aws_config::SdkConfig,
    args: &DeployArgs,
    console: &mut Console,
) -> anyhow::Result<u8> {
    let env = &args.stack.env;
    let prefix = &args.stack.prefix;
    args.stack.check()?;
    if let Some(tag) = &args.image_tag {
        params::check_image_tag("--image-tag", tag)?;
    }
    let poll = poll_interval(args.poll_seconds)?;

    // Everything local is read and checked before the first AWS call, so a typo in the
    // params file never leaves the registry deployed and the pipeline not.
    let mut templates = BTreeMap::new();
    for kind in StackKind::ALL {
        let path = args.template_dir.join(kind.template_file());
        templates.insert(kind, Template::read(&path)?);
    }
    let params_path =
        args.params_file.clone().unwrap_or_else(|| default_params_path(&args.template_dir, env));
    let params_file = ParamsFile::read(&params_path)?;
    let assigned = params_file
        .assign(&templates.iter().map(|(kind, template)| (*kind, template)).collect::<Vec<_>>())?;
    let pipeline_template = &templates[&StackKind::Pipeline];
    if args.image_tag.is_some() && !pipeline_template.parameters.contains_key("ImageTag") {
        return Err(CommandError::bad_input(format!(
            "--image-tag: {} declares no ImageTag parameter to receive it",
            pipeline_template.path.display()
        ))
        .into());
    }

    let kinds: Vec<StackKind> = match args.only {
        Some(kind) => vec![kind],
        None => StackKind::ALL.to_vec(),
    };
    let cfn = Client::new(config);
    let registry_name = StackKind::Registry.stack_name(prefix, env);
    let parameters_of = |kind: StackKind,
                         existing: Option<&StackState>,
                         image_registry: Option<&str>|
     -> Result<StackParameters, CommandError> {
        let template = &templates[&kind];
        let mut parameters = StackParameters {
            values: assigned.get(&kind).cloned().unwrap_or_default(),
            keep_previous: Vec::new(),
        };
        if kind == StackKind::Pipeline {
            supply_pipeline_parameters(
                &mut parameters,
                template,
                existing,
                args.image_tag.as_deref(),
                image_registry,
            )?;
        }
        parameters.check_complete(template, &params_path)?;
        Ok(parameters)
    };

    // A template too large to send inline needs a bucket; known before anything changes.
    let bucket_coming = args.template_bucket().is_some()
        || templates[&StackKind::Registry].outputs.contains(TEMPLATE_BUCKET_OUTPUT);
    if let Some(large) = kinds.iter().map(|kind| &templates[kind]).find(|t| t.needs_upload())
        && !bucket_coming
    {
        return Err(CommandError::bad_input(format!(
            "--template-bucket: {} is {} bytes, more than the {} CloudFormation takes inline, \
             so it goes through S3; name a bucket (--template-bucket, NTON_TEMPLATE_BUCKET) or \
             give the registry template a {TEMPLATE_BUCKET_OUTPUT} output",
            large.path.display(),
            large.body.len(),
            params::MAX_TEMPLATE_BODY
        ))
        .into());
    }

    // Every stack's parameters are checked before the first one changes, so a parameter
    // missing for the pipeline does not surface only after the registry was deployed.
    let mut image_registry = registry_of(&cfn, &registry_name).await?;
    let mut existing_stacks = BTreeMap::new();
    for kind in kinds.iter().copied() {
        let existing = stack::describe(&cfn, &kind.stack_name(prefix, env)).await?;
        parameters_of(kind, existing.as_ref(), image_registry.as_deref())?;
        existing_stacks.insert(kind, existing);
    }

    let mut summaries = Vec::new();
    let mut code = exit::SUCCESS;
    for kind in kinds.iter().copied() {
        let name = kind.stack_name(prefix, env);
        let template = &templates[&kind];
        let existing = existing_stacks.remove(&kind).flatten();
        let parameters = parameters_of(kind, existing.as_ref(), image_registry.as_deref())?;
        if kind == StackKind::Pipeline
            && existing.is_none()
            && !parameters.values.contains_key("ImageTag")
            && let Some(true) = template.parameters.get("ImageTag")
        {
            console.note(format!(
                "{name}: no --image-tag; the template's default ImageTag applies, and the \
                 images must exist under it"
            ));
        }

        let template_url = if template.needs_upload() {
            let bucket = match args.template_bucket() {
                Some(bucket) => Some(bucket.to_string()),
                None => stack::describe(&cfn, &registry_name)
                    .await?
                    .and_then(|s| s.outputs.get(TEMPLATE_BUCKET_OUTPUT).cloned()),
            };
            let Some(bucket) = bucket else {
                return Err(CommandError::bad_input(format!(
                    "--template-bucket: {} is {} bytes, more than the {} CloudFormation takes \
                     inline, so it goes through S3; name a bucket (--template-bucket, \
                     NTON_TEMPLATE_BUCKET) or give the registry stack a {TEMPLATE_BUCKET_OUTPUT} output",
                    template.path.display(),
                    template.body.len(),
                    params::MAX_TEMPLATE_BODY
                ))
                .into());
            };
            Some(upload_template(config, &bucket, &name, template, console).await?)
        } else {
            None
        };
        let plan = StackPlan {
            name: &name,
            template,
            template_url: template_url.as_deref(),
            parameters: &parameters,
            tags: &params_file.tags,
            role_arn: args.stack.role_arn(),
        };
        // The pipeline reads the registry's outputs, so the registry is waited for even with
        // --no-wait when the pipeline follows it.
        let wait = !args.no_wait || (kind == StackKind::Registry && kinds.len() > 1);
        let outcome =
            deploy_stack(&cfn, &plan, existing, args.dry_run, wait, poll, console).await?;
        let after = if matches!(outcome, Outcome::DryRun) {
            None
        } else {
            stack::describe(&cfn, &name).await?
        };
        if kind == StackKind::Registry && !args.dry_run {
            image_registry = registry_of(&cfn, &registry_name).await?;
        }
        let failed = matches!(outcome, Outcome::Failed { .. });
        summaries.push((kind, name, outcome, after));
        if failed {
            code = exit::RUN_FAILED;
            break;
        }
    }

    print_summary(console, args, env, &summaries, image_registry.as_deref());
    Ok(code)
}

/// The registry stack output naming a bucket for templates too large to send inline.
pub const TEMPLATE_BUCKET_OUTPUT: &str = "TemplatesBucketName";

/// Uploads a template too large to send inline; returns its URL for CloudFormation. The key
/// holds the stack name and the time, so that a change set made from an older upload is
/// never changed under it.
async fn upload_template(
    config: &aws_config::SdkConfig,
    bucket: &str,
    stack: &str,
    template: &Template,
    console: &mut Console,
) -> Result<String, CommandError> {
    let millis =
        SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or_default();
    let key = format!("templates/{stack}/{millis}-{}", template.name());
    let s3 = super::s3_client(config);
    s3.put_object()
        .bucket(bucket)
        .key(&key)
        .content_type("application/x-yaml")
        .body(template.body.clone().into_bytes().into())
        .send()
        .await
        .map_err(|e| aws_error(format!("PutObject s3://{bucket}/{key}"), &e))?;
    console.note(format!(
        "{stack}: {} is {} bytes; uploaded to s3://{bucket}/{key}",
        template.name(),
        template.body.len()
    ));
    let region = config.region().map(|r| r.as_ref()).unwrap_or("us-east-1");
    Ok(template_url(bucket, region, &key))
}

/// The S3 URL CloudFormation reads a template from: virtual-hosted, or path-style for a
/// bucket name with dots (whose virtual host would not match S3's certificate).
pub fn template_url(bucket: &str, region: &str, key: &str) -> String {
    let domain = if region.starts_with("cn-") { "amazonaws.com.cn" } else { "amazonaws.com" };
    if bucket.contains('.') {
        format!("https://s3.{region}.{domain}/{bucket}/{key}")
    } else {
        format!("https://{bucket}.s3.{region}.{domain}/{key}")
    }
}

/// Adds the values nton itself supplies to the pipeline stack: the image tag (flag, else
/// params file, else the deployed stack's own) and the registry the registry stack made.
fn supply_pipeline_parameters(
    parameters: &mut StackParameters,
    template: &Template,
    existing: Option<&StackState>,
    image_tag: Option<&str>,
    image_registry: Option<&str>,
) -> Result<(), CommandError> {
    let declares = |name: &str| template.parameters.contains_key(name);
    let deployed_has = |name: &str| existing.is_some_and(|s| s.parameters.contains_key(name));
    if declares("ImageTag") {
        if let Some(tag) = image_tag {
            parameters.values.insert("ImageTag".into(), tag.into());
        } else if !parameters.values.contains_key("ImageTag") && deployed_has("ImageTag") {
            // A parameters-only change must not roll the images back to the template default.
            parameters.keep_previous.push("ImageTag".into());
        }
    }
    if declares("ImageRegistry") && !parameters.values.contains_key("ImageRegistry") {
        if let Some(registry) = image_registry {
            parameters.values.insert("ImageRegistry".into(), registry.into());
        } else if deployed_has("ImageRegistry") {
            parameters.keep_previous.push("ImageRegistry".into());
        }
    }
    if declares("ImageTag")
        && template.parameters.get("ImageTag") == Some(&false)
        && !parameters.values.contains_key("ImageTag")
        && !parameters.keep_previous.iter().any(|p| p == "ImageTag")
    {
        return Err(CommandError::bad_input(format!(
            "--image-tag: the first deploy of the pipeline needs it ({} declares ImageTag \
             without a Default), e.g. --image-tag :git-1a2b3c4",
            template.path.display()
        )));
    }
    Ok(())
}

/// The image registry (`host[/prefix]`, so that `<registry>/nton-job` is a repository) the
/// registry stack made: its `ImageRegistry` output if it has one, else derived from its
/// repositories and the account and region in its stack id. `None` if it does not exist.
async fn registry_of(cfn: &Client, name: &str) -> Result<Option<String>, CommandError> {
    let Some(state) = stack::describe(cfn, name).await? else {
        return Ok(None);
    };
    if let Some(registry) = state.outputs.get("ImageRegistry") {
        return Ok(Some(registry.clone()));
    }
    if !state.status.ends_with("_COMPLETE") || state.status.starts_with("ROLLBACK") {
        return Ok(None);
    }
    let repositories: Vec<String> = stack::resources(cfn, name)
        .await?
        .into_iter()
        .filter(|(_, _, kind)| kind == "AWS::ECR::Repository")
        .map(|(_, physical, _)| physical)
        .collect();
    Ok(registry_from(&state.id, &repositories))
}

/// `<account>.dkr.ecr.<region>.amazonaws.com[/<prefix>]` from a stack ARN
/// (`arn:<partition>:cloudformation:<region>:<account>:stack/...`) and repository names such
/// as `nton-job` or `team/dev/nton-job`.
pub fn registry_from(stack_arn: &str, repositories: &[String]) -> Option<String> {
    let fields: Vec<&str> = stack_arn.splitn(6, ':').collect();
    let [_, partition, _, region, account, _] = fields.as_slice() else {
        return None;
    };
    let domain = if partition.ends_with("-cn") { "amazonaws.com.cn" } else { "amazonaws.com" };
    let host = format!("{account}.dkr.ecr.{region}.{domain}");
    let prefixes: Vec<&str> = repositories
        .iter()
        .filter_map(|repo| {
            IMAGE_NAMES.iter().find_map(|image| {
                if repo == image { Some("") } else { repo.strip_suffix(image)?.strip_suffix('/') }
            })
        })
        .collect();
    let prefix = *prefixes.first()?;
    // Repositories under different prefixes cannot be one `${ImageRegistry}/<image>`.
    if prefixes.iter().any(|p| *p != prefix) {
        return None;
    }
    Some(if prefix.is_empty() { host } else { format!("{host}/{prefix}") })
}

/// One stack's change set inputs.
struct StackPlan<'a> {
    name: &'a str,
    template: &'a Template,
    /// Where the template was uploaded, when it is too large to send inline.
    template_url: Option<&'a str>,
    parameters: &'a StackParameters,
    tags: &'a BTreeMap<String, String>,
    role_arn: Option<&'a str>,
}

/// How one stack's deploy ended.
enum Outcome {
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
    fn label(&self) -> &str {
        match self {
            Outcome::NoChanges => "NO_CHANGES",
            Outcome::DryRun => "DRY_RUN",
            Outcome::Started => "STARTED",
            Outcome::Completed(status) => status,
            Outcome::Failed { status, .. } => status,
        }
    }
}

async fn deploy_stack(
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

fn print_summary(
    console: &mut Console,
    args: &DeployArgs,
    env: &str,
    summaries: &[(StackKind, String, Outcome, Option<StackState>)],
    image_registry: Option<&str>,
) {
    if args.json {
        let stacks: Vec<_> = summaries
            .iter()
            .map(|(kind, name, outcome, after)| {
                let reasons = match outcome {
                    Outcome::Failed { reasons, .. } => reasons.clone(),
                    _ => Vec::new(),
                };
                json!({
                    "kind": kind.as_str(),
                    "stackName": name,
                    "result": outcome.label(),
                    "status": after.as_ref().map(|s| s.status.clone()),
                    "outputs": after.as_ref().map(|s| s.outputs.clone()).unwrap_or_default(),
                    "failures": reasons,
                })
            })
            .collect();
        console.result(json!({
            "env": env,
            "imageRegistry": image_registry,
            "stacks": stacks,
        }));
        return;
    }
    for (_, name, outcome, after) in summaries {
        match outcome {
            Outcome::DryRun => {}
            Outcome::Failed { status, reasons } => {
                console.result(format!("{name}: {status}"));
                if reasons.is_empty() {
                    console.result("  (CloudFormation gave no reason; see its console)");
                }
                for reason in reasons {
                    console.result(format!("  failed: {reason}"));
                }
            }
            Outcome::NoChanges => console.result(format!("{name}: no changes")),
            other => console.result(format!("{name}: {}", other.label())),
        }
        if let Some(after) = after {
            for (key, value) in &after.outputs {
                console.result(format!("  {key} = {value}"));
            }
        }
    }
    if let Some(registry) = image_registry
        && !args.dry_run
    {
        console.result(format!("image registry: {registry}"));
    }
}

/// The default params file of an environment, for messages and docs.
pub fn default_params_path(template_dir: &std::path::Path, env: &str) -> PathBuf {
    template_dir.join("params").join(format!("{env}.json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const STACK: &str = "arn:aws:cloudformation:eu-west-1:123456789012:stack/nton-dev-registry/abc";

    #[test]
    fn template_urls_are_virtual_hosted_unless_the_bucket_has_dots() {
        assert_eq!(
            template_url("nton-templates", "eu-west-1", "templates/s/1-pipeline.yaml"),
            "https://nton-templates.s3.eu-west-1.amazonaws.com/templates/s/1-pipeline.yaml"
        );
        assert_eq!(
            template_url("my.bucket", "cn-north-1", "k"),
            "https://s3.cn-north-1.amazonaws.com.cn/my.bucket/k"
        );
    }

    #[test]
    fn registry_comes_from_repository_names_and_the_stack_arn() {
        let repos = |names: &[&str]| names.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            registry_from(STACK, &repos(&["nton-job", "nton-init", "nton-watch"])).as_deref(),
            Some("123456789012.dkr.ecr.eu-west-1.amazonaws.com")
        );
        assert_eq!(
            registry_from(STACK, &repos(&["nton-dev/nton-job", "nton-dev/nton-watch"])).as_deref(),
            Some("123456789012.dkr.ecr.eu-west-1.amazonaws.com/nton-dev")
        );
        let china = "arn:aws-cn:cloudformation:cn-north-1:123456789012:stack/s/x";
        assert_eq!(
            registry_from(china, &repos(&["nton-job"])).as_deref(),
            Some("123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn")
        );
        assert_eq!(registry_from(STACK, &repos(&["other"])), None);
        assert_eq!(registry_from(STACK, &repos(&["a/nton-job", "b/nton-init"])), None);
        assert_eq!(registry_from("not-an-arn", &repos(&["nton-job"])), None);
    }

    fn template(body: &str) -> Template {
        Template::parse(std::path::Path::new("t/pipeline.yaml"), body.to_string()).unwrap()
    }

    fn deployed(params: &[(&str, &str)]) -> StackState {
        StackState {
            id: STACK.into(),
            status: "UPDATE_COMPLETE".into(),
            reason: None,
            outputs: BTreeMap::new(),
            parameters: params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        }
    }

    #[test]
    fn image_tag_comes_from_the_flag_else_the_file_else_the_deployed_stack() {
        let t = template(
            "Parameters:\n  ImageTag: {Type: String}\n  ImageRegistry: {Type: String, Default: ''}\n",
        );
        let mut p = StackParameters::default();
        supply_pipeline_parameters(&mut p, &t, None, Some(":v2"), Some("r.example/x")).unwrap();
        assert_eq!(p.values["ImageTag"], ":v2");
        assert_eq!(p.values["ImageRegistry"], "r.example/x");

        let mut p = StackParameters::default();
        p.values.insert("ImageTag".into(), ":file".into());
        supply_pipeline_parameters(
            &mut p,
            &t,
            Some(&deployed(&[("ImageTag", ":old")])),
            None,
            None,
        )
        .unwrap();
        assert_eq!(p.values["ImageTag"], ":file");
        assert!(p.keep_previous.is_empty());

        let mut p = StackParameters::default();
        let stack = deployed(&[("ImageTag", ":old"), ("ImageRegistry", "r")]);
        supply_pipeline_parameters(&mut p, &t, Some(&stack), None, None).unwrap();
        assert_eq!(p.keep_previous, vec!["ImageTag", "ImageRegistry"]);

        let mut p = StackParameters::default();
        let error = supply_pipeline_parameters(&mut p, &t, None, None, None).unwrap_err();
        assert!(error.message.starts_with("--image-tag: "), "{}", error.message);
    }
}
