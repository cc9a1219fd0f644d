//! `nton teardown`: deletes the pipeline stack, then the registry stack, leaving nothing
//! behind that the stacks made. CloudFormation cannot delete a bucket that holds objects (or
//! old versions, or delete markers) nor an ECR repository that holds images, and it never
//! deletes the log groups Lambda creates on first run: teardown empties the first two and
//! deletes the third. Resources the template marks `DeletionPolicy: Retain` are left alone
//! and reported.

use aws_sdk_cloudformation::types::TemplateStage;
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::types::{Delete, ObjectIdentifier};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, IsTerminal, Write};

use super::console::Console;
use super::params::{self, StackKind};
use super::stack::{self, EventFollower, aws_error, error_text};
use super::teardown_leftovers as leftovers;
use super::{TeardownArgs, poll_interval};
use crate::exit::{self, CommandError};

/// What deleting one stack involves, found before anything is deleted.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct StackInventory {
    pub name: String,
    pub id: String,
    /// Buckets to empty (all versions) before the delete.
    pub buckets: Vec<String>,
    /// Repositories whose images teardown deletes before the delete.
    pub repositories: Vec<String>,
    /// Repositories CloudFormation empties itself (`EmptyOnDelete`).
    pub self_emptying: Vec<String>,
    /// `/aws/lambda/<function>` of each function that logs to Lambda's default group, which
    /// Lambda makes on first run and no stack owns.
    pub log_groups: Vec<String>,
    /// `Type LogicalId (physical id)` of resources the template retains on delete.
    pub retained: Vec<String>,
    /// Names of the stack's job definitions: the delete deregisters only the current
    /// revision, teardown every other ACTIVE one (`teardown_leftovers`).
    pub job_definitions: Vec<String>,
    /// Names of the log groups the stack owns and deletes, which log delivery may have added
    /// to the account's CloudWatch Logs resource policy (`teardown_leftovers`).
    pub stack_log_groups: Vec<String>,
}

impl StackInventory {
    /// Sorts a stack's resources (`(logical, physical, type)`) by what teardown does with
    /// them, reading the deployed template (not the local one, which may have changed since)
    /// and the stack's parameter values for `DeletionPolicy`, `EmptyOnDelete` and
    /// `LoggingConfig`.
    pub fn classify(
        template_body: &str,
        parameters: &BTreeMap<String, String>,
        resources: &[(String, String, String)],
    ) -> StackInventory {
        let document = params::parse_template_value(template_body).ok();
        let declared =
            document.as_ref().and_then(|d| d.get("Resources")).and_then(|r| r.as_object());
        let mut inventory = StackInventory::default();
        for (logical, physical, kind) in resources {
            if physical.is_empty() {
                continue;
            }
            let resource = declared.and_then(|r| r.get(logical.as_str()));
            let property = |path: &[&str]| {
                let mut value = resource?.get("Properties")?;
                for key in path {
                    value = value.get(*key)?;
                }
                Some(value)
            };
            let retained = matches!(
                resource.and_then(|r| r.get("DeletionPolicy")).and_then(|p| p.as_str()),
                Some("Retain" | "RetainExceptOnCreate")
            );
            if retained {
                inventory.retained.push(format!("{kind} {logical} ({physical})"));
                continue;
            }
            match kind.as_str() {
                "AWS::S3::Bucket" => inventory.buckets.push(physical.clone()),
                "AWS::ECR::Repository" => {
                    if property(&["EmptyOnDelete"]).is_some_and(|v| is_true(v, parameters)) {
                        inventory.self_emptying.push(physical.clone());
                    } else {
                        inventory.repositories.push(physical.clone());
                    }
                }
                // The physical id of a function is its name. A function with its own
                // LoggingConfig.LogGroup logs to a group the template owns and deletes.
                "AWS::Lambda::Function" if property(&["LoggingConfig", "LogGroup"]).is_none() => {
                    inventory.log_groups.push(format!("/aws/lambda/{physical}"));
                }
                "AWS::Batch::JobDefinition" => {
                    if let Some(name) = leftovers::job_definition_name(physical) {
                        inventory.job_definitions.push(name);
                    }
                }
                // The physical id of a log group is its name.
                "AWS::Logs::LogGroup" => inventory.stack_log_groups.push(physical.clone()),
                _ => {}
            }
        }
        inventory
    }
}

/// Whether a template value is true: literally (`true`, `"true"`), or through `!Ref` /
/// `{"Ref": ...}` (one shape once read) of a parameter whose deployed value is `"true"`.
fn is_true(value: &serde_json::Value, parameters: &BTreeMap<String, String>) -> bool {
    use serde_json::Value;
    let referenced = match value {
        Value::Object(map) if map.len() == 1 => map.get("Ref").and_then(Value::as_str),
        _ => None,
    };
    match (value, referenced) {
        (_, Some(name)) => parameters.get(name).is_some_and(|v| v.eq_ignore_ascii_case("true")),
        (Value::Bool(flag), _) => *flag,
        (Value::String(text), _) => text.eq_ignore_ascii_case("true"),
        _ => false,
    }
}

/// Delete attempts per stack when buckets refill between emptying and deleting.
const MAX_DELETE_ATTEMPTS: u32 = 3;

/// Asks the user to confirm; gets the question, returns whether to go on.
pub type Confirm<'a> = &'a mut dyn FnMut(&str) -> anyhow::Result<bool>;

/// Asks on the terminal: the user must type the environment's name. Refuses (an error, not a
/// "no") when there is no terminal to ask on, so CI without `--yes` never hangs or deletes.
pub fn terminal_confirm(env: &str) -> impl FnMut(&str) -> anyhow::Result<bool> + '_ {
    move |question: &str| {
        if !std::io::stdin().is_terminal() {
            return Err(CommandError::bad_input(
                "--yes: teardown deletes data and asks first, but there is no terminal to ask on; \
                 pass --yes to confirm",
            )
            .into());
        }
        let mut stderr = std::io::stderr();
        write!(stderr, "{question}\nType the environment name ({env}) to go on: ")?;
        stderr.flush()?;
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        Ok(answer.trim() == env)
    }
}

/// Tears the environment down with an SDK config made by the caller; `confirm` is asked
/// (unless `--yes`) after the inventory is printed and before anything is deleted.
pub async fn teardown_with(
    config: &aws_config::SdkConfig,
    args: &TeardownArgs,
    console: &mut Console,
    confirm: Confirm<'_>,
) -> anyhow::Result<u8> {
    let env = &args.stack.env;
    args.stack.check()?;
    let poll = poll_interval(args.poll_seconds)?;
    let cfn = aws_sdk_cloudformation::Client::new(config);
    let s3 = super::s3_client(config);
    let ecr = aws_sdk_ecr::Client::new(config);
    let logs = aws_sdk_cloudwatchlogs::Client::new(config);
    let batch = aws_sdk_batch::Client::new(config);
    let region = config.region().map(|r| r.to_string()).unwrap_or_else(|| "<region>".to_string());

    // The pipeline's jobs and functions pull from the registry, so it goes first.
    let kinds: Vec<StackKind> = match args.only {
        Some(kind) => vec![kind],
        None => vec![StackKind::Pipeline, StackKind::Registry],
    };
    let mut inventories = Vec::new();
    for kind in kinds {
        let name = kind.stack_name(&args.stack.prefix, env);
        match stack::describe(&cfn, &name).await? {
            None => console.note(format!("{name}: does not exist; nothing to delete")),
            Some(state) => {
                let template = cfn
                    .get_template()
                    .stack_name(&state.id)
                    .template_stage(TemplateStage::Original)
                    .send()
                    .await
                    .map_err(|e| aws_error(format!("GetTemplate {name}"), &e))?;
                let resources = stack::resources(&cfn, &state.id).await?;
                let mut inventory = StackInventory::classify(
                    template.template_body().unwrap_or_default(),
                    &state.parameters,
                    &resources,
                );
                inventory.name = name;
                inventory.id = state.id;
                inventories.push(inventory);
            }
        }
    }
    if inventories.is_empty() {
        console.result("nothing to tear down");
        return Ok(exit::SUCCESS);
    }

    let mut question = String::from("This deletes, with everything in them:");
    for inventory in &inventories {
        question.push_str(&format!("\n  stack {}", inventory.name));
        for bucket in &inventory.buckets {
            let count = count_versions(&s3, bucket).await;
            question.push_str(&format!("\n    bucket {bucket} ({count})"));
        }
        for repository in &inventory.repositories {
            let count = count_images(&ecr, repository).await;
            question.push_str(&format!("\n    image repository {repository} ({count})"));
        }
        for repository in &inventory.self_emptying {
            question.push_str(&format!(
                "\n    image repository {repository} (CloudFormation deletes its images: EmptyOnDelete)"
            ));
        }
        for group in &inventory.log_groups {
            if !args.keep_logs {
                question.push_str(&format!("\n    log group {group} (if Lambda made it)"));
            }
        }
        for name in &inventory.job_definitions {
            let count = match leftovers::active_revisions(&batch, name).await {
                Ok(revisions) => format!("{} ACTIVE revisions", revisions.len()),
                Err(error) => format!("could not count: {error}"),
            };
            question.push_str(&format!(
                "\n    job definition {name} ({count}; the delete deregisters the current one, teardown the rest)"
            ));
        }
        if !inventory.stack_log_groups.is_empty() {
            question.push_str(&format!(
                "\n    this stack's log groups in the account's CloudWatch Logs resource policy {} (if named there)",
                leftovers::LOG_DELIVERY_POLICY
            ));
        }
        for kept in &inventory.retained {
            question.push_str(&format!("\n    kept (DeletionPolicy Retain): {kept}"));
        }
    }
    if !args.yes {
        if !confirm(&question)? {
            return Err(
                CommandError::bad_input("teardown not confirmed; nothing was deleted").into()
            );
        }
    } else {
        console.note(question);
    }

    let mut left = Vec::new();
    for inventory in &inventories {
        let name = &inventory.name;
        for repository in &inventory.repositories {
            let removed = empty_repository(&ecr, repository).await?;
            console
                .note(format!("{name}: emptied image repository {repository} ({removed} images)"));
        }
        let mut attempt = 1;
        let (status, failures) = loop {
            for bucket in &inventory.buckets {
                let removed = empty_bucket(&s3, bucket).await?;
                if attempt == 1 || removed > 0 {
                    console.note(format!(
                        "{name}: emptied bucket {bucket} ({removed} object versions and delete markers)"
                    ));
                }
            }
            let mut follower = EventFollower::after_existing(&cfn, &inventory.id).await?;
            cfn.delete_stack()
                .stack_name(&inventory.id)
                .set_role_arn(args.stack.role_arn().map(str::to_string))
                .send()
                .await
                .map_err(|e| aws_error(format!("DeleteStack {name}"), &e))?;
            console.note(format!("{name}: deleting"));
            let status = follower.until_settled(&cfn, console, poll).await?;
            if status == "DELETE_COMPLETE"
                || inventory.buckets.is_empty()
                || attempt == MAX_DELETE_ATTEMPTS
            {
                break (status, follower.failures);
            }
            // A bucket can fill again after it was emptied: S3 server access logs arrive
            // minutes late, and a job still running writes results. Emptying again and
            // deleting again finishes what the first attempt left.
            console.note(format!(
                "{name}: {status}; emptying its buckets again and retrying (attempt {} of {MAX_DELETE_ATTEMPTS})",
                attempt + 1
            ));
            attempt += 1;
        };
        if status != "DELETE_COMPLETE" {
            console.result(format!("{name}: {status}"));
            for reason in &failures {
                console.result(format!("  failed: {reason}"));
            }
            console.result(
                "  the stack is still there; fix the failures above and run teardown again",
            );
            return Ok(exit::RUN_FAILED);
        }
        console.result(format!("{name}: DELETE_COMPLETE"));
        // After the delete, which deregistered the current revision: what is ACTIVE now was
        // left by updates (SkipDeregisterOnUpdate) or by a delete that does not deregister.
        for definition in &inventory.job_definitions {
            match leftovers::active_revisions(&batch, definition).await {
                Ok(revisions) => {
                    let (done, failed) =
                        leftovers::deregister_revisions(&batch, &revisions).await;
                    if !done.is_empty() {
                        let list: Vec<String> = done.iter().map(i32::to_string).collect();
                        console.result(format!(
                            "{name}: deregistered job definition {definition} revisions {}",
                            list.join(", ")
                        ));
                    }
                    left.extend(failed);
                }
                Err(error) => left.push(format!(
                    "job definition {definition}: its ACTIVE revisions could not be listed ({error}); \
                     list them with: aws batch describe-job-definitions --job-definition-name {definition} --status ACTIVE"
                )),
            }
            console.result(format!(
                "{name}: INACTIVE revisions of {definition} cannot be deleted; AWS Batch deletes \
                 deregistered job definitions after 180 days ({})",
                leftovers::INACTIVE_REVISIONS_DOC
            ));
        }
        let group_arns: Vec<String> = inventory
            .stack_log_groups
            .iter()
            .filter_map(|group| leftovers::log_group_arn(&inventory.id, group))
            .collect();
        let (removed, kept) =
            leftovers::clean_log_delivery_policy(&logs, &group_arns, &region).await;
        for line in removed {
            console.result(format!("{name}: {line}"));
        }
        left.extend(kept);
        if !args.keep_logs {
            for group in &inventory.log_groups {
                // The stack is gone by now: a log group that cannot be deleted is reported,
                // not a reason to fail the teardown.
                match delete_log_group(&logs, group).await {
                    Ok(true) => console.note(format!("{name}: deleted log group {group}")),
                    Ok(false) => {}
                    Err(error) => left.push(format!("log group {group} ({error})")),
                }
            }
        } else {
            left.extend(
                inventory.log_groups.iter().map(|g| format!("log group {g} (--keep-logs)")),
            );
        }
        left.extend(inventory.retained.iter().map(|r| format!("{r} (DeletionPolicy Retain)")));
    }
    if left.is_empty() {
        console.result("nothing left behind");
    } else {
        console.result("left behind:");
        for item in left {
            console.result(format!("  {item}"));
        }
    }
    Ok(exit::SUCCESS)
}

/// "N object versions" for the confirmation; a failure to count is said, not fatal.
async fn count_versions(s3: &aws_sdk_s3::Client, bucket: &str) -> String {
    let mut count = 0usize;
    let (mut key_marker, mut version_marker) = (None, None);
    loop {
        let page = match s3
            .list_object_versions()
            .bucket(bucket)
            .set_key_marker(key_marker.take())
            .set_version_id_marker(version_marker.take())
            .send()
            .await
        {
            Ok(page) => page,
            Err(error) if error.code() == Some("NoSuchBucket") => return "already gone".into(),
            Err(error) => return format!("could not count: {}", error_text(&error)),
        };
        count += page.versions().len() + page.delete_markers().len();
        if page.is_truncated() != Some(true) {
            break;
        }
        key_marker = page.next_key_marker().map(str::to_string);
        version_marker = page.next_version_id_marker().map(str::to_string);
    }
    format!("{count} object versions and delete markers")
}

/// Deletes every object version, delete marker and unfinished multipart upload of a bucket;
/// returns how many versions and markers went. A bucket that is already gone is empty.
pub async fn empty_bucket(s3: &aws_sdk_s3::Client, bucket: &str) -> Result<usize, CommandError> {
    let mut removed = 0;
    loop {
        // Listing from the start each round: a delete invalidates the markers of a listing.
        let page = match s3.list_object_versions().bucket(bucket).send().await {
            Ok(page) => page,
            Err(error) if error.code() == Some("NoSuchBucket") => return Ok(removed),
            Err(error) => {
                return Err(aws_error(format!("ListObjectVersions s3://{bucket}"), &error));
            }
        };
        let mut identifiers = Vec::new();
        for version in page.versions() {
            if let Some(key) = version.key() {
                identifiers.push((key.to_string(), version.version_id().map(str::to_string)));
            }
        }
        for marker in page.delete_markers() {
            if let Some(key) = marker.key() {
                identifiers.push((key.to_string(), marker.version_id().map(str::to_string)));
            }
        }
        if identifiers.is_empty() {
            break;
        }
        // DeleteObjects takes at most 1000 keys; a listing page holds at most 1000 entries.
        for chunk in identifiers.chunks(1000) {
            let objects = chunk
                .iter()
                .map(|(key, version)| {
                    ObjectIdentifier::builder()
                        .key(key)
                        .set_version_id(version.clone())
                        .build()
                        .map_err(|e| CommandError::environment(format!("s3://{bucket}/{key}: {e}")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let delete = Delete::builder()
                .set_objects(Some(objects))
                .quiet(true)
                .build()
                .map_err(|e| CommandError::environment(format!("s3://{bucket}: {e}")))?;
            let answer = s3
                .delete_objects()
                .bucket(bucket)
                .delete(delete)
                .send()
                .await
                .map_err(|e| aws_error(format!("DeleteObjects s3://{bucket}"), &e))?;
            if let Some(first) = answer.errors().first() {
                return Err(CommandError::environment(format!(
                    "DeleteObjects s3://{bucket}/{}: {} ({} of {} failed)",
                    first.key().unwrap_or("?"),
                    first.message().unwrap_or("no message"),
                    answer.errors().len(),
                    chunk.len()
                )));
            }
            removed += chunk.len();
        }
    }
    // Unfinished multipart uploads hold storage but do not block DeleteBucket, and a deploy
    // role may not be allowed to list them: aborting them is a courtesy, not a requirement.
    if let Ok(uploads) = s3.list_multipart_uploads().bucket(bucket).send().await {
        for upload in uploads.uploads() {
            if let (Some(key), Some(id)) = (upload.key(), upload.upload_id()) {
                let _ =
                    s3.abort_multipart_upload().bucket(bucket).key(key).upload_id(id).send().await;
            }
        }
    }
    Ok(removed)
}

async fn count_images(ecr: &aws_sdk_ecr::Client, repository: &str) -> String {
    match list_image_digests(ecr, repository).await {
        Ok(digests) => format!("{} images", digests.len()),
        Err(error) => format!("could not count: {error}"),
    }
}

async fn list_image_digests(
    ecr: &aws_sdk_ecr::Client,
    repository: &str,
) -> Result<Vec<String>, CommandError> {
    let mut digests = BTreeSet::new();
    let mut pages = ecr.list_images().repository_name(repository).into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = match page {
            Ok(page) => page,
            Err(error) if error.code() == Some("RepositoryNotFoundException") => break,
            Err(error) => return Err(aws_error(format!("ListImages {repository}"), &error)),
        };
        // One image may carry several tags; each digest is deleted once.
        digests
            .extend(page.image_ids().iter().filter_map(|id| id.image_digest().map(str::to_string)));
    }
    Ok(digests.into_iter().collect())
}

/// Deletes every image of a repository; returns how many.
pub async fn empty_repository(
    ecr: &aws_sdk_ecr::Client,
    repository: &str,
) -> Result<usize, CommandError> {
    let digests = list_image_digests(ecr, repository).await?;
    // BatchDeleteImage takes at most 100 image ids.
    for chunk in digests.chunks(100) {
        let ids = chunk
            .iter()
            .map(|digest| {
                aws_sdk_ecr::types::ImageIdentifier::builder().image_digest(digest).build()
            })
            .collect();
        let answer = ecr
            .batch_delete_image()
            .repository_name(repository)
            .set_image_ids(Some(ids))
            .send()
            .await
            .map_err(|e| aws_error(format!("BatchDeleteImage {repository}"), &e))?;
        if let Some(failure) = answer.failures().first() {
            return Err(CommandError::environment(format!(
                "BatchDeleteImage {repository}: {}: {}",
                failure.image_id().and_then(|i| i.image_digest()).unwrap_or("?"),
                failure.failure_reason().unwrap_or("no reason")
            )));
        }
    }
    Ok(digests.len())
}

/// Deletes a log group; `false` when there was none.
async fn delete_log_group(
    logs: &aws_sdk_cloudwatchlogs::Client,
    group: &str,
) -> Result<bool, CommandError> {
    match logs.delete_log_group().log_group_name(group).send().await {
        Ok(_) => Ok(true),
        Err(error) if error.code() == Some("ResourceNotFoundException") => Ok(false),
        Err(error) => Err(aws_error(format!("DeleteLogGroup {group}"), &error)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resource(logical: &str, physical: &str, kind: &str) -> (String, String, String) {
        (logical.into(), physical.into(), kind.into())
    }

    #[test]
    fn the_deployed_template_decides_what_teardown_does() {
        let body = r#"
Parameters:
  EmptyOnDelete: {Type: String, Default: "true"}
Resources:
  Data:
    Type: AWS::S3::Bucket
    DeletionPolicy: Retain
  Scratch:
    Type: AWS::S3::Bucket
    DeletionPolicy: Delete
  Kept:
    Type: AWS::ECR::Repository
    DeletionPolicy: RetainExceptOnCreate
  ByParameter:
    Type: AWS::ECR::Repository
    Properties:
      EmptyOnDelete: !Ref EmptyOnDelete
  Literal:
    Type: AWS::ECR::Repository
    Properties:
      EmptyOnDelete: true
  Plain:
    Type: AWS::ECR::Repository
  OwnLogs:
    Type: AWS::Lambda::Function
    Properties:
      LoggingConfig:
        LogGroup: !Ref Group
  DefaultLogs:
    Type: AWS::Lambda::Function
    Properties:
      Role: !GetAtt R.Arn
"#;
        let resources = [
            resource("Data", "data-bucket", "AWS::S3::Bucket"),
            resource("Scratch", "scratch-bucket", "AWS::S3::Bucket"),
            resource("Kept", "p/kept", "AWS::ECR::Repository"),
            resource("ByParameter", "p/by-parameter", "AWS::ECR::Repository"),
            resource("Literal", "p/literal", "AWS::ECR::Repository"),
            resource("Plain", "p/plain", "AWS::ECR::Repository"),
            resource("OwnLogs", "stack-init", "AWS::Lambda::Function"),
            resource("DefaultLogs", "stack-watch", "AWS::Lambda::Function"),
            resource("NotYetMade", "", "AWS::S3::Bucket"),
        ];
        let on = BTreeMap::from([("EmptyOnDelete".to_string(), "true".to_string())]);
        let inventory = StackInventory::classify(body, &on, &resources);
        assert_eq!(inventory.buckets, vec!["scratch-bucket"]);
        assert_eq!(inventory.self_emptying, vec!["p/by-parameter", "p/literal"]);
        assert_eq!(inventory.repositories, vec!["p/plain"]);
        assert_eq!(inventory.log_groups, vec!["/aws/lambda/stack-watch"]);
        assert_eq!(
            inventory.retained,
            vec!["AWS::S3::Bucket Data (data-bucket)", "AWS::ECR::Repository Kept (p/kept)"]
        );
        // The deployed value of the parameter counts, not the template's default.
        let off = BTreeMap::from([("EmptyOnDelete".to_string(), "false".to_string())]);
        let inventory = StackInventory::classify(body, &off, &resources);
        assert_eq!(inventory.repositories, vec!["p/by-parameter", "p/plain"]);
        // JSON templates use {"Ref": ...}; an unreadable template empties everything it owns.
        let json = r#"{"Resources": {"R": {"Type": "AWS::ECR::Repository",
                      "Properties": {"EmptyOnDelete": {"Ref": "EmptyOnDelete"}}}}}"#;
        let inventory =
            StackInventory::classify(json, &on, &[resource("R", "r", "AWS::ECR::Repository")]);
        assert_eq!(inventory.self_emptying, vec!["r"]);
        let inventory =
            StackInventory::classify("{", &on, &[resource("R", "r", "AWS::ECR::Repository")]);
        assert_eq!(inventory.repositories, vec!["r"]);
    }
}
