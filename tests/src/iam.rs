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
    let list = match document.get("Statement") {
        Some(Value::Array(list)) => list.clone(),
        Some(single @ Value::Object(_)) => vec![single.clone()],
        _ => return Err(format!("{at}: a policy document without Statement")),
    };
    let mut out = Vec::new();
    for statement in list {
        if statement.get("NotAction").is_some() || statement.get("NotResource").is_some() {
            return Err(format!(
                "{at}: NotAction/NotResource is not evaluated by this check"
            ));
        }
        if statement.get("Effect").and_then(Value::as_str) != Some("Allow") {
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
            sid: statement
                .get("Sid")
                .and_then(Value::as_str)
                .map(str::to_string),
            actions,
            resources,
        });
    }
    Ok(out)
}

fn string_or_list(value: Option<&Value>) -> Option<Vec<String>> {
    match value? {
        Value::String(one) => Some(vec![one.clone()]),
        Value::Array(list) => list
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect(),
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
    statements.iter().any(|s| {
        s.actions
            .iter()
            .any(|a| wildcard_match_ignore_case(a, action))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn wildcards_match_like_iam() {
        assert!(wildcard_match_ignore_case(
            "ec2:Describe*",
            "ec2:DescribeVpcs"
        ));
        assert!(wildcard_match_ignore_case(
            "EC2:describevpcs",
            "ec2:DescribeVpcs"
        ));
        assert!(wildcard_match_ignore_case(
            "s3:Get?ucketPolicy",
            "s3:GetBucketPolicy"
        ));
        assert!(wildcard_match_ignore_case("*", "iam:PassRole"));
        assert!(!wildcard_match_ignore_case(
            "ec2:Describe*",
            "ec2:CreateVpc"
        ));
        assert!(!wildcard_match_ignore_case(
            "ec2:DescribeVpc",
            "ec2:DescribeVpcs"
        ));
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
        assert!(
            document_allow_statements(&bad, "bad")
                .unwrap_err()
                .contains("NotAction")
        );
        assert!(role_allow_statements(&template, "Missing").is_err());
    }
}
