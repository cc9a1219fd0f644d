//! The CloudFormation template, loaded and resolved locally.
//!
//! The template is the only description of the pipeline: AWS deploys it, and the local engine
//! reads the same file through this module. Loading turns YAML short-form tags into long-form
//! JSON; resolving evaluates intrinsics against a [`LocalContext`] (region, account, stack
//! name, parameter overrides, exports), where resources take deterministic local names and
//! ARNs that [`Template::logical_id_for_arn`] maps back to logical ids.

mod local;
mod resolve;
mod yaml;

use std::path::Path;

use serde_json::{Map, Value};

pub use local::LocalContext;
use resolve::{Resolver, error};

/// A template's text (YAML with CloudFormation's short forms, or JSON) as long-form JSON, not
/// yet checked as a template: the workspace's one YAML reader. [`Template::parse`] checks the
/// sections on top of it; the CLI reads a deploy's parameters and a teardown's deletion
/// policies with it, and the tests read templates, workflows and fixtures with it.
pub fn parse_document(text: &str) -> Result<Value, String> {
    yaml::parse(text)
}

/// Why a template could not be loaded or a value not resolved. Every message says where.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("{origin}: cannot read the template: {source}")]
    Read {
        origin: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{origin}: not a valid YAML or JSON template: {message}")]
    Parse { origin: String, message: String },
    #[error("{origin}: {message}")]
    Invalid { origin: String, message: String },
    /// A value could not be resolved; `at` is the place in the template (or in the value
    /// given to [`Template::resolve`]), e.g. `Resources.Queue.Properties.Priority.Ref`.
    #[error("{at}: {message}")]
    Resolve { at: String, message: String },
}

/// One entry of the template's `Resources`.
#[derive(Debug, Clone, PartialEq)]
pub struct Resource {
    pub resource_type: String,
    /// `Properties` as written (unresolved); an empty object when absent.
    pub properties: Value,
    /// The name of the condition that decides whether the resource exists.
    pub condition: Option<String>,
}

/// A loaded template.
#[derive(Debug, Clone)]
pub struct Template {
    origin: String,
    body: Value,
    resources: Vec<(String, Resource)>,
}

impl Template {
    /// Reads and parses the template at `path`.
    pub fn load(path: impl AsRef<Path>) -> Result<Template, TemplateError> {
        let path = path.as_ref();
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|source| TemplateError::Read { origin: origin.clone(), source })?;
        Self::parse(&text, &origin)
    }

    /// Parses template text; `origin` names it in errors (a path, or a label for inline text).
    pub fn parse(text: &str, origin: &str) -> Result<Template, TemplateError> {
        let body = yaml::parse(text)
            .map_err(|message| TemplateError::Parse { origin: origin.to_string(), message })?;
        let invalid =
            |message: String| TemplateError::Invalid { origin: origin.to_string(), message };
        let Value::Object(top) = &body else {
            return Err(invalid("the template is not a mapping".to_string()));
        };
        for section in ["Parameters", "Mappings", "Conditions", "Outputs"] {
            if let Some(v) = top.get(section)
                && !v.is_object()
            {
                return Err(invalid(format!("{section} is not a mapping")));
            }
        }
        let Some(Value::Object(raw_resources)) = top.get("Resources") else {
            return Err(invalid("Resources is missing or not a mapping".to_string()));
        };
        let mut resources = Vec::with_capacity(raw_resources.len());
        for (id, raw) in raw_resources {
            let Value::Object(fields) = raw else {
                return Err(invalid(format!("resource {id} is not a mapping")));
            };
            let resource_type = match fields.get("Type") {
                Some(Value::String(t)) => t.clone(),
                _ => return Err(invalid(format!("resource {id} has no Type"))),
            };
            let properties = match fields.get("Properties") {
                None | Some(Value::Null) => Value::Object(Map::new()),
                Some(p @ Value::Object(_)) => p.clone(),
                Some(_) => {
                    return Err(invalid(format!("resource {id}: Properties is not a mapping")));
                }
            };
            let condition = match fields.get("Condition") {
                None => None,
                Some(Value::String(c)) => {
                    if top.get("Conditions").and_then(|cs| cs.get(c)).is_none() {
                        return Err(invalid(format!("resource {id}: unknown condition {c}")));
                    }
                    Some(c.clone())
                }
                Some(other) => {
                    return Err(invalid(format!(
                        "resource {id}: Condition must be a name, got {other}"
                    )));
                }
            };
            resources.push((id.clone(), Resource { resource_type, properties, condition }));
        }
        Ok(Template { origin: origin.to_string(), body, resources })
    }

    /// Where the template came from (its path or label).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The whole template as long-form JSON (unresolved).
    pub fn body(&self) -> &Value {
        &self.body
    }

    /// Resources of one type, as `(logical id, resource)`, whatever their conditions.
    pub fn resources_of_type<'a>(
        &'a self,
        resource_type: &'a str,
    ) -> impl Iterator<Item = (&'a str, &'a Resource)> + 'a {
        self.resources
            .iter()
            .filter(move |(_, r)| r.resource_type == resource_type)
            .map(|(id, r)| (id.as_str(), r))
    }

    /// The resource with this logical id.
    pub fn resource(&self, logical_id: &str) -> Option<&Resource> {
        self.resources.iter().find(|(id, _)| id == logical_id).map(|(_, r)| r)
    }

    /// Whether the resource is created in this context (it has no condition, or its
    /// condition is true). Unknown logical ids are an error.
    pub fn resource_exists(
        &self,
        logical_id: &str,
        ctx: &LocalContext,
    ) -> Result<bool, TemplateError> {
        let at = format!("Resources.{logical_id}");
        let resource = self
            .resource(logical_id)
            .ok_or_else(|| error(&at, format!("unknown logical id '{logical_id}'")))?;
        match &resource.condition {
            None => Ok(true),
            Some(c) => Resolver::new(self, ctx).condition(c, &format!("{at}.Condition")),
        }
    }

    /// Evaluates a named condition of the template's `Conditions`.
    pub fn condition(&self, name: &str, ctx: &LocalContext) -> Result<bool, TemplateError> {
        Resolver::new(self, ctx).condition(name, "Conditions")
    }

    /// Resolves every intrinsic in `value`. A value that is `AWS::NoValue` as a whole
    /// resolves to `null`.
    pub fn resolve(&self, value: &Value, ctx: &LocalContext) -> Result<Value, TemplateError> {
        Ok(Resolver::new(self, ctx).value(value, "")?.unwrap_or(Value::Null))
    }

    /// The resources of one type that this context creates (their condition holds), as
    /// `(logical id, resolved properties)`.
    pub fn created_resources(
        &self,
        resource_type: &str,
        ctx: &LocalContext,
    ) -> Result<Vec<(String, Value)>, TemplateError> {
        let mut created = Vec::new();
        for (logical_id, _) in self.resources_of_type(resource_type) {
            if self.resource_exists(logical_id, ctx)? {
                created.push((logical_id.to_string(), self.resolved_properties(logical_id, ctx)?));
            }
        }
        Ok(created)
    }

    /// The resolved `Properties` of a resource.
    pub fn resolved_properties(
        &self,
        logical_id: &str,
        ctx: &LocalContext,
    ) -> Result<Value, TemplateError> {
        let at = format!("Resources.{logical_id}.Properties");
        let resource = self.resource(logical_id).ok_or_else(|| {
            error(&format!("Resources.{logical_id}"), format!("unknown logical id '{logical_id}'"))
        })?;
        Ok(Resolver::new(self, ctx)
            .value(&resource.properties, &at)?
            .unwrap_or(Value::Object(Map::new())))
    }

    /// The logical id behind a local name or ARN (as `Ref`/`Fn::GetAtt` give them): job
    /// queues, job definitions (any revision), compute environments, Lambda functions (ARN,
    /// partial ARN or name) and state machines. `None` when no resource of that type has
    /// that id.
    pub fn logical_id_for_arn(&self, arn: &str) -> Option<&str> {
        local::parse_local_name(arn).into_iter().find_map(|(resource_type, id)| {
            self.resources
                .iter()
                .find(|(rid, r)| *rid == id && r.resource_type == resource_type)
                .map(|(rid, _)| rid.as_str())
        })
    }

    /// The state machine's definition, resolved: the only `AWS::StepFunctions::StateMachine`
    /// (or the one named), its `Definition` (object) or `DefinitionString` (string, or an
    /// intrinsic giving one) with intrinsics resolved and `DefinitionSubstitutions` applied.
    /// Returns `(logical id, definition)`.
    pub fn state_machine(
        &self,
        ctx: &LocalContext,
        logical_id: Option<&str>,
    ) -> Result<(String, Value), TemplateError> {
        let invalid =
            |message: String| TemplateError::Invalid { origin: self.origin.clone(), message };
        const TYPE: &str = "AWS::StepFunctions::StateMachine";
        let id = match logical_id {
            Some(id) => match self.resource(id) {
                Some(r) if r.resource_type == TYPE => id.to_string(),
                Some(r) => {
                    return Err(invalid(format!(
                        "resource {id} is a {}, not a {TYPE}",
                        r.resource_type
                    )));
                }
                None => return Err(invalid(format!("no resource named {id}"))),
            },
            None => {
                let all: Vec<&str> = self.resources_of_type(TYPE).map(|(id, _)| id).collect();
                match all.as_slice() {
                    [one] => one.to_string(),
                    [] => return Err(invalid(format!("the template has no {TYPE}"))),
                    many => {
                        return Err(invalid(format!(
                            "the template has several state machines ({}); name one",
                            many.join(", ")
                        )));
                    }
                }
            }
        };
        let resource = self.resource(&id).expect("found above");
        let at = format!("Resources.{id}.Properties");
        let resolver = Resolver::new(self, ctx);
        let props = match &resource.properties {
            Value::Object(p) => p,
            _ => unreachable!("properties are always an object"),
        };
        let definition = match (props.get("Definition"), props.get("DefinitionString")) {
            (Some(d), None) => {
                let d_at = format!("{at}.Definition");
                let d = resolver.value(d, &d_at)?.unwrap_or(Value::Null);
                if !d.is_object() {
                    return Err(error(&d_at, "Definition must be an object"));
                }
                d
            }
            (None, Some(s)) => {
                let s_at = format!("{at}.DefinitionString");
                let text = match resolver.value(s, &s_at)? {
                    Some(Value::String(text)) => text,
                    other => {
                        return Err(error(
                            &s_at,
                            format!(
                                "DefinitionString must be a string, got {}",
                                other.unwrap_or(Value::Null)
                            ),
                        ));
                    }
                };
                serde_json::from_str(&text)
                    .map_err(|e| error(&s_at, format!("DefinitionString is not JSON: {e}")))?
            }
            (Some(_), Some(_)) => {
                return Err(error(&at, "both Definition and DefinitionString are set"));
            }
            (None, None) => {
                let message = if props.contains_key("DefinitionS3Location") {
                    "DefinitionS3Location is not supported locally; inline the definition"
                } else {
                    "no Definition or DefinitionString"
                };
                return Err(error(&at, message));
            }
        };
        let substitutions = match props.get("DefinitionSubstitutions") {
            None => Map::new(),
            Some(s) => {
                let s_at = format!("{at}.DefinitionSubstitutions");
                match resolver.value(s, &s_at)? {
                    Some(Value::Object(m)) => m,
                    _ => return Err(error(&s_at, "DefinitionSubstitutions must be a mapping")),
                }
            }
        };
        let mut subs = Vec::with_capacity(substitutions.len());
        for (name, value) in substitutions {
            let s = resolve::scalar_string(&value).ok_or_else(|| {
                error(
                    &format!("{at}.DefinitionSubstitutions.{name}"),
                    format!("a substitution must be a string, number or boolean, got {value}"),
                )
            })?;
            subs.push((name, s));
        }
        let definition = substitute(definition, &subs, &format!("{at}.Definition"))?;
        Ok((id, definition))
    }

    fn parameter_declaration(&self, name: &str) -> Option<&Map<String, Value>> {
        self.body.get("Parameters").and_then(|p| p.get(name)).and_then(Value::as_object)
    }

    /// The value of a template parameter: the context's override, else its `Default`, else an
    /// error naming it. Checked against its `Type` and constraints as CloudFormation would.
    /// Scalars are strings (as `Ref` gives them); list types are lists of strings.
    pub fn parameter_value(&self, name: &str, ctx: &LocalContext) -> Result<Value, TemplateError> {
        let at = format!("Parameters.{name}");
        let decl = self
            .parameter_declaration(name)
            .ok_or_else(|| error(&at, format!("unknown parameter {name}")))?;
        let ty = decl.get("Type").and_then(Value::as_str).unwrap_or("String");
        let raw = match ctx.parameters.get(name) {
            Some(v) => v.clone(),
            None => match decl.get("Default") {
                Some(Value::Array(items)) => items
                    .iter()
                    .map(|v| resolve::scalar_string(v).unwrap_or_default())
                    .collect::<Vec<_>>()
                    .join(","),
                Some(v) => resolve::scalar_string(v).ok_or_else(|| {
                    error(&at, format!("parameter {name}: Default {v} is not a scalar"))
                })?,
                None if ty.starts_with("AWS::SSM::Parameter::Value<") => {
                    return Err(error(
                        &at,
                        format!(
                            "parameter {name} is read from SSM on AWS; give its value in the local context"
                        ),
                    ));
                }
                None => {
                    return Err(error(
                        &at,
                        format!(
                            "parameter {name} has no value: no override in the local context and no Default"
                        ),
                    ));
                }
            },
        };
        let is_list =
            ty == "CommaDelimitedList" || ty.starts_with("List<") || ty.contains("::Value<List<");
        let items: Vec<String> = if is_list {
            raw.split(',').map(|s| s.trim().to_string()).collect()
        } else {
            vec![raw.clone()]
        };
        let is_number = ty == "Number" || ty == "List<Number>";
        for item in &items {
            check_parameter(name, decl, item, is_number).map_err(|m| error(&at, m))?;
        }
        Ok(if is_list {
            Value::Array(items.into_iter().map(Value::String).collect())
        } else {
            Value::String(raw)
        })
    }
}

fn check_parameter(
    name: &str,
    decl: &Map<String, Value>,
    value: &str,
    is_number: bool,
) -> Result<(), String> {
    let num =
        |key: &str| decl.get(key).and_then(|v| resolve::scalar_string(v)?.parse::<f64>().ok());
    if let Some(Value::Array(allowed)) = decl.get("AllowedValues")
        && !allowed.iter().any(|a| resolve::scalar_string(a).as_deref() == Some(value))
    {
        return Err(format!("parameter {name}: '{value}' is not one of its AllowedValues"));
    }
    if let Some(Value::String(pattern)) = decl.get("AllowedPattern") {
        let re = allowed_pattern(pattern)
            .map_err(|e| format!("parameter {name}: AllowedPattern is not a valid pattern: {e}"))?;
        if !re.is_match(value) {
            return Err(format!(
                "parameter {name}: '{value}' does not match its AllowedPattern {pattern}"
            ));
        }
    }
    let len = value.chars().count() as f64;
    if let Some(min) = num("MinLength")
        && len < min
    {
        return Err(format!("parameter {name}: '{value}' is shorter than MinLength {min}"));
    }
    if let Some(max) = num("MaxLength")
        && len > max
    {
        return Err(format!("parameter {name}: '{value}' is longer than MaxLength {max}"));
    }
    if is_number {
        let n: f64 = value
            .trim()
            .parse()
            .map_err(|_| format!("parameter {name}: '{value}' is not a number"))?;
        if let Some(min) = num("MinValue")
            && n < min
        {
            return Err(format!("parameter {name}: {value} is below MinValue {min}"));
        }
        if let Some(max) = num("MaxValue")
            && n > max
        {
            return Err(format!("parameter {name}: {value} is above MaxValue {max}"));
        }
    }
    Ok(())
}

/// An `AllowedPattern` compiled once per process: parameters are read for every resource
/// that refers to them, and compiling a regex each time dominated resolution.
fn allowed_pattern(pattern: &str) -> Result<regex::Regex, regex::Error> {
    use std::collections::HashMap;
    use std::sync::{LazyLock, Mutex};
    static COMPILED: LazyLock<Mutex<HashMap<String, regex::Regex>>> =
        LazyLock::new(Default::default);
    let mut compiled = COMPILED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(re) = compiled.get(pattern) {
        return Ok(re.clone());
    }
    // CloudFormation matches the whole value.
    let re = regex::Regex::new(&format!("^(?:{pattern})$"))?;
    compiled.insert(pattern.to_string(), re.clone());
    Ok(re)
}

/// Applies `DefinitionSubstitutions` to every string (keys included) of a definition.
/// Hand-written: this is Step Functions' own `${Name}` placeholder syntax.
fn substitute(value: Value, subs: &[(String, String)], at: &str) -> Result<Value, TemplateError> {
    Ok(match value {
        Value::String(s) => Value::String(substitute_str(&s, subs, at)?),
        Value::Array(items) => Value::Array(
            items
                .into_iter()
                .enumerate()
                .map(|(i, v)| substitute(v, subs, &format!("{at}[{i}]")))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => {
            let mut out = Map::new();
            for (k, v) in map {
                let child = format!("{at}.{k}");
                let key = substitute_str(&k, subs, &child)?;
                out.insert(key, substitute(v, subs, &child)?);
            }
            Value::Object(out)
        }
        other => other,
    })
}

fn substitute_str(s: &str, subs: &[(String, String)], at: &str) -> Result<String, TemplateError> {
    if !s.contains("${") {
        return Ok(s.to_string());
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            return Err(error(at, format!("unclosed placeholder in '{s}'")));
        };
        let name = &after[..end];
        let value = subs.iter().find(|(n, _)| n == name).map(|(_, v)| v).ok_or_else(|| {
            error(at, format!("placeholder ${{{name}}} has no entry in DefinitionSubstitutions"))
        })?;
        out.push_str(value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}
