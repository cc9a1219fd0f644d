//! What deleting the pipeline stack leaves behind that no stack owns, and teardown removes or
//! names after the delete:
//!
//! - **Old job-definition revisions.** The template sets `SkipDeregisterOnUpdate`, so every
//!   update leaves the previous revision ACTIVE (executions in flight still submit it), and the
//!   stack's delete deregisters only the revision it holds now. Teardown finds every ACTIVE
//!   revision by the definition's name (`DescribeJobDefinitions` with `jobDefinitionName` and
//!   `status ACTIVE`) and deregisters it. Deregistered (INACTIVE) revisions cannot be deleted by
//!   anyone: AWS Batch deletes job definitions permanently 180 days after they are deregistered
//!   (AWS Batch API reference, DeregisterJobDefinition), so teardown says so instead.
//! - **This stack's log groups in the account's log-delivery resource policy.** When a state
//!   machine logs to CloudWatch Logs, log delivery adds the log group to the account-level
//!   CloudWatch Logs resource policy named `AWSLogDeliveryWrite20150319` (CloudWatch Logs user
//!   guide, "Enable logging from AWS services", logs sent to CloudWatch Logs). That one policy
//!   is shared by every vended-log delivery of the account in the region, and once it nears its
//!   5,120-character limit CloudWatch Logs replaces the single groups with `/aws/vendedlogs/*`
//!   (Step Functions developer guide, "Avoiding CloudWatch Logs resource policy size
//!   restrictions"). So the decision is per entry: an ARN that names one of this stack's log
//!   groups is this stack's and is removed (the policy is rewritten without it, or deleted when
//!   nothing else is left in it); a wildcard entry that merely covers this stack's groups serves
//!   every other delivery too and is left, reported with the command that would remove the whole
//!   policy, for a person who knows nothing else in the account delivers logs.

use aws_sdk_batch::error::ProvideErrorMetadata;
use serde_json::Value;

use super::stack::aws_error;
use crate::exit::CommandError;

/// The account-level CloudWatch Logs resource policy that log delivery creates and shares.
pub const LOG_DELIVERY_POLICY: &str = "AWSLogDeliveryWrite20150319";

/// Where AWS documents that deregistered job definitions are deleted after 180 days.
pub const INACTIVE_REVISIONS_DOC: &str =
    "https://docs.aws.amazon.com/batch/latest/APIReference/API_DeregisterJobDefinition.html";

/// The name of a job definition from its stack physical id: the revision's ARN
/// (`arn:aws:batch:<region>:<account>:job-definition/<name>:<revision>`) or `<name>:<revision>`.
pub fn job_definition_name(physical_id: &str) -> Option<String> {
    let resource = match physical_id.strip_prefix("arn:") {
        Some(_) => physical_id.splitn(6, ':').nth(5)?.strip_prefix("job-definition/")?,
        None => physical_id,
    };
    let name = resource.split(':').next()?;
    (!name.is_empty()).then(|| name.to_string())
}

/// `arn:<partition>:logs:<region>:<account>:log-group:<name>` for a log group of the stack
/// whose id (an ARN) is `stack_id`.
pub fn log_group_arn(stack_id: &str, group: &str) -> Option<String> {
    let parts: Vec<&str> = stack_id.splitn(6, ':').collect();
    if parts.len() < 6 || parts[0] != "arn" {
        return None;
    }
    Some(format!("arn:{}:logs:{}:{}:log-group:{group}", parts[1], parts[3], parts[4]))
}

/// Every ACTIVE revision of one job definition, as `(revision, ARN)`, oldest first.
pub async fn active_revisions(
    batch: &aws_sdk_batch::Client,
    name: &str,
) -> Result<Vec<(i32, String)>, CommandError> {
    let mut revisions = Vec::new();
    let mut token = None;
    loop {
        let page = batch
            .describe_job_definitions()
            .job_definition_name(name)
            .status("ACTIVE")
            .set_next_token(token.take())
            .send()
            .await
            .map_err(|e| aws_error(format!("DescribeJobDefinitions {name}"), &e))?;
        for definition in page.job_definitions() {
            // The name filter is exact on AWS; checked again so an emulator's looser match
            // cannot deregister another definition.
            if definition.job_definition_name() == Some(name)
                && definition.status().is_none_or(|s| s == "ACTIVE")
                && let (Some(revision), Some(arn)) =
                    (definition.revision(), definition.job_definition_arn())
            {
                revisions.push((revision, arn.to_string()));
            }
        }
        match page.next_token() {
            Some(next) if !next.is_empty() => token = Some(next.to_string()),
            _ => break,
        }
    }
    revisions.sort();
    Ok(revisions)
}

/// Deregisters the given revisions; returns the revisions deregistered and, for each that
/// could not be, the line to report (with the command that does it).
pub async fn deregister_revisions(
    batch: &aws_sdk_batch::Client,
    revisions: &[(i32, String)],
) -> (Vec<i32>, Vec<String>) {
    let mut done = Vec::new();
    let mut failed = Vec::new();
    for (revision, arn) in revisions {
        match batch.deregister_job_definition().job_definition(arn).send().await {
            Ok(_) => done.push(*revision),
            Err(error) => failed.push(format!(
                "job definition {arn} is still ACTIVE ({}); deregister it with: \
                 aws batch deregister-job-definition --job-definition {arn}",
                error.message().or(error.code()).unwrap_or("DeregisterJobDefinition failed")
            )),
        }
    }
    (done, failed)
}

/// How the log-delivery policy changes when this stack's log groups go.
#[derive(Debug, Default, PartialEq)]
pub struct PolicyEdit {
    /// The resource entries that name one of the stack's log groups (removed).
    pub removed: Vec<String>,
    /// Wildcard entries that also cover the stack's log groups (shared; left).
    pub shared: Vec<String>,
    /// The policy document without the removed entries; `None` when nothing is left in it
    /// (the policy is deleted). Unchanged documents are never written back.
    pub document: Option<Value>,
}

/// Removes from a resource policy document every `Resource` entry that names one of
/// `group_arns` (the group itself, or anything under it: `<group ARN>:*`,
/// `<group ARN>:log-stream:*`), dropping statements left without resources. Wildcard entries
/// that only match the groups are reported as shared, not removed.
pub fn without_log_groups(document: &Value, group_arns: &[String]) -> PolicyEdit {
    let mut edit = PolicyEdit::default();
    let names_group = |entry: &str| {
        group_arns.iter().any(|arn| {
            entry == arn
                || entry.strip_prefix(arn.as_str()).is_some_and(|rest| rest.starts_with(':'))
        })
    };
    // A stream of each group, to see which wildcards cover the groups.
    let covers_group = |entry: &str| {
        group_arns.iter().any(|arn| wildcard_match(entry, &format!("{arn}:log-stream:x")))
    };
    let mut document = document.clone();
    let statements: Vec<Value> = match document.get("Statement") {
        Some(Value::Array(list)) => list.clone(),
        Some(single @ Value::Object(_)) => vec![single.clone()],
        _ => Vec::new(),
    };
    let mut kept_statements = Vec::new();
    for mut statement in statements {
        let entries: Vec<Value> = match statement.get("Resource") {
            Some(Value::Array(list)) => list.clone(),
            Some(single @ Value::String(_)) => vec![single.clone()],
            // No Resource (or NotResource): not about log groups by name; kept as it is.
            _ => {
                kept_statements.push(statement);
                continue;
            }
        };
        let mut kept = Vec::new();
        for entry in entries {
            let text = entry.as_str().unwrap_or_default();
            if names_group(text) {
                edit.removed.push(text.to_string());
                continue;
            }
            if text.contains(['*', '?']) && covers_group(text) {
                edit.shared.push(text.to_string());
            }
            kept.push(entry);
        }
        if kept.is_empty() {
            continue;
        }
        statement["Resource"] = Value::Array(kept);
        kept_statements.push(statement);
    }
    if edit.removed.is_empty() {
        edit.document = Some(document);
        return edit;
    }
    if !kept_statements.is_empty() {
        document["Statement"] = Value::Array(kept_statements);
        edit.document = Some(document);
    }
    edit
}

/// IAM-style wildcard match (`*` any run, `?` one character) of a whole string. Hand-written:
/// the rule is two characters, and no crate in the workspace implements IAM's form.
fn wildcard_match(pattern: &str, text: &str) -> bool {
    let (pattern, text): (Vec<char>, Vec<char>) =
        (pattern.chars().collect(), text.chars().collect());
    let (mut p, mut t) = (0, 0);
    let mut backtrack: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == '?' || pattern[p] == text[t]) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == '*' {
            backtrack = Some((p, t));
            p += 1;
        } else if let Some((star, matched)) = backtrack {
            p = star + 1;
            t = matched + 1;
            backtrack = Some((star, matched + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|c| *c == '*')
}

/// What happened to the log-delivery policy, as lines for the teardown's output: the first
/// list is what was removed, the second what is left behind (with how to remove it).
pub async fn clean_log_delivery_policy(
    logs: &aws_sdk_cloudwatchlogs::Client,
    group_arns: &[String],
    region: &str,
) -> (Vec<String>, Vec<String>) {
    let mut removed = Vec::new();
    let mut left = Vec::new();
    if group_arns.is_empty() {
        return (removed, left);
    }
    let policy = match find_policy(logs, LOG_DELIVERY_POLICY).await {
        Ok(Some(policy)) => policy,
        Ok(None) => return (removed, left),
        Err(error) => {
            left.push(format!(
                "CloudWatch Logs resource policy {LOG_DELIVERY_POLICY}: could not be read ({error}); \
                 check it for this stack's log groups with: aws logs describe-resource-policies --region {region}"
            ));
            return (removed, left);
        }
    };
    let Ok(document) = serde_json::from_str::<Value>(&policy) else {
        left.push(format!(
            "CloudWatch Logs resource policy {LOG_DELIVERY_POLICY}: not JSON, left as it is"
        ));
        return (removed, left);
    };
    let edit = without_log_groups(&document, group_arns);
    if !edit.removed.is_empty() {
        let outcome = match &edit.document {
            Some(rest) => logs
                .put_resource_policy()
                .policy_name(LOG_DELIVERY_POLICY)
                .policy_document(rest.to_string())
                .send()
                .await
                .map(|_| "rewritten without them")
                .map_err(|e| aws_error(format!("PutResourcePolicy {LOG_DELIVERY_POLICY}"), &e)),
            None => logs
                .delete_resource_policy()
                .policy_name(LOG_DELIVERY_POLICY)
                .send()
                .await
                .map(|_| "deleted: nothing else was in it")
                .map_err(|e| aws_error(format!("DeleteResourcePolicy {LOG_DELIVERY_POLICY}"), &e)),
        };
        match outcome {
            Ok(what) => removed.push(format!(
                "CloudWatch Logs resource policy {LOG_DELIVERY_POLICY}: removed {} ({what})",
                edit.removed.join(", ")
            )),
            Err(error) => left.push(format!(
                "CloudWatch Logs resource policy {LOG_DELIVERY_POLICY} still names {} ({error}); \
                 remove them with aws logs put-resource-policy --policy-name {LOG_DELIVERY_POLICY} \
                 --region {region} --policy-document '<the document without them>'",
                edit.removed.join(", ")
            )),
        }
    }
    if !edit.shared.is_empty() {
        left.push(format!(
            "CloudWatch Logs resource policy {LOG_DELIVERY_POLICY} (account-level, shared by every \
             log delivery in this account and region; it covers this stack's log groups only \
             through {}, which serves other deliveries too, so teardown leaves it). If nothing \
             else in the account delivers logs: aws logs delete-resource-policy --policy-name \
             {LOG_DELIVERY_POLICY} --region {region}",
            edit.shared.join(", ")
        ));
    }
    (removed, left)
}

/// The document of the account-level resource policy of that name, if there is one.
async fn find_policy(
    logs: &aws_sdk_cloudwatchlogs::Client,
    name: &str,
) -> Result<Option<String>, CommandError> {
    let mut token = None;
    loop {
        let page = logs
            .describe_resource_policies()
            .set_next_token(token.take())
            .send()
            .await
            .map_err(|e| aws_error("DescribeResourcePolicies", &e))?;
        for policy in page.resource_policies() {
            if policy.policy_name() == Some(name) {
                return Ok(policy.policy_document().map(str::to_string));
            }
        }
        match page.next_token() {
            Some(next) if !next.is_empty() => token = Some(next.to_string()),
            _ => return Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const GROUP: &str =
        "arn:aws:logs:us-east-1:123456789012:log-group:/aws/vendedlogs/states/nton-dev-pipeline";

    #[test]
    fn job_definition_names_come_from_revision_arns_and_name_revision_pairs() {
        assert_eq!(
            job_definition_name(
                "arn:aws:batch:us-east-1:123456789012:job-definition/nton-dev-pipeline-procure:7"
            )
            .as_deref(),
            Some("nton-dev-pipeline-procure")
        );
        assert_eq!(job_definition_name("x-egress:2").as_deref(), Some("x-egress"));
        assert_eq!(job_definition_name("arn:aws:batch:us-east-1:1:job-queue/q"), None);
        assert_eq!(job_definition_name(""), None);
    }

    #[test]
    fn log_group_arns_take_partition_region_and_account_from_the_stack_id() {
        assert_eq!(
            log_group_arn(
                "arn:aws-cn:cloudformation:cn-north-1:123456789012:stack/s/uuid",
                "/nton/s/init"
            )
            .as_deref(),
            Some("arn:aws-cn:logs:cn-north-1:123456789012:log-group:/nton/s/init")
        );
        assert_eq!(log_group_arn("s", "/g"), None);
    }

    fn delivery_policy(resources: Value) -> Value {
        json!({"Version": "2012-10-17", "Statement": [{
            "Sid": "AWSLogDeliveryWrite20150319",
            "Effect": "Allow",
            "Principal": {"Service": ["delivery.logs.amazonaws.com"]},
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": resources,
            "Condition": {"StringEquals": {"aws:SourceAccount": "123456789012"}}
        }]})
    }

    #[test]
    fn entries_naming_the_stacks_groups_are_removed_and_the_rest_kept() {
        let other = "arn:aws:logs:us-east-1:123456789012:log-group:/aws/vendedlogs/states/other:log-stream:*";
        // A group whose name only starts like ours is another group.
        let longer = format!("{GROUP}-copy:log-stream:*");
        let document =
            delivery_policy(json!([format!("{GROUP}:log-stream:*"), other, longer, GROUP]));
        let edit = without_log_groups(&document, &[GROUP.to_string()]);
        assert_eq!(edit.removed, vec![format!("{GROUP}:log-stream:*"), GROUP.to_string()]);
        assert!(edit.shared.is_empty(), "{:?}", edit.shared);
        let rest = edit.document.unwrap();
        assert_eq!(rest["Statement"][0]["Resource"], json!([other, longer]));
        assert_eq!(rest["Statement"][0]["Sid"], "AWSLogDeliveryWrite20150319");
    }

    #[test]
    fn a_policy_left_with_nothing_is_deleted() {
        let document = delivery_policy(json!(format!("{GROUP}:*")));
        let edit = without_log_groups(&document, &[GROUP.to_string()]);
        assert_eq!(edit.removed, vec![format!("{GROUP}:*")]);
        assert_eq!(edit.document, None);
    }

    #[test]
    fn wildcards_that_cover_the_groups_are_shared_and_left_alone() {
        let vended = "arn:aws:logs:us-east-1:123456789012:log-group:/aws/vendedlogs/*";
        let unrelated = "arn:aws:logs:us-east-1:123456789012:log-group:/aws/apigateway/*";
        let document = delivery_policy(json!([vended, unrelated]));
        let edit = without_log_groups(&document, &[GROUP.to_string()]);
        assert!(edit.removed.is_empty());
        assert_eq!(edit.shared, vec![vended]);
        assert_eq!(edit.document, Some(document));
    }

    #[test]
    fn wildcards_match_like_iam() {
        assert!(wildcard_match("a*c", "abbbc"));
        assert!(wildcard_match("a*", "a"));
        assert!(wildcard_match("a?c", "abc"));
        assert!(!wildcard_match("a?c", "ac"));
        assert!(!wildcard_match("a*d", "abc"));
        assert!(wildcard_match("*:log-stream:*", "g:log-stream:x"));
    }
}
