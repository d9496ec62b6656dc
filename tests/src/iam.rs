//! The IAM check of issue 14: what each function's role allows, read from
//! infra/template.yaml, against what the function's code really calls.
//!
//! A test gives each function its own access key id (`fn-<function>-…`,
//! [`function_sdk`]); the emulator records every call made with such a key
//! (scripts/moto_calls.py) and [`recorded_calls`] fetches them. [`Names`]
//! turns a recorded call into the IAM authorizations it needs, in the
//! template's names (`dynamodb:Query` on `RequestsTable/index/queue-index`,
//! `s3:PutObject` on `DataBucket/bodies/*`), and [`check`] compares them
//! with [`grants_of`] the function.

use std::collections::BTreeSet;
use std::fmt;

use aws_config::Region;
use aws_sdk_dynamodb::config::Credentials;
use serde_json::{json, Value};

use crate::emulator_endpoint;
use crate::template::{one_or_many, reference, sub_names, Template};

/// (IAM action, resource in the template's logical names), e.g.
/// (`s3:GetObject`, `DataBucket/responses/*`).
pub type Grant = (String, String);

/// A policy resource reduced to the template's logical names:
/// `!GetAtt T.Arn` -> `T`, `!Sub ${T.Arn}/index/x` -> `T/index/x`.
pub fn resource_name(v: &Value) -> String {
    if let Some(id) = v["Ref"].as_str() {
        return id.to_owned();
    }
    if v["Fn::GetAtt"][1] == "Arn" {
        return v["Fn::GetAtt"][0].as_str().unwrap().to_owned();
    }
    // A table's stream: `!GetAtt T.StreamArn` -> `T/stream`.
    if v["Fn::GetAtt"][1] == "StreamArn" {
        return format!("{}/stream", v["Fn::GetAtt"][0].as_str().unwrap());
    }
    if let Some(s) = v["Fn::Sub"].as_str() {
        let mut out = s.to_owned();
        for name in sub_names(s) {
            let short = name.strip_suffix(".Arn").unwrap_or(&name);
            out = out.replace(&format!("${{{name}}}"), short);
        }
        return out;
    }
    match v.as_str() {
        Some(s) => s.to_owned(),
        None => panic!("unexpected policy resource {v}"),
    }
}

/// (action, resource) pairs a function's role allows, from the role's
/// inline policies and every AWS::IAM::Policy attached to it.
pub fn grants_of(t: &Template, function: &str) -> BTreeSet<Grant> {
    let role = t.props(function)["Role"]["Fn::GetAtt"][0]
        .as_str()
        .unwrap_or_else(|| panic!("{function}: Role is !GetAtt SomeRole.Arn"))
        .to_owned();
    let role_props = t.props(&role);
    assert_eq!(t.resource(&role)["Type"], "AWS::IAM::Role");
    assert!(
        role_props["ManagedPolicyArns"].is_null() && role_props["PermissionsBoundary"].is_null(),
        "{role}: every grant must be visible in this template"
    );
    assert_eq!(
        role_props["AssumeRolePolicyDocument"]["Statement"],
        json!([{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]),
        "{role}"
    );
    let mut docs: Vec<Value> = one_or_many(&role_props["Policies"])
        .into_iter()
        .map(|p| p["PolicyDocument"].clone())
        .collect();
    for (_, p) in t.of_type("AWS::IAM::Policy") {
        if one_or_many(&p["Properties"]["Roles"]).contains(&reference(&role)) {
            docs.push(p["Properties"]["PolicyDocument"].clone());
        }
    }
    let mut grants = BTreeSet::new();
    for d in docs {
        for s in one_or_many(&d["Statement"]) {
            assert_eq!(s["Effect"], "Allow", "{role}: {s}");
            assert!(
                s["Condition"].is_null(),
                "{role}: conditions are not modelled here: {s}"
            );
            for a in one_or_many(&s["Action"]) {
                for r in one_or_many(&s["Resource"]) {
                    grants.insert((a.as_str().unwrap().to_owned(), resource_name(&r)));
                }
            }
        }
    }
    grants
}

/// SDK configuration for one function: the emulator, and credentials whose
/// access key id the emulator records calls under.
pub async fn function_sdk(access_key_id: &str) -> aws_config::SdkConfig {
    assert!(
        access_key_id.starts_with("fn-"),
        "the emulator records only access key ids starting with fn-"
    );
    batchq_core::aws::config_loader()
        .region(Region::new("us-east-1"))
        .endpoint_url(emulator_endpoint())
        .credentials_provider(Credentials::new(access_key_id, "secret", None, None, "iam-check"))
        .load()
        .await
}

/// One call the emulator recorded: what was called, on what, and how it
/// was answered (see scripts/moto_calls.py).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Call {
    pub service: String,
    pub operation: String,
    /// A table name, `bucket/<first key segment>/`, `bucket`, a secret id.
    pub resource: String,
    /// The index of a Query or Scan on one.
    pub index: Option<String>,
    pub status: u16,
}

impl fmt::Display for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.service, self.operation, self.resource)?;
        if let Some(i) = &self.index {
            write!(f, " index {i}")?;
        }
        write!(f, " ({})", self.status)
    }
}

/// Every distinct call the emulator recorded for `access_key_id`.
pub async fn recorded_calls(access_key_id: &str) -> Vec<Call> {
    // Key ids are letters, digits and `-`: nothing to escape in the query.
    assert!(access_key_id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
    let url = format!("{}/_batchq/calls?key={access_key_id}", emulator_endpoint());
    let answer: Value = reqwest::Client::new()
        .get(&url)
        .send()
        .await
        .expect("the emulator answers /_batchq/calls")
        .error_for_status()
        .expect("/_batchq/calls: the emulator records calls (scripts/moto_calls.py)")
        .json()
        .await
        .expect("/_batchq/calls answers JSON");
    answer["calls"]
        .as_array()
        .unwrap_or_else(|| panic!("/_batchq/calls: no calls list in {answer}"))
        .iter()
        .map(|c| Call {
            service: c["service"].as_str().expect("service").to_owned(),
            operation: c["operation"].as_str().expect("operation").to_owned(),
            resource: c["resource"].as_str().expect("resource").to_owned(),
            index: c["index"].as_str().map(str::to_owned),
            status: c["status"].as_u64().expect("status") as u16,
        })
        .collect()
}

/// The physical names of a test's resources, each standing for the
/// template's resource of the same role.
#[derive(Debug, Clone)]
pub struct Names {
    pub requests_table: String,
    pub jobs_table: String,
    /// `BATCHQ_WEBHOOKS_TABLE`.
    pub webhooks_table: Option<String>,
    pub bucket: String,
    pub secret_id: String,
    /// The secret holding OpenAI's webhook signing secret (the template's
    /// `OpenAiWebhookSecretArn` parameter).
    pub webhook_secret_id: String,
    /// The poll function's name, as the enqueue function invokes it.
    pub poll_function: String,
}

impl Names {
    fn table(&self, name: &str) -> Option<&'static str> {
        if name == self.requests_table {
            Some("RequestsTable")
        } else if name == self.jobs_table {
            Some("JobsTable")
        } else if self.webhooks_table.as_deref() == Some(name) {
            Some("WebhooksTable")
        } else {
            None
        }
    }

    /// The IAM authorizations `call` needs, in the template's names; `Err`
    /// says why this check cannot tell (a call it does not know is a finding
    /// too: the mapping below has to learn it).
    pub fn needs(&self, call: &Call) -> Result<Vec<Grant>, String> {
        let grant = |action: &str, resource: String| (action.to_owned(), resource);
        match call.service.as_str() {
            "dynamodb" => {
                let table = self
                    .table(&call.resource)
                    .ok_or_else(|| format!("{call}: not one of batchq's tables"))?;
                let resource = match &call.index {
                    Some(index) => format!("{table}/index/{index}"),
                    None => table.to_owned(),
                };
                match call.operation.as_str() {
                    // IAM authorizes each action of a transaction as its own
                    // operation (recorded as PutItem, UpdateItem, … on its
                    // table); the transaction itself is no action.
                    "TransactWriteItems" | "TransactGetItems" => Ok(Vec::new()),
                    op @ ("GetItem" | "PutItem" | "UpdateItem" | "DeleteItem" | "ConditionCheckItem"
                    | "BatchGetItem" | "BatchWriteItem" | "Query" | "Scan") => {
                        Ok(vec![grant(&format!("dynamodb:{op}"), resource)])
                    }
                    _ => Err(format!("{call}: no IAM action known for this operation")),
                }
            }
            "s3" => {
                let rest = call
                    .resource
                    .strip_prefix(self.bucket.as_str())
                    .ok_or_else(|| format!("{call}: not batchq's bucket"))?;
                let object = match rest.strip_prefix('/') {
                    // `bucket/bodies/`: some key under bodies/.
                    Some(prefix) if prefix.ends_with('/') => Some(format!("DataBucket/{prefix}*")),
                    Some(key) => Some(format!("DataBucket/{key}")),
                    None if rest.is_empty() => None,
                    None => return Err(format!("{call}: not batchq's bucket")),
                };
                let on_object = |action: &str| -> Result<Vec<Grant>, String> {
                    let o = object
                        .clone()
                        .ok_or_else(|| format!("{call}: an object operation without a key"))?;
                    Ok(vec![grant(action, o)])
                };
                match call.operation.as_str() {
                    "GetObject" | "HeadObject" => {
                        let mut needs = on_object("s3:GetObject")?;
                        // S3 answers a missing key with 404 only to a caller
                        // allowed to list the bucket; others get 403.
                        if call.status == 404 {
                            needs.push(grant("s3:ListBucket", "DataBucket".into()));
                        }
                        Ok(needs)
                    }
                    "PutObject" | "CreateMultipartUpload" | "UploadPart" | "CompleteMultipartUpload" => {
                        on_object("s3:PutObject")
                    }
                    "AbortMultipartUpload" => on_object("s3:AbortMultipartUpload"),
                    "DeleteObject" => on_object("s3:DeleteObject"),
                    "ListParts" => on_object("s3:ListMultipartUploadParts"),
                    "ListObjects" | "ListObjectsV2" | "HeadBucket" if object.is_none() => {
                        Ok(vec![grant("s3:ListBucket", "DataBucket".into())])
                    }
                    _ => Err(format!("{call}: no IAM action known for this operation")),
                }
            }
            "secretsmanager" if call.resource == self.secret_id => match call.operation.as_str() {
                "GetSecretValue" => Ok(vec![grant("secretsmanager:GetSecretValue", "ProviderKeySecret".into())]),
                _ => Err(format!("{call}: no IAM action known for this operation")),
            },
            "secretsmanager" if call.resource == self.webhook_secret_id => match call.operation.as_str() {
                "GetSecretValue" => Ok(vec![grant(
                    "secretsmanager:GetSecretValue",
                    "OpenAiWebhookSecretArn".into(),
                )]),
                _ => Err(format!("{call}: no IAM action known for this operation")),
            },
            // Recorded by the Invoke stand-in (`crate::lambda`), not the emulator.
            "lambda" if call.resource == self.poll_function => match call.operation.as_str() {
                "Invoke" => Ok(vec![grant("lambda:InvokeFunction", "PollFunction".into())]),
                _ => Err(format!("{call}: no IAM action known for this operation")),
            },
            _ => Err(format!("{call}: not a call to one of batchq's resources")),
        }
    }
}

/// Whether `pattern` (an IAM action or resource, `*` at its end matching
/// anything) matches `value`.
fn matches(pattern: &str, value: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => value.starts_with(prefix),
        None => pattern == value,
    }
}

/// Whether `grant` allows `need`.
pub fn allows(grant: &Grant, need: &Grant) -> bool {
    matches(&grant.0, &need.0) && matches(&grant.1, &need.1)
}

/// A grant no recorded call can show used, and why it is there all the same.
#[derive(Debug, Clone)]
pub struct Unrecorded {
    pub grant: Grant,
    pub why: String,
}

/// What the recorded calls of one function say about its role.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Findings {
    /// Calls the role does not allow: "<call> needs <action> on <resource>".
    pub denied: Vec<String>,
    /// Grants no call used (and not listed as unrecorded).
    pub unused: Vec<Grant>,
    /// Calls this check cannot map to IAM.
    pub unknown: Vec<String>,
    /// Unrecorded entries that are no grant of the role, or that a call did
    /// use after all: the list is out of date.
    pub stale: Vec<String>,
}

impl Findings {
    pub fn is_clean(&self) -> bool {
        *self == Self::default()
    }
}

impl fmt::Display for Findings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.denied {
            writeln!(f, "  denied: {d}")?;
        }
        for (action, resource) in &self.unused {
            writeln!(f, "  unused grant: {action} on {resource}")?;
        }
        for u in &self.unknown {
            writeln!(f, "  unknown call: {u}")?;
        }
        for s in &self.stale {
            writeln!(f, "  stale exception: {s}")?;
        }
        Ok(())
    }
}

/// Compares a role's `grants` with the `calls` its function made: every
/// call must be allowed, and every grant used by a call or listed in
/// `unrecorded` with its reason.
pub fn check(grants: &BTreeSet<Grant>, calls: &[Call], names: &Names, unrecorded: &[Unrecorded]) -> Findings {
    let mut findings = Findings::default();
    let mut used: BTreeSet<&Grant> = BTreeSet::new();
    for call in calls {
        let needs = match names.needs(call) {
            Ok(n) => n,
            Err(e) => {
                findings.unknown.push(e);
                continue;
            }
        };
        for need in needs {
            let allowing: Vec<&Grant> = grants.iter().filter(|g| allows(g, &need)).collect();
            if allowing.is_empty() {
                findings.denied.push(format!("{call} needs {} on {}", need.0, need.1));
            }
            used.extend(allowing);
        }
    }
    for u in unrecorded {
        if !grants.contains(&u.grant) {
            findings.stale.push(format!(
                "{} on {} is no grant of this role (listed because: {})",
                u.grant.0, u.grant.1, u.why
            ));
        } else if used.contains(&u.grant) {
            findings.stale.push(format!(
                "{} on {} is listed as never recorded, but a call used it (listed because: {})",
                u.grant.0, u.grant.1, u.why
            ));
        }
    }
    findings.unused = grants
        .iter()
        .filter(|g| !used.contains(g) && !unrecorded.iter().any(|u| &u.grant == *g))
        .cloned()
        .collect();
    findings.denied.sort();
    findings.denied.dedup();
    findings
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Names {
        Names {
            requests_table: "requests-1".into(),
            jobs_table: "jobs-1".into(),
            webhooks_table: None,
            bucket: "bucket-1".into(),
            secret_id: "arn:aws:secretsmanager:us-east-1:123456789012:secret:key-AbCdEf".into(),
            webhook_secret_id: "arn:aws:secretsmanager:us-east-1:123456789012:secret:whsec-AbCdEf".into(),
            poll_function: "stack-poll".into(),
        }
    }

    fn call(service: &str, operation: &str, resource: &str, index: Option<&str>, status: u16) -> Call {
        Call {
            service: service.into(),
            operation: operation.into(),
            resource: resource.into(),
            index: index.map(str::to_owned),
            status,
        }
    }

    fn needs(c: Call) -> Vec<(String, String)> {
        names().needs(&c).unwrap_or_else(|e| panic!("{e}"))
    }

    fn g(action: &str, resource: &str) -> Grant {
        (action.into(), resource.into())
    }

    #[test]
    fn calls_are_read_in_the_templates_names() {
        assert_eq!(
            needs(call("dynamodb", "Query", "requests-1", Some("queue-index"), 200)),
            [g("dynamodb:Query", "RequestsTable/index/queue-index")]
        );
        assert_eq!(
            needs(call("dynamodb", "UpdateItem", "jobs-1", None, 400)),
            [g("dynamodb:UpdateItem", "JobsTable")],
            "a cancelled transaction's actions were authorized all the same"
        );
        assert_eq!(needs(call("dynamodb", "TransactWriteItems", "jobs-1", None, 200)), []);
        assert_eq!(
            needs(call("s3", "UploadPart", "bucket-1/results/", None, 200)),
            [g("s3:PutObject", "DataBucket/results/*")]
        );
        assert_eq!(
            needs(call("s3", "HeadObject", "bucket-1/results/", None, 200)),
            [g("s3:GetObject", "DataBucket/results/*")]
        );
        assert_eq!(
            needs(call("s3", "GetObject", "bucket-1/bodies/", None, 404)),
            [
                g("s3:GetObject", "DataBucket/bodies/*"),
                g("s3:ListBucket", "DataBucket")
            ],
            "S3 answers 404 for a missing key only to a caller that may list the bucket"
        );
        assert_eq!(
            needs(call("secretsmanager", "GetSecretValue", &names().secret_id, None, 200)),
            [g("secretsmanager:GetSecretValue", "ProviderKeySecret")]
        );
        assert_eq!(
            needs(call(
                "secretsmanager",
                "GetSecretValue",
                &names().webhook_secret_id,
                None,
                200
            )),
            [g("secretsmanager:GetSecretValue", "OpenAiWebhookSecretArn")]
        );
        assert_eq!(
            needs(call("lambda", "Invoke", "stack-poll", None, 202)),
            [g("lambda:InvokeFunction", "PollFunction")]
        );
        for unknown in [
            call("lambda", "Invoke", "stack-submit", None, 202),
            call("dynamodb", "Query", "someone-elses", None, 200),
            call("dynamodb", "DescribeTable", "jobs-1", None, 200),
            call("s3", "GetObject", "bucket-10/results/", None, 200),
            call("s3", "CopyObject", "bucket-1/results/", None, 200),
            call("sqs", "SendMessage", "*", None, 200),
        ] {
            assert!(names().needs(&unknown).is_err(), "{unknown}");
        }
    }

    #[test]
    fn a_call_no_grant_allows_and_a_grant_no_call_uses_are_both_found() {
        let grants = BTreeSet::from([
            g("dynamodb:GetItem", "JobsTable"),
            g("s3:GetObject", "DataBucket/results/*"),
            g("logs:PutLogEvents", "PollLogGroup"),
            g("dynamodb:DeleteItem", "JobsTable"),
        ]);
        let calls = [
            call("dynamodb", "GetItem", "jobs-1", None, 200),
            call("s3", "HeadObject", "bucket-1/results/", None, 404),
            call("dynamodb", "Query", "jobs-1", Some("open-index"), 200),
        ];
        let unrecorded = [
            Unrecorded {
                grant: g("logs:PutLogEvents", "PollLogGroup"),
                why: "Lambda".into(),
            },
            Unrecorded {
                grant: g("dynamodb:GetItem", "JobsTable"),
                why: "thought unused".into(),
            },
            Unrecorded {
                grant: g("sqs:SendMessage", "PollDlq"),
                why: "no longer granted".into(),
            },
        ];
        let f = check(&grants, &calls, &names(), &unrecorded);
        assert_eq!(
            f.denied,
            [
                "dynamodb Query jobs-1 index open-index (200) needs dynamodb:Query on JobsTable/index/open-index",
                "s3 HeadObject bucket-1/results/ (404) needs s3:ListBucket on DataBucket",
            ]
        );
        assert_eq!(f.unused, [g("dynamodb:DeleteItem", "JobsTable")]);
        assert_eq!(f.stale.len(), 2, "{f}");
        assert!(f.unknown.is_empty());
        // A wildcard grant covers what it names, and nothing beyond.
        assert!(allows(
            &g("s3:GetObject", "DataBucket/*"),
            &g("s3:GetObject", "DataBucket/inputs/*")
        ));
        assert!(!allows(
            &g("s3:GetObject", "DataBucket/*"),
            &g("s3:ListBucket", "DataBucket")
        ));
        assert!(!allows(
            &g("dynamodb:Query", "RequestsTable"),
            &g("dynamodb:Query", "RequestsTable/index/job-index")
        ));
    }
}
