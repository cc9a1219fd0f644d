//! The local stand-in for a deployed stack: region, account, stack name, parameter values and
//! exports, and the deterministic values that `Ref`/`Fn::GetAtt` of a resource take locally.
//!
//! Local names always derive from the logical id (never from a `FunctionName`-like property),
//! so that [`logical_id_for_arn`] can map any of them back without ambiguity.

use std::collections::BTreeMap;

use serde_json::Value;

/// Where a template is "deployed" when it runs locally.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalContext {
    /// `AWS::Region`; default `local-1`.
    pub region: String,
    /// `AWS::AccountId`; default `000000000000`.
    pub account_id: String,
    /// `AWS::StackName`; default `nton-local`.
    pub stack_name: String,
    /// Parameter values that override the template's `Default`s, as CloudFormation takes
    /// them: strings (`CommaDelimitedList`/`List<...>` values are comma-separated).
    pub parameters: BTreeMap<String, String>,
    /// Values that `Fn::ImportValue` may read, by export name.
    pub exports: BTreeMap<String, Value>,
}

impl Default for LocalContext {
    fn default() -> Self {
        Self {
            region: "local-1".to_string(),
            account_id: "000000000000".to_string(),
            stack_name: "nton-local".to_string(),
            parameters: BTreeMap::new(),
            exports: BTreeMap::new(),
        }
    }
}

impl LocalContext {
    /// A context with the default region and account and the given stack name.
    pub fn new(stack_name: impl Into<String>) -> Self {
        Self { stack_name: stack_name.into(), ..Self::default() }
    }

    pub fn with_region(mut self, region: impl Into<String>) -> Self {
        self.region = region.into();
        self
    }

    pub fn with_account_id(mut self, account_id: impl Into<String>) -> Self {
        self.account_id = account_id.into();
        self
    }

    pub fn with_parameter(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.parameters.insert(name.into(), value.into());
        self
    }

    pub fn with_export(mut self, name: impl Into<String>, value: impl Into<Value>) -> Self {
        self.exports.insert(name.into(), value.into());
        self
    }

    /// `AWS::StackId`: the stack's ARN, with a fixed id since nothing is created.
    pub fn stack_id(&self) -> String {
        format!(
            "arn:aws:cloudformation:{}:{}:stack/{}/00000000-0000-0000-0000-000000000000",
            self.region, self.account_id, self.stack_name
        )
    }

    fn arn(&self, service: &str, rest: &str) -> String {
        format!("arn:aws:{service}:{}:{}:{rest}", self.region, self.account_id)
    }
}

/// The S3 bucket name a bucket resource gets locally: stack name and logical id, lowercased
/// and reduced to the characters S3 allows.
pub(crate) fn bucket_name(ctx: &LocalContext, logical_id: &str) -> String {
    let raw = format!("{}-{}", ctx.stack_name, logical_id).to_ascii_lowercase();
    let cleaned: String = raw
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '.' { c } else { '-' })
        .collect();
    let trimmed: String = cleaned.chars().take(63).collect();
    trimmed.trim_matches(|c| c == '-' || c == '.').to_string()
}

/// `Ref` of a resource.
pub(crate) fn ref_value(ctx: &LocalContext, logical_id: &str, resource_type: &str) -> Value {
    let s = match resource_type {
        "AWS::Batch::JobQueue" => ctx.arn("batch", &format!("job-queue/{logical_id}")),
        "AWS::Batch::JobDefinition" => ctx.arn("batch", &format!("job-definition/{logical_id}:1")),
        "AWS::Batch::ComputeEnvironment" => {
            ctx.arn("batch", &format!("compute-environment/{logical_id}"))
        }
        "AWS::Batch::SchedulingPolicy" => {
            ctx.arn("batch", &format!("scheduling-policy/{logical_id}"))
        }
        "AWS::StepFunctions::StateMachine" => {
            ctx.arn("states", &format!("stateMachine:{logical_id}"))
        }
        "AWS::S3::Bucket" => bucket_name(ctx, logical_id),
        // `Ref` of a topic is its ARN (the SNS resource reference), unlike most types' names.
        "AWS::SNS::Topic" => ctx.arn("sns", logical_id),
        // Names: functions, roles, log groups are referenced by name.
        "AWS::Lambda::Function" | "AWS::IAM::Role" | "AWS::Logs::LogGroup" => {
            logical_id.to_string()
        }
        _ => placeholder(logical_id, None),
    };
    Value::String(s)
}

/// `Fn::GetAtt` of a resource.
pub(crate) fn get_att(
    ctx: &LocalContext,
    logical_id: &str,
    resource_type: &str,
    attribute: &str,
) -> Value {
    let s = match (resource_type, attribute) {
        ("AWS::Lambda::Function", "Arn") => ctx.arn("lambda", &format!("function:{logical_id}")),
        ("AWS::StepFunctions::StateMachine", "Arn") => {
            ctx.arn("states", &format!("stateMachine:{logical_id}"))
        }
        ("AWS::StepFunctions::StateMachine", "Name") => logical_id.to_string(),
        ("AWS::Batch::JobQueue", "JobQueueArn") => {
            ctx.arn("batch", &format!("job-queue/{logical_id}"))
        }
        ("AWS::Batch::ComputeEnvironment", "ComputeEnvironmentArn") => {
            ctx.arn("batch", &format!("compute-environment/{logical_id}"))
        }
        ("AWS::S3::Bucket", "Arn") => format!("arn:aws:s3:::{}", bucket_name(ctx, logical_id)),
        ("AWS::S3::Bucket", "DomainName") => {
            format!("{}.s3.amazonaws.com", bucket_name(ctx, logical_id))
        }
        ("AWS::S3::Bucket", "RegionalDomainName") => {
            format!("{}.s3.{}.amazonaws.com", bucket_name(ctx, logical_id), ctx.region)
        }
        ("AWS::IAM::Role", "Arn") => format!("arn:aws:iam::{}:role/{logical_id}", ctx.account_id),
        ("AWS::Logs::LogGroup", "Arn") => ctx.arn("logs", &format!("log-group:{logical_id}:*")),
        ("AWS::SNS::Topic", "TopicArn") => ctx.arn("sns", logical_id),
        ("AWS::Events::Rule", "Arn") => ctx.arn("events", &format!("rule/{logical_id}")),
        ("AWS::KMS::Key", "Arn") => ctx.arn("kms", &format!("key/{logical_id}")),
        _ => placeholder(logical_id, Some(attribute)),
    };
    Value::String(s)
}

fn placeholder(logical_id: &str, attribute: Option<&str>) -> String {
    let mut s = format!("local-{}", logical_id.to_ascii_lowercase());
    if let Some(attribute) = attribute {
        s.push('-');
        s.push_str(&attribute.to_ascii_lowercase().replace('.', "-"));
    }
    s
}

/// What kind of name or ARN a reference is, and the logical id it carries. The region and
/// account are not checked: the reverse map must work whatever context resolved the name.
pub(crate) fn parse_local_name(reference: &str) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    let parts: Vec<&str> = reference.splitn(6, ':').collect();
    if parts.len() == 6 && parts[0] == "arn" {
        let (service, resource) = (parts[2], parts[5]);
        match service {
            "batch" => {
                if let Some(id) = resource.strip_prefix("job-queue/") {
                    out.push(("AWS::Batch::JobQueue", id.to_string()));
                } else if let Some(rest) = resource.strip_prefix("job-definition/") {
                    // `name:revision`; the revision is whatever was registered.
                    let id = rest.split(':').next().unwrap_or(rest);
                    out.push(("AWS::Batch::JobDefinition", id.to_string()));
                } else if let Some(id) = resource.strip_prefix("compute-environment/") {
                    out.push(("AWS::Batch::ComputeEnvironment", id.to_string()));
                }
            }
            "lambda" => {
                // `function:name` or `function:name:alias-or-version`.
                if let Some(rest) = resource.strip_prefix("function:") {
                    let id = rest.split(':').next().unwrap_or(rest);
                    out.push(("AWS::Lambda::Function", id.to_string()));
                }
            }
            "states" => {
                if let Some(id) = resource.strip_prefix("stateMachine:") {
                    out.push(("AWS::StepFunctions::StateMachine", id.to_string()));
                }
            }
            _ => {}
        }
        return out;
    }
    if parts.len() == 3 && parts[1] == "function" {
        // Lambda's partial ARN `account:function:name`.
        out.push(("AWS::Lambda::Function", parts[2].to_string()));
        return out;
    }
    // A bare name: a function, queue or job definition (`name` or `name:revision`) named
    // by its logical id.
    let name = reference.split(':').next().unwrap_or(reference);
    if !name.is_empty() {
        out.push(("AWS::Lambda::Function", name.to_string()));
        out.push(("AWS::Batch::JobQueue", name.to_string()));
        out.push(("AWS::Batch::JobDefinition", name.to_string()));
    }
    out
}
