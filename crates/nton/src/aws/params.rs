//! What a deploy is made of, read and checked before any AWS call: the environment and prefix
//! that name the stacks, the image tag, the two templates' declared parameters, and the
//! per-environment parameters file `<template-dir>/params/<env>.json`.
//!
//! Every error names the file or flag, the key and the value, and is a
//! [`CommandError::bad_input`] (exit code 2): nothing was deployed when one is returned.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::exit::CommandError;

/// CloudFormation refuses a `TemplateBody` longer than this: a larger template is uploaded to
/// S3 and passed as a `TemplateURL`.
pub const MAX_TEMPLATE_BODY: usize = 51_200;

/// The largest template CloudFormation takes at all (from S3).
pub const MAX_TEMPLATE_URL_BODY: usize = 1_048_576;

/// At most this many tags on a stack (a CloudFormation limit).
const MAX_TAGS: usize = 50;

/// Checks an environment name or stack prefix: it becomes part of a stack name (letters,
/// digits, hyphens, starting with a letter) and of the params file's path, so nothing that
/// could leave `params/` (a `/`, `..`) gets through.
pub fn check_name(flag: &str, value: &str) -> Result<(), CommandError> {
    let valid = value.len() <= 40
        && value.starts_with(|c: char| c.is_ascii_alphabetic())
        && value.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !value.ends_with('-');
    if valid {
        Ok(())
    } else {
        Err(CommandError::bad_input(format!(
            "{flag}: {value:?} is not a valid name (must be 1-40 letters, digits or hyphens, \
             start with a letter and not end with a hyphen)"
        )))
    }
}

/// The two stacks of an environment, in the order a deploy creates them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, clap::ValueEnum)]
pub enum StackKind {
    /// The ECR repositories (`registry.yaml`): deployed first, so images can be pushed.
    Registry,
    /// Everything else (`pipeline.yaml`): needs the images to exist.
    Pipeline,
}

impl StackKind {
    pub const ALL: [StackKind; 2] = [StackKind::Registry, StackKind::Pipeline];

    /// `registry` or `pipeline`: the stack name's suffix and the template's stem.
    pub fn as_str(self) -> &'static str {
        match self {
            StackKind::Registry => "registry",
            StackKind::Pipeline => "pipeline",
        }
    }

    /// `<prefix>-<env>-registry` or `<prefix>-<env>-pipeline`.
    pub fn stack_name(self, prefix: &str, env: &str) -> String {
        format!("{prefix}-{env}-{}", self.as_str())
    }

    /// The template's file name inside the template directory.
    pub fn template_file(self) -> String {
        format!("{}.yaml", self.as_str())
    }
}

/// Checks an image reference suffix: `:<tag>` (a Docker tag) or `@sha256:<64 hex digits>`.
/// The pipeline template appends it to each repository URI, so anything else would give
/// images that cannot be pulled, found only when a job or Lambda starts.
pub fn check_image_tag(flag: &str, value: &str) -> Result<(), CommandError> {
    let valid = if let Some(tag) = value.strip_prefix(':') {
        // Docker's tag grammar: [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}.
        !tag.is_empty()
            && tag.len() <= 128
            && tag.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
            && tag.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    } else if let Some(digest) = value.strip_prefix("@sha256:") {
        digest.len() == 64 && digest.chars().all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
    } else {
        false
    };
    if valid {
        Ok(())
    } else {
        Err(CommandError::bad_input(format!(
            "{flag}: {value:?} is not an image tag (must be \":<tag>\", e.g. \":git-1a2b3c4\", \
             or \"@sha256:<64 lowercase hex digits>\")"
        )))
    }
}

/// One template read from disk: its body (sent as is) and the parameters it declares.
#[derive(Clone, Debug)]
pub struct TemplateBody {
    pub path: PathBuf,
    pub body: String,
    /// Declared parameter name -> whether it has a `Default`.
    pub parameters: BTreeMap<String, bool>,
    /// Names of the template's outputs.
    pub outputs: BTreeSet<String>,
}

impl TemplateBody {
    /// Reads and parses a template (YAML or JSON). Only `Parameters` is interpreted here;
    /// CloudFormation validates the rest when the change set is made.
    pub fn read(path: &Path) -> Result<TemplateBody, CommandError> {
        let body = std::fs::read_to_string(path).map_err(|error| {
            CommandError::bad_input(format!(
                "{}: cannot read the template: {error}",
                path.display()
            ))
        })?;
        TemplateBody::parse(path, body)
    }

    /// Parses a template body; `path` only names it in errors.
    pub fn parse(path: &Path, body: String) -> Result<TemplateBody, CommandError> {
        let shown = path.display();
        if body.len() > MAX_TEMPLATE_URL_BODY {
            return Err(CommandError::bad_input(format!(
                "{shown}: the template is {} bytes; CloudFormation accepts at most \
                 {MAX_TEMPLATE_URL_BODY} (split it into nested stacks)",
                body.len()
            )));
        }
        let document = parse_template_value(&body)
            .map_err(|message| CommandError::bad_input(format!("{shown}: {message}")))?;
        let parameters = declared_parameters(&document)
            .map_err(|message| CommandError::bad_input(format!("{shown}: {message}")))?;
        let outputs = document
            .get("Outputs")
            .and_then(Value::as_object)
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default();
        Ok(TemplateBody { path: path.to_path_buf(), body, parameters, outputs })
    }

    /// Whether the body is too large to send inline and must go through S3.
    pub fn needs_upload(&self) -> bool {
        self.body.len() > MAX_TEMPLATE_BODY
    }

    /// The template's file name, for messages.
    pub fn name(&self) -> String {
        self.path
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_else(|| self.path.display().to_string())
    }
}

/// Parses a template body (YAML or JSON) with the engine's one template reader, which turns
/// CloudFormation's short forms (`!Ref`, `!Sub`) into their long forms (`{"Ref": ...}`).
pub fn parse_template_value(body: &str) -> Result<Value, String> {
    nton_engine::template::parse_document(body)
        .map_err(|error| format!("not valid YAML or JSON: {error}"))
}

/// The names in a template's `Parameters` section, each with whether it has a `Default`.
fn declared_parameters(document: &Value) -> Result<BTreeMap<String, bool>, String> {
    let Some(parameters) = document.get("Parameters") else {
        return Ok(BTreeMap::new());
    };
    let parameters = parameters
        .as_object()
        .ok_or_else(|| "Parameters: must be a mapping of parameter names".to_string())?;
    Ok(parameters
        .iter()
        .map(|(name, spec)| (name.clone(), spec.get("Default").is_some()))
        .collect())
}

/// A per-environment parameters file: `{"Parameters": {"Key": "Value"}, "Tags": {"Key": "Value"}}`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ParamsFile {
    pub path: PathBuf,
    pub parameters: BTreeMap<String, String>,
    pub tags: BTreeMap<String, String>,
}

impl ParamsFile {
    /// Reads and checks a params file; a missing file is an error that says how to make one.
    pub fn read(path: &Path) -> Result<ParamsFile, CommandError> {
        let text = std::fs::read_to_string(path).map_err(|error| {
            CommandError::bad_input(format!(
                "{}: cannot read the parameters file ({error}); every environment needs one, \
                 at least {{\"Parameters\": {{}}, \"Tags\": {{}}}}",
                path.display()
            ))
        })?;
        ParamsFile::parse(path, &text)
    }

    /// Parses the text of a params file; `path` names it in errors.
    pub fn parse(path: &Path, text: &str) -> Result<ParamsFile, CommandError> {
        let shown = path.display();
        let fail = |message: String| CommandError::bad_input(format!("{shown}: {message}"));
        let document: Value =
            serde_json::from_str(text).map_err(|error| fail(format!("not valid JSON: {error}")))?;
        let Value::Object(top) = document else {
            return Err(fail(format!(
                "must be a JSON object {{\"Parameters\": {{...}}, \"Tags\": {{...}}}}, found {}",
                kind(&document)
            )));
        };
        let mut file = ParamsFile { path: path.to_path_buf(), ..ParamsFile::default() };
        for (key, value) in &top {
            match key.as_str() {
                "Parameters" => file.parameters = string_map(key, value).map_err(&fail)?,
                "Tags" => file.tags = string_map(key, value).map_err(&fail)?,
                other => {
                    return Err(fail(format!(
                        "unknown key {other:?} (the file may hold only \"Parameters\" and \"Tags\")"
                    )));
                }
            }
        }
        if file.tags.len() > MAX_TAGS {
            return Err(fail(format!(
                "Tags: {} tags; a stack may have at most {MAX_TAGS}",
                file.tags.len()
            )));
        }
        for (key, value) in &file.tags {
            if key.is_empty() || key.len() > 128 || key.to_ascii_lowercase().starts_with("aws:") {
                return Err(fail(format!(
                    "Tags.{key}: {key:?} is not a usable tag key (1-128 characters, not starting with \"aws:\")"
                )));
            }
            if value.len() > 256 {
                return Err(fail(format!(
                    "Tags.{key}: the value is {} characters; at most 256 are allowed",
                    value.len()
                )));
            }
        }
        Ok(file)
    }

    /// Splits the file's parameters between the templates that declare them. A parameter that
    /// no template declares is an error naming it: CloudFormation would reject it only after
    /// the first stack was already deployed, or a typo would silently leave a default in place.
    pub fn assign(
        &self,
        templates: &[(StackKind, &TemplateBody)],
    ) -> Result<BTreeMap<StackKind, BTreeMap<String, String>>, CommandError> {
        let mut assigned: BTreeMap<StackKind, BTreeMap<String, String>> =
            templates.iter().map(|(kind, _)| (*kind, BTreeMap::new())).collect();
        for (key, value) in &self.parameters {
            let mut declared_by_any = false;
            for (kind, template) in templates {
                if template.parameters.contains_key(key) {
                    declared_by_any = true;
                    assigned.entry(*kind).or_default().insert(key.clone(), value.clone());
                }
            }
            if !declared_by_any {
                let mut names: Vec<&str> = templates
                    .iter()
                    .flat_map(|(_, t)| t.parameters.keys().map(String::as_str))
                    .collect();
                names.sort_unstable();
                names.dedup();
                let files: Vec<String> = templates.iter().map(|(_, t)| t.name()).collect();
                return Err(CommandError::bad_input(format!(
                    "{}: Parameters.{key}: no template declares it ({} declare: {})",
                    self.path.display(),
                    files.join(" and "),
                    if names.is_empty() { "nothing".to_string() } else { names.join(", ") }
                )));
            }
        }
        if let Some(tag) = self.parameters.get("ImageTag") {
            check_image_tag(&format!("{}: Parameters.ImageTag", self.path.display()), tag)?;
        }
        Ok(assigned)
    }
}

/// Reads `{"Key": "Value"}`. Numbers and booleans are accepted and written as CloudFormation
/// receives them (all parameter values are strings there); a list of scalars becomes the
/// comma-separated form a `List<...>`/`CommaDelimitedList` parameter takes.
fn string_map(section: &str, value: &Value) -> Result<BTreeMap<String, String>, String> {
    let Value::Object(object) = value else {
        return Err(format!(
            "{section}: must be an object of \"Key\": \"Value\" pairs, found {}",
            kind(value)
        ));
    };
    let mut map = BTreeMap::new();
    for (key, value) in object {
        let text = scalar_text(value).or_else(|| match value {
            Value::Array(items) => items
                .iter()
                .map(scalar_text)
                .collect::<Option<Vec<String>>>()
                .map(|items| items.join(",")),
            _ => None,
        });
        let Some(text) = text else {
            return Err(format!(
                "{section}.{key}: {value} is {}; values must be strings (or numbers, booleans, \
                 lists of those)",
                kind(value)
            ));
        };
        map.insert(key.clone(), text);
    }
    Ok(map)
}

fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        Value::Bool(flag) => Some(flag.to_string()),
        _ => None,
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The parameters of one stack's change set: what the params file gives, plus the values
/// nton supplies (image tag, registry), checked for parameters with no value at all.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StackParameters {
    /// Explicit values.
    pub values: BTreeMap<String, String>,
    /// Parameters that keep the value the deployed stack already has.
    pub keep_previous: Vec<String>,
}

impl StackParameters {
    /// Checks that every declared parameter without a `Default` gets a value, so the error
    /// names the params file rather than coming back from CloudFormation half-way through.
    pub fn check_complete(
        &self,
        template: &TemplateBody,
        params_file: &Path,
    ) -> Result<(), CommandError> {
        let missing: Vec<&str> = template
            .parameters
            .iter()
            .filter(|(name, has_default)| {
                !**has_default
                    && !self.values.contains_key(*name)
                    && !self.keep_previous.contains(name)
            })
            .map(|(name, _)| name.as_str())
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let mut message = format!(
            "{}: Parameters: {} declares {} without a Default; give ",
            params_file.display(),
            template.name(),
            missing.join(", ")
        );
        let _ = write!(message, "{} a value there", if missing.len() == 1 { "it" } else { "them" });
        Err(CommandError::bad_input(message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(body: &str) -> TemplateBody {
        TemplateBody::parse(Path::new("t/pipeline.yaml"), body.to_string()).unwrap()
    }

    #[test]
    fn names_accept_stack_name_parts_and_reject_paths() {
        for good in ["dev", "prod", "e2e-1", "A"] {
            check_name("--env", good).unwrap();
        }
        for bad in ["", "../x", "a/b", "1dev", "dev-", "dev_1", "d.v", &"x".repeat(41)] {
            let error = check_name("--env", bad).unwrap_err().to_string();
            assert!(error.starts_with("--env: "), "{error}");
            assert!(error.contains(&format!("{bad:?}")), "{error}");
        }
    }

    #[test]
    fn image_tags_are_docker_tags_or_sha256_digests() {
        let digest = format!("@sha256:{}", "0123456789abcdef".repeat(4));
        for good in [":latest", ":git-1a2b3c4", ":_x.y-z", digest.as_str()] {
            check_image_tag("--image-tag", good).unwrap();
        }
        let upper = format!("@sha256:{}", "A".repeat(64));
        for bad in ["latest", ":", ":-x", ":a b", "@sha256:abc", upper.as_str(), "@sha512:00"] {
            let error = check_image_tag("--image-tag", bad).unwrap_err();
            assert_eq!(error.code, crate::exit::BAD_INPUT);
            assert!(error.message.starts_with("--image-tag: "), "{}", error.message);
            assert!(error.message.contains(&format!("{bad:?}")), "{}", error.message);
        }
    }

    #[test]
    fn templates_declare_parameters_with_and_without_defaults() {
        let t = template(
            "Parameters:\n  A:\n    Type: String\n  B:\n    Type: Number\n    Default: 3\n\
             Resources:\n  X:\n    Type: AWS::S3::Bucket\n    Properties:\n      BucketName: !Sub \"${A}-x\"\n",
        );
        assert_eq!(
            t.parameters,
            BTreeMap::from([("A".to_string(), false), ("B".to_string(), true)])
        );
        // JSON is YAML too.
        let t = template(
            r#"{"Parameters": {"C": {"Type": "String", "Default": ""}}, "Outputs": {"O": {"Value": 1}}}"#,
        );
        assert_eq!(t.parameters, BTreeMap::from([("C".to_string(), true)]));
        assert_eq!(t.outputs, BTreeSet::from(["O".to_string()]));
        let error =
            TemplateBody::parse(Path::new("t/x.yaml"), "Parameters: [1]".into()).unwrap_err();
        assert!(error.message.starts_with("t/x.yaml: Parameters: "), "{}", error.message);
        let error = TemplateBody::parse(Path::new("t/x.yaml"), "a: [".into()).unwrap_err();
        assert!(error.message.contains("not valid YAML"), "{}", error.message);
        let large = format!("Description: {}\n", "x".repeat(MAX_TEMPLATE_BODY));
        assert!(TemplateBody::parse(Path::new("t/large.yaml"), large).unwrap().needs_upload());
        assert!(!template("Resources: {}").needs_upload());
        let huge = format!("Description: {}\n", "x".repeat(MAX_TEMPLATE_URL_BODY));
        let error = TemplateBody::parse(Path::new("t/huge.yaml"), huge).unwrap_err();
        assert!(error.message.contains("1048576"), "{}", error.message);
    }

    #[test]
    fn params_file_reads_parameters_and_tags() {
        let file = ParamsFile::parse(
            Path::new("p/dev.json"),
            r#"{"Parameters": {"A": "x", "N": 40, "F": true, "L": ["a", 1]}, "Tags": {"team": "data"}}"#,
        )
        .unwrap();
        assert_eq!(file.parameters["A"], "x");
        assert_eq!(file.parameters["N"], "40");
        assert_eq!(file.parameters["F"], "true");
        assert_eq!(file.parameters["L"], "a,1");
        assert_eq!(file.tags["team"], "data");
        let empty = ParamsFile::parse(Path::new("p/dev.json"), "{}").unwrap();
        assert!(empty.parameters.is_empty() && empty.tags.is_empty());
    }

    #[test]
    fn params_file_errors_name_the_file_and_the_key() {
        let cases = [
            ("{", "p/dev.json: not valid JSON"),
            ("[]", "p/dev.json: must be a JSON object"),
            (r#"{"Params": {}}"#, "p/dev.json: unknown key \"Params\""),
            (r#"{"Parameters": []}"#, "p/dev.json: Parameters: must be an object"),
            (r#"{"Parameters": {"A": null}}"#, "p/dev.json: Parameters.A: null is null"),
            (r#"{"Parameters": {"A": {"x": 1}}}"#, "p/dev.json: Parameters.A: "),
            (r#"{"Tags": {"k": 1.5, "aws:x": "y"}}"#, "p/dev.json: Tags.aws:x: "),
        ];
        for (text, expected) in cases {
            let error = ParamsFile::parse(Path::new("p/dev.json"), text).unwrap_err();
            assert_eq!(error.code, crate::exit::BAD_INPUT);
            assert!(error.message.starts_with(expected), "{text}: {}", error.message);
        }
    }

    #[test]
    fn parameters_go_to_the_templates_that_declare_them() {
        let registry = template("Parameters:\n  Shared: {Type: String}\n  R: {Type: String}\n");
        let pipeline = template("Parameters:\n  Shared: {Type: String}\n  P: {Type: String}\n");
        let templates = [(StackKind::Registry, &registry), (StackKind::Pipeline, &pipeline)];
        let file = ParamsFile::parse(
            Path::new("p/dev.json"),
            r#"{"Parameters": {"Shared": "s", "R": "r", "P": "p"}}"#,
        )
        .unwrap();
        let assigned = file.assign(&templates).unwrap();
        assert_eq!(assigned[&StackKind::Registry].len(), 2);
        assert_eq!(assigned[&StackKind::Pipeline]["P"], "p");
        assert!(!assigned[&StackKind::Registry].contains_key("P"));

        let file =
            ParamsFile::parse(Path::new("p/dev.json"), r#"{"Parameters": {"Pp": "x"}}"#).unwrap();
        let error = file.assign(&templates).unwrap_err();
        assert!(
            error.message.starts_with("p/dev.json: Parameters.Pp: no template declares it"),
            "{}",
            error.message
        );
        assert!(error.message.contains("P, R, Shared"), "{}", error.message);

        let tagged = template("Parameters:\n  ImageTag: {Type: String}\n");
        let file =
            ParamsFile::parse(Path::new("p/dev.json"), r#"{"Parameters": {"ImageTag": "v1"}}"#)
                .unwrap();
        let error = file.assign(&[(StackKind::Pipeline, &tagged)]).unwrap_err();
        assert!(
            error.message.starts_with("p/dev.json: Parameters.ImageTag: \"v1\""),
            "{}",
            error.message
        );
    }

    #[test]
    fn parameters_without_defaults_need_a_value() {
        let t = template(
            "Parameters:\n  A: {Type: String}\n  B: {Type: String, Default: b}\n  C: {Type: String}\n",
        );
        let mut params = StackParameters::default();
        let error = params.check_complete(&t, Path::new("p/dev.json")).unwrap_err();
        assert!(error.message.contains("declares A, C without a Default"), "{}", error.message);
        params.values.insert("A".into(), "a".into());
        params.keep_previous.push("C".into());
        params.check_complete(&t, Path::new("p/dev.json")).unwrap();
    }
}
