//! Commands against a deployed pipeline: `deploy`, `start`, `watch`, `teardown`.
//!
//! Each command is two functions: `<command>(args)`, which builds the AWS SDK config from the
//! environment (profile, region, `AWS_ENDPOINT_URL`) and writes to stdout/stderr, and
//! `<command>_with(config, args, console)`, which takes both from the caller so tests can point
//! it at an emulator and read what it printed. Results go to stdout, progress to stderr.
//!
//! Stacks of an environment are `<prefix>-<env>-registry` (the ECR repositories, from
//! `<template-dir>/registry.yaml`) and `<prefix>-<env>-pipeline` (everything else, from
//! `pipeline.yaml`); the environment's parameters and tags are in
//! `<template-dir>/params/<env>.json`.

pub mod console;
pub mod deploy;
pub mod execution;
pub mod jobs;
pub mod params;
pub mod retry;
mod stack;
pub mod teardown;
pub mod teardown_leftovers;

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

pub use console::{Captured, Console};
pub use deploy::deploy_with;
pub use execution::{start_with, watch_with};
pub use params::StackKind;
pub use teardown::teardown_with;

use crate::exit::CommandError;

/// Which environment's stacks a command acts on.
#[derive(Debug, Clone, Args)]
pub struct StackArgs {
    /// Environment name (e.g. dev, prod): picks <template-dir>/params/<env>.json and the
    /// stack names <prefix>-<env>-registry and <prefix>-<env>-pipeline.
    #[arg(long = "env", value_name = "ENV")]
    pub env: String,

    /// First part of every stack name.
    #[arg(long, env = "NTON_STACK_PREFIX", default_value = "nton")]
    pub prefix: String,

    /// Service role CloudFormation uses to create, change and delete the stacks' resources
    /// (the github-oidc stack's CloudFormationExecutionRoleArn). Without it CloudFormation
    /// acts with the caller's own permissions.
    #[arg(long, env = "NTON_CFN_ROLE_ARN", value_name = "ARN")]
    pub cfn_role_arn: Option<String>,
}

impl StackArgs {
    /// The service role, if one is set. An empty value counts as none: a workflow passes an
    /// unset variable as `NTON_CFN_ROLE_ARN=""`.
    pub fn role_arn(&self) -> Option<&str> {
        self.cfn_role_arn.as_deref().filter(|r| !r.is_empty())
    }

    /// Checks the names and the role ARN before any AWS call.
    pub fn check(&self) -> Result<(), CommandError> {
        params::check_name("--env", &self.env)?;
        params::check_name("--prefix", &self.prefix)?;
        if let Some(role) = self.role_arn()
            && !(role.starts_with("arn:") && role.contains(":iam::") && role.contains(":role/"))
        {
            return Err(CommandError::bad_input(format!(
                "--cfn-role-arn: {role:?} is not an IAM role ARN (arn:aws:iam::<account>:role/<name>)"
            )));
        }
        Ok(())
    }
}

/// Where the AWS calls go. Without flags: the SDK's usual chain (AWS_PROFILE, AWS_REGION,
/// AWS_ENDPOINT_URL, SSO, instance and web-identity credentials).
#[derive(Debug, Clone, Default, Args)]
pub struct AwsArgs {
    /// AWS region (default: AWS_REGION, else the profile's).
    #[arg(long, value_name = "REGION")]
    pub region: Option<String>,

    /// Named profile from ~/.aws/config (default: AWS_PROFILE).
    #[arg(long, value_name = "PROFILE")]
    pub profile: Option<String>,
}

/// Options of `nton deploy`.
#[derive(Debug, Clone, Args)]
pub struct DeployArgs {
    #[command(flatten)]
    pub stack: StackArgs,

    /// Directory holding registry.yaml, pipeline.yaml and params/<env>.json.
    #[arg(long, default_value = "cloudformation")]
    pub template_dir: PathBuf,

    /// Bucket for templates too large to send inline (over 51,200 bytes), e.g. pipeline.yaml.
    /// Default: the registry stack's TemplatesBucketName output.
    #[arg(long, env = "NTON_TEMPLATE_BUCKET", value_name = "BUCKET")]
    pub template_bucket: Option<String>,

    /// Parameters file (default: <template-dir>/params/<env>.json).
    #[arg(long, value_name = "FILE")]
    pub params_file: Option<PathBuf>,

    /// Images to run: ":<tag>" or "@sha256:<digest>", appended to each repository URI.
    /// Default: the params file's ImageTag, else what the deployed stack runs now.
    #[arg(long, value_name = ":TAG|@sha256:DIGEST")]
    pub image_tag: Option<String>,

    /// Deploy only this stack (e.g. the registry before the first image push).
    #[arg(long, value_enum, value_name = "STACK")]
    pub only: Option<StackKind>,

    /// Start the last stack's change and return without waiting for it (the registry stack
    /// is still waited for when the pipeline stack follows: it needs the registry's outputs).
    #[arg(long)]
    pub no_wait: bool,

    /// Make the change sets, print their changes, and delete them: nothing is changed.
    #[arg(long, conflicts_with = "no_wait")]
    pub dry_run: bool,

    /// Print the result (stacks, statuses, outputs, image registry) as one JSON object.
    #[arg(long)]
    pub json: bool,

    /// Seconds between two checks of a stack's progress (env NTON_POLL_SECONDS: one setting for a
    /// script or test that runs several verbs).
    #[arg(long, env = "NTON_POLL_SECONDS", default_value_t = 5.0, value_name = "SECONDS", allow_negative_numbers = true, value_parser = poll_seconds_arg)]
    pub poll_seconds: f64,

    #[command(flatten)]
    pub aws: AwsArgs,
}

impl DeployArgs {
    /// The template bucket, if one is set (an empty value counts as none, as for the role).
    pub fn template_bucket(&self) -> Option<&str> {
        self.template_bucket.as_deref().filter(|b| !b.is_empty())
    }
}

/// Options of `nton start`.
#[derive(Debug, Clone, Args)]
pub struct StartArgs {
    /// Environment whose pipeline stack holds the state machine.
    #[arg(long = "env", value_name = "ENV", required_unless_present = "state_machine_arn")]
    pub env: Option<String>,

    /// First part of every stack name.
    #[arg(long, env = "NTON_STACK_PREFIX", default_value = "nton")]
    pub prefix: String,

    /// Number of record ids (default: the init Lambda's).
    #[arg(long, allow_negative_numbers = true, value_parser = crate::cli::id_count)]
    pub ids: Option<u64>,

    /// Most record ids per array node (default: the stack's IdsPerNode).
    #[arg(long, allow_negative_numbers = true, value_parser = crate::cli::id_count)]
    pub ids_per_node: Option<u64>,

    /// Execution name (default: one Step Functions makes up). Names are unique per state
    /// machine for 90 days, so a name makes a start idempotent.
    #[arg(long)]
    pub name: Option<String>,

    /// The state machine to start, instead of the one in the pipeline stack's outputs.
    #[arg(long, value_name = "ARN")]
    pub state_machine_arn: Option<String>,

    /// Print the execution as JSON instead of its bare ARN.
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub aws: AwsArgs,
}

/// Options of `nton watch`.
#[derive(Debug, Clone, Args)]
pub struct WatchArgs {
    /// Environment whose pipeline stack holds the state machine (not needed with an
    /// execution ARN or --state-machine-arn).
    #[arg(long = "env", value_name = "ENV")]
    pub env: Option<String>,

    /// First part of every stack name.
    #[arg(long, env = "NTON_STACK_PREFIX", default_value = "nton")]
    pub prefix: String,

    /// Execution to follow: its ARN, its name, or "latest" (the newest one).
    #[arg(long, default_value = "latest", value_name = "ARN|NAME|latest")]
    pub execution: String,

    /// The state machine, instead of the one in the pipeline stack's outputs.
    #[arg(long, value_name = "ARN")]
    pub state_machine_arn: Option<String>,

    /// Seconds between two checks.
    #[arg(long, env = "NTON_POLL_SECONDS", default_value_t = 10.0, value_name = "SECONDS", allow_negative_numbers = true, value_parser = poll_seconds_arg)]
    pub poll_seconds: f64,

    /// Name of the state whose output is the watcher's status (default: the state of
    /// cloudformation/pipeline.yaml whose Task invokes the nton-watch function).
    #[arg(long, default_value_t = crate::run::default_watch_state(), value_name = "STATE")]
    pub watch_state: String,

    /// Print newline-delimited JSON: progress events, then one "finished" object.
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub aws: AwsArgs,
}

/// Options of `nton teardown`.
#[derive(Debug, Clone, Args)]
pub struct TeardownArgs {
    #[command(flatten)]
    pub stack: StackArgs,

    /// Do not ask: delete the stacks, their buckets' objects and their images.
    #[arg(long)]
    pub yes: bool,

    /// Delete only this stack (e.g. the pipeline, keeping the images).
    #[arg(long, value_enum, value_name = "STACK")]
    pub only: Option<StackKind>,

    /// Keep the Lambda functions' log groups (by default they go with the stack).
    #[arg(long)]
    pub keep_logs: bool,

    /// Seconds between two checks of a stack's progress (env NTON_POLL_SECONDS: one setting for a
    /// script or test that runs several verbs).
    #[arg(long, env = "NTON_POLL_SECONDS", default_value_t = 5.0, value_name = "SECONDS", allow_negative_numbers = true, value_parser = poll_seconds_arg)]
    pub poll_seconds: f64,

    #[command(flatten)]
    pub aws: AwsArgs,
}

impl DeployArgs {
    /// What can be checked without AWS or files, before the SDK config is loaded.
    pub fn check(&self) -> Result<(), CommandError> {
        self.stack.check()?;
        if let Some(tag) = &self.image_tag {
            params::check_image_tag("--image-tag", tag)?;
        }
        poll_interval(self.poll_seconds)?;
        Ok(())
    }
}

impl StartArgs {
    /// Everything `start` is told, checked before any AWS call.
    pub fn check(&self) -> Result<(), CommandError> {
        if let Some(env) = &self.env {
            params::check_name("--env", env)?;
        }
        params::check_name("--prefix", &self.prefix)?;
        if let Some(arn) = &self.state_machine_arn {
            execution::check_state_machine_arn(arn)?;
        }
        if let Some(name) = &self.name {
            execution::check_execution_name(name)?;
        }
        execution::start_input(self.ids, self.ids_per_node)?;
        Ok(())
    }
}

impl WatchArgs {
    /// Everything `watch` (and `report` of an execution) is told, checked before any AWS call.
    pub fn check(&self) -> Result<(), CommandError> {
        poll_interval(self.poll_seconds)?;
        if let Some(env) = &self.env {
            params::check_name("--env", env)?;
        }
        params::check_name("--prefix", &self.prefix)?;
        if let Some(arn) = &self.state_machine_arn {
            execution::check_state_machine_arn(arn)?;
        }
        execution::check_execution_ref(&self.execution)?;
        if self.watch_state.trim().is_empty() {
            return Err(CommandError::bad_input(
                "--watch-state: empty, and neither cloudformation/pipeline.yaml here nor the \
                 built-in template has one state whose Task invokes the nton-watch function \
                 (name the watch state, e.g. Watch)",
            ));
        }
        Ok(())
    }
}

impl TeardownArgs {
    /// What can be checked without AWS, before the SDK config is loaded.
    pub fn check(&self) -> Result<(), CommandError> {
        self.stack.check()?;
        poll_interval(self.poll_seconds)?;
        Ok(())
    }
}

/// `nton deploy`, with the SDK config from the environment.
pub async fn deploy(args: DeployArgs) -> anyhow::Result<u8> {
    args.check()?;
    let config = load_config(&args.aws).await?;
    deploy_with(&config, &args, &mut Console::stdio()).await
}

/// `nton start`, with the SDK config from the environment.
pub async fn start(args: StartArgs) -> anyhow::Result<u8> {
    args.check()?;
    let config = load_config(&args.aws).await?;
    start_with(&config, &args, &mut Console::stdio()).await
}

/// `nton watch`, with the SDK config from the environment.
pub async fn watch(args: WatchArgs) -> anyhow::Result<u8> {
    args.check()?;
    let config = load_config(&args.aws).await?;
    watch_with(&config, &args, &mut Console::stdio()).await
}

/// `nton teardown`, with the SDK config from the environment; asks on the terminal unless
/// `--yes`.
pub async fn teardown(args: TeardownArgs) -> anyhow::Result<u8> {
    args.check()?;
    let config = load_config(&args.aws).await?;
    let env = args.stack.env.clone();
    let mut confirm = teardown::terminal_confirm(&env);
    teardown_with(&config, &args, &mut Console::stdio(), &mut confirm).await
}

/// The SDK config from the environment and the flags. A missing region is caught here, with
/// the fix, rather than at the first call. The region is looked up in the flag, the
/// environment (`AWS_REGION`, `AWS_DEFAULT_REGION`) and the profile only: the SDK's default
/// chain would also ask the EC2 instance metadata service, which off EC2 means a wait and a
/// screen of IMDS warnings before the same "no region" answer.
pub async fn load_config(aws: &AwsArgs) -> Result<aws_config::SdkConfig, CommandError> {
    let region = match &aws.region {
        Some(region) if region.trim().is_empty() => {
            return Err(CommandError::bad_input(
                "--region: empty (must be an AWS region such as eu-west-1)",
            ));
        }
        Some(region) => Some(aws_config::Region::new(region.clone())),
        None => configured_region(aws.profile.as_deref()).await,
    };
    let Some(region) = region else {
        return Err(CommandError::bad_input(
            "--region: no AWS region configured (set AWS_REGION, a profile's region, or pass --region)",
        ));
    };
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest()).region(region);
    if let Some(profile) = &aws.profile {
        loader = loader.profile_name(profile);
    }
    Ok(loader.load().await)
}

/// The region from the environment or the profile, without the instance metadata service.
async fn configured_region(profile: Option<&str>) -> Option<aws_config::Region> {
    use aws_config::meta::region::RegionProviderChain;
    let mut from_profile = aws_config::profile::ProfileFileRegionProvider::builder();
    if let Some(profile) = profile {
        from_profile = from_profile.profile_name(profile);
    }
    RegionProviderChain::first_try(
        aws_config::environment::EnvironmentVariableRegionProvider::new(),
    )
    .or_else(from_profile.build())
    .region()
    .await
}

/// `--poll-seconds` of deploy, watch and teardown, at parse time: the message names the
/// range (clap adds the option), and a negative number is a value, not an unknown flag.
fn poll_seconds_arg(text: &str) -> Result<f64, String> {
    let seconds: f64 = text.trim().parse().map_err(|_| {
        format!("{text:?} is not a number of seconds (must be more than 0 and at most 3600)")
    })?;
    poll_interval(seconds)
        .map_err(|error| error.message.trim_start_matches("--poll-seconds: ").to_string())?;
    Ok(seconds)
}

/// An S3 client for the config. With a custom endpoint (an emulator such as moto) buckets
/// are addressed by path: virtual-host names would need DNS for `<bucket>.localhost`.
pub(crate) fn s3_client(config: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    let s3_config = aws_sdk_s3::config::Builder::from(config)
        .force_path_style(config.endpoint_url().is_some())
        .build();
    aws_sdk_s3::Client::from_conf(s3_config)
}

/// Checks a `--poll-seconds` value.
pub(crate) fn poll_interval(seconds: f64) -> Result<Duration, CommandError> {
    if seconds.is_finite() && seconds > 0.0 && seconds <= 3600.0 {
        Ok(Duration::from_secs_f64(seconds))
    } else {
        Err(CommandError::bad_input(format!(
            "--poll-seconds: {seconds} is out of range (must be more than 0 and at most 3600)"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser, Subcommand};

    /// The four commands as the CLI mounts them.
    #[derive(Debug, Parser)]
    struct Cli {
        #[command(subcommand)]
        command: Sub,
    }

    #[derive(Debug, Subcommand)]
    enum Sub {
        Deploy(DeployArgs),
        Start(StartArgs),
        Watch(WatchArgs),
        Teardown(TeardownArgs),
    }

    #[test]
    fn the_flags_parse_as_documented() {
        Cli::command().debug_assert();
        let parsed = Cli::try_parse_from([
            "nton",
            "deploy",
            "--env",
            "dev",
            "--image-tag",
            ":git-1",
            "--only",
            "registry",
            "--cfn-role-arn",
            "arn:aws:iam::1:role/r",
            "--template-bucket",
            "b",
            "--dry-run",
        ])
        .unwrap();
        let Sub::Deploy(deploy) = parsed.command else { panic!("{parsed:?}") };
        assert_eq!(deploy.only, Some(StackKind::Registry));
        assert_eq!(deploy.image_tag.as_deref(), Some(":git-1"));
        assert_eq!(deploy.template_dir, PathBuf::from("cloudformation"));
        assert_eq!(deploy.template_bucket(), Some("b"));
        assert!(deploy.dry_run && !deploy.no_wait);
        assert!(
            Cli::try_parse_from(["nton", "deploy", "--env", "dev", "--dry-run", "--no-wait"])
                .is_err()
        );
        // start needs an environment or a machine; watch needs neither up front.
        assert!(Cli::try_parse_from(["nton", "start", "--ids", "10"]).is_err());
        let Sub::Watch(watch) =
            Cli::try_parse_from(["nton", "watch", "--execution", "arn:x"]).unwrap().command
        else {
            panic!()
        };
        assert_eq!((watch.env, watch.poll_seconds), (None, 10.0));
        let Sub::Teardown(teardown) = Cli::try_parse_from([
            "nton", "teardown", "--env", "dev", "--yes", "--only", "pipeline",
        ])
        .unwrap()
        .command
        else {
            panic!()
        };
        assert!(teardown.yes && teardown.only == Some(StackKind::Pipeline));
    }

    fn stack(role: Option<&str>) -> StackArgs {
        StackArgs {
            env: "dev".into(),
            prefix: "nton".into(),
            cfn_role_arn: role.map(str::to_string),
        }
    }

    #[test]
    fn an_empty_role_is_no_role_and_a_wrong_one_is_named() {
        assert_eq!(stack(Some("")).role_arn(), None);
        stack(Some("")).check().unwrap();
        let role = "arn:aws:iam::123456789012:role/nton-cfn";
        assert_eq!(stack(Some(role)).role_arn(), Some(role));
        stack(Some(role)).check().unwrap();
        let error = stack(Some("nton-cfn")).check().unwrap_err();
        assert!(error.message.starts_with("--cfn-role-arn: \"nton-cfn\""), "{}", error.message);
        let mut bad_env = stack(None);
        bad_env.env = "dev/../prod".into();
        assert!(bad_env.check().unwrap_err().message.starts_with("--env: "));
    }

    #[test]
    fn poll_intervals_are_positive_and_bounded() {
        assert_eq!(poll_interval(0.25).unwrap(), Duration::from_millis(250));
        for bad in [0.0, -1.0, f64::NAN, 3601.0] {
            let error = poll_interval(bad).unwrap_err();
            assert!(error.message.starts_with("--poll-seconds: "), "{}", error.message);
        }
    }
}
