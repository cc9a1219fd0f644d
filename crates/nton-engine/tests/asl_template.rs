//! The CloudFormation template, loaded and resolved locally: the real
//! `cloudformation/pipeline.yaml` (its state machine, job definitions, queues and Lambdas),
//! and small inline templates for every intrinsic function, conditions, `AWS::NoValue` and
//! the errors.

use nton_engine::template::{LocalContext, Template, TemplateError};
use serde_json::{Value, json};

const PIPELINE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../cloudformation/pipeline.yaml");

fn pipeline() -> Template {
    Template::load(PIPELINE).unwrap()
}

fn inline(text: &str) -> Template {
    Template::parse(text, "inline.yaml").unwrap_or_else(|e| panic!("{e}"))
}

/// Resolves `value` (YAML, short forms allowed) in `template`.
fn resolve(template: &Template, value: &str, ctx: &LocalContext) -> Result<Value, TemplateError> {
    let wrapper = format!("Resources: {{}}\nValue:\n  {}\n", value.replace('\n', "\n  "));
    let parsed = Template::parse(&wrapper, "value").unwrap_or_else(|e| panic!("{e}"));
    template.resolve(&parsed.body()["Value"], ctx)
}

// --- The real template ----------------------------------------------------------------------

#[test]
fn pipeline_state_machine_resolves_with_local_arns() {
    let t = pipeline();
    let ctx = LocalContext::default();
    let (id, definition) = t.state_machine(&ctx, None).unwrap();
    assert_eq!(t.resource(&id).unwrap().resource_type, "AWS::StepFunctions::StateMachine");
    assert_eq!(definition["StartAt"], "Init");
    let states = &definition["States"];
    assert_eq!(
        states["Init"]["Parameters"]["FunctionName"],
        "arn:aws:lambda:local-1:000000000000:function:InitFunction"
    );
    assert_eq!(
        states["Watch"]["Parameters"]["FunctionName"],
        "arn:aws:lambda:local-1:000000000000:function:WatchFunction"
    );
    assert_eq!(
        states["SubmitProcureArray"]["Parameters"]["JobQueue"],
        "arn:aws:batch:local-1:000000000000:job-queue/ProcureJobQueue"
    );
    assert_eq!(
        states["SubmitEgressSingle"]["Parameters"]["JobDefinition"],
        "arn:aws:batch:local-1:000000000000:job-definition/EgressJobDefinition:1"
    );
    assert!(!definition.to_string().contains("${"), "a placeholder was left: {definition}");

    let other = LocalContext::new("s").with_region("eu-west-1").with_account_id("123456789012");
    let (_, definition) = t.state_machine(&other, Some(&id)).unwrap();
    assert_eq!(
        definition["States"]["SubmitProcessArray"]["Parameters"]["JobQueue"],
        "arn:aws:batch:eu-west-1:123456789012:job-queue/ProcessJobQueue"
    );
}

#[test]
fn pipeline_job_definitions_queues_and_lambdas() {
    let t = pipeline();
    let ctx = LocalContext::default();
    let defs: Vec<&str> =
        t.resources_of_type("AWS::Batch::JobDefinition").map(|(id, _)| id).collect();
    let queues: Vec<&str> = t.resources_of_type("AWS::Batch::JobQueue").map(|(id, _)| id).collect();
    let lambdas: Vec<&str> =
        t.resources_of_type("AWS::Lambda::Function").map(|(id, _)| id).collect();
    for (stage, def) in [
        ("procure", "ProcureJobDefinition"),
        ("process", "ProcessJobDefinition"),
        ("egress", "EgressJobDefinition"),
    ] {
        assert!(defs.contains(&def), "{defs:?}");
        let props = t.resolved_properties(def, &ctx).unwrap();
        let container = &props["ContainerProperties"];
        assert_eq!(container["Command"], json!([stage]));
        let image = container["Image"].as_str().unwrap();
        assert!(image.ends_with("/nton-job:latest"), "{image}");
        let vcpu = container["ResourceRequirements"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["Type"] == "VCPU")
            .unwrap();
        assert_eq!(vcpu["Value"], "1", "parameters resolve to strings, as Ref gives them");
    }
    for q in ["ProcureJobQueue", "ProcessJobQueue", "EgressJobQueue"] {
        assert!(queues.contains(&q), "{queues:?}");
        let ce = t.resolved_properties(q, &ctx).unwrap()["ComputeEnvironmentOrder"][0]["ComputeEnvironment"].clone();
        let ce = ce.as_str().unwrap();
        assert!(ce.starts_with("arn:aws:batch:local-1:000000000000:compute-environment/"), "{ce}");
        let ce_id = t.logical_id_for_arn(ce).unwrap();
        assert_eq!(t.resource(ce_id).unwrap().resource_type, "AWS::Batch::ComputeEnvironment");
    }
    assert!(lambdas.contains(&"InitFunction") && lambdas.contains(&"WatchFunction"), "{lambdas:?}");
}

#[test]
fn pipeline_parameter_overrides_reach_the_job_definitions() {
    let t = pipeline();
    let ctx = LocalContext::default()
        .with_parameter("ImageRegistry", "registry.example/nton")
        .with_parameter("ImageTag", ":git-1a2b3c4")
        .with_parameter("ProcessVcpu", "2");
    let props = t.resolved_properties("ProcessJobDefinition", &ctx).unwrap();
    assert_eq!(props["ContainerProperties"]["Image"], "registry.example/nton/nton-job:git-1a2b3c4");
    assert!(
        props["ContainerProperties"]["ResourceRequirements"]
            .as_array()
            .unwrap()
            .contains(&json!({"Type": "VCPU", "Value": "2"}))
    );

    let bad = LocalContext::default().with_parameter("ImageTag", "latest");
    let err = t.resolved_properties("ProcessJobDefinition", &bad).unwrap_err().to_string();
    assert!(err.contains("parameter ImageTag") && err.contains("AllowedPattern"), "{err}");
    let low = LocalContext::default().with_parameter("PollSeconds", "0");
    let err = t.parameter_value("PollSeconds", &low).unwrap_err().to_string();
    assert!(err.contains("below MinValue 1"), "{err}");
}

#[test]
fn pipeline_every_created_resource_resolves() {
    let t = pipeline();
    let ctx = LocalContext::default();
    let resources = t.body()["Resources"].as_object().unwrap();
    assert!(resources.len() >= 12);
    for id in resources.keys() {
        if t.resource_exists(id, &ctx).unwrap() {
            t.resolved_properties(id, &ctx).unwrap_or_else(|e| panic!("{id}: {e}"));
        }
    }
}

#[test]
fn pipeline_resolves_under_every_allowed_parameter_value() {
    // Each allowed value of each parameter switches conditions on or off; whatever is then
    // created must still resolve, and the state machine must still load.
    let t = pipeline();
    let params = t.body()["Parameters"].as_object().unwrap();
    let mut tried = 0;
    for (name, decl) in params {
        let Some(allowed) = decl.get("AllowedValues").and_then(Value::as_array) else {
            continue;
        };
        for value in allowed {
            let value = match value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let ctx = LocalContext::default().with_parameter(name.clone(), value.clone());
            for id in t.body()["Resources"].as_object().unwrap().keys() {
                if t.resource_exists(id, &ctx).unwrap() {
                    t.resolved_properties(id, &ctx)
                        .unwrap_or_else(|e| panic!("{name}={value}: {id}: {e}"));
                }
            }
            let (_, definition) = t.state_machine(&ctx, None).unwrap();
            nton_engine::asl::StateMachine::from_json(&definition)
                .unwrap_or_else(|e| panic!("{name}={value}: {e}"));
            tried += 1;
        }
    }
    assert!(tried > 0, "no parameter with AllowedValues to try");
}

#[test]
fn pipeline_arns_map_back_to_logical_ids() {
    let t = pipeline();
    let ctx = LocalContext::new("any").with_region("us-east-2");
    for (ty, attr) in [
        ("AWS::Batch::JobQueue", None),
        ("AWS::Batch::JobDefinition", None),
        ("AWS::Batch::ComputeEnvironment", None),
        ("AWS::Lambda::Function", Some("Arn")),
        ("AWS::Lambda::Function", None),
        ("AWS::StepFunctions::StateMachine", None),
    ] {
        for (id, _) in t.resources_of_type(ty) {
            let text = match attr {
                Some(a) => format!("!GetAtt {id}.{a}"),
                None => format!("!Ref {id}"),
            };
            let local = resolve(&t, &text, &ctx).unwrap();
            assert_eq!(t.logical_id_for_arn(local.as_str().unwrap()), Some(id), "{ty} {local}");
        }
    }
    assert_eq!(
        t.logical_id_for_arn("arn:aws:lambda:r:1:function:InitFunction:live"),
        Some("InitFunction")
    );
    assert_eq!(t.logical_id_for_arn("000000000000:function:WatchFunction"), Some("WatchFunction"));
    assert_eq!(
        t.logical_id_for_arn("arn:aws:batch:r:1:job-definition/ProcureJobDefinition:7"),
        Some("ProcureJobDefinition")
    );
    assert_eq!(
        t.logical_id_for_arn("arn:aws:batch:r:1:job-queue/InitFunction"),
        None,
        "wrong type"
    );
    assert_eq!(t.logical_id_for_arn("arn:aws:batch:r:1:job-queue/Nope"), None);
}

#[test]
fn load_errors_name_the_file() {
    let err = Template::load("/nonexistent/pipeline.yaml").unwrap_err();
    assert!(matches!(err, TemplateError::Read { .. }));
    assert!(err.to_string().starts_with("/nonexistent/pipeline.yaml: cannot read"), "{err}");
    let err = Template::parse("Resources: [", "t.yaml").unwrap_err();
    assert!(err.to_string().starts_with("t.yaml: not a valid YAML or JSON template"), "{err}");
    let err = Template::parse("Parameters: {}\n", "t.yaml").unwrap_err();
    assert_eq!(err.to_string(), "t.yaml: Resources is missing or not a mapping");
    let err = Template::parse("Resources:\n  A:\n    Properties: {}\n", "t.yaml").unwrap_err();
    assert_eq!(err.to_string(), "t.yaml: resource A has no Type");
    let err = Template::parse("Resources:\n  A:\n    Type: X\n    Condition: Nope\n", "t.yaml")
        .unwrap_err();
    assert_eq!(err.to_string(), "t.yaml: resource A: unknown condition Nope");
    let t = Template::parse(r#"{"Resources": {"Q": {"Type": "AWS::Batch::JobQueue"}}}"#, "t.json")
        .unwrap();
    assert_eq!(t.origin(), "t.json");
    assert_eq!(t.resources_of_type("AWS::Batch::JobQueue").count(), 1);
}

// --- Inline templates -----------------------------------------------------------------------

const SMALL: &str = r#"
Parameters:
  Env:
    Type: String
    Default: dev
    AllowedValues: [dev, prod]
  Count:
    Type: Number
    Default: 2
  Subnets:
    Type: CommaDelimitedList
    Default: "a, b,c"
  Required:
    Type: String
Mappings:
  Sizes:
    dev: {Memory: 512}
    prod: {Memory: 4096}
Conditions:
  IsProd: !Equals [!Ref Env, prod]
  IsDev: !Not [!Condition IsProd]
  CountIsTwo: !Equals [!Ref Count, 2]
  Both: !And [!Condition IsDev, !Condition CountIsTwo]
  Either: !Or [!Condition IsProd, !Equals [a, b]]
Resources:
  Queue: {Type: AWS::Batch::JobQueue}
  Def: {Type: AWS::Batch::JobDefinition}
  Env1: {Type: AWS::Batch::ComputeEnvironment}
  Fn: {Type: AWS::Lambda::Function}
  Bucket: {Type: AWS::S3::Bucket}
  Machine: {Type: AWS::StepFunctions::StateMachine, Properties: {Definition: {StartAt: A, States: {A: {Type: Succeed}}}}}
  Role: {Type: AWS::IAM::Role}
  Vpc: {Type: AWS::EC2::VPC}
  ProdOnly:
    Type: AWS::SNS::Topic
    Condition: IsProd
"#;

fn small() -> Template {
    inline(SMALL)
}

fn ok(t: &Template, value: &str) -> Value {
    resolve(t, value, &LocalContext::default()).unwrap_or_else(|e| panic!("{value}: {e}"))
}

fn err(t: &Template, value: &str) -> String {
    match resolve(t, value, &LocalContext::default()) {
        Ok(v) => panic!("{value} resolved to {v}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn refs_of_parameters_pseudo_parameters_and_resources() {
    let t = small();
    assert_eq!(ok(&t, "!Ref Env"), json!("dev"));
    assert_eq!(ok(&t, "!Ref Count"), json!("2"));
    assert_eq!(ok(&t, "!Ref Subnets"), json!(["a", "b", "c"]));
    assert_eq!(ok(&t, "!Ref AWS::Region"), json!("local-1"));
    assert_eq!(ok(&t, "!Ref AWS::AccountId"), json!("000000000000"));
    assert_eq!(ok(&t, "!Ref AWS::StackName"), json!("nton-local"));
    assert_eq!(ok(&t, "!Ref AWS::Partition"), json!("aws"));
    assert_eq!(ok(&t, "!Ref AWS::URLSuffix"), json!("amazonaws.com"));
    assert!(
        ok(&t, "!Ref AWS::StackId")
            .as_str()
            .unwrap()
            .starts_with("arn:aws:cloudformation:local-1:000000000000:stack/nton-local/")
    );
    assert_eq!(ok(&t, "!Ref Queue"), json!("arn:aws:batch:local-1:000000000000:job-queue/Queue"));
    assert_eq!(
        ok(&t, "!Ref Def"),
        json!("arn:aws:batch:local-1:000000000000:job-definition/Def:1")
    );
    assert_eq!(
        ok(&t, "!Ref Env1"),
        json!("arn:aws:batch:local-1:000000000000:compute-environment/Env1")
    );
    assert_eq!(ok(&t, "!Ref Fn"), json!("Fn"));
    assert_eq!(ok(&t, "!GetAtt Fn.Arn"), json!("arn:aws:lambda:local-1:000000000000:function:Fn"));
    assert_eq!(ok(&t, "!Ref Bucket"), json!("nton-local-bucket"));
    assert_eq!(ok(&t, "!GetAtt Bucket.Arn"), json!("arn:aws:s3:::nton-local-bucket"));
    assert_eq!(
        ok(&t, "!Ref Machine"),
        json!("arn:aws:states:local-1:000000000000:stateMachine:Machine")
    );
    assert_eq!(ok(&t, "!GetAtt Role.Arn"), json!("arn:aws:iam::000000000000:role/Role"));
    assert_eq!(ok(&t, "!Ref Vpc"), json!("local-vpc"));
    assert_eq!(ok(&t, "!GetAtt Vpc.CidrBlock"), json!("local-vpc-cidrblock"));
    assert_eq!(
        ok(&t, "{'Fn::GetAtt': 'Vpc.DefaultSecurityGroup'}"),
        json!("local-vpc-defaultsecuritygroup")
    );
    let named = LocalContext::new("My_Stack");
    assert_eq!(resolve(&t, "!Ref Bucket", &named).unwrap(), json!("my-stack-bucket"));
}

#[test]
fn parameters_take_overrides_and_are_checked() {
    let t = small();
    let ctx = LocalContext::default().with_parameter("Env", "prod").with_parameter("Required", "r");
    assert_eq!(resolve(&t, "!Ref Env", &ctx).unwrap(), json!("prod"));
    assert_eq!(resolve(&t, "!Ref Required", &ctx).unwrap(), json!("r"));
    assert_eq!(
        err(&t, "!Ref Required"),
        "Parameters.Required: parameter Required has no value: no override in the local context and no Default"
    );
    let bad = LocalContext::default().with_parameter("Env", "test");
    assert_eq!(
        resolve(&t, "!Ref Env", &bad).unwrap_err().to_string(),
        "Parameters.Env: parameter Env: 'test' is not one of its AllowedValues"
    );
    let nan = LocalContext::default().with_parameter("Count", "two");
    assert!(
        resolve(&t, "!Ref Count", &nan).unwrap_err().to_string().contains("'two' is not a number")
    );
}

#[test]
fn sub_in_both_forms() {
    let t = small();
    assert_eq!(
        ok(&t, r#"!Sub "${AWS::Region}/${Env}/${Fn.Arn}/${!Literal}/${Count}""#),
        json!("local-1/dev/arn:aws:lambda:local-1:000000000000:function:Fn/${Literal}/2")
    );
    assert_eq!(
        ok(&t, r#"!Sub ["${Name}-${Env}", {Name: !Select [1, !Ref Subnets]}]"#),
        json!("b-dev")
    );
    assert_eq!(ok(&t, "!Sub no placeholders"), json!("no placeholders"));
    assert!(err(&t, r#"!Sub "${Nope}""#).contains("unknown logical id 'Nope'"));
    assert!(err(&t, r#"!Sub "${Env""#).contains("unclosed"));
    assert!(err(&t, r#"!Sub "${Subnets}""#).contains("is not a string"));
}

#[test]
fn join_select_split_azs_base64_cidr() {
    let t = small();
    assert_eq!(ok(&t, "!Join ['-', [a, !Ref Env, !Ref Count]]"), json!("a-dev-2"));
    assert_eq!(ok(&t, "!Join ['', !Split [',', 'x,y,z']]"), json!("xyz"));
    assert_eq!(ok(&t, "!Join [',', !GetAZs '']"), json!("local-1a,local-1b,local-1c"));
    assert_eq!(ok(&t, "!GetAZs eu-west-1"), json!(["eu-west-1a", "eu-west-1b", "eu-west-1c"]));
    assert_eq!(ok(&t, "!GetAZs {Ref: AWS::Region}"), json!(["local-1a", "local-1b", "local-1c"]));
    assert_eq!(ok(&t, "!Select [2, !Ref Subnets]"), json!("c"));
    assert_eq!(ok(&t, "!Select ['0', [x, y]]"), json!("x"));
    assert_eq!(ok(&t, "!Split ['::', 'a::b::']"), json!(["a", "b", ""]));
    assert_eq!(ok(&t, "!Base64 hello"), json!("aGVsbG8="));
    assert_eq!(ok(&t, "!Base64 {'Fn::Sub': '${Env}'}"), json!("ZGV2"));
    assert_eq!(
        ok(&t, "!Cidr [10.0.0.0/16, 3, 8]"),
        json!(["10.0.0.0/24", "10.0.1.0/24", "10.0.2.0/24"])
    );
    assert_eq!(ok(&t, "!Select [1, !Cidr [192.168.0.0/24, 4, 6]]"), json!("192.168.0.64/26"));
    assert!(
        err(&t, "!Select [3, !Ref Subnets]").contains("index 3 is out of range for a list of 3")
    );
    assert!(err(&t, "!Join ['-', a]").contains("Fn::Join needs a list"));
    assert!(err(&t, "!Cidr [10.0.0.0/24, 2, 9]").contains("do not fit"));
}

#[test]
fn conditions_if_and_no_value() {
    let t = small();
    assert!(!t.condition("IsProd", &LocalContext::default()).unwrap());
    assert!(t.condition("IsDev", &LocalContext::default()).unwrap());
    assert!(
        t.condition("CountIsTwo", &LocalContext::default()).unwrap(),
        "Ref gives \"2\", compared as a string with 2"
    );
    assert!(t.condition("Both", &LocalContext::default()).unwrap());
    assert!(!t.condition("Either", &LocalContext::default()).unwrap());
    let prod = LocalContext::default().with_parameter("Env", "prod");
    assert!(t.condition("Either", &prod).unwrap());
    assert!(!t.condition("Both", &prod).unwrap());

    assert_eq!(ok(&t, "!If [IsProd, big, small]"), json!("small"));
    assert_eq!(resolve(&t, "!If [IsProd, big, small]", &prod).unwrap(), json!("big"));
    assert_eq!(
        ok(
            &t,
            "{A: 1, B: !If [IsProd, 2, !Ref AWS::NoValue], C: [x, !If [IsDev, !Ref AWS::NoValue, y], z]}"
        ),
        json!({"A": 1, "C": ["x", "z"]})
    );
    assert_eq!(ok(&t, "!Ref AWS::NoValue"), Value::Null);
    assert_eq!(ok(&t, "!Equals [a, a]"), json!(true));
    assert!(err(&t, "!If [Nope, 1, 2]").contains("unknown condition 'Nope'"));

    assert!(!t.resource_exists("ProdOnly", &LocalContext::default()).unwrap());
    assert!(t.resource_exists("ProdOnly", &prod).unwrap());
    assert!(
        err(&t, "!Ref ProdOnly")
            .contains("resource ProdOnly is not created locally: its condition IsProd is false")
    );
    assert_eq!(
        resolve(&t, "!Ref ProdOnly", &prod).unwrap(),
        // `Ref` of an SNS topic is its ARN.
        json!("arn:aws:sns:local-1:000000000000:ProdOnly")
    );
}

#[test]
fn condition_cycles_are_errors() {
    let t =
        inline("Conditions:\n  A: !Not [!Condition B]\n  B: !Not [!Condition A]\nResources: {}\n");
    let e = t.condition("A", &LocalContext::default()).unwrap_err().to_string();
    assert!(e.contains("condition A refers to itself"), "{e}");
}

#[test]
fn find_in_map_and_import_value() {
    let t = small();
    assert_eq!(ok(&t, "!FindInMap [Sizes, !Ref Env, Memory]"), json!(512));
    assert_eq!(ok(&t, "!FindInMap [Sizes, test, Memory, {DefaultValue: 1}]"), json!(1));
    assert!(
        err(&t, "!FindInMap [Sizes, test, Memory]").contains("mapping Sizes has no test.Memory")
    );
    assert!(err(&t, "!FindInMap [Nope, a, b]").contains("no mapping named Nope"));
    assert_eq!(
        err(&t, "!ImportValue shared-vpc"),
        "Fn::ImportValue: Fn::ImportValue 'shared-vpc': the local context has no such export"
    );
    let ctx = LocalContext::default().with_export("dev-vpc", "vpc-123");
    assert_eq!(
        resolve(&t, "!ImportValue {'Fn::Sub': '${Env}-vpc'}", &ctx).unwrap(),
        json!("vpc-123")
    );
}

#[test]
fn resolution_errors_say_where() {
    let t = small();
    assert_eq!(
        err(&t, "{Outer: {Inner: [ok, !Ref Missing]}}"),
        "Outer.Inner[1].Ref: unknown logical id 'Missing' (neither a parameter nor a resource)"
    );
    assert!(err(&t, "!GetAtt Missing.Arn").contains("unknown logical id 'Missing'"));
    assert!(
        err(&t, "{'Fn::Transmogrify': x}")
            .contains("intrinsic function Fn::Transmogrify is not supported")
    );
    assert!(err(&t, "!Ref AWS::Nope").contains("unknown pseudo parameter AWS::Nope"));
    let bad = inline("Resources:\n  A:\n    Type: X\n    Properties:\n      P: !Ref Nope\n");
    assert_eq!(
        bad.resolved_properties("A", &LocalContext::default()).unwrap_err().to_string(),
        "Resources.A.Properties.P.Ref: unknown logical id 'Nope' (neither a parameter nor a resource)"
    );
    assert!(bad.resolved_properties("B", &LocalContext::default()).is_err());
}

#[test]
fn state_machine_forms_and_substitutions() {
    let t = inline(
        r#"
Resources:
  Fn: {Type: AWS::Lambda::Function}
  M:
    Type: AWS::StepFunctions::StateMachine
    Properties:
      DefinitionString: !Sub |
        {"StartAt": "A", "States": {"A": {"Type": "Task", "Resource": "${Fn.Arn}", "Comment": "${!Note}", "End": true}}}
      DefinitionSubstitutions:
        Note: !Ref AWS::Region
"#,
    );
    let (id, d) = t.state_machine(&LocalContext::default(), None).unwrap();
    assert_eq!(id, "M");
    assert_eq!(d["States"]["A"]["Resource"], "arn:aws:lambda:local-1:000000000000:function:Fn");
    // Fn::Sub leaves `${!Note}` as `${Note}` for DefinitionSubstitutions.
    assert_eq!(d["States"]["A"]["Comment"], "local-1");
    let t = inline(
        r#"
Resources:
  M:
    Type: AWS::StepFunctions::StateMachine
    Properties:
      DefinitionString: !Join ['', ['{"StartAt": "A", "States": {"A": {"Type": "Pass", "Comment": "${Note} ${N}", "End": true}}}']]
      DefinitionSubstitutions: {Note: !Ref AWS::Region, N: 3}
"#,
    );
    let (_, d) = t.state_machine(&LocalContext::default(), Some("M")).unwrap();
    assert_eq!(d["States"]["A"]["Comment"], "local-1 3");

    let t = inline(
        r#"
Resources:
  M:
    Type: AWS::StepFunctions::StateMachine
    Properties:
      Definition: {StartAt: A, States: {A: {Type: Pass, Comment: "${Missing}", End: true}}}
      DefinitionSubstitutions: {Other: x}
  N:
    Type: AWS::StepFunctions::StateMachine
    Properties: {DefinitionS3Location: {Bucket: b, Key: k}}
  Q: {Type: AWS::Batch::JobQueue}
"#,
    );
    let ctx = LocalContext::default();
    assert_eq!(
        t.state_machine(&ctx, Some("M")).unwrap_err().to_string(),
        "Resources.M.Properties.Definition.States.A.Comment: placeholder ${Missing} has no entry in DefinitionSubstitutions"
    );
    assert!(
        t.state_machine(&ctx, None)
            .unwrap_err()
            .to_string()
            .contains("several state machines (M, N)")
    );
    assert!(
        t.state_machine(&ctx, Some("N"))
            .unwrap_err()
            .to_string()
            .contains("DefinitionS3Location is not supported")
    );
    assert!(
        t.state_machine(&ctx, Some("Q"))
            .unwrap_err()
            .to_string()
            .contains("is a AWS::Batch::JobQueue")
    );
    assert!(
        t.state_machine(&ctx, Some("Z")).unwrap_err().to_string().contains("no resource named Z")
    );
    let none = inline("Resources: {Q: {Type: AWS::Batch::JobQueue}}\n");
    assert!(
        none.state_machine(&ctx, None)
            .unwrap_err()
            .to_string()
            .contains("has no AWS::StepFunctions::StateMachine")
    );
}
