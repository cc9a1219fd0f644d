//! Template facts the first deploy depends on that a generic check cannot see (issue 8):
//! Lambda may pull the init and watch images, the OIDC provider can be updated, the deploy
//! role's session outlives the deploy job, teardown may empty the repositories, and the image
//! push needs no permission the deploy role lacks.

use nton_engine::template::Template;
use nton_tests::iam::{allows_action, document_allow_statements, role_allow_statements};
use serde_json::Value;

fn load(name: &str) -> Template {
    Template::load(nton_tests::workspace_root().join("cloudformation").join(name))
        .expect("template loads")
}

#[test]
fn lambda_may_pull_the_init_and_watch_images_of_this_accounts_functions() {
    let registry = load("registry.yaml");
    for logical_id in ["InitRepository", "WatchRepository"] {
        let policy = registry
            .body()
            .pointer(&format!("/Resources/{logical_id}/Properties/RepositoryPolicyText"))
            .unwrap_or_else(|| panic!("{logical_id} declares no RepositoryPolicyText"));
        let statements = document_allow_statements(policy, logical_id).unwrap();
        let raw = policy.get("Statement").and_then(Value::as_array).unwrap();
        let lambda = raw
            .iter()
            .zip(&statements)
            .find(|(s, _)| {
                s.pointer("/Principal/Service").and_then(Value::as_str)
                    == Some("lambda.amazonaws.com")
            })
            .unwrap_or_else(|| panic!("{logical_id}: no statement for lambda.amazonaws.com"));
        for action in ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"] {
            assert!(
                allows_action(std::slice::from_ref(lambda.1), action),
                "{logical_id}: {action}"
            );
        }
        let source_arn = lambda
            .0
            .pointer("/Condition/StringLike/aws:SourceArn")
            .expect("aws:SourceArn condition");
        let text = source_arn.to_string();
        assert!(text.contains("${AWS::AccountId}:function:"), "{logical_id}: SourceArn {text}");
    }
}

#[test]
fn oidc_provider_has_thumbprints_and_the_session_outlives_the_deploy_job() {
    let oidc = load("github-oidc.yaml");
    let thumbprints = oidc
        .body()
        .pointer("/Resources/GitHubOidcProvider/Properties/ThumbprintList")
        .and_then(Value::as_array)
        .expect("ThumbprintList is set");
    assert!(thumbprints.iter().any(|t| t == "6938fd4d98bab03faadb97b34396831e3780aea1"));
    let max = oidc
        .body()
        .pointer("/Resources/DeployRole/Properties/MaxSessionDuration")
        .and_then(Value::as_u64)
        .expect("MaxSessionDuration");
    // .github/workflows/deploy.yml's deploy job has timeout-minutes: 120.
    assert!(max > 120 * 60, "MaxSessionDuration {max}s is shorter than the 120-minute deploy job");
}

#[test]
fn deploy_role_may_empty_the_repositories_and_push_without_layer_downloads() {
    let oidc = load("github-oidc.yaml");
    let statements = role_allow_statements(oidc.body(), "DeployRole").unwrap();
    for action in ["ecr:ListImages", "ecr:BatchDeleteImage", "ecr:BatchGetImage"] {
        assert!(allows_action(&statements, action), "DeployRole lacks {action} (teardown / push)");
    }
    let script = std::fs::read_to_string(
        nton_tests::workspace_root().join(".github/scripts/push-images.sh"),
    )
    .unwrap();
    if !allows_action(&statements, "ecr:GetDownloadUrlForLayer") {
        for line in script
            .lines()
            .filter(|l| l.contains("skopeo inspect") && !l.trim_start().starts_with('#'))
        {
            assert!(
                line.contains("--raw"),
                "push-images.sh: `{}` fetches the config blob (ecr:GetDownloadUrlForLayer, not granted)",
                line.trim()
            );
        }
    }
}

/// Every workflow job that takes the deploy role asks for credentials that last as long as the
/// job may run (configure-aws-credentials' default is one hour, and it does not refresh them),
/// and the role allows sessions that long.
#[test]
fn every_workflow_session_outlives_its_job_and_fits_the_roles_maximum() {
    let oidc = load("github-oidc.yaml");
    let max = oidc
        .body()
        .pointer("/Resources/DeployRole/Properties/MaxSessionDuration")
        .and_then(Value::as_u64)
        .expect("MaxSessionDuration");
    let dir = nton_tests::workspace_root().join(".github/workflows");
    let mut checked = 0;
    for name in ["deploy.yml", "run.yml", "teardown.yml"] {
        let text = std::fs::read_to_string(dir.join(name)).unwrap();
        let workflow = nton_engine::template::parse_document(&text).unwrap();
        for (job_name, job) in workflow["jobs"].as_object().unwrap() {
            let Some(steps) = job["steps"].as_array() else {
                continue;
            };
            for step in steps.iter().filter(|s| {
                s["uses"]
                    .as_str()
                    .is_some_and(|u| u.starts_with("aws-actions/configure-aws-credentials@"))
            }) {
                let minutes = job["timeout-minutes"].as_u64().expect("a job timeout");
                let seconds = step["with"]["role-duration-seconds"].as_u64().unwrap_or_else(|| {
                    panic!("{name} {job_name}: no role-duration-seconds (1 h default)")
                });
                assert!(
                    seconds >= minutes * 60,
                    "{name} {job_name}: credentials for {seconds} s, job may run {minutes} min"
                );
                assert!(
                    seconds <= max,
                    "{name} {job_name}: {seconds} s > MaxSessionDuration {max}"
                );
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 3, "one credentials step per workflow");
}

/// `nton teardown` aborts unfinished multipart uploads before it deletes a bucket (a bucket with
/// one cannot be deleted); the deploy role may list and abort them on every bucket it empties.
#[test]
fn deploy_role_may_abort_multipart_uploads_on_the_buckets_teardown_empties() {
    let oidc = load("github-oidc.yaml");
    let statements = role_allow_statements(oidc.body(), "DeployRole").unwrap();
    for action in ["s3:ListBucketMultipartUploads", "s3:AbortMultipartUpload"] {
        assert!(allows_action(&statements, action), "DeployRole lacks {action}");
    }
}
