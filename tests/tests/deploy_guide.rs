//! The commands of `docs/deploying.md` (and the README's push snippet) agree with what they
//! drive: the OIDC stack's parameters and `RepositoryPrefix` with `cloudformation/params/*.json`
//! and `github-oidc.yaml`, the stack names with the CLI's, every `nton` command with the CLI's
//! own parser, the skopeo destinations with the registry stack's repositories, the laptop
//! sequence in the order a fresh account needs (registry, push, pipeline), `--region` on every
//! command, and the GitHub variables with the deploy workflow's. `deploy_guide_run.rs` runs
//! the same commands, in order, on LocalStack and moto.

use std::collections::BTreeSet;

use clap::Parser;
use nton::aws::StackKind;
use nton::aws::deploy::IMAGE_NAMES;
use nton_engine::template::Template;
use serde_json::Value;

fn read(path: &str) -> String {
    std::fs::read_to_string(nton_tests::workspace_root().join(path))
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The commands of every ```sh (or unlabelled) block: continuation lines joined, comments
/// dropped, one command per line.
fn commands(markdown: &str) -> Vec<String> {
    let mut out = Vec::new();
    // Inside a fence: Some(whether it holds shell commands).
    let mut block: Option<bool> = None;
    let mut pending = String::new();
    for line in markdown.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with("```") {
            block = match block {
                Some(_) => None,
                None => Some(matches!(trimmed, "```" | "```sh" | "```bash")),
            };
            continue;
        }
        if block != Some(true) {
            continue;
        }
        let code = match trimmed.find(" #") {
            Some(at) => &trimmed[..at],
            None if trimmed.starts_with('#') => "",
            None => trimmed,
        };
        let code = code.trim();
        if let Some(head) = code.strip_suffix('\\') {
            pending.push_str(head);
            pending.push(' ');
            continue;
        }
        pending.push_str(code);
        let command = std::mem::take(&mut pending).trim().to_string();
        if !command.is_empty() {
            out.push(command);
        }
    }
    out
}

/// Whitespace-separated words without their quotes (the guide quotes no spaces).
fn words(command: &str) -> Vec<String> {
    command
        .split_whitespace()
        .map(|w| w.trim_matches(|c| c == '"' || c == '\''))
        .map(str::to_string)
        .collect()
}

/// The `nton ...` part of a command (also inside `$(...)` or after `|`).
fn nton_part(command: &str) -> Option<String> {
    let at = command.find("nton ")?;
    if at > 0 && !command[..at].ends_with(['(', ' ', '|']) {
        return None;
    }
    let rest = &command[at..];
    let end = rest.find(['|', ')']).unwrap_or(rest.len());
    Some(rest[..end].trim().to_string())
}

fn params_prefix(env: &str) -> String {
    let params: Value =
        serde_json::from_str(&read(&format!("cloudformation/params/{env}.json"))).unwrap();
    params["Parameters"]["RepositoryPrefix"]
        .as_str()
        .unwrap_or_else(|| panic!("params/{env}.json has a RepositoryPrefix"))
        .to_string()
}

#[test]
fn the_oidc_commands_match_the_params_files_the_cli_and_the_template() {
    let guide = read("docs/deploying.md");
    let oidc = Template::load(nton_tests::workspace_root().join("cloudformation/github-oidc.yaml"))
        .unwrap();
    let declared = oidc.body()["Parameters"].as_object().unwrap().clone();
    let mut envs = BTreeSet::new();
    for command in commands(&guide)
        .iter()
        .filter(|c| c.starts_with("aws cloudformation deploy") && c.contains("github-oidc.yaml"))
    {
        let words = words(command);
        assert!(words.iter().any(|w| w == "--region"), "no --region: {command}");
        let overrides: std::collections::BTreeMap<String, String> = words
            .iter()
            .skip_while(|w| *w != "--parameter-overrides")
            .skip(1)
            .take_while(|w| !w.starts_with("--"))
            .map(|w| {
                let (k, v) = w.split_once('=').unwrap_or_else(|| panic!("{w} in {command}"));
                (k.to_string(), v.to_string())
            })
            .collect();
        for key in overrides.keys() {
            assert!(
                declared.contains_key(key),
                "{key} is no github-oidc.yaml parameter: {command}"
            );
        }
        for (name, p) in &declared {
            if p.get("Default").is_none() {
                assert!(overrides.contains_key(name), "{name} (no Default) missing: {command}");
            }
        }
        let env = overrides["GitHubEnvironment"].clone();
        assert_eq!(overrides["RepositoryPrefix"], params_prefix(&env), "{command}");
        assert_eq!(overrides["PipelineStackName"], StackKind::Pipeline.stack_name("nton", &env));
        assert_eq!(overrides["RegistryStackName"], StackKind::Registry.stack_name("nton", &env));
        let stack = words.iter().skip_while(|w| *w != "--stack-name").nth(1).unwrap();
        assert_eq!(stack, &format!("nton-github-{env}"), "{command}");
        envs.insert(env);
    }
    let expected: BTreeSet<String> = ["dev", "prod"].map(String::from).into();
    assert_eq!(envs, expected, "an OIDC command for each params file's environment");
}

#[test]
fn every_command_names_the_region_and_every_nton_command_parses() {
    let guide = read("docs/deploying.md");
    let mut ntons = 0;
    for command in commands(&guide) {
        if command.starts_with("aws ") || command.contains("| skopeo login") {
            assert!(command.contains("--region"), "no --region: {command}");
        }
        if let Some(nton) = nton_part(&command) {
            ntons += 1;
            let words = words(&nton);
            assert!(words.iter().any(|w| w == "--region"), "no --region: {nton}");
            if let Err(error) = nton::cli::Cli::try_parse_from(&words) {
                panic!("{nton}: the CLI refuses it: {error}");
            }
        }
    }
    assert!(ntons >= 6, "the guide's nton commands were found ({ntons})");
}

#[test]
fn the_laptop_sequence_is_registry_then_push_then_pipeline() {
    let guide = read("docs/deploying.md");
    let laptop = &guide[guide.find("## From a laptop").unwrap()..];
    let laptop = &laptop[..laptop.find("\n## ").unwrap_or(laptop.len())];
    let steps = commands(laptop);
    let position = |what: &dyn Fn(&str) -> bool, label: &str| {
        steps.iter().position(|c| what(c)).unwrap_or_else(|| panic!("no {label} in {steps:#?}"))
    };
    let registry = position(
        &|c| c.contains("nton deploy") && c.contains("--only registry"),
        "registry deploy",
    );
    let push = position(&|c| c.contains("skopeo copy"), "skopeo copy");
    let dry_run = position(&|c| c.contains("nton deploy") && c.contains("--dry-run"), "dry run");
    let pipeline = position(
        &|c| c.starts_with("nton deploy") && !c.contains("--only") && !c.contains("--dry-run"),
        "pipeline deploy",
    );
    assert!(registry < push && push < dry_run && push < pipeline, "{steps:#?}");
    // The registry comes from the registry deploy's JSON, which names it imageRegistry.
    assert!(
        steps[registry].starts_with("REGISTRY=$(") && steps[registry].contains(".imageRegistry")
    );
}

/// The skopeo loop of a document: the image names and the destination.
fn skopeo_loop(document: &str) -> (Vec<String>, String) {
    let steps = commands(document);
    let names = steps
        .iter()
        .find_map(|c| c.strip_prefix("for name in"))
        .and_then(|rest| rest.split("; do").next())
        .expect("a for-name loop")
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let copy = steps.iter().find(|c| c.contains("skopeo copy")).expect("a skopeo copy");
    let destination = words(copy).last().unwrap().clone();
    (names, destination)
}

#[test]
fn images_go_to_the_registry_stacks_repositories() {
    let registry =
        Template::load(nton_tests::workspace_root().join("cloudformation/registry.yaml")).unwrap();
    let output = registry.body()["Outputs"]["ImageRegistry"]["Value"].to_string();
    assert!(output.ends_with("/${RepositoryPrefix}\"}"), "ImageRegistry is host/prefix: {output}");
    let repositories: BTreeSet<String> = registry
        .resources_of_type("AWS::ECR::Repository")
        .map(|(_, r)| r.properties["RepositoryName"].to_string())
        .collect();
    for image in IMAGE_NAMES {
        assert!(
            repositories.iter().any(|r| r.contains(&format!("${{RepositoryPrefix}}/{image}"))),
            "{image} in {repositories:?}"
        );
    }
    for (document, text) in
        [("docs/deploying.md", read("docs/deploying.md")), ("README.md", read("README.md"))]
    {
        let (names, destination) = skopeo_loop(&text);
        assert_eq!(names, IMAGE_NAMES.to_vec(), "{document}");
        assert_eq!(destination, "docker://$REGISTRY/$name:$TAG", "{document}");
    }
    // The README's example registry ends in the dev prefix, as the registry stack's output does.
    let readme = read("README.md");
    let example = commands(&readme)
        .into_iter()
        .find_map(|c| c.strip_prefix("REGISTRY=").map(str::to_string))
        .expect("the README sets REGISTRY");
    assert!(example.ends_with(&format!("/{}", params_prefix("dev"))), "{example}");
}

#[test]
fn the_guides_variables_are_the_deploy_workflows() {
    let workflow = read(".github/workflows/deploy.yml");
    let used: BTreeSet<String> = workflow
        .split("vars.")
        .skip(1)
        .map(|rest| rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect())
        .collect();
    let guide = read("docs/deploying.md");
    let table = &guide[guide.find("| variable | value |").expect("the variables table")..];
    let documented: BTreeSet<String> = table
        .lines()
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .filter_map(|l| l.split('`').nth(1).map(str::to_string))
        .collect();
    assert_eq!(used, documented);
}

#[test]
fn the_stack_names_in_the_readmes_are_the_clis() {
    let readme = read("cloudformation/README.md");
    for kind in [StackKind::Registry, StackKind::Pipeline] {
        let name = kind.stack_name("nton", "dev");
        assert!(readme.contains(&format!("`{name}`")), "cloudformation/README.md names {name}");
    }
}

/// The service-linked roles the guide has you create, and its reasons for the others: Batch may
/// create its own (the OIDC stack's service role allows exactly that), and no compute
/// environment uses a Spot Fleet role (so `AWSServiceRoleForEC2SpotFleet` is not needed).
#[test]
fn the_service_linked_roles_are_the_ones_the_templates_need() {
    let guide = read("docs/deploying.md");
    let created: BTreeSet<String> = commands(&guide)
        .iter()
        .filter(|c| c.starts_with("aws iam create-service-linked-role"))
        .map(|c| {
            words(c)
                .iter()
                .skip_while(|w| *w != "--aws-service-name")
                .nth(1)
                .unwrap_or_else(|| panic!("no --aws-service-name: {c}"))
                .clone()
        })
        .collect();
    let expected: BTreeSet<String> =
        ["ecs.amazonaws.com", "spot.amazonaws.com"].map(String::from).into();
    assert_eq!(created, expected);
    for role in [
        "AWSServiceRoleForBatch",
        "AWSServiceRoleForECS",
        "AWSServiceRoleForEC2Spot",
        "AWSServiceRoleForEC2SpotFleet",
    ] {
        assert!(guide.contains(&format!("`{role}`")), "the guide names {role}");
    }

    let oidc = Template::load(nton_tests::workspace_root().join("cloudformation/github-oidc.yaml"))
        .unwrap();
    let statements = oidc.body().to_string();
    assert!(
        statements.contains(r#""Sid":"BatchServiceLinkedRole""#)
            && statements.contains(r#""iam:AWSServiceName":"batch.amazonaws.com""#),
        "the CloudFormation service role may create Batch's service-linked role"
    );
    let pipeline =
        Template::load(nton_tests::workspace_root().join("cloudformation/pipeline.yaml")).unwrap();
    let mut environments = 0;
    for (id, resource) in pipeline.resources_of_type("AWS::Batch::ComputeEnvironment") {
        environments += 1;
        let compute = &resource.properties["ComputeResources"];
        assert!(
            compute.get("SpotIamFleetRole").is_none(),
            "{id} uses a Spot Fleet role: the guide must then have AWSServiceRoleForEC2SpotFleet created"
        );
        let strategy = compute["AllocationStrategy"].to_string();
        assert!(
            strategy.contains("SPOT_CAPACITY_OPTIMIZED") && !strategy.contains("\"BEST_FIT\""),
            "{id}: {strategy}"
        );
    }
    assert_eq!(environments, 3, "the quota text counts three compute environments");
}

/// The teardown ends with the OIDC stacks the guide made, by their names.
#[test]
fn the_guide_deletes_the_oidc_stacks_it_made() {
    let guide = read("docs/deploying.md");
    let stack_of =
        |c: &String| words(c).iter().skip_while(|w| *w != "--stack-name").nth(1).cloned();
    let steps = commands(&guide);
    let made: BTreeSet<String> = steps
        .iter()
        .filter(|c| c.starts_with("aws cloudformation deploy"))
        .filter_map(stack_of)
        .collect();
    let deleted: BTreeSet<String> = steps
        .iter()
        .filter(|c| c.starts_with("aws cloudformation delete-stack"))
        .filter_map(stack_of)
        .collect();
    assert_eq!(made, deleted);
    let last_teardown = steps.iter().rposition(|c| c.starts_with("nton teardown")).unwrap();
    let first_delete =
        steps.iter().position(|c| c.starts_with("aws cloudformation delete-stack")).unwrap();
    assert!(last_teardown < first_delete, "the OIDC stacks go after the teardown");
}
