//! The provider table: the provider instances one batchq sends to (kind,
//! base URL, where the key comes from, limits, enabled endpoints) and the
//! routes that map an enqueued request to one of them. Read from the JSON
//! file `BATCHQ_PROVIDERS_FILE` names (a local path or `s3://BUCKET/KEY`);
//! without one, the single provider the environment configures takes every
//! request its kind serves (today's behaviour).
//!
//! ```json
//! {
//!   "providers": {
//!     "openai": {"kind": "openai"},
//!     "claude": {"kind": "anthropic", "api_key_env": "ANTHROPIC_API_KEY"},
//!     "groq":   {"kind": "groq", "completion_window": "24h", "max_lines_per_batch": 20000}
//!   },
//!   "routes": [
//!     {"url": "/v1/messages", "provider": "claude"},
//!     {"model": "llama-*", "provider": "groq"},
//!     {"model": "*", "provider": "openai"}
//!   ]
//! }
//! ```

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::completion_window::check_completion_window;
use crate::config::{ApiKeySource, Config, ProviderConfig};
use crate::ids::ProviderName;
use crate::job::ProviderKind;
use crate::request::Endpoint;
use crate::routing::{ModelPattern, Route, RoutedProvider, RoutingTable};

/// Why a provider table cannot be used: the field at fault and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct ProviderTableError {
    pub field: String,
    pub problem: String,
}

fn err(field: impl Into<String>, problem: impl Into<String>) -> ProviderTableError {
    ProviderTableError {
        field: field.into(),
        problem: problem.into(),
    }
}

/// One provider instance: its name, how to reach it, and its file limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderInstance {
    pub name: ProviderName,
    pub config: ProviderConfig,
    /// Most requests in one batch of this instance (lowers the global limit).
    pub max_lines_per_batch: Option<u64>,
    /// Largest input of one batch of this instance (lowers the global limit).
    pub max_bytes_per_batch: Option<u64>,
}

/// The provider instances and the routes to them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderTable {
    pub instances: Vec<ProviderInstance>,
    pub routing: RoutingTable,
}

impl ProviderKind {
    /// The base URL a kind's API answers at.
    pub fn default_base_url(self) -> Option<&'static str> {
        match self {
            Self::OpenAi => Some("https://api.openai.com/v1"),
            Self::AzureOpenAi => None, // the resource's own endpoint
            Self::Anthropic => Some("https://api.anthropic.com/v1"),
            Self::Groq => Some("https://api.groq.com/openai/v1"),
            Self::Together => Some("https://api.together.xyz/v1"),
        }
    }

    /// The environment variable a kind's key is read from by default (the
    /// name the provider's own SDKs use).
    pub fn default_key_env(self) -> &'static str {
        match self {
            Self::OpenAi => "OPENAI_API_KEY",
            Self::AzureOpenAi => "AZURE_OPENAI_API_KEY",
            Self::Anthropic => "ANTHROPIC_API_KEY",
            Self::Groq => "GROQ_API_KEY",
            Self::Together => "TOGETHER_API_KEY",
        }
    }

    /// The API version a kind is spoken with (`api-version` for Azure,
    /// `anthropic-version` for Anthropic).
    pub fn default_api_version(self) -> &'static str {
        match self {
            Self::Anthropic => "2023-06-01",
            _ => "2024-10-21",
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTable {
    providers: BTreeMap<String, FileProvider>,
    #[serde(default)]
    routes: Vec<FileRoute>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileProvider {
    kind: String,
    base_url: Option<String>,
    api_key_env: Option<String>,
    api_key_secret_arn: Option<String>,
    api_version: Option<String>,
    completion_window: Option<String>,
    organization: Option<String>,
    project: Option<String>,
    endpoints: Option<Vec<String>>,
    max_lines_per_batch: Option<u64>,
    max_bytes_per_batch: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRoute {
    url: Option<String>,
    model: Option<String>,
    provider: String,
}

impl ProviderTable {
    /// The one provider the environment configures, named after its kind,
    /// taking every request its kind serves.
    pub fn single(config: &Config) -> Self {
        let name = config.provider.kind.instance_name();
        Self {
            routing: RoutingTable::single(name.clone(), config.provider.kind),
            instances: vec![ProviderInstance {
                name,
                config: config.provider.clone(),
                max_lines_per_batch: None,
                max_bytes_per_batch: None,
            }],
        }
    }

    /// Reads a provider table. Timeouts, retries and list lag come from
    /// `config` (the environment); keys named by `api_key_env` are read
    /// through `env`.
    pub fn from_json(
        text: &str,
        config: &Config,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ProviderTableError> {
        let file: FileTable = serde_json::from_str(text).map_err(|e| err("(file)", e.to_string()))?;
        if file.providers.is_empty() {
            return Err(err("providers", "lists no provider"));
        }
        let mut instances = Vec::new();
        let mut routed = Vec::new();
        for (raw_name, p) in file.providers {
            let field = |f: &str| format!("providers.{raw_name}.{f}");
            let name =
                ProviderName::parse(raw_name.as_str()).map_err(|e| err(format!("providers.{raw_name}"), e.message))?;
            let kind = ProviderKind::parse(&p.kind).ok_or_else(|| {
                let kinds: Vec<&str> = ProviderKind::ALL.iter().map(|k| k.as_str()).collect();
                err(
                    field("kind"),
                    format!("{:?} is not one of {}", p.kind, kinds.join(", ")),
                )
            })?;
            let base_url = match (p.base_url, kind.default_base_url()) {
                (Some(url), _) => url,
                (None, Some(default)) => default.to_owned(),
                (None, None) => return Err(err(field("base_url"), format!("required for kind {}", kind.as_str()))),
            };
            if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
                return Err(err(
                    field("base_url"),
                    format!("{base_url:?} is not an http:// or https:// URL"),
                ));
            }
            let api_key = match (p.api_key_secret_arn, p.api_key_env) {
                (Some(_), Some(_)) => {
                    return Err(err(
                        field("api_key_env"),
                        "give api_key_env or api_key_secret_arn, not both",
                    ))
                }
                (Some(arn), None) if !arn.starts_with("arn:") => {
                    return Err(err(
                        field("api_key_secret_arn"),
                        "must be a Secrets Manager ARN (arn:aws:secretsmanager:…)",
                    ))
                }
                (Some(arn), None) => ApiKeySource::SecretArn(arn),
                (None, var) => {
                    let named = var.is_some();
                    let var = var.unwrap_or_else(|| kind.default_key_env().to_owned());
                    match (env(&var).filter(|v| !v.trim().is_empty()), &config.provider.api_key) {
                        (Some(key), _) => ApiKeySource::Literal(key),
                        // In AWS: the deployment's key secret, which holds
                        // each provider's key under its SDK's name.
                        (None, ApiKeySource::SecretArn(arn)) if !named => ApiKeySource::SecretArn(arn.clone()),
                        (None, _) => ApiKeySource::None,
                    }
                }
            };
            let endpoints = match p.endpoints {
                None => kind.endpoints().to_vec(),
                Some(list) if list.is_empty() => return Err(err(field("endpoints"), "lists no endpoint")),
                Some(list) => {
                    let mut out = Vec::new();
                    for (i, url) in list.iter().enumerate() {
                        let e =
                            Endpoint::parse(url).map_err(|e| err(format!("{}[{i}]", field("endpoints")), e.message))?;
                        if !kind.endpoints().contains(&e) {
                            return Err(err(
                                format!("{}[{i}]", field("endpoints")),
                                format!("kind {} does not serve {e}", kind.as_str()),
                            ));
                        }
                        out.push(e);
                    }
                    out
                }
            };
            for (f, v) in [
                ("max_lines_per_batch", p.max_lines_per_batch),
                ("max_bytes_per_batch", p.max_bytes_per_batch),
            ] {
                if v == Some(0) {
                    return Err(err(field(f), "must be at least 1"));
                }
            }
            let completion_window = p.completion_window.unwrap_or_else(|| "24h".to_owned());
            check_completion_window(kind, &completion_window).map_err(|e| err(field("completion_window"), e))?;
            let connection = ProviderConfig {
                kind,
                base_url: base_url.trim_end_matches('/').to_owned(),
                api_key,
                organization: p.organization,
                project: p.project,
                api_version: p.api_version.unwrap_or_else(|| kind.default_api_version().to_owned()),
                completion_window,
                ..config.provider.clone()
            };
            routed.push(RoutedProvider {
                name: name.clone(),
                kind,
                endpoints,
            });
            instances.push(ProviderInstance {
                name,
                config: connection,
                max_lines_per_batch: p.max_lines_per_batch,
                max_bytes_per_batch: p.max_bytes_per_batch,
            });
        }
        let routes = if file.routes.is_empty() {
            if routed.len() > 1 {
                return Err(err("routes", "required when more than one provider is listed"));
            }
            vec![Route {
                url: None,
                model: ModelPattern::Any,
                provider: routed[0].name.clone(),
            }]
        } else {
            let mut routes = Vec::new();
            for (i, r) in file.routes.into_iter().enumerate() {
                let url = r
                    .url
                    .map(|u| Endpoint::parse(&u))
                    .transpose()
                    .map_err(|e| err(format!("routes[{i}].url"), e.message))?;
                let model = match r.model {
                    None => ModelPattern::Any,
                    Some(m) => ModelPattern::parse(&m).map_err(|e| err(format!("routes[{i}].model"), e))?,
                };
                let provider = ProviderName::parse(r.provider.as_str())
                    .map_err(|e| err(format!("routes[{i}].provider"), e.message))?;
                routes.push(Route { url, model, provider });
            }
            routes
        };
        let routing = RoutingTable::new(routed, routes).map_err(|e| match e.split_once(": ") {
            Some((field, problem)) => err(field, problem),
            None => err("routes", e),
        })?;
        Ok(Self { instances, routing })
    }

    pub fn instance(&self, name: &ProviderName) -> Option<&ProviderInstance> {
        self.instances.iter().find(|i| &i.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::ModelName;

    fn config() -> Config {
        Config::from_lookup(&|_| None).unwrap()
    }

    fn env(name: &str) -> Option<String> {
        match name {
            "ANTHROPIC_API_KEY" => Some("sk-ant".into()),
            "MY_GROQ_KEY" => Some("gsk".into()),
            _ => None,
        }
    }

    fn parse(text: &str) -> Result<ProviderTable, ProviderTableError> {
        ProviderTable::from_json(text, &config(), &env)
    }

    const THREE: &str = r#"{
      "providers": {
        "openai": {"kind": "openai"},
        "claude": {"kind": "anthropic"},
        "groq": {"kind": "groq", "api_key_env": "MY_GROQ_KEY", "completion_window": "48h", "max_lines_per_batch": 20000}
      },
      "routes": [
        {"url": "/v1/messages", "provider": "claude"},
        {"model": "llama-*", "provider": "groq"},
        {"model": "*", "provider": "openai"}
      ]
    }"#;

    #[test]
    fn a_three_provider_table_reads_with_kind_defaults() {
        let t = parse(THREE).unwrap();
        let claude = t.instance(&ProviderName::parse("claude").unwrap()).unwrap();
        assert_eq!(claude.config.kind, ProviderKind::Anthropic);
        assert_eq!(claude.config.base_url, "https://api.anthropic.com/v1");
        assert_eq!(claude.config.api_key, ApiKeySource::Literal("sk-ant".into()));
        assert_eq!(claude.config.api_version, "2023-06-01");
        let groq = t.instance(&ProviderName::parse("groq").unwrap()).unwrap();
        assert_eq!(groq.config.base_url, "https://api.groq.com/openai/v1");
        assert_eq!(groq.config.api_key, ApiKeySource::Literal("gsk".into()));
        assert_eq!(groq.config.completion_window, "48h");
        assert_eq!(groq.max_lines_per_batch, Some(20000));
        let openai = t.instance(&ProviderName::parse("openai").unwrap()).unwrap();
        assert_eq!(openai.config.api_key, ApiKeySource::None, "OPENAI_API_KEY is not set");
        let m = |s: &str| ModelName::parse(s).unwrap();
        let to = |e, model: &str| t.routing.route(e, &m(model), None).unwrap().name.to_string();
        assert_eq!(to(Endpoint::Messages, "claude-haiku-4-5"), "claude");
        assert_eq!(to(Endpoint::ChatCompletions, "llama-3.3-70b-versatile"), "groq");
        assert_eq!(to(Endpoint::ChatCompletions, "gpt-4o-mini"), "openai");
    }

    #[test]
    fn mistakes_are_refused_naming_the_field() {
        let cases = [
            (r#"{"providers": {}}"#, "providers"),
            (r#"{"providers": {"x": {"kind": "bedrock"}}}"#, "providers.x.kind"),
            (
                r#"{"providers": {"Bad Name": {"kind": "openai"}}}"#,
                "providers.Bad Name",
            ),
            (
                r#"{"providers": {"az": {"kind": "azure_openai"}}}"#,
                "providers.az.base_url",
            ),
            (
                r#"{"providers": {"o": {"kind": "openai", "base_url": "ftp://x"}}}"#,
                "providers.o.base_url",
            ),
            (
                r#"{"providers": {"o": {"kind": "openai", "api_key_env": "A", "api_key_secret_arn": "arn:x"}}}"#,
                "providers.o.api_key_env",
            ),
            (
                r#"{"providers": {"o": {"kind": "openai", "api_key_secret_arn": "nope"}}}"#,
                "providers.o.api_key_secret_arn",
            ),
            (
                r#"{"providers": {"c": {"kind": "anthropic", "endpoints": ["/v1/embeddings"]}}}"#,
                "providers.c.endpoints[0]",
            ),
            (
                r#"{"providers": {"o": {"kind": "openai", "max_lines_per_batch": 0}}}"#,
                "providers.o.max_lines_per_batch",
            ),
            (
                r#"{"providers": {"o": {"kind": "openai"}, "c": {"kind": "anthropic"}}}"#,
                "routes",
            ),
            (
                r#"{"providers": {"o": {"kind": "openai"}}, "routes": [{"provider": "c"}]}"#,
                "routes[0].provider",
            ),
            (
                r#"{"providers": {"o": {"kind": "openai"}}, "routes": [{"url": "/v1/messages", "provider": "o"}]}"#,
                "routes[0].url",
            ),
            (
                r#"{"providers": {"o": {"kind": "openai"}}, "routes": [{"model": "a*b", "provider": "o"}]}"#,
                "routes[0].model",
            ),
            (r#"{"providers": {"o": {"kind": "openai", "colour": "red"}}}"#, "(file)"),
            (
                r#"{"providers": {"o": {"kind": "openai", "completion_window": "48h"}}}"#,
                "providers.o.completion_window",
            ),
            (
                r#"{"providers": {"g": {"kind": "groq", "completion_window": "8d"}}}"#,
                "providers.g.completion_window",
            ),
        ];
        for (text, field) in cases {
            let e = parse(text).unwrap_err();
            assert_eq!(e.field, field, "{text}: {e}");
        }
    }

    #[test]
    fn an_instance_without_a_key_setting_uses_the_deployments_key_secret() {
        let arn = "arn:aws:secretsmanager:us-east-1:1:secret:keys";
        let config =
            Config::from_lookup(&|k| (k == "BATCHQ_OPENAI_API_KEY_SECRET_ARN").then(|| arn.to_owned())).unwrap();
        let t = ProviderTable::from_json(THREE, &config, &env).unwrap();
        let instance = |n: &str| {
            t.instance(&ProviderName::parse(n).unwrap())
                .unwrap()
                .config
                .api_key
                .clone()
        };
        assert_eq!(instance("openai"), ApiKeySource::SecretArn(arn.into()));
        // A key in the environment, or a variable the table names, wins.
        assert_eq!(instance("claude"), ApiKeySource::Literal("sk-ant".into()));
        assert_eq!(instance("groq"), ApiKeySource::Literal("gsk".into()));
    }

    #[test]
    fn one_provider_needs_no_routes() {
        let t = parse(r#"{"providers": {"claude": {"kind": "anthropic"}}}"#).unwrap();
        let m = ModelName::parse("claude-sonnet-4-5").unwrap();
        assert_eq!(
            t.routing.route(Endpoint::Messages, &m, None).unwrap().name.as_str(),
            "claude"
        );
    }

    #[test]
    fn without_a_file_the_environment_provider_takes_everything_its_kind_serves() {
        let t = ProviderTable::single(&config());
        assert_eq!(t.instances.len(), 1);
        assert_eq!(t.instances[0].name, ProviderName::default_name());
        let m = ModelName::parse("text-embedding-3-small").unwrap();
        assert!(t.routing.route(Endpoint::Embeddings, &m, None).is_ok());
    }
}
