//! infra/template.yaml, checked against the code it deploys.
//!
//! cfn-lint (`make lint-infra`) checks the template's structure; these tests
//! check what only the code knows: the environment names the functions read,
//! the binaries and how they are built, the schedules and event wiring, the
//! shape of the IAM roles, and the tables `DynamoStore::create_tables`
//! builds. Whether each role allows exactly the calls its function makes is
//! checked against the calls themselves, recorded by the emulator, in
//! `iam_calls.rs`.
//!
//! Everything here is offline except `tables_equal_what_create_tables_builds`,
//! which compares with the tables the real adapter creates in the emulator.

use std::collections::{BTreeMap, BTreeSet};

use batchq_core::config::VARS;
use batchq_core::keys;
use batchq_core::store::dynamo::schema;
use batchq_tests::iam::grants_of;
use batchq_tests::template::{get_att, one_or_many, read, reference, sub_names, Template, ROOT};
use serde_json::{json, Value};

/// The five functions: logical id, Cargo binary, crate directory.
const FUNCTIONS: [(&str, &str, &str); 5] = [
    ("EnqueueFunction", "batchq-enqueue", "functions/enqueue"),
    ("SubmitFunction", "batchq-submit", "functions/submit"),
    ("PollFunction", "batchq-poll", "functions/poll"),
    ("IngestFunction", "batchq-ingest", "functions/ingest"),
    ("DeliverFunction", "batchq-deliver", "functions/deliver"),
];

const PSEUDO_PARAMETERS: [&str; 8] = [
    "AWS::AccountId",
    "AWS::NotificationARNs",
    "AWS::NoValue",
    "AWS::Partition",
    "AWS::Region",
    "AWS::StackId",
    "AWS::StackName",
    "AWS::URLSuffix",
];

fn as_u64(v: &Value) -> u64 {
    match v {
        Value::Number(n) => n.as_u64().expect("a whole number"),
        Value::String(s) => s.parse().unwrap_or_else(|_| panic!("{s:?} is not a whole number")),
        other => panic!("{other} is not a number"),
    }
}

// ---------------------------------------------------------------- environment

/// Names set in the template that `config::VARS` does not list.
fn unknown_env_names(t: &Template) -> Vec<String> {
    let known: BTreeSet<&str> = VARS.iter().map(|v| v.name).collect();
    let mut unknown = Vec::new();
    for (id, _, _) in FUNCTIONS {
        for name in t.env(id).keys() {
            if !known.contains(name.as_str()) {
                unknown.push(format!("{id}: {name}"));
            }
        }
    }
    unknown.sort();
    unknown.dedup();
    unknown
}

#[test]
fn every_environment_name_is_one_the_code_reads() {
    let t = Template::load();
    assert_eq!(
        unknown_env_names(&t),
        Vec::<String>::new(),
        "names not in batchq_core::config::VARS (a typo or a renamed variable)"
    );
    for (id, _, _) in FUNCTIONS {
        let env = t.env(id);
        // Lambda sets AWS_REGION itself and refuses it; AWS_ENDPOINT_URL
        // would point the functions at an emulator.
        for forbidden in [
            "AWS_REGION",
            "AWS_ENDPOINT_URL",
            "OPENAI_API_KEY",
            "AZURE_OPENAI_API_KEY",
        ] {
            assert!(!env.contains_key(forbidden), "{id} must not set {forbidden}");
        }
        assert_eq!(env["BATCHQ_REQUESTS_TABLE"], reference("RequestsTable"), "{id}");
        assert_eq!(env["BATCHQ_JOBS_TABLE"], reference("JobsTable"), "{id}");
        assert_eq!(
            env["BATCHQ_BUCKET"],
            t.props("DataBucket")["BucketName"],
            "{id}: BATCHQ_BUCKET must be the bucket's name expression"
        );
        assert_eq!(
            env["BATCHQ_LOG_FORMAT"], "json",
            "{id}: the log metric filters read JSON lines"
        );
        let talks_to_provider = matches!(id, "SubmitFunction" | "PollFunction");
        assert_eq!(
            env.get("BATCHQ_OPENAI_API_KEY_SECRET_ARN"),
            talks_to_provider.then(|| reference("ProviderKeySecret")).as_ref(),
            "{id}: only submit and poll read the provider key"
        );
        assert_eq!(
            env.contains_key("BATCHQ_PROVIDER"),
            talks_to_provider,
            "{id}: provider settings belong to submit and poll"
        );
        // The price table: read at start by the two functions that price
        // results and by enqueue, which estimates costs for budgets.
        let name = t.props("DataBucket")["BucketName"]["Fn::Sub"].clone();
        let pricing = json!({"Fn::If": [
            "HasPricingFile",
            {"Fn::Sub": [format!("s3://{}/config/${{PricingFile}}", name[0].as_str().unwrap()), name[1]]},
            reference("AWS::NoValue"),
        ]});
        let prices_results = matches!(id, "IngestFunction" | "PollFunction" | "EnqueueFunction");
        assert_eq!(
            env.get("BATCHQ_PRICING_FILE"),
            prices_results.then_some(&pricing),
            "{id}: BATCHQ_PRICING_FILE"
        );
        // The provider table: read at start by the functions that route
        // (enqueue) or call providers (submit, poll).
        let providers = json!({"Fn::If": [
            "HasProvidersFile",
            {"Fn::Sub": [format!("s3://{}/config/${{ProvidersFile}}", name[0].as_str().unwrap()), name[1]]},
            reference("AWS::NoValue"),
        ]});
        let routes_or_calls = matches!(id, "EnqueueFunction" | "SubmitFunction" | "PollFunction");
        assert_eq!(
            env.get("BATCHQ_PROVIDERS_FILE"),
            routes_or_calls.then_some(&providers),
            "{id}: BATCHQ_PROVIDERS_FILE"
        );
    }
}

#[test]
fn a_misspelt_environment_name_is_caught() {
    let text = read("infra/template.yaml");
    assert!(text.contains("BATCHQ_JOBS_TABLE:"));
    let drifted = Template::from_text(&text.replacen("BATCHQ_JOBS_TABLE:", "BATCHQ_JOB_TABLE:", 1));
    let unknown = unknown_env_names(&drifted);
    assert!(
        unknown.iter().any(|u| u.ends_with(": BATCHQ_JOB_TABLE")),
        "the check must flag a name the code does not read: {unknown:?}"
    );
    let renamed =
        Template::from_text(&text.replacen("BATCHQ_SUBMIT_MIN_REQUESTS:", "BATCHQ_SUBMIT_MINIMUM_REQUESTS:", 1));
    assert_eq!(
        unknown_env_names(&renamed),
        ["SubmitFunction: BATCHQ_SUBMIT_MINIMUM_REQUESTS"]
    );
}

// ---------------------------------------------------------------- functions

#[test]
fn functions_run_the_workspace_binaries_on_provided_al2023() {
    let t = Template::load();
    let serverless: BTreeSet<&str> = t
        .of_type("AWS::Serverless::Function")
        .map(|(id, _)| id.as_str())
        .collect();
    assert_eq!(serverless, FUNCTIONS.iter().map(|f| f.0).collect());
    assert_eq!(t.of_type("AWS::Lambda::Function").count(), 0);

    let arch = t.parameter("Architecture");
    assert_eq!(arch["Default"], "arm64");
    assert_eq!(arch["AllowedValues"], json!(["arm64", "x86_64"]));

    let workspace = read("Cargo.toml");
    for (id, binary, dir) in FUNCTIONS {
        assert_eq!(t.fn_prop(id, "Runtime"), "provided.al2023", "{id}");
        assert_eq!(t.fn_prop(id, "Handler"), "bootstrap", "{id}");
        assert_eq!(
            t.fn_prop(id, "Architectures"),
            &json!([reference("Architecture")]),
            "{id}"
        );

        // SAM's Rust build: cargo lambda in CodeUri (the workspace root, where
        // target/lambda/<binary>/bootstrap appears), the binary by name.
        let meta = &t.resource(id)["Metadata"];
        assert_eq!(meta["BuildMethod"], "rust-cargolambda", "{id}");
        assert_eq!(meta["BuildProperties"]["Binary"], binary, "{id}");
        assert_eq!(
            t.props(id)["CodeUri"],
            "..",
            "{id}: CodeUri is the workspace root, relative to infra/"
        );
        assert!(workspace.contains(&format!("\"{dir}\"")), "{dir} is a workspace member");
        let manifest = read(&format!("{dir}/Cargo.toml"));
        let bin = manifest.split("[[bin]]").nth(1).expect("the crate declares its binary");
        assert!(
            bin.contains(&format!("name = \"{binary}\"")),
            "{dir}/Cargo.toml builds no binary {binary}"
        );

        // The function must not get SAM-generated permissions: its role is ours.
        assert!(t.props(id)["Role"]["Fn::GetAtt"].is_array(), "{id} names its role");
        assert!(t.props(id)["Policies"].is_null(), "{id}: grants go in its role");
    }
}

#[test]
fn timeouts_fit_the_job_lease_and_api_gateway() {
    let t = Template::load();
    let timeout = |id: &str| as_u64(t.fn_prop(id, "Timeout"));
    let lease_default = VARS.iter().find(|v| v.name == "BATCHQ_JOB_LEASE_SECS").unwrap().default;
    for (id, _, _) in FUNCTIONS {
        let lease = t
            .env(id)
            .get("BATCHQ_JOB_LEASE_SECS")
            .map(as_u64)
            .unwrap_or_else(|| lease_default.parse().unwrap());
        // A submit run must never outlive its lease, and poll must not
        // ingest a file itself while an ingest of it may still be running.
        for holder in ["SubmitFunction", "IngestFunction"] {
            assert!(
                lease > timeout(holder),
                "{id}: BATCHQ_JOB_LEASE_SECS={lease} must exceed {holder}'s timeout {}",
                timeout(holder)
            );
        }
        assert!(timeout(id) <= 900, "{id}: Lambda's maximum is 900 s");
    }
    assert!(
        timeout("EnqueueFunction") < 30,
        "an HTTP API integration gets 30 s at most"
    );
    assert!(as_u64(&t.props("HttpApiIntegration")["TimeoutInMillis"]) <= 30_000);
    // Defaults: one submit and one poll at a time (see the template's comments).
    assert_eq!(t.parameter("SubmitReservedConcurrency")["Default"], 1);
    assert_eq!(t.parameter("PollReservedConcurrency")["Default"], 1);
}

// ---------------------------------------------------------------- schedules and events

/// An EventBridge schedule expression: `rate(N unit)` (singular unit for 1,
/// plural otherwise) or `cron(...)` with six fields, one of day-of-month and
/// day-of-week being `?`.
fn valid_schedule(expr: &str) -> bool {
    if let Some(inner) = expr.strip_prefix("rate(").and_then(|s| s.strip_suffix(')')) {
        let Some((n, unit)) = inner.split_once(' ') else {
            return false;
        };
        let Ok(n) = n.parse::<u64>() else { return false };
        if n == 0 || inner.starts_with('0') {
            return false;
        }
        let units: &[&str] = if n == 1 {
            &["minute", "hour", "day"]
        } else {
            &["minutes", "hours", "days"]
        };
        return units.contains(&unit);
    }
    if let Some(inner) = expr.strip_prefix("cron(").and_then(|s| s.strip_suffix(')')) {
        let fields: Vec<&str> = inner.split(' ').collect();
        return fields.len() == 6 && (fields[2] == "?") != (fields[4] == "?");
    }
    false
}

#[test]
fn the_schedule_check_knows_the_grammar() {
    for good in [
        "rate(1 minute)",
        "rate(5 minutes)",
        "rate(2 hours)",
        "cron(0/5 * * * ? *)",
    ] {
        assert!(valid_schedule(good), "{good}");
    }
    for bad in [
        "rate(1 minutes)",
        "rate(5 minute)",
        "rate(1 days)",
        "rate(0 minutes)",
        "rate(05 minutes)",
        "rate(5 weeks)",
        "rate(5minutes)",
        "cron(0/5 * * * *)",
        "cron(0 12 * * * *)",
        "every 5 minutes",
    ] {
        assert!(!valid_schedule(bad), "{bad}");
    }
}

#[test]
fn schedules_drive_submit_and_poll_with_valid_expressions() {
    let t = Template::load();
    for (id, _, _) in FUNCTIONS {
        let events = t.props(id)["Events"].as_object().cloned().unwrap_or_default();
        let schedules: Vec<&Value> = events.values().filter(|e| e["Type"] == "Schedule").collect();
        // Poll runs on a second schedule too: the daily report.
        let expected = match id {
            "SubmitFunction" | "DeliverFunction" => 1,
            "PollFunction" => 2,
            _ => 0,
        };
        assert_eq!(schedules.len(), expected, "{id}: schedules");
        if id == "PollFunction" {
            let inputs: Vec<Option<Value>> = schedules
                .iter()
                .map(|s| {
                    s["Properties"]["Input"]
                        .as_str()
                        .map(|i| serde_json::from_str(i).unwrap())
                })
                .collect();
            assert!(
                inputs.contains(&None) && inputs.contains(&Some(serde_json::json!({"report": true}))),
                "poll's schedules: its run and the daily report ({inputs:?})"
            );
        }
        if id == "DeliverFunction" {
            // Deliver is also woken by the jobs table's stream, filtered to
            // results feed entries, a failed batch split and retried twice.
            let streams: Vec<&Value> = events.values().filter(|e| e["Type"] == "DynamoDB").collect();
            assert_eq!(streams.len(), 1, "{id}: one stream");
            let sp = &streams[0]["Properties"];
            assert_eq!(sp["Stream"], get_att("JobsTable", "StreamArn"));
            assert_eq!(sp["BisectBatchOnFunctionError"], true);
            assert_eq!(sp["MaximumRetryAttempts"], 2);
            let pattern: Value =
                serde_json::from_str(sp["FilterCriteria"]["Filters"][0]["Pattern"].as_str().unwrap()).unwrap();
            assert_eq!(pattern["dynamodb"]["Keys"]["pk"]["S"], json!([{"prefix": "feed#"}]));
            assert_eq!(
                t.props("JobsTable")["StreamSpecification"],
                json!({"StreamViewType": "KEYS_ONLY"})
            );
            assert_eq!(events.len(), schedules.len() + 1, "{id}: the schedule and the stream");
            assert_eq!(
                t.props(id)["ReservedConcurrentExecutions"],
                1,
                "{id}: one run at a time"
            );
        } else {
            assert_eq!(events.len(), schedules.len(), "{id}: only schedule events");
        }
        for s in schedules {
            let expr = t.resolve_default(&s["Properties"]["Schedule"]);
            let expr = expr.as_str().expect("a schedule expression");
            assert!(valid_schedule(expr), "{id}: invalid schedule expression {expr:?}");
            assert_ne!(s["Properties"]["State"], "DISABLED", "{id}");
            if let Some(param) = s["Properties"]["Schedule"]["Ref"].as_str() {
                assert!(
                    t.parameter(param)["AllowedPattern"].is_string(),
                    "{param}: a bad override must be refused at deploy time"
                );
            }
        }
    }
}

#[test]
fn result_files_notify_ingest_through_the_known_pattern() {
    let t = Template::load();
    let bucket = t.resource("DataBucket");
    let configs = bucket["Properties"]["NotificationConfiguration"]["LambdaConfigurations"]
        .as_array()
        .expect("the bucket notifies a function");
    assert_eq!(configs.len(), 1, "{configs:?}");
    let c = &configs[0];
    assert_eq!(c["Event"], "s3:ObjectCreated:*");
    assert_eq!(c["Function"], get_att("IngestFunction", "Arn"));
    assert_eq!(
        c["Filter"]["S3Key"]["Rules"],
        json!([{"Name": "prefix", "Value": keys::RESULTS_PREFIX}]),
        "ingest must see exactly the result files poll writes"
    );
    let job = batchq_core::ids::JobId::generate();
    for key in [keys::job_output(&job), keys::job_errors(&job)] {
        assert!(key.starts_with(keys::RESULTS_PREFIX) && keys::parse_result_key(&key).is_some());
    }

    // The notification needs the permission first; the permission and the
    // functions name the bucket by its built name, so nothing refers back.
    assert_eq!(bucket["DependsOn"], "IngestS3Permission");
    let perm = t.props("IngestS3Permission");
    assert_eq!(perm["Principal"], "s3.amazonaws.com");
    assert_eq!(perm["Action"], "lambda:InvokeFunction");
    assert_eq!(perm["FunctionName"], get_att("IngestFunction", "Arn"));
    assert_eq!(perm["SourceAccount"], reference("AWS::AccountId"));
    let name = t.props("DataBucket")["BucketName"]["Fn::Sub"]
        .as_array()
        .expect("the bucket's name is built with !Sub [template, vars]");
    assert_eq!(
        perm["SourceArn"],
        json!({"Fn::Sub": [format!("arn:${{AWS::Partition}}:s3:::{}", name[0].as_str().unwrap()), name[1]]}),
        "the permission's SourceArn must be the bucket's ARN"
    );
    for (id, _, _) in FUNCTIONS {
        let role = t.props(id)["Role"]["Fn::GetAtt"][0].as_str().unwrap().to_owned();
        assert!(
            !mentions(&t.resource(id)["Properties"], "DataBucket"),
            "{id} must not refer to DataBucket"
        );
        if id == "IngestFunction" {
            assert!(
                !mentions(t.resource(&role), "DataBucket"),
                "{role} must not refer to DataBucket (circular dependency); use IngestBucketAccess"
            );
        }
    }
}

/// Whether `v` refers to resource `id` (Ref, GetAtt or inside a Sub string).
fn mentions(v: &Value, id: &str) -> bool {
    let mut found = false;
    walk(v, &mut |node| {
        if let Some(r) = node["Ref"].as_str() {
            found |= r == id;
        }
        if let Some(r) = node["Fn::GetAtt"][0].as_str() {
            found |= r == id;
        }
        if let Some(s) = sub_string(node) {
            found |= sub_names(s).iter().any(|n| n.split('.').next() == Some(id));
        }
    });
    found
}

/// Calls `f` on every node of `v`, depth first.
fn walk(v: &Value, f: &mut dyn FnMut(&Value)) {
    f(v);
    match v {
        Value::Array(items) => items.iter().for_each(|i| walk(i, f)),
        Value::Object(m) => m.values().for_each(|i| walk(i, f)),
        _ => {}
    }
}

/// The template string of a `Fn::Sub` node.
fn sub_string(node: &Value) -> Option<&str> {
    match &node["Fn::Sub"] {
        Value::String(s) => Some(s),
        Value::Array(a) => a.first().and_then(Value::as_str),
        _ => None,
    }
}

/// Route keys ("METHOD /path") of the API reference (docs/api.md): its
/// table and the routes named in its headings.
fn documented_routes() -> BTreeSet<String> {
    let section = read("docs/api.md");
    let mut routes = BTreeSet::new();
    for line in section.lines() {
        if line.starts_with("| `/") {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let path = cells[1].trim_matches('`').split('?').next().unwrap();
            routes.insert(format!("{} {path}", cells[2]));
        } else if line.starts_with("## ") {
            for span in line.split('`').skip(1).step_by(2) {
                let Some((method, path)) = span.split_once(' ') else {
                    continue;
                };
                if ["GET", "POST", "DELETE"].contains(&method) && path.starts_with("/v1/") {
                    routes.insert(format!("{method} {}", path.split('?').next().unwrap()));
                }
            }
        }
    }
    routes
}

/// The paths the API core routes (`Route::parse` in shared/src/api/mod.rs),
/// with every path parameter written `{}`.
fn routed_paths() -> BTreeSet<String> {
    let code = read("shared/src/api/mod.rs");
    let paths: BTreeSet<String> = code
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("[\"v1\"") && l.contains("=>"))
        .map(|l| {
            let inner = &l[1..l.find(']').unwrap()];
            let segments: Vec<String> = inner
                .split(", ")
                .map(|seg| match seg.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
                    Some(literal) => literal.to_owned(),
                    None => "{}".to_owned(),
                })
                .collect();
            format!("/{}", segments.join("/"))
        })
        .collect();
    assert!(
        paths.len() >= 7,
        "Route::parse changed shape; update routed_paths: {paths:?}"
    );
    // Answered before authentication, outside Route::parse: OpenAI's batch
    // events (shared/src/api/provider_webhooks.rs).
    let provider_webhooks = read("shared/src/api/provider_webhooks.rs");
    let path = provider_webhooks
        .lines()
        .find_map(|l| l.trim().strip_prefix("pub const OPENAI_PATH: &str = \""))
        .and_then(|rest| rest.strip_suffix("\";"))
        .expect("OPENAI_PATH in provider_webhooks.rs");
    paths.into_iter().chain([path.to_owned()]).collect()
}

/// The paths of the dashboard's files (`path: "/dashboard…"` of the assets in
/// shared/src/api/dashboard/mod.rs), which the API answers without an identity.
fn dashboard_paths() -> BTreeSet<String> {
    let code = read("shared/src/api/dashboard/mod.rs");
    let paths: BTreeSet<String> = code
        .lines()
        .filter_map(|l| l.trim().strip_prefix("path: \""))
        .filter_map(|rest| rest.split('"').next())
        .map(str::to_owned)
        .collect();
    assert!(
        paths.contains("/dashboard"),
        "the dashboard's assets changed shape: {paths:?}"
    );
    paths
}

/// `/v1/requests/{custom_id}` -> `/v1/requests/{}`.
fn path_shape(path: &str) -> String {
    path.split('/')
        .map(|seg| if seg.starts_with('{') { "{}" } else { seg })
        .collect::<Vec<_>>()
        .join("/")
}

#[test]
fn the_http_api_routes_every_documented_route_to_enqueue() {
    let t = Template::load();
    let documented = documented_routes();
    assert!(documented.len() >= 7, "{documented:?}");
    let dashboard = dashboard_paths();
    let mut routes = BTreeSet::new();
    for (id, route) in t.of_type("AWS::ApiGatewayV2::Route") {
        let p = &route["Properties"];
        let key = p["RouteKey"].as_str().unwrap().to_owned();
        routes.insert(key.clone());
        assert_eq!(p["ApiId"], reference("HttpApi"), "{id}");
        assert_eq!(
            p["Target"],
            json!({"Fn::Sub": "integrations/${HttpApiIntegration}"}),
            "{id}"
        );
        if key.strip_prefix("GET ").is_some_and(|path| dashboard.contains(path)) {
            // The dashboard's files carry no data: a browser loads them without signing.
            assert_eq!(p["AuthorizationType"], "NONE", "{id}");
            assert!(p.get("AuthorizerId").is_none(), "{id}");
            continue;
        }
        if key == "POST /v1/provider-webhooks/openai" {
            // OpenAI cannot sign with IAM or a JWT: its Standard Webhooks
            // signature, checked by the function, is the authentication.
            assert_eq!(p["AuthorizationType"], "NONE", "{id}");
            assert!(p.get("AuthorizerId").is_none(), "{id}");
            continue;
        }
        assert_eq!(
            p["AuthorizationType"],
            json!({"Fn::If": ["UseJwt", "JWT", "AWS_IAM"]}),
            "{id}: IAM by default, JWT when configured; never NONE"
        );
        assert_eq!(
            p["AuthorizerId"],
            json!({"Fn::If": ["UseJwt", reference("JwtAuthorizer"), reference("AWS::NoValue")]}),
            "{id}"
        );
    }
    let mut expected = documented.clone();
    expected.insert("$default".into());
    expected.extend(dashboard.iter().map(|p| format!("GET {p}")));
    assert_eq!(
        routes, expected,
        "routes of the HTTP API vs docs/api.md (+ $default and the dashboard's files)"
    );
    let shapes: BTreeSet<String> = routes
        .iter()
        .filter_map(|r| r.split_once(' '))
        .map(|(_, path)| path_shape(path))
        .collect();
    let mut routed = routed_paths();
    routed.extend(dashboard);
    assert_eq!(
        shapes, routed,
        "paths of the HTTP API vs the paths the API core routes (+ the dashboard's files)"
    );

    let integration = t.props("HttpApiIntegration");
    assert_eq!(integration["IntegrationType"], "AWS_PROXY");
    assert_eq!(integration["IntegrationUri"], get_att("EnqueueFunction", "Arn"));
    assert_eq!(
        integration["PayloadFormatVersion"], "2.0",
        "batchq-enqueue reads API Gateway v2 events"
    );
    let perm = t.props("EnqueueApiPermission");
    assert_eq!(perm["Principal"], "apigateway.amazonaws.com");
    assert_eq!(perm["FunctionName"], get_att("EnqueueFunction", "Arn"));
    assert_eq!(t.resource("JwtAuthorizer")["Condition"], "UseJwt");
    assert_eq!(
        t.props("HttpApiStage")["StageName"],
        "$default",
        "the function strips named stages only"
    );
}

// ---------------------------------------------------------------- references

#[test]
fn every_reference_resolves() {
    let t = Template::load();
    let resources: BTreeSet<&str> = t.resources().keys().map(String::as_str).collect();
    let parameters: BTreeSet<&str> = t.section("Parameters").keys().map(String::as_str).collect();
    let conditions: BTreeSet<&str> = t.section("Conditions").keys().map(String::as_str).collect();
    let mut problems = Vec::new();

    let mut check = |where_: &str, v: &Value| {
        walk(v, &mut |node| {
            if let Some(r) = node["Ref"].as_str() {
                if !(resources.contains(r) || parameters.contains(r) || PSEUDO_PARAMETERS.contains(&r)) {
                    problems.push(format!("{where_}: !Ref {r}"));
                }
            }
            if let Some(r) = node["Fn::GetAtt"][0].as_str() {
                if !resources.contains(r) {
                    problems.push(format!("{where_}: !GetAtt {r}"));
                }
            }
            if let Some(s) = sub_string(node) {
                let local: BTreeSet<String> = node["Fn::Sub"][1]
                    .as_object()
                    .map(|m| m.keys().cloned().collect())
                    .unwrap_or_default();
                for name in sub_names(s) {
                    let base = name.split('.').next().unwrap();
                    let ok = if name.contains('.') && !name.starts_with("AWS::") {
                        resources.contains(base)
                    } else {
                        local.contains(&name)
                            || resources.contains(base)
                            || parameters.contains(base)
                            || PSEUDO_PARAMETERS.contains(&base)
                    };
                    if !ok {
                        problems.push(format!("{where_}: ${{{name}}} in !Sub"));
                    }
                }
            }
            if let Some(c) = node["Fn::If"][0].as_str() {
                if !conditions.contains(c) {
                    problems.push(format!("{where_}: !If {c}"));
                }
            }
            if let Some(c) = node["Condition"].as_str() {
                if !conditions.contains(c) {
                    problems.push(format!("{where_}: Condition {c}"));
                }
            }
        });
    };
    for section in ["Globals", "Rules", "Conditions", "Outputs"] {
        check(section, &t.root[section]);
    }
    let mut dangling_deps = Vec::new();
    for (id, r) in t.resources() {
        check(id, r);
        for dep in one_or_many(&r["DependsOn"]) {
            if !resources.contains(dep.as_str().unwrap_or("")) {
                dangling_deps.push(format!("{id}: DependsOn {dep}"));
            }
        }
    }
    problems.extend(dangling_deps);
    assert_eq!(problems, Vec::<String>::new(), "references to nothing");
}

// ---------------------------------------------------------------- IAM

/// Every policy statement in the template: (where, statement).
fn all_statements(t: &Template) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for (id, r) in t.resources() {
        let p = &r["Properties"];
        let mut docs = Vec::new();
        match r["Type"].as_str().unwrap_or("") {
            "AWS::IAM::Role" => {
                docs.push(p["AssumeRolePolicyDocument"].clone());
                docs.extend(
                    one_or_many(&p["Policies"])
                        .into_iter()
                        .map(|pol| pol["PolicyDocument"].clone()),
                );
            }
            "AWS::IAM::Policy" | "AWS::IAM::ManagedPolicy" | "AWS::S3::BucketPolicy" | "AWS::SQS::QueuePolicy" => {
                docs.push(p["PolicyDocument"].clone())
            }
            _ => {}
        }
        for d in docs {
            for s in one_or_many(&d["Statement"]) {
                out.push((id.clone(), s));
            }
        }
    }
    out
}

#[test]
fn no_iam_statement_allows_a_wildcard_action() {
    let t = Template::load();
    let statements = all_statements(&t);
    assert!(statements.len() > 20);
    for (id, s) in &statements {
        assert!(s["NotAction"].is_null() && s["NotResource"].is_null(), "{id}: {s}");
        let wildcard = one_or_many(&s["Action"])
            .iter()
            .any(|a| a.as_str().is_some_and(|a| a.contains('*')));
        if wildcard {
            // The one exception: the bucket policy's Deny of plain HTTP,
            // which must cover every action to mean anything.
            assert_eq!(id, "DataBucketPolicy", "wildcard action in {id}: {s}");
            assert_eq!(s["Effect"], "Deny", "{s}");
            assert_eq!(s["Action"], "s3:*", "{s}");
            assert_eq!(s["Condition"], json!({"Bool": {"aws:SecureTransport": "false"}}), "{s}");
        }
        if s["Effect"] == "Allow" {
            assert!(
                !one_or_many(&s["Resource"]).contains(&json!("*")),
                "{id}: an Allow on every resource: {s}"
            );
        }
    }
}

#[test]
fn each_function_has_a_role_of_its_own_whose_grants_are_all_in_this_template() {
    let t = Template::load();
    let mut roles = BTreeSet::new();
    for (id, _, _) in FUNCTIONS {
        // grants_of refuses managed policies, permissions boundaries,
        // conditions, Deny statements and a trust policy other than Lambda's:
        // what it returns is then everything the function may do.
        let grants = grants_of(&t, id);
        assert!(!grants.is_empty(), "{id}: no grants");
        let role = t.props(id)["Role"]["Fn::GetAtt"][0].as_str().unwrap().to_owned();
        assert!(roles.insert(role.clone()), "{id} shares {role} with another function");
        for (action, resource) in &grants {
            assert!(
                !resource.contains("${"),
                "{id}: {action} on {resource}: a Sub placeholder that is not a resource of this template"
            );
        }
    }
    // Which grants each role needs, and that it needs no more, is checked
    // against the calls the functions really make: tests/tests/iam_calls.rs.
}

#[test]
fn openai_webhooks_are_optional_and_give_enqueue_only_the_secret_and_the_poll_functions_invocation() {
    let t = Template::load();
    let param = t.parameter("OpenAiWebhookSecretArn");
    assert_eq!(param["Default"], "", "off unless a secret is named");
    assert_eq!(
        t.section("Conditions")["HasOpenAiWebhookSecret"],
        json!({"Fn::Not": [{"Fn::Equals": [reference("OpenAiWebhookSecretArn"), ""]}]})
    );
    let env = t.env("EnqueueFunction");
    let only_with_secret = |v: Value| json!({"Fn::If": ["HasOpenAiWebhookSecret", v, reference("AWS::NoValue")]});
    assert_eq!(
        env["BATCHQ_OPENAI_WEBHOOK_SECRET_ARN"],
        only_with_secret(reference("OpenAiWebhookSecretArn"))
    );
    assert_eq!(env["BATCHQ_POLL_FUNCTION"], only_with_secret(reference("PollFunction")));
    for other in ["SubmitFunction", "PollFunction", "IngestFunction"] {
        let env = t.env(other);
        assert!(
            !env.contains_key("BATCHQ_OPENAI_WEBHOOK_SECRET_ARN") && !env.contains_key("OPENAI_WEBHOOK_SECRET"),
            "{other} has no business with the webhook secret"
        );
    }
    // The policy exists only with the secret, is attached to the enqueue
    // role, and grants exactly the secret's read and the poll function's
    // invocation.
    let policy = t.resource("EnqueueProviderWebhookPolicy");
    assert_eq!(policy["Type"], "AWS::IAM::Policy");
    assert_eq!(policy["Condition"], "HasOpenAiWebhookSecret");
    assert_eq!(policy["Properties"]["Roles"], json!([reference("EnqueueRole")]));
    let granted: BTreeSet<(String, String)> = one_or_many(&policy["Properties"]["PolicyDocument"]["Statement"])
        .into_iter()
        .map(|s| (s["Action"].as_str().unwrap().to_owned(), s["Resource"].to_string()))
        .collect();
    assert_eq!(
        granted,
        BTreeSet::from([
            (
                "secretsmanager:GetSecretValue".to_owned(),
                reference("OpenAiWebhookSecretArn").to_string()
            ),
            (
                "lambda:InvokeFunction".to_owned(),
                get_att("PollFunction", "Arn").to_string()
            ),
        ])
    );
    // Still no poller powers for the API function: no provider key, and of
    // the result files only reading (answers are read from them).
    let grants = grants_of(&t, "EnqueueFunction");
    for (action, resource) in &grants {
        assert!(
            resource != "ProviderKeySecret"
                && (!resource.starts_with("DataBucket/results") || action == "s3:GetObject"),
            "enqueue may {action} on {resource}"
        );
    }
    // No other role may invoke a function.
    for (id, _, _) in FUNCTIONS {
        let invokes: Vec<_> = grants_of(&t, id)
            .into_iter()
            .filter(|(a, _)| a.starts_with("lambda:"))
            .collect();
        let expected = if id == "EnqueueFunction" {
            vec![("lambda:InvokeFunction".to_owned(), "PollFunction".to_owned())]
        } else {
            vec![]
        };
        assert_eq!(invokes, expected, "{id}");
    }
    // The URL to give OpenAI.
    assert_eq!(
        t.root["Outputs"]["OpenAiWebhookUrl"]["Value"],
        json!({"Fn::Sub": "${HttpApi.ApiEndpoint}/v1/provider-webhooks/openai"})
    );
}

/// The AWS SDK operations the adapters call, as written in their source,
/// and the IAM action each needs (a listed operation may be unused). The
/// roles are checked against the calls the functions make in the scenarios
/// of `iam_calls.rs`; an operation not listed here is one those scenarios
/// were not written for: make them reach it (it is then checked against
/// the roles), then list it here.
const ADAPTER_OPERATIONS: [(&str, &str, &str); 33] = [
    (
        "shared/src/store/webhooks/dynamo.rs",
        "transact_write_items",
        "per action: PutItem / UpdateItem / DeleteItem / ConditionCheckItem on the webhooks table",
    ),
    ("shared/src/store/webhooks/dynamo.rs", "get_item", "dynamodb:GetItem"),
    (
        "shared/src/store/webhooks/dynamo.rs",
        "batch_get_item",
        "dynamodb:BatchGetItem",
    ),
    (
        "shared/src/store/webhooks/dynamo.rs",
        "put_item",
        "dynamodb:PutItem (a new endpoint)",
    ),
    (
        "shared/src/store/webhooks/dynamo.rs",
        "update_item",
        "dynamodb:UpdateItem (an endpoint's settings)",
    ),
    (
        "shared/src/store/webhooks/dynamo.rs",
        "delete_item",
        "dynamodb:DeleteItem (an endpoint)",
    ),
    ("shared/src/store/webhooks/dynamo.rs", "query", "dynamodb:Query"),
    (
        "shared/src/store/webhooks/dynamo.rs",
        "create_table",
        "none: batchq init and tests only",
    ),
    (
        "shared/src/store/webhooks/dynamo.rs",
        "describe_table",
        "none: batchq init and tests only",
    ),
    (
        "shared/src/store/webhooks/dynamo.rs",
        "describe_time_to_live",
        "none: batchq init and tests only (the template declares the TTL)",
    ),
    (
        "shared/src/store/webhooks/dynamo.rs",
        "update_time_to_live",
        "none: batchq init and tests only (the template declares the TTL)",
    ),
    (
        "shared/src/store/dynamo/transact.rs",
        "transact_write_items",
        "per action: PutItem / UpdateItem",
    ),
    (
        "shared/src/store/dynamo/transact.rs",
        "update_item",
        "dynamodb:UpdateItem on the jobs table (a bulk call's overhead on its activity item), which the enqueue role has",
    ),
    (
        "shared/src/store/dynamo/savings.rs",
        "update_item",
        "dynamodb:UpdateItem on the jobs table (savings rows), which every role has",
    ),
    ("shared/src/store/dynamo/query.rs", "get_item", "dynamodb:GetItem"),
    (
        "shared/src/store/dynamo/query.rs",
        "batch_get_item",
        "dynamodb:BatchGetItem",
    ),
    ("shared/src/store/dynamo/jobs.rs", "put_item", "dynamodb:PutItem"),
    ("shared/src/store/dynamo/query.rs", "query", "dynamodb:Query"),
    (
        "shared/src/store/dynamo/tables.rs",
        "create_table",
        "none: batchq init and tests only",
    ),
    (
        "shared/src/store/dynamo/tables.rs",
        "describe_table",
        "none: batchq init and tests only",
    ),
    (
        "shared/src/store/dynamo/tables.rs",
        "describe_time_to_live",
        "none: batchq init and tests only (the template declares the TTL)",
    ),
    (
        "shared/src/store/dynamo/tables.rs",
        "update_time_to_live",
        "none: batchq init and tests only (the template declares the TTL)",
    ),
    ("shared/src/store/s3.rs", "put_object", "s3:PutObject"),
    ("shared/src/store/s3.rs", "get_object", "s3:GetObject (also presigned)"),
    (
        "shared/src/store/s3.rs",
        "head_object",
        "s3:GetObject (+ s3:ListBucket for 404)",
    ),
    (
        "shared/src/store/s3.rs",
        "delete_object",
        "s3:DeleteObject on bodies/* (a finished request's large body; every function finishes requests)",
    ),
    ("shared/src/store/s3.rs", "create_multipart_upload", "s3:PutObject"),
    ("shared/src/store/s3.rs", "upload_part", "s3:PutObject"),
    ("shared/src/store/s3.rs", "complete_multipart_upload", "s3:PutObject"),
    (
        "shared/src/store/s3.rs",
        "abort_multipart_upload",
        "s3:AbortMultipartUpload",
    ),
    (
        "shared/src/app.rs",
        "get_object",
        "s3:GetObject on BATCHQ_PRICING_FILE and BATCHQ_PROVIDERS_FILE (config/*)",
    ),
    (
        "shared/src/provider/openai/client.rs",
        "get_secret_value",
        "secretsmanager:GetSecretValue",
    ),
    (
        "shared/src/provider/openai/webhook_secret.rs",
        "get_secret_value",
        "secretsmanager:GetSecretValue on OpenAiWebhookSecretArn (enqueue only)",
    ),
];

/// `client.<op>(` and `client().<op>(` calls in a source file (whitespace
/// and line breaks between the parts allowed).
fn sdk_calls(source: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = source.as_bytes();
    let skip_ws = |mut i: usize| {
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        i
    };
    for (at, _) in source.match_indices("client") {
        if at > 0 && (bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_') {
            continue;
        }
        let mut dot = skip_ws(at + "client".len());
        if source[dot..].starts_with("()") {
            dot = skip_ws(dot + 2); // `objects.client().get_object()`
        }
        if bytes.get(dot) != Some(&b'.') {
            continue;
        }
        let start = skip_ws(dot + 1);
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_lowercase() || bytes[end] == b'_') {
            end += 1;
        }
        let name = &source[start..end];
        if end > start && bytes.get(skip_ws(end)) == Some(&b'(') && name != "clone" {
            out.insert(name.to_owned());
        }
    }
    out
}

/// Every `.rs` file under `dir` (relative to the workspace root).
fn rust_files(dir: &str) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(format!("{ROOT}/{dir}")).unwrap() {
        let path = entry.unwrap().path();
        let rel = format!("{dir}/{}", path.file_name().unwrap().to_string_lossy());
        if path.is_dir() {
            out.extend(rust_files(&rel));
        } else if rel.ends_with(".rs") {
            out.push(rel);
        }
    }
    out.sort();
    out
}

#[test]
fn the_adapters_call_only_the_operations_the_iam_check_was_written_for() {
    let mut known: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (file, op, _) in ADAPTER_OPERATIONS {
        known.entry(file).or_default().insert(op);
    }
    let files = rust_files("shared/src");
    for file in known.keys() {
        assert!(
            files.iter().any(|f| f == file),
            "{file} moved; update ADAPTER_OPERATIONS"
        );
    }
    let empty = BTreeSet::new();
    for file in &files {
        let called = sdk_calls(&read(file));
        let known = known.get(file.as_str()).unwrap_or(&empty);
        let new: Vec<&String> = called.iter().filter(|op| !known.contains(op.as_str())).collect();
        assert!(
            new.is_empty(),
            "{file} now calls {new:?}: make the scenarios of tests/tests/iam_calls.rs reach it (that test \
             holds each role to the calls its function makes), then list it in ADAPTER_OPERATIONS"
        );
    }
}

// ---------------------------------------------------------------- storage

/// The tables as `DynamoStore::create_tables` defines them, in the
/// template's terms: attribute definitions, key schema, GSIs.
fn expected_tables() -> Vec<(&'static str, Value)> {
    let (pk, sk) = (schema::PK, schema::SK);
    let key =
        |h: &str, r: &str| json!([{"AttributeName": h, "KeyType": "HASH"}, {"AttributeName": r, "KeyType": "RANGE"}]);
    let gsi = |name: &str, h: &str, r: &str| json!({"IndexName": name, "KeySchema": key(h, r), "Projection": {"ProjectionType": "ALL"}});
    let attrs = |list: &[(&str, &str)]| -> Value {
        list.iter()
            .map(|(n, t)| json!({"AttributeName": n, "AttributeType": t}))
            .collect()
    };
    vec![
        (
            "RequestsTable",
            json!({
                "AttributeDefinitions": attrs(&[(pk, "S"), (sk, "S"), ("queue", "S"), ("queue_order", "S"), ("job_part", "S")]),
                "KeySchema": key(pk, sk),
                "GlobalSecondaryIndexes": [
                    gsi(schema::QUEUE_INDEX, "queue", "queue_order"),
                    gsi(schema::JOB_INDEX, "job_part", pk),
                ],
            }),
        ),
        (
            "JobsTable",
            json!({
                "AttributeDefinitions": attrs(&[(pk, "S"), (sk, "S"), ("kind", "S"), ("open", "S"), ("created_at", "N")]),
                "KeySchema": key(pk, sk),
                "GlobalSecondaryIndexes": [
                    gsi(schema::JOBS_INDEX, "kind", "created_at"),
                    gsi(schema::OPEN_INDEX, "open", "created_at"),
                ],
            }),
        ),
        (
            // DynamoWebhooks::create_table: the key only, no index.
            "WebhooksTable",
            json!({
                "AttributeDefinitions": attrs(&[(pk, "S"), (sk, "S")]),
                "KeySchema": key(pk, sk),
            }),
        ),
    ]
}

#[test]
fn tables_match_the_schema_and_are_on_demand_recoverable_and_encrypted() {
    let t = Template::load();
    assert_eq!(t.of_type("AWS::DynamoDB::Table").count(), 3);
    for (id, expected) in expected_tables() {
        let p = t.props(id);
        for field in ["AttributeDefinitions", "KeySchema", "GlobalSecondaryIndexes"] {
            assert_eq!(p[field], expected[field], "{id}.{field}");
        }
        assert_eq!(p["BillingMode"], "PAY_PER_REQUEST", "{id}");
        assert_eq!(
            p["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"], true,
            "{id}"
        );
        assert_eq!(p["SSESpecification"]["SSEEnabled"], true, "{id}");
        assert!(
            p["TableName"].is_null(),
            "{id}: names come from the stack (BATCHQ_*_TABLE)"
        );
        // The attribute finished rows carry (batchq_core::store::dynamo::schema).
        assert_eq!(
            p["TimeToLiveSpecification"],
            json!({"AttributeName": batchq_core::store::dynamo::schema::EXPIRES_AT, "Enabled": true}),
            "{id}: TTL on the expiry attribute the code writes"
        );
        assert_eq!(t.resource(id)["DeletionPolicy"], "Retain", "{id}");
    }
}

/// The tables the real adapter creates (in the emulator) equal the template's.
#[tokio::test]
async fn tables_equal_what_create_tables_builds() {
    use aws_sdk_dynamodb::types::{AttributeDefinition, KeySchemaElement};
    let env = batchq_tests::TestEnv::new().await;
    let t = Template::load();
    let keys_json = |ks: &[KeySchemaElement]| -> Value {
        ks.iter()
            .map(|k| json!({"AttributeName": k.attribute_name(), "KeyType": k.key_type().as_str()}))
            .collect()
    };
    let attrs_sorted = |list: Vec<Value>| -> Vec<String> {
        let mut v: Vec<String> = list.iter().map(Value::to_string).collect();
        v.sort();
        v
    };
    for (id, table) in [
        ("RequestsTable", &env.config.requests_table),
        ("JobsTable", &env.config.jobs_table),
        ("WebhooksTable", env.config.webhooks_table.as_ref().unwrap()),
    ] {
        let d = env.dynamo.describe_table().table_name(table).send().await.unwrap();
        let d = d.table().unwrap();
        let p = t.props(id);
        assert_eq!(keys_json(d.key_schema()), p["KeySchema"], "{id}: key schema");
        let built: Vec<Value> = d
            .attribute_definitions()
            .iter()
            .map(|a: &AttributeDefinition| {
                json!({"AttributeName": a.attribute_name(), "AttributeType": a.attribute_type().as_str()})
            })
            .collect();
        assert_eq!(
            attrs_sorted(built),
            attrs_sorted(one_or_many(&p["AttributeDefinitions"])),
            "{id}: attribute definitions"
        );
        let mut built: Vec<String> = d
            .global_secondary_indexes()
            .iter()
            .map(|g| {
                json!({
                    "IndexName": g.index_name(),
                    "KeySchema": keys_json(g.key_schema()),
                    "Projection": {"ProjectionType": g.projection().and_then(|p| p.projection_type()).map(|p| p.as_str())},
                })
                .to_string()
            })
            .collect();
        built.sort();
        assert_eq!(
            built,
            attrs_sorted(one_or_many(&p["GlobalSecondaryIndexes"])),
            "{id}: global secondary indexes"
        );
        if let Some(mode) = d.billing_mode_summary().and_then(|b| b.billing_mode()) {
            assert_eq!(p["BillingMode"], mode.as_str(), "{id}: billing mode");
        }
        let ttl = env
            .dynamo
            .describe_time_to_live()
            .table_name(table)
            .send()
            .await
            .unwrap();
        let ttl = ttl.time_to_live_description().expect("a TTL description");
        assert_eq!(
            json!({
                "AttributeName": ttl.attribute_name(),
                "Enabled": ttl.time_to_live_status().map(|s| s.as_str()) == Some("ENABLED"),
            }),
            p["TimeToLiveSpecification"],
            "{id}: time to live"
        );
    }
}

#[test]
fn the_bucket_is_private_encrypted_tls_only_and_expires_what_it_may() {
    let t = Template::load();
    let p = t.props("DataBucket");
    assert_eq!(
        p["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]["SSEAlgorithm"],
        "AES256"
    );
    for flag in [
        "BlockPublicAcls",
        "BlockPublicPolicy",
        "IgnorePublicAcls",
        "RestrictPublicBuckets",
    ] {
        assert_eq!(p["PublicAccessBlockConfiguration"][flag], true, "{flag}");
    }
    let policy = t.props("DataBucketPolicy");
    assert_eq!(policy["Bucket"], reference("DataBucket"));
    let deny = &policy["PolicyDocument"]["Statement"][0];
    assert_eq!(deny["Effect"], "Deny");
    assert_eq!(
        deny["Resource"],
        json!([get_att("DataBucket", "Arn"), {"Fn::Sub": "${DataBucket.Arn}/*"}])
    );

    let rules = p["LifecycleConfiguration"]["Rules"].as_array().unwrap();
    let prefixes: BTreeSet<&str> = rules.iter().filter_map(|r| r["Prefix"].as_str()).collect();
    assert_eq!(
        prefixes,
        BTreeSet::from(["bodies/", "inputs/", "results/", "responses/"]),
    );
    // bodies/ expires only after every request's body item has (retention
    // plus the body horizon after enqueue): a queued request needs its body
    // until a batch takes it. With no retention, bodies never expire.
    let bodies = rules.iter().find(|r| r["Prefix"] == "bodies/").unwrap();
    assert_eq!(bodies["ExpirationInDays"], reference("BodyRetentionDays"));
    assert_eq!(
        bodies["Status"],
        json!({"Fn::If": ["HasRetention", "Enabled", "Disabled"]})
    );
    let horizon_days = batchq_core::keys::BODY_HORIZON.as_secs() / 86_400;
    assert!(
        as_u64(&t.parameter("BodyRetentionDays")["Default"])
            >= as_u64(&t.parameter("RetentionDays")["Default"]) + horizon_days,
        "by default a queued request's body object may expire before its body item"
    );
    // The embedded store's hourly sweep applies the same figures
    // (keys::object_expiry): the defaults here are those.
    assert_eq!(
        as_u64(&t.parameter("InputRetentionDays")["Default"]),
        batchq_core::keys::INPUT_RETENTION_DAYS
    );
    // Results point into the result file copies: they go with the rows
    // (RetentionDays), never while a row may still read them, and not at
    // all without a retention.
    let results = rules.iter().find(|r| r["Prefix"] == "results/").unwrap();
    assert_eq!(
        results["ExpirationInDays"],
        json!({"Fn::If": ["HasRetention", reference("RetentionDays"), 1]})
    );
    assert_eq!(
        results["Status"],
        json!({"Fn::If": ["HasRetention", "Enabled", "Disabled"]})
    );
    assert_eq!(
        as_u64(&t.parameter("BodyRetentionDays")["Default"]),
        as_u64(&t.parameter("RetentionDays")["Default"]) + horizon_days
    );
    assert!(rules
        .iter()
        .any(|r| r["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"].is_number() && r["Prefix"].is_null()));
    // Poll reads an input file again when its batch fails validation, up to
    // the batch deadline after submission.
    let deadline_secs: u64 = VARS
        .iter()
        .find(|v| v.name == "BATCHQ_BATCH_DEADLINE_SECS")
        .unwrap()
        .default
        .parse()
        .unwrap();
    let min_days = as_u64(&t.parameter("InputRetentionDays")["MinValue"]);
    assert!(
        min_days * 86_400 > deadline_secs,
        "inputs/ may expire before poll is done with it"
    );
}

// ---------------------------------------------------------------- failures, logs, alarms

#[test]
fn asynchronous_failures_land_in_a_dlq_that_raises_an_alarm() {
    let t = Template::load();
    let alarms: Vec<&Value> = t
        .of_type("AWS::CloudWatch::Alarm")
        .map(|(_, a)| &a["Properties"])
        .collect();
    let alarm_on = |metric: &str, dim: &Value| {
        alarms
            .iter()
            .any(|a| a["MetricName"] == metric && one_or_many(&a["Dimensions"]).iter().any(|d| d["Value"] == *dim))
    };
    for (id, _, _) in FUNCTIONS {
        assert!(alarm_on("Errors", &reference(id)), "{id}: no Errors alarm");
        if id == "EnqueueFunction" {
            assert!(
                t.props(id)["EventInvokeConfig"].is_null(),
                "the API is invoked synchronously"
            );
            continue;
        }
        let dlq = id.replace("Function", "Dlq");
        assert_eq!(
            t.props(id)["EventInvokeConfig"]["DestinationConfig"]["OnFailure"],
            json!({"Type": "SQS", "Destination": get_att(&dlq, "Arn")}),
            "{id}"
        );
        assert_eq!(t.resource(&dlq)["Type"], "AWS::SQS::Queue");
        assert!(
            alarm_on("ApproximateNumberOfMessagesVisible", &get_att(&dlq, "QueueName")),
            "{dlq}: no depth alarm"
        );
    }
    for a in &alarms {
        assert_eq!(a["AlarmActions"], json!([reference("AlarmTopic")]), "{a}");
        assert_eq!(a["TreatMissingData"], "notBreaching", "{a}");
    }
}

#[test]
fn logs_have_retention_and_metric_filters_match_the_code() {
    let t = Template::load();
    for (id, _, _) in FUNCTIONS {
        let group = t.props(id)["LoggingConfig"]["LogGroup"]["Ref"]
            .as_str()
            .unwrap_or_else(|| panic!("{id} logs to a group of this template"))
            .to_owned();
        assert_eq!(t.resource(&group)["Type"], "AWS::Logs::LogGroup");
        assert_eq!(
            t.props(&group)["RetentionInDays"],
            reference("LogRetentionDays"),
            "{group}"
        );
    }
    // Every source file of the core, in any folder (modules get split).
    let code: String = rust_files("shared/src")
        .iter()
        .map(|f| std::fs::read_to_string(format!("{ROOT}/{f}")).unwrap())
        .collect();
    for (id, f) in t.of_type("AWS::Logs::MetricFilter") {
        let pattern = f["Properties"]["FilterPattern"].as_str().unwrap();
        if let Some(msg) = pattern
            .strip_prefix("{ $.message = \"")
            .and_then(|s| s.strip_suffix("\" }"))
        {
            assert!(
                code.contains(&format!("\"{msg}\"")),
                "{id}: no log line {msg:?} in shared/src any more; the alarm would never fire"
            );
        } else {
            assert_eq!(pattern, "{ $.level = \"ERROR\" }", "{id}");
        }
    }
}

/// The Deploy section of docs/operations.md lists every template parameter
/// with its default.
#[test]
fn the_docs_list_every_parameter_with_its_default() {
    let t = Template::load();
    let operations = read("docs/operations.md");
    let section = operations
        .split("\n## Deploy to AWS")
        .nth(1)
        .expect("docs/operations.md has a Deploy to AWS section");
    let section = section.split("\n## ").next().unwrap();
    let table = section
        .split("| parameter | default | meaning |")
        .nth(1)
        .expect("the Deploy section has a parameters table");
    let rows: Vec<(String, String)> = table
        .lines()
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            (
                cells[1].trim_matches('`').to_owned(),
                cells[2].trim_matches('`').to_owned(),
            )
        })
        .collect();
    let documented: Vec<&str> = rows.iter().map(|(n, _)| n.as_str()).collect();
    let declared: Vec<&str> = t.section("Parameters").keys().map(String::as_str).collect();
    assert_eq!(
        documented.iter().copied().collect::<BTreeSet<_>>(),
        declared.iter().copied().collect::<BTreeSet<_>>(),
        "docs/operations.md parameters table vs the template's Parameters"
    );
    for (name, default) in &rows {
        let expected = match &t.parameter(name)["Default"] {
            Value::String(s) if s.is_empty() => "(empty)".to_owned(),
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        assert_eq!(default, &expected, "documented default of {name}");
    }
}

#[test]
fn failed_jobs_and_an_old_queue_raise_alarms() {
    let t = Template::load();
    let alarm = |metric: &str| {
        t.of_type("AWS::CloudWatch::Alarm")
            .map(|(_, a)| &a["Properties"])
            .find(|a| a["MetricName"] == metric)
            .unwrap_or_else(|| panic!("no alarm on {metric}"))
            .clone()
    };
    assert_eq!(alarm("JobsFailed")["Statistic"], "Sum");
    // The queue's age is a metric poll writes (no longer a log pattern).
    let age = alarm(batchq_core::metrics::OLDEST_QUEUED_AGE.name);
    assert_eq!(age["Statistic"], "Maximum");
    assert_eq!(age["Threshold"], reference("OldestQueuedAgeAlarmSeconds"));
    assert_eq!(
        age["Dimensions"],
        Value::Null,
        "the alarm watches the oldest of all groups"
    );
    // JobsFailed comes from a log line the code writes (checked against the
    // code by logs_have_retention_and_metric_filters_match_the_code).
    assert!(
        metric_filter_names(&t).contains("JobsFailed"),
        "no metric filter feeds JobsFailed"
    );
}

// ---------------------------------------------------------------- metrics

/// Metrics the template's metric filters make from log lines.
fn metric_filter_names(t: &Template) -> BTreeSet<String> {
    t.of_type("AWS::Logs::MetricFilter")
        .flat_map(|(_, f)| one_or_many(&f["Properties"]["MetricTransformations"]))
        .map(|m| m["MetricName"].as_str().unwrap().to_owned())
        .collect()
}

/// The namespace the functions write their metrics in, as the template sets
/// it (a `!Sub` string), and the one every alarm on them must name.
fn metrics_namespace(t: &Template) -> Value {
    t.global("Environment")["Variables"]["BATCHQ_METRICS_NAMESPACE"].clone()
}

/// The dashboard's body as JSON, `${…}` replaced by placeholders.
fn dashboard_body(t: &Template) -> Value {
    let (_, dash) = t
        .of_type("AWS::CloudWatch::Dashboard")
        .next()
        .expect("the template has a CloudWatch dashboard");
    let body = sub_string(&dash["Properties"]["DashboardBody"]).expect("DashboardBody is a !Sub string");
    let mut text = body.to_owned();
    for name in sub_names(body) {
        let placeholder = match name.as_str() {
            "OldestQueuedAgeAlarmSeconds" => "7200",
            "WebhookUndeliveredAlarmSeconds" => "3600",
            _ => "X",
        };
        text = text.replace(&format!("${{{name}}}"), placeholder);
    }
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("DashboardBody is not JSON: {e}\n{text}"))
}

/// The metric names a dashboard names: plain metric rows
/// (`[namespace, name, …]`) and `MetricName="…"` in SEARCH expressions.
fn dashboard_metrics(body: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for w in body["widgets"].as_array().expect("widgets") {
        for row in w["properties"]["metrics"].as_array().into_iter().flatten() {
            let row = row.as_array().expect("a metric row is an array");
            match &row[0] {
                Value::Object(o) => {
                    let expr = o["expression"].as_str().expect("an expression row");
                    let names: Vec<&str> = expr
                        .split("MetricName=\"")
                        .skip(1)
                        .filter_map(|r| r.split('"').next())
                        .collect();
                    assert!(!names.is_empty(), "an expression naming no metric: {expr}");
                    out.extend(names.into_iter().map(str::to_owned));
                }
                Value::String(ns) => {
                    assert_eq!(ns, "batchq/X", "a metric row outside batchq's namespace: {row:?}");
                    out.push(row[1].as_str().expect("the metric name").to_owned());
                }
                other => panic!("unexpected metric row start {other}"),
            }
        }
    }
    out
}

#[test]
fn the_dashboard_and_alarms_name_only_metrics_the_code_emits() {
    let t = Template::load();
    let known: BTreeSet<&str> = batchq_core::metrics::ALL.iter().map(|m| m.name).collect();
    let from_logs = metric_filter_names(&t);
    assert_eq!(
        metrics_namespace(&t),
        json!({"Fn::Sub": "batchq/${AWS::StackName}"}),
        "the functions write their metrics where the dashboard and alarms read them"
    );

    let named = dashboard_metrics(&dashboard_body(&t));
    let unknown: Vec<&String> = named.iter().filter(|n| !known.contains(n.as_str())).collect();
    assert!(
        unknown.is_empty(),
        "the dashboard names metrics the code does not emit: {unknown:?}"
    );
    // Every metric has its place on the dashboard.
    for m in batchq_core::metrics::ALL {
        assert!(named.iter().any(|n| n == m.name), "{} is not on the dashboard", m.name);
    }

    let mut alarmed = 0;
    for (id, a) in t.of_type("AWS::CloudWatch::Alarm") {
        let p = &a["Properties"];
        if p["Namespace"] != metrics_namespace(&t) {
            continue;
        }
        let name = p["MetricName"].as_str().unwrap();
        if from_logs.contains(name) {
            continue;
        }
        alarmed += 1;
        let metric = batchq_core::metrics::by_name(name)
            .unwrap_or_else(|| panic!("{id} watches {name}, which the code does not emit"));
        for d in one_or_many(&p["Dimensions"]) {
            let dim = d["Name"].as_str().unwrap();
            assert!(
                metric.dims.iter().any(|k| k.cloudwatch() == dim),
                "{id}: {name} has no dimension {dim}"
            );
        }
    }
    assert!(alarmed >= 1, "no alarm on batchq's own metrics");
}

/// The cross-check fails on a name the code does not emit.
#[test]
fn a_dashboard_naming_an_unknown_metric_is_caught() {
    let body = json!({"widgets": [{"properties": {"metrics": [
        ["batchq/X", "QueueDepth"],
        [{"expression": "SEARCH('{batchq/X,Status} MetricName=\"JobsByStatus\"', 'Maximum', 60)"}]
    ]}}]});
    let named = dashboard_metrics(&body);
    assert_eq!(named, vec!["QueueDepth".to_owned(), "JobsByStatus".to_owned()]);
    assert!(batchq_core::metrics::by_name("JobsByStatus").is_none());
}
