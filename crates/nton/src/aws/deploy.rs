//! `nton deploy`: the registry stack, then the pipeline stack, each by a change set (create or
//! update), following the stack's new events until it settles. "No changes" is a success; a
//! failed or rolled-back stack prints its failed resources' reasons and exits 1.
//!
//! Here: the order of the stacks, what is checked before the first AWS call, templates too
//! large to send inline, the summary. [`change_set`] deploys one stack; [`registry`] is what
//! the registry stack gives the pipeline (its image registry, the image tag kept or given).

mod change_set;
mod registry;

pub use registry::{IMAGE_NAMES, registry_from};

use change_set::{Outcome, StackPlan, deploy_stack};
use registry::{registry_of, supply_pipeline_parameters};

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use aws_sdk_cloudformation::Client;
use serde_json::json;

use super::console::Console;
use super::params::{self, ParamsFile, StackKind, StackParameters, TemplateBody};
use super::stack::{self, StackState, aws_error};
use super::{DeployArgs, poll_interval};
use crate::exit::{self, CommandError};

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
        templates.insert(kind, TemplateBody::read(&path)?);
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
    template: &TemplateBody,
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
}
