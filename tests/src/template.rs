//! infra/template.yaml read as CloudFormation's JSON long form, for the
//! tests that hold the template to the code (`infra_template.rs`) and to
//! the calls the functions make (`iam_calls.rs`). Short-form tags (`!Ref`,
//! `!GetAtt`, `!Sub`, …) are read generically into their long form.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

/// The workspace root.
pub const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

pub fn read(rel: &str) -> String {
    std::fs::read_to_string(format!("{ROOT}/{rel}")).unwrap_or_else(|e| panic!("reading {rel}: {e}"))
}

/// A YAML value as CloudFormation's JSON long form: `!Ref X` becomes
/// `{"Ref": "X"}`, `!GetAtt A.B` `{"Fn::GetAtt": ["A", "B"]}`, any other
/// `!Name v` `{"Fn::Name": v}` (`!Condition` stays `Condition`).
pub fn to_json(v: yaml_serde::Value) -> Value {
    use yaml_serde::Value as Y;
    match v {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                json!(i)
            } else if let Some(u) = n.as_u64() {
                json!(u)
            } else {
                json!(n.as_f64().expect("a YAML number is i64, u64 or f64"))
            }
        }
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => Value::Array(items.into_iter().map(to_json).collect()),
        Y::Mapping(m) => {
            let mut out = Map::new();
            for (k, v) in m {
                let key = match k {
                    Y::String(s) => s,
                    other => yaml_serde::to_string(&other).expect("key").trim().to_owned(),
                };
                out.insert(key, to_json(v));
            }
            Value::Object(out)
        }
        Y::Tagged(t) => {
            let name = t.tag.to_string().trim_start_matches('!').to_owned();
            let mut inner = to_json(t.value);
            if name == "GetAtt" {
                if let Value::String(s) = &inner {
                    let (res, attr) = s.split_once('.').expect("!GetAtt Resource.Attribute");
                    inner = json!([res, attr]);
                }
            }
            let key = match name.as_str() {
                "Ref" | "Condition" => name,
                _ => format!("Fn::{name}"),
            };
            json!({ key: inner })
        }
    }
}

pub fn parse_template(text: &str) -> Value {
    to_json(yaml_serde::from_str(text).expect("infra/template.yaml is YAML"))
}

pub struct Template {
    pub root: Value,
}

impl Template {
    pub fn load() -> Self {
        Self::from_text(&read("infra/template.yaml"))
    }

    pub fn from_text(text: &str) -> Self {
        Self {
            root: parse_template(text),
        }
    }

    pub fn section(&self, name: &str) -> &Map<String, Value> {
        self.root[name]
            .as_object()
            .unwrap_or_else(|| panic!("template has no {name} section"))
    }

    pub fn resources(&self) -> &Map<String, Value> {
        self.section("Resources")
    }

    pub fn resource(&self, id: &str) -> &Value {
        self.resources()
            .get(id)
            .unwrap_or_else(|| panic!("template has no resource {id}"))
    }

    pub fn props(&self, id: &str) -> &Value {
        &self.resource(id)["Properties"]
    }

    pub fn of_type<'a>(&'a self, ty: &'a str) -> impl Iterator<Item = (&'a String, &'a Value)> + 'a {
        self.resources().iter().filter(move |(_, r)| r["Type"] == ty)
    }

    pub fn global(&self, key: &str) -> &Value {
        &self.root["Globals"]["Function"][key]
    }

    /// A function property, falling back to Globals.Function.
    pub fn fn_prop(&self, id: &str, key: &str) -> &Value {
        match &self.props(id)[key] {
            Value::Null => self.global(key),
            v => v,
        }
    }

    /// A function's environment: Globals merged with its own (its own wins).
    pub fn env(&self, id: &str) -> BTreeMap<String, Value> {
        let mut vars = BTreeMap::new();
        for source in [
            &self.global("Environment")["Variables"],
            &self.props(id)["Environment"]["Variables"],
        ] {
            if let Some(m) = source.as_object() {
                vars.extend(m.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
        }
        vars
    }

    /// A literal, or a `!Ref` to a parameter resolved to its default.
    pub fn resolve_default(&self, v: &Value) -> Value {
        if let Some(name) = v["Ref"].as_str() {
            if let Some(p) = self.section("Parameters").get(name) {
                return p["Default"].clone();
            }
        }
        v.clone()
    }

    pub fn parameter(&self, name: &str) -> &Value {
        self.section("Parameters")
            .get(name)
            .unwrap_or_else(|| panic!("template has no parameter {name}"))
    }
}

pub fn get_att(id: &str, attr: &str) -> Value {
    json!({"Fn::GetAtt": [id, attr]})
}

pub fn reference(id: &str) -> Value {
    json!({ "Ref": id })
}

/// One value or a list of them, as strings.
pub fn one_or_many(v: &Value) -> Vec<Value> {
    match v {
        Value::Array(items) => items.clone(),
        Value::Null => Vec::new(),
        other => vec![other.clone()],
    }
}

/// The `${Name}` / `${Name.Attr}` placeholders of a Sub string (`${!x}` is a literal).
pub fn sub_names(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        let end = after.find('}').expect("unclosed ${ in a Sub string");
        let name = &after[..end];
        if !name.starts_with('!') {
            out.push(name.to_owned());
        }
        rest = &after[end + 1..];
    }
    out
}
