//! CloudFormation intrinsic functions, evaluated locally.
//!
//! Hand-written: no crate evaluates CloudFormation intrinsics. `Ref`, `Fn::GetAtt`, `Fn::Sub`,
//! `Fn::Join`, `Fn::Select`, `Fn::Split`, `Fn::If` (with the template's Conditions and
//! `Fn::Equals/Not/And/Or/Condition`), `Fn::FindInMap`, `Fn::GetAZs`, `Fn::Base64`,
//! `Fn::ImportValue` (from the context's exports) and `Fn::Cidr` (IPv4). `AWS::NoValue`
//! removes the key or list item that holds it, which is why resolution yields
//! `Option<Value>`.

use std::cell::RefCell;
use std::collections::BTreeMap;

use base64::Engine as _;
use serde_json::{Map, Value};

use super::local::{self, LocalContext};
use super::{Template, TemplateError};

type Resolved = Result<Option<Value>, TemplateError>;

pub(crate) fn error(at: &str, message: impl Into<String>) -> TemplateError {
    TemplateError::Resolve {
        at: if at.is_empty() { "value".to_string() } else { at.to_string() },
        message: message.into(),
    }
}

fn child(at: &str, key: &str) -> String {
    if at.is_empty() { key.to_string() } else { format!("{at}.{key}") }
}

/// One resolution pass: conditions are evaluated once each and remembered.
pub(crate) struct Resolver<'a> {
    template: &'a Template,
    ctx: &'a LocalContext,
    conditions: RefCell<BTreeMap<String, bool>>,
    evaluating: RefCell<Vec<String>>,
    /// Parameter values, checked once (an AllowedPattern is a regex to compile).
    parameters: RefCell<BTreeMap<String, Value>>,
}

impl<'a> Resolver<'a> {
    pub(crate) fn new(template: &'a Template, ctx: &'a LocalContext) -> Self {
        Self {
            template,
            ctx,
            conditions: RefCell::new(BTreeMap::new()),
            evaluating: RefCell::new(Vec::new()),
            parameters: RefCell::new(BTreeMap::new()),
        }
    }

    /// Resolves every intrinsic in `value`; `None` means the whole value was `AWS::NoValue`.
    pub(crate) fn value(&self, value: &Value, at: &str) -> Resolved {
        match value {
            Value::Object(map) => {
                if map.len() == 1 {
                    let (key, arg) = map.iter().next().expect("one entry");
                    if key == "Ref" || key.starts_with("Fn::") {
                        return self.intrinsic(key, arg, &child(at, key));
                    }
                }
                let mut out = Map::new();
                for (key, item) in map {
                    if let Some(v) = self.value(item, &child(at, key))? {
                        out.insert(key.clone(), v);
                    }
                }
                Ok(Some(Value::Object(out)))
            }
            Value::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    if let Some(v) = self.value(item, &format!("{at}[{i}]"))? {
                        out.push(v);
                    }
                }
                Ok(Some(Value::Array(out)))
            }
            other => Ok(Some(other.clone())),
        }
    }

    /// A value that must exist (`AWS::NoValue` is an error here).
    fn need(&self, value: &Value, at: &str) -> Result<Value, TemplateError> {
        self.value(value, at)?.ok_or_else(|| error(at, "AWS::NoValue is not allowed here"))
    }

    fn need_string(&self, value: &Value, at: &str) -> Result<String, TemplateError> {
        let v = self.need(value, at)?;
        scalar_string(&v).ok_or_else(|| error(at, format!("expected a string, got {v}")))
    }

    fn args<'v>(
        &self,
        arg: &'v Value,
        at: &str,
        name: &str,
        n: usize,
    ) -> Result<&'v [Value], TemplateError> {
        match arg {
            Value::Array(items) if items.len() == n => Ok(items),
            _ => Err(error(at, format!("{name} takes a list of {n} arguments, got {arg}"))),
        }
    }

    fn intrinsic(&self, name: &str, arg: &Value, at: &str) -> Resolved {
        match name {
            "Ref" => {
                let Value::String(target) = arg else {
                    return Err(error(
                        at,
                        format!("Ref takes a logical id or parameter name, got {arg}"),
                    ));
                };
                self.reference(target, at)
            }
            "Fn::GetAtt" => {
                let (id, attribute) = match arg {
                    Value::String(s) => match s.split_once('.') {
                        Some((id, attribute)) => (id.to_string(), attribute.to_string()),
                        None => {
                            return Err(error(
                                at,
                                format!("Fn::GetAtt '{s}': expected Resource.Attribute"),
                            ));
                        }
                    },
                    Value::Array(items) if items.len() == 2 => {
                        let Value::String(id) = &items[0] else {
                            return Err(error(
                                at,
                                format!(
                                    "Fn::GetAtt: logical id must be a string, got {}",
                                    items[0]
                                ),
                            ));
                        };
                        (id.clone(), self.need_string(&items[1], &format!("{at}[1]"))?)
                    }
                    _ => {
                        return Err(error(
                            at,
                            format!("Fn::GetAtt takes [LogicalId, Attribute], got {arg}"),
                        ));
                    }
                };
                self.get_att(&id, &attribute, at).map(Some)
            }
            "Fn::Sub" => self.sub(arg, at).map(|s| Some(Value::String(s))),
            "Fn::Join" => {
                let items = self.args(arg, at, "Fn::Join", 2)?;
                let delimiter = self.need_string(&items[0], &format!("{at}[0]"))?;
                let list_at = format!("{at}[1]");
                let list = self.need(&items[1], &list_at)?;
                let Value::Array(list) = list else {
                    return Err(error(&list_at, format!("Fn::Join needs a list, got {list}")));
                };
                let parts = list
                    .iter()
                    .map(|v| {
                        scalar_string(v).ok_or_else(|| {
                            error(&list_at, format!("Fn::Join item {v} is not a string"))
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Some(Value::String(parts.join(&delimiter))))
            }
            "Fn::Select" => {
                let items = self.args(arg, at, "Fn::Select", 2)?;
                let index_at = format!("{at}[0]");
                let index = self.need_string(&items[0], &index_at)?;
                let index: usize = index.parse().map_err(|_| {
                    error(
                        &index_at,
                        format!("Fn::Select index '{index}' is not a non-negative integer"),
                    )
                })?;
                let list_at = format!("{at}[1]");
                let list = self.need(&items[1], &list_at)?;
                let Value::Array(list) = list else {
                    return Err(error(&list_at, format!("Fn::Select needs a list, got {list}")));
                };
                let len = list.len();
                list.into_iter().nth(index).map(Some).ok_or_else(|| {
                    error(
                        at,
                        format!("Fn::Select index {index} is out of range for a list of {len}"),
                    )
                })
            }
            "Fn::Split" => {
                let items = self.args(arg, at, "Fn::Split", 2)?;
                let delimiter = self.need_string(&items[0], &format!("{at}[0]"))?;
                if delimiter.is_empty() {
                    return Err(error(at, "Fn::Split delimiter is empty"));
                }
                let source = self.need_string(&items[1], &format!("{at}[1]"))?;
                Ok(Some(Value::Array(
                    source
                        .split(delimiter.as_str())
                        .map(|s| Value::String(s.to_string()))
                        .collect(),
                )))
            }
            "Fn::If" => {
                let items = self.args(arg, at, "Fn::If", 3)?;
                let Value::String(condition) = &items[0] else {
                    return Err(error(
                        at,
                        format!("Fn::If needs a condition name first, got {}", items[0]),
                    ));
                };
                if self.condition(condition, at)? {
                    self.value(&items[1], &format!("{at}[1]"))
                } else {
                    self.value(&items[2], &format!("{at}[2]"))
                }
            }
            "Fn::Equals" | "Fn::Not" | "Fn::And" | "Fn::Or" => {
                let mut map = Map::new();
                map.insert(name.to_string(), arg.clone());
                self.condition_expr(&Value::Object(map), at).map(|b| Some(Value::Bool(b)))
            }
            "Fn::FindInMap" => self.find_in_map(arg, at).map(Some),
            "Fn::GetAZs" => {
                let region = self.need_string(arg, at)?;
                let region = if region.is_empty() { self.ctx.region.clone() } else { region };
                Ok(Some(Value::Array(
                    ["a", "b", "c"].iter().map(|z| Value::String(format!("{region}{z}"))).collect(),
                )))
            }
            "Fn::Base64" => {
                let text = self.need_string(arg, at)?;
                Ok(Some(Value::String(base64::engine::general_purpose::STANDARD.encode(text))))
            }
            "Fn::ImportValue" => {
                let export = self.need_string(arg, at)?;
                self.ctx.exports.get(&export).cloned().map(Some).ok_or_else(|| {
                    error(
                        at,
                        format!("Fn::ImportValue '{export}': the local context has no such export"),
                    )
                })
            }
            "Fn::Cidr" => {
                let items = self.args(arg, at, "Fn::Cidr", 3)?;
                let block = self.need_string(&items[0], &format!("{at}[0]"))?;
                let count = self.need_string(&items[1], &format!("{at}[1]"))?;
                let bits = self.need_string(&items[2], &format!("{at}[2]"))?;
                cidr(&block, &count, &bits).map(Some).map_err(|m| error(at, m))
            }
            other => Err(error(
                at,
                format!("intrinsic function {other} is not supported by the local resolver"),
            )),
        }
    }

    fn reference(&self, name: &str, at: &str) -> Resolved {
        let ctx = self.ctx;
        let pseudo = match name {
            "AWS::Region" => Some(Value::String(ctx.region.clone())),
            "AWS::AccountId" => Some(Value::String(ctx.account_id.clone())),
            "AWS::StackName" => Some(Value::String(ctx.stack_name.clone())),
            "AWS::StackId" => Some(Value::String(ctx.stack_id())),
            "AWS::Partition" => Some(Value::String("aws".to_string())),
            "AWS::URLSuffix" => Some(Value::String("amazonaws.com".to_string())),
            "AWS::NotificationARNs" => Some(Value::Array(Vec::new())),
            "AWS::NoValue" => return Ok(None),
            _ => None,
        };
        if let Some(v) = pseudo {
            return Ok(Some(v));
        }
        if name.starts_with("AWS::") {
            return Err(error(at, format!("unknown pseudo parameter {name}")));
        }
        if self.template.parameter_declaration(name).is_some() {
            if let Some(v) = self.parameters.borrow().get(name) {
                return Ok(Some(v.clone()));
            }
            let v = self.template.parameter_value(name, ctx)?;
            self.parameters.borrow_mut().insert(name.to_string(), v.clone());
            return Ok(Some(v));
        }
        let resource = self.existing_resource(name, at)?;
        Ok(Some(local::ref_value(ctx, name, &resource.resource_type)))
    }

    fn get_att(&self, id: &str, attribute: &str, at: &str) -> Result<Value, TemplateError> {
        let resource = self.existing_resource(id, at)?;
        Ok(local::get_att(self.ctx, id, &resource.resource_type, attribute))
    }

    fn existing_resource(&self, id: &str, at: &str) -> Result<&'a super::Resource, TemplateError> {
        let resource = self.template.resource(id).ok_or_else(|| {
            error(at, format!("unknown logical id '{id}' (neither a parameter nor a resource)"))
        })?;
        if let Some(condition) = &resource.condition
            && !self.condition(condition, at)?
        {
            return Err(error(
                at,
                format!("resource {id} is not created locally: its condition {condition} is false"),
            ));
        }
        Ok(resource)
    }

    /// `Fn::Sub` in both forms. `${Name}` is a Ref, `${Resource.Attribute}` a GetAtt,
    /// `${!Text}` the literal `${Text}`.
    fn sub(&self, arg: &Value, at: &str) -> Result<String, TemplateError> {
        let (text, vars) = match arg {
            Value::String(s) => (s.clone(), BTreeMap::new()),
            Value::Array(items) if items.len() == 2 => {
                let text = self.need_string(&items[0], &format!("{at}[0]"))?;
                let Value::Object(map) = &items[1] else {
                    return Err(error(
                        at,
                        format!("Fn::Sub variables must be a map, got {}", items[1]),
                    ));
                };
                let mut vars = BTreeMap::new();
                for (k, v) in map {
                    let v_at = format!("{at}[1].{k}");
                    let v = self.need(v, &v_at)?;
                    let s = scalar_string(&v).ok_or_else(|| {
                        error(&v_at, format!("Fn::Sub variable {k} is not a string: {v}"))
                    })?;
                    vars.insert(k.clone(), s);
                }
                (text, vars)
            }
            _ => {
                return Err(error(
                    at,
                    format!("Fn::Sub takes a string or [string, variables], got {arg}"),
                ));
            }
        };
        let mut out = String::with_capacity(text.len());
        let mut rest = text.as_str();
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after
                .find('}')
                .ok_or_else(|| error(at, format!("Fn::Sub: unclosed '${{' in '{text}'")))?;
            let name = &after[..end];
            if let Some(literal) = name.strip_prefix('!') {
                out.push_str("${");
                out.push_str(literal);
                out.push('}');
            } else if let Some(v) = vars.get(name) {
                out.push_str(v);
            } else {
                let v = if let Some((id, attribute)) = name.split_once('.') {
                    self.get_att(id, attribute, at)?
                } else {
                    self.reference(name, at)?
                        .ok_or_else(|| error(at, format!("Fn::Sub: ${{{name}}} is AWS::NoValue")))?
                };
                let s = scalar_string(&v).ok_or_else(|| {
                    error(at, format!("Fn::Sub: ${{{name}}} is not a string: {v}"))
                })?;
                out.push_str(&s);
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }

    fn find_in_map(&self, arg: &Value, at: &str) -> Result<Value, TemplateError> {
        let items = match arg {
            Value::Array(items) if items.len() == 3 || items.len() == 4 => items,
            _ => {
                return Err(error(
                    at,
                    format!(
                        "Fn::FindInMap takes [MapName, TopLevelKey, SecondLevelKey], got {arg}"
                    ),
                ));
            }
        };
        let default = match items.get(3) {
            Some(Value::Object(m)) if m.len() == 1 && m.contains_key("DefaultValue") => {
                Some(self.need(&m["DefaultValue"], &format!("{at}[3].DefaultValue"))?)
            }
            Some(other) => {
                return Err(error(
                    at,
                    format!(
                        "Fn::FindInMap fourth argument must be {{DefaultValue: ...}}, got {other}"
                    ),
                ));
            }
            None => None,
        };
        let map_name = self.need_string(&items[0], &format!("{at}[0]"))?;
        let top = self.need_string(&items[1], &format!("{at}[1]"))?;
        let second = self.need_string(&items[2], &format!("{at}[2]"))?;
        let found = self
            .template
            .body
            .get("Mappings")
            .and_then(|m| m.get(&map_name))
            .ok_or_else(|| error(at, format!("Fn::FindInMap: no mapping named {map_name}")))?
            .get(&top)
            .and_then(|t| t.get(&second));
        match (found, default) {
            (Some(v), _) => Ok(v.clone()),
            (None, Some(d)) => Ok(d),
            (None, None) => {
                Err(error(at, format!("Fn::FindInMap: mapping {map_name} has no {top}.{second}")))
            }
        }
    }

    /// Evaluates a named condition of the template's `Conditions`, once.
    pub(crate) fn condition(&self, name: &str, at: &str) -> Result<bool, TemplateError> {
        if let Some(b) = self.conditions.borrow().get(name) {
            return Ok(*b);
        }
        if self.evaluating.borrow().iter().any(|n| n == name) {
            return Err(error(at, format!("condition {name} refers to itself")));
        }
        let expr = self
            .template
            .body
            .get("Conditions")
            .and_then(|c| c.get(name))
            .ok_or_else(|| error(at, format!("unknown condition '{name}'")))?;
        self.evaluating.borrow_mut().push(name.to_string());
        let result = self.condition_expr(expr, &format!("Conditions.{name}"));
        self.evaluating.borrow_mut().pop();
        let b = result?;
        self.conditions.borrow_mut().insert(name.to_string(), b);
        Ok(b)
    }

    fn condition_expr(&self, expr: &Value, at: &str) -> Result<bool, TemplateError> {
        let Value::Object(map) = expr else {
            return Err(error(at, format!("expected a condition function, got {expr}")));
        };
        let Some((name, arg)) = map.iter().next().filter(|_| map.len() == 1) else {
            return Err(error(at, format!("expected a condition function, got {expr}")));
        };
        let at = child(at, name);
        match name.as_str() {
            "Condition" => {
                let Value::String(other) = arg else {
                    return Err(error(&at, format!("Condition takes a condition name, got {arg}")));
                };
                self.condition(other, &at)
            }
            "Fn::Equals" => {
                let items = self.args(arg, &at, "Fn::Equals", 2)?;
                let a = self.need(&items[0], &format!("{at}[0]"))?;
                let b = self.need(&items[1], &format!("{at}[1]"))?;
                // CloudFormation compares parameter values as strings: `!Ref Count` ("1")
                // equals the literal 1.
                Ok(as_strings(&a) == as_strings(&b))
            }
            "Fn::Not" => {
                let items = self.args(arg, &at, "Fn::Not", 1)?;
                Ok(!self.condition_expr(&items[0], &format!("{at}[0]"))?)
            }
            "Fn::And" | "Fn::Or" => {
                let items = match arg {
                    Value::Array(items) if (2..=10).contains(&items.len()) => items,
                    _ => {
                        return Err(error(
                            &at,
                            format!("{name} takes 2 to 10 conditions, got {arg}"),
                        ));
                    }
                };
                let mut values = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    values.push(self.condition_expr(item, &format!("{at}[{i}]"))?);
                }
                Ok(if name == "Fn::And" {
                    values.iter().all(|b| *b)
                } else {
                    values.iter().any(|b| *b)
                })
            }
            other => Err(error(&at, format!("{other} is not a condition function"))),
        }
    }
}

/// A scalar as CloudFormation's string-typed world sees it.
pub(crate) fn scalar_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn as_strings(v: &Value) -> Value {
    match v {
        Value::Array(items) => Value::Array(items.iter().map(as_strings).collect()),
        Value::Object(map) => {
            Value::Object(map.iter().map(|(k, v)| (k.clone(), as_strings(v))).collect())
        }
        other => scalar_string(other).map(Value::String).unwrap_or(Value::Null),
    }
}

/// `Fn::Cidr` for IPv4: `count` consecutive subnets of `bits` host bits from the block's start.
fn cidr(block: &str, count: &str, bits: &str) -> Result<Value, String> {
    let (addr, prefix) = block
        .split_once('/')
        .ok_or_else(|| format!("Fn::Cidr: '{block}' is not an IPv4 CIDR block"))?;
    let addr: std::net::Ipv4Addr = addr.parse().map_err(|_| {
        format!("Fn::Cidr: '{block}' is not an IPv4 CIDR block (IPv6 is not supported locally)")
    })?;
    let prefix: u32 = prefix
        .parse()
        .ok()
        .filter(|p| *p <= 32)
        .ok_or_else(|| format!("Fn::Cidr: bad prefix in '{block}'"))?;
    let count: u32 = count
        .parse()
        .ok()
        .filter(|c| (1..=256).contains(c))
        .ok_or_else(|| format!("Fn::Cidr: count '{count}' must be 1 to 256"))?;
    let bits: u32 = bits
        .parse()
        .ok()
        .filter(|b| (1..=32).contains(b))
        .ok_or_else(|| format!("Fn::Cidr: cidrBits '{bits}' must be 1 to 32 for IPv4"))?;
    let sub_prefix = 32 - bits;
    if sub_prefix < prefix {
        return Err(format!("Fn::Cidr: /{sub_prefix} subnets do not fit in {block}"));
    }
    let available = 1u64 << (sub_prefix - prefix);
    if u64::from(count) > available {
        return Err(format!(
            "Fn::Cidr: {block} holds only {available} /{sub_prefix} subnets, {count} asked"
        ));
    }
    let mask = if prefix == 0 { 0 } else { u32::MAX << (32 - prefix) };
    let base = u32::from(addr) & mask;
    let size = 1u64 << bits;
    Ok(Value::Array(
        (0..u64::from(count))
            .map(|i| {
                let start = (u64::from(base) + i * size) as u32;
                Value::String(format!("{}/{sub_prefix}", std::net::Ipv4Addr::from(start)))
            })
            .collect(),
    ))
}
