//! What the registry stack gives the pipeline stack: the image registry its repositories
//! make, and the image tag (given, kept from the deployed stack, or refused when missing).

use aws_sdk_cloudformation::Client;

use super::super::params::{StackParameters, TemplateBody};
use super::super::stack::{self, StackState};
use crate::exit::CommandError;

/// The images every pipeline pulls; the registry stack holds one repository for each.
pub const IMAGE_NAMES: [&str; 3] = ["nton-job", "nton-init", "nton-watch"];

/// Adds the values nton itself supplies to the pipeline stack: the image tag (flag, else
/// params file, else the deployed stack's own) and the registry the registry stack made.
pub(super) fn supply_pipeline_parameters(
    parameters: &mut StackParameters,
    template: &TemplateBody,
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
pub(super) async fn registry_of(cfn: &Client, name: &str) -> Result<Option<String>, CommandError> {
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    const STACK: &str = "arn:aws:cloudformation:eu-west-1:123456789012:stack/nton-dev-registry/abc";

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

    fn template(body: &str) -> TemplateBody {
        TemplateBody::parse(std::path::Path::new("t/pipeline.yaml"), body.to_string()).unwrap()
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
