//! The Lambda binding of a local run: which in-process handler stands in for each
//! `AWS::Lambda::Function` of the template, and how a Task finds its function.
//!
//! The engine knows no function of its own. Its caller fills a [`LambdaRegistry`] (image
//! repository -> handler factory); a function whose image's repository (the last path segment,
//! without tag or digest: [`image_binary`]) is registered is bound to a handler made from its
//! environment when the run is prepared, so a bad configuration is refused before anything runs.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use nton_core::batch::BatchApi;
use serde_json::{Value, json};

use super::{LAMBDA_INVOKE, RunError, created_resources, load_machine, number_of, scalar_text};
use crate::asl::TaskFailure;
use crate::template::{LocalContext, Template};

/// What the local run gives a handler besides its payload: the run's own services, standing in
/// for the AWS APIs a function's code would call.
pub struct LocalServices<'a> {
    /// The run's local Batch, as the Batch API the watcher reads.
    pub batch: &'a dyn BatchApi,
}

/// A function error, as Lambda reports one: its `errorType` and `errorMessage`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FunctionError {
    pub error_type: String,
    pub message: String,
}

impl FunctionError {
    pub fn new(error_type: impl Into<String>, message: impl ToString) -> FunctionError {
        FunctionError { error_type: error_type.into(), message: message.to_string() }
    }
}

/// One function's in-process handler, made from the function's environment.
#[async_trait]
pub trait LocalFunction: Send + Sync {
    /// Runs the function on one payload, as one Lambda invocation would.
    async fn invoke(
        &self,
        payload: Value,
        services: &LocalServices<'_>,
    ) -> Result<Value, FunctionError>;
}

/// What a factory is told about the function it makes a handler for.
pub struct FunctionSpec<'a> {
    pub logical_id: &'a str,
    pub image: &'a str,
    /// The function's `Environment.Variables`, with the run's overrides over them.
    pub environment: &'a BTreeMap<String, String>,
}

/// Makes a function's handler, or says why its configuration cannot run (the message is
/// prefixed with the function and its image).
type HandlerFactory =
    Box<dyn Fn(&FunctionSpec<'_>) -> Result<Arc<dyn LocalFunction>, String> + Send + Sync>;

/// The handlers a local run may bind functions to, by image repository.
#[derive(Default)]
pub struct LambdaRegistry {
    factories: BTreeMap<String, HandlerFactory>,
}

impl LambdaRegistry {
    pub fn new() -> LambdaRegistry {
        LambdaRegistry::default()
    }

    /// A function whose image repository is `repository` runs the handler `factory` makes.
    pub fn register(
        &mut self,
        repository: impl Into<String>,
        factory: impl Fn(&FunctionSpec<'_>) -> Result<Arc<dyn LocalFunction>, String>
        + Send
        + Sync
        + 'static,
    ) -> &mut LambdaRegistry {
        self.factories.insert(repository.into(), Box::new(factory));
        self
    }

    /// The image repositories with a handler, in order (for messages).
    pub fn repositories(&self) -> Vec<&str> {
        self.factories.keys().map(String::as_str).collect()
    }
}

/// A Lambda function bound to an in-process handler.
pub(super) struct Lambda {
    pub(super) logical_id: String,
    pub(super) name: String,
    pub(super) arn: String,
    pub(super) handler: Arc<dyn LocalFunction>,
    pub(super) timeout: Duration,
}

/// The template's functions, by name and by ARN.
pub(super) type Lambdas = HashMap<String, Arc<Lambda>>;

/// Binds every image function of the template whose repository has a handler in `registry`.
pub(super) fn bind_lambdas(
    template: &Template,
    ctx: &LocalContext,
    env_overrides: &BTreeMap<String, String>,
    registry: &LambdaRegistry,
) -> Result<Lambdas, String> {
    let mut lambdas = HashMap::new();
    for (logical_id, properties) in created_resources(template, ctx, "AWS::Lambda::Function")? {
        let logical_id = logical_id.as_str();
        let Some(image) = properties["Code"]["ImageUri"].as_str() else {
            // Not an image function: there is no local handler for it. Only an error if a
            // state calls it (checked against the state machine afterwards).
            continue;
        };
        let Some(factory) = registry.factories.get(image_binary(image)) else {
            continue;
        };
        let mut environment: BTreeMap<String, String> = properties["Environment"]["Variables"]
            .as_object()
            .map(|vars| vars.iter().map(|(k, v)| (k.clone(), scalar_text(v))).collect())
            .unwrap_or_default();
        environment.extend(env_overrides.clone());
        let handler = factory(&FunctionSpec { logical_id, image, environment: &environment })
            .map_err(|error| format!("function {logical_id} ({image}): {error}"))?;
        let arn = template
            .resolve(&json!({"Fn::GetAtt": [logical_id, "Arn"]}), ctx)
            .map_err(|e| e.to_string())?;
        let name = properties["FunctionName"].as_str().unwrap_or(logical_id).to_string();
        // Lambda's own default is 3 s; a Ref to a parameter resolves to a string.
        let timeout =
            Duration::from_secs_f64(number_of(&properties["Timeout"]).unwrap_or(3.0).max(1.0));
        let lambda = Arc::new(Lambda {
            logical_id: logical_id.to_string(),
            name: name.clone(),
            arn: arn.as_str().unwrap_or_default().to_string(),
            handler,
            timeout,
        });
        lambdas.insert(lambda.arn.clone(), Arc::clone(&lambda));
        lambdas.insert(name, lambda);
    }
    Ok(lambdas)
}

/// The states whose Task invokes a function of the template whose image repository is
/// `repository` (by `lambda:invoke`'s `FunctionName` or as the Task's resource), in the state
/// machine's order. `state_machine` names the machine when the template has several.
/// `origin` names the template in errors.
pub fn states_invoking(
    template: &Template,
    origin: &str,
    state_machine: Option<&str>,
    repository: &str,
) -> Result<Vec<String>, RunError> {
    /// Binds the functions of that image only; never invoked.
    struct Unused;
    #[async_trait]
    impl LocalFunction for Unused {
        async fn invoke(&self, _: Value, _: &LocalServices<'_>) -> Result<Value, FunctionError> {
            Err(FunctionError::new("Runtime.Unused", "looked up, not run"))
        }
    }
    let ctx = LocalContext::new("nton-local");
    let (_, machine) = load_machine(template, &ctx, origin, state_machine)?;
    let mut only = LambdaRegistry::new();
    only.register(
        repository,
        |_: &FunctionSpec<'_>| Ok(Arc::new(Unused) as Arc<dyn LocalFunction>),
    );
    let lambdas = bind_lambdas(template, &ctx, &BTreeMap::new(), &only)
        .map_err(|message| RunError::Binding { origin: origin.to_string(), message })?;
    Ok(machine
        .task_resources()
        .into_iter()
        .filter(|task| {
            let function = match task.resource {
                LAMBDA_INVOKE => task.parameters.and_then(|p| p["FunctionName"].as_str()),
                resource => Some(resource),
            };
            function.is_some_and(|function| find_lambda(&lambdas, function).is_some())
        })
        .map(|task| task.state.to_string())
        .collect())
}

/// The function a Task names: by name or ARN, either with a `:qualifier` (version or alias).
pub(super) fn find_lambda<'a>(lambdas: &'a Lambdas, function: &str) -> Option<&'a Arc<Lambda>> {
    if let Some(lambda) = lambdas.get(function) {
        return Some(lambda);
    }
    let unqualified = match function.strip_prefix("arn:") {
        Some(_) if function.matches(':').count() > 6 => {
            function.rsplit_once(':').map(|(head, _)| head)
        }
        Some(_) => None,
        None => function.split_once(':').map(|(head, _)| head),
    }?;
    lambdas.get(unqualified)
}

/// Runs one invocation within the function's timeout, its errors as the Lambda integration
/// reports them.
pub(super) async fn invoke(
    lambda: &Lambda,
    payload: Value,
    services: &LocalServices<'_>,
) -> Result<Value, TaskFailure> {
    match tokio::time::timeout(lambda.timeout, lambda.handler.invoke(payload, services)).await {
        Ok(result) => result.map_err(|error| function_error(&error.error_type, &error.message)),
        Err(_) => Err(function_error(
            "Sandbox.Timedout",
            &format!(
                "{} ({}): task timed out after {:.2} seconds",
                lambda.name,
                lambda.logical_id,
                lambda.timeout.as_secs_f64()
            ),
        )),
    }
}

/// A function error as the Lambda integration reports it: the function's error type as the
/// error name, and the error document as the cause.
fn function_error(error_type: &str, message: &str) -> TaskFailure {
    TaskFailure {
        error: error_type.to_string(),
        cause: json!({"errorType": error_type, "errorMessage": message}).to_string(),
    }
}

/// The binary an image runs: the last path segment of its repository, without tag or digest
/// (`123.dkr.ecr.eu-west-1.amazonaws.com/nton/nton-job:git-1a2b` -> `nton-job`).
pub fn image_binary(image: &str) -> &str {
    let without_digest = image.split('@').next().unwrap_or(image);
    let last = without_digest.rsplit('/').next().unwrap_or(without_digest);
    last.split(':').next().unwrap_or(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_binary_is_the_last_repository_segment() {
        assert_eq!(
            image_binary("123.dkr.ecr.eu-west-1.amazonaws.com/nton/nton-job:git-1a2b"),
            "nton-job"
        );
        assert_eq!(image_binary("/nton-init:latest"), "nton-init");
        assert_eq!(image_binary("registry:5000/team/nton-watch@sha256:abcd"), "nton-watch");
        assert_eq!(image_binary("nton-job"), "nton-job");
    }

    struct Echo;

    #[async_trait]
    impl LocalFunction for Echo {
        async fn invoke(
            &self,
            payload: Value,
            _: &LocalServices<'_>,
        ) -> Result<Value, FunctionError> {
            Ok(payload)
        }
    }

    fn lambda(name: &str, arn: &str) -> (String, Arc<Lambda>) {
        let lambda = Arc::new(Lambda {
            logical_id: name.to_string(),
            name: name.to_string(),
            arn: arn.to_string(),
            handler: Arc::new(Echo),
            timeout: Duration::from_secs(1),
        });
        (name.to_string(), lambda)
    }

    /// Two image functions, one state invoking each (by name through `lambda:invoke`, and by
    /// ARN as the legacy resource), and an unregistered image nobody may call.
    const TEMPLATE: &str = r#"
Resources:
  Greeter:
    Type: AWS::Lambda::Function
    Properties:
      FunctionName: greeter
      PackageType: Image
      Code: {ImageUri: "123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/greet:git-1"}
      Environment: {Variables: {GREETING: hello}}
  Counter:
    Type: AWS::Lambda::Function
    Properties:
      PackageType: Image
      Code: {ImageUri: "registry.example/count@sha256:abcd"}
  Machine:
    Type: AWS::StepFunctions::StateMachine
    Properties:
      Definition:
        StartAt: Greet
        States:
          Greet:
            Type: Task
            Resource: arn:aws:states:::lambda:invoke
            Parameters: {FunctionName: greeter, "Payload.$": "$"}
            ResultSelector: {"greeting.$": "$.Payload"}
            Next: Count
          Count:
            Type: Task
            Resource: !GetAtt Counter.Arn
            End: true
"#;

    /// Answers with its function's `GREETING` and the payload's `name`.
    struct Greet(String);

    #[async_trait]
    impl LocalFunction for Greet {
        async fn invoke(
            &self,
            payload: Value,
            _: &LocalServices<'_>,
        ) -> Result<Value, FunctionError> {
            Ok(json!(format!("{} {}", self.0, payload["name"].as_str().unwrap_or("?"))))
        }
    }

    /// Counts the jobs the local Batch knows of the ids it is given, through `BatchApi`.
    struct Count;

    #[async_trait]
    impl LocalFunction for Count {
        async fn invoke(
            &self,
            payload: Value,
            services: &LocalServices<'_>,
        ) -> Result<Value, FunctionError> {
            let known = services
                .batch
                .describe_jobs(&["no-such-job".to_string()])
                .await
                .map_err(|error| FunctionError::new("Batch", error))?;
            Ok(json!({"greeting": payload["greeting"], "known": known.len()}))
        }
    }

    fn registry() -> LambdaRegistry {
        let mut registry = LambdaRegistry::new();
        registry
            .register("greet", |function: &FunctionSpec<'_>| {
                let greeting = function.environment.get("GREETING").ok_or("GREETING is not set")?;
                Ok(Arc::new(Greet(greeting.clone())) as Arc<dyn LocalFunction>)
            })
            .register(
                "count",
                |_: &FunctionSpec<'_>| Ok(Arc::new(Count) as Arc<dyn LocalFunction>),
            );
        registry
    }

    fn spec(dir: &std::path::Path, env_overrides: &[(&str, &str)]) -> super::super::LocalRunSpec {
        let template = dir.join("template.yaml");
        std::fs::write(&template, TEMPLATE).unwrap();
        super::super::LocalRunSpec {
            template,
            state_machine: None,
            parameters: BTreeMap::new(),
            run_dir: dir.join("run"),
            bin_dir: dir.to_path_buf(),
            parallelism: 1,
            base_env: BTreeMap::new(),
            env_overrides: env_overrides
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            input: json!({"name": "nton"}),
            execution_name: "test".to_string(),
            resumed_children: Default::default(),
            meta: Value::Null,
            s3_buckets: BTreeMap::new(),
        }
    }

    #[tokio::test]
    async fn registered_handlers_run_with_their_function_environment_and_the_local_batch() {
        let dir = tempfile::tempdir().unwrap();
        let run = super::super::LocalRun::prepare(spec(dir.path(), &[]), &registry()).unwrap();
        let summary = run.execute().await.unwrap();
        assert!(summary.succeeded(), "{summary:?}");
        assert_eq!(summary.output, Some(json!({"greeting": "hello nton", "known": 0})));

        // The run's overrides go over the template's environment.
        let dir = tempfile::tempdir().unwrap();
        let run =
            super::super::LocalRun::prepare(spec(dir.path(), &[("GREETING", "hi")]), &registry())
                .unwrap();
        assert_eq!(
            run.execute().await.unwrap().output,
            Some(json!({"greeting": "hi nton", "known": 0}))
        );
    }

    #[test]
    fn a_function_without_a_handler_or_with_a_bad_configuration_is_refused_before_anything_runs() {
        let dir = tempfile::tempdir().unwrap();
        let mut greet_only = LambdaRegistry::new();
        greet_only.register("greet", |_: &FunctionSpec<'_>| {
            Ok(Arc::new(Greet(String::new())) as Arc<dyn LocalFunction>)
        });
        let error = super::super::LocalRun::prepare(spec(dir.path(), &[]), &greet_only)
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("state Count: Resource arn:aws:lambda:"), "{error}");
        assert!(!dir.path().join("run").exists(), "nothing written");

        let mut failing = registry();
        failing
            .register("greet", |_: &FunctionSpec<'_>| Err("GREETING=\"\" is invalid".to_string()));
        let error = super::super::LocalRun::prepare(spec(dir.path(), &[]), &failing)
            .err()
            .unwrap()
            .to_string();
        assert!(
            error.ends_with(
                "function Greeter (123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/greet:git-1): \
                 GREETING=\"\" is invalid"
            ),
            "{error}"
        );
        assert!(!dir.path().join("run").exists(), "nothing written");
    }

    #[test]
    fn the_states_invoking_an_image_are_found_by_function_name_or_arn() {
        let dir = tempfile::tempdir().unwrap();
        let template = Template::load(spec(dir.path(), &[]).template).unwrap();
        let states = |repository| states_invoking(&template, "t.yaml", None, repository);
        assert_eq!(states("greet").unwrap(), ["Greet"]);
        assert_eq!(states("count").unwrap(), ["Count"]);
        assert!(states("nton-watch").unwrap().is_empty());
        let error = states_invoking(&template, "t.yaml", Some("Greeter"), "greet").unwrap_err();
        assert!(error.to_string().contains("not a AWS::StepFunctions::StateMachine"), "{error}");
    }

    #[test]
    fn a_function_is_found_by_name_or_arn_with_or_without_a_qualifier() {
        let arn = "arn:aws:lambda:eu-west-1:123456789012:function:init";
        let (name, init) = lambda("init", arn);
        let lambdas: Lambdas = [(name, Arc::clone(&init)), (arn.to_string(), init)].into();
        for function in ["init", "init:live", arn, &format!("{arn}:7")] {
            assert_eq!(find_lambda(&lambdas, function).map(|l| l.name.as_str()), Some("init"));
        }
        assert!(find_lambda(&lambdas, "watch").is_none());
        assert!(
            find_lambda(&lambdas, "arn:aws:lambda:eu-west-1:123456789012:function:x").is_none()
        );
    }

    /// Lambda reports a function that runs past its timeout as `Sandbox.Timedout`; the handler's
    /// own errors keep their type, in the error document the integration passes as the cause.
    #[tokio::test]
    async fn timeouts_and_errors_are_reported_as_the_lambda_integration_does() {
        struct Slow;
        #[async_trait]
        impl LocalFunction for Slow {
            async fn invoke(
                &self,
                _: Value,
                _: &LocalServices<'_>,
            ) -> Result<Value, FunctionError> {
                tokio::time::sleep(Duration::from_secs(5)).await;
                Ok(Value::Null)
            }
        }
        struct Failing;
        #[async_trait]
        impl LocalFunction for Failing {
            async fn invoke(
                &self,
                _: Value,
                _: &LocalServices<'_>,
            ) -> Result<Value, FunctionError> {
                Err(FunctionError::new("InvalidInput", "ids: 0 is out of range"))
            }
        }
        let batch = crate::batch::LocalBatch::new(crate::batch::LocalBatchConfig::new(
            std::env::temp_dir(),
        ));
        let services = LocalServices { batch: &batch };
        let bound = |handler: Arc<dyn LocalFunction>, timeout| Lambda {
            logical_id: "Fn".to_string(),
            name: "fn".to_string(),
            arn: String::new(),
            handler,
            timeout,
        };
        let error =
            invoke(&bound(Arc::new(Slow), Duration::from_millis(50)), Value::Null, &services)
                .await
                .unwrap_err();
        assert_eq!(error.error, "Sandbox.Timedout");
        assert!(
            error.cause.contains("fn (Fn): task timed out after 0.05 seconds"),
            "{}",
            error.cause
        );
        let error =
            invoke(&bound(Arc::new(Failing), Duration::from_secs(2)), Value::Null, &services)
                .await
                .unwrap_err();
        assert_eq!(error.error, "InvalidInput");
        assert_eq!(
            serde_json::from_str::<Value>(&error.cause).unwrap(),
            json!({"errorType": "InvalidInput", "errorMessage": "ids: 0 is out of range"})
        );
        let echoed =
            invoke(&bound(Arc::new(Echo), Duration::from_secs(2)), json!({"a": 1}), &services)
                .await
                .unwrap();
        assert_eq!(echoed, json!({"a": 1}));
    }
}
