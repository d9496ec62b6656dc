//! Routing: which provider instance an enqueued request goes to. The
//! provider table names the instances (each of one [`ProviderKind`]) and an
//! ordered list of routes; the first route that matches a request's `url`
//! and `model` wins, unless the request names its provider itself. Pure
//! rules: the table is read by the wiring (`provider_table`).

use crate::error::ValidationError;
use crate::ids::{ModelName, ProviderName};
use crate::job::ProviderKind;
use crate::request::Endpoint;

impl ProviderKind {
    /// The name of the one provider configured without a provider table:
    /// its kind (`openai`, `anthropic`, …).
    pub fn instance_name(self) -> ProviderName {
        ProviderName::parse(self.as_str()).expect("a kind's name is a valid provider name")
    }

    /// The endpoints a kind's batch API serves.
    pub fn endpoints(self) -> &'static [Endpoint] {
        use Endpoint as E;
        match self {
            Self::OpenAi | Self::AzureOpenAi => &[
                E::ChatCompletions,
                E::Embeddings,
                E::Completions,
                E::Responses,
                E::Moderations,
            ],
            Self::Anthropic => &[E::Messages],
            Self::Groq => &[E::ChatCompletions],
            Self::Together => &[E::ChatCompletions],
        }
    }
}

/// A model name pattern of a route: an exact name, a prefix (`claude-*`) or
/// any model (`*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelPattern {
    Any,
    Prefix(String),
    Exact(String),
}

impl ModelPattern {
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "" => Err("must not be empty".into()),
            "*" => Ok(Self::Any),
            _ => match s.strip_suffix('*') {
                Some(p) if p.contains('*') => Err(format!("{s:?}: only a trailing * is allowed")),
                Some(p) => Ok(Self::Prefix(p.to_owned())),
                None if s.contains('*') => Err(format!("{s:?}: only a trailing * is allowed")),
                None => Ok(Self::Exact(s.to_owned())),
            },
        }
    }

    pub fn matches(&self, model: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Prefix(p) => model.starts_with(p.as_str()),
            Self::Exact(e) => model == e,
        }
    }
}

/// One provider instance as routing sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutedProvider {
    pub name: ProviderName,
    pub kind: ProviderKind,
    /// The endpoints enabled on this instance (a subset of its kind's).
    pub endpoints: Vec<Endpoint>,
}

impl RoutedProvider {
    pub fn serves(&self, endpoint: Endpoint) -> bool {
        self.endpoints.contains(&endpoint)
    }
}

/// One route: requests whose url and model match go to `provider`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// `None`: any url the provider serves.
    pub url: Option<Endpoint>,
    pub model: ModelPattern,
    pub provider: ProviderName,
}

/// The provider instances and the routes to them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutingTable {
    providers: Vec<RoutedProvider>,
    routes: Vec<Route>,
}

impl RoutingTable {
    /// Checks that every route names a configured provider and that a
    /// route with a url names a provider serving it.
    pub fn new(providers: Vec<RoutedProvider>, routes: Vec<Route>) -> Result<Self, String> {
        for (i, r) in routes.iter().enumerate() {
            let Some(p) = providers.iter().find(|p| p.name == r.provider) else {
                return Err(format!(
                    "routes[{i}].provider: no provider named {:?}",
                    r.provider.as_str()
                ));
            };
            if let Some(url) = r.url {
                if !p.serves(url) {
                    return Err(format!(
                        "routes[{i}].url: provider {:?} does not serve {url}",
                        p.name.as_str()
                    ));
                }
            }
        }
        Ok(Self { providers, routes })
    }

    /// One provider taking every request its kind serves (no provider table).
    pub fn single(name: ProviderName, kind: ProviderKind) -> Self {
        let provider = RoutedProvider {
            name: name.clone(),
            kind,
            endpoints: kind.endpoints().to_vec(),
        };
        Self {
            providers: vec![provider],
            routes: vec![Route {
                url: None,
                model: ModelPattern::Any,
                provider: name,
            }],
        }
    }

    pub fn providers(&self) -> &[RoutedProvider] {
        &self.providers
    }

    pub fn provider(&self, name: &ProviderName) -> Option<&RoutedProvider> {
        self.providers.iter().find(|p| &p.name == name)
    }

    /// The provider a request goes to: the one it names (`provider` field),
    /// else the first route matching its url and model. An error names the
    /// field at fault: `provider` (unknown, or not serving the url) or
    /// `body.model` (no route).
    pub fn route(
        &self,
        endpoint: Endpoint,
        model: &ModelName,
        requested: Option<&str>,
    ) -> Result<&RoutedProvider, ValidationError> {
        if let Some(name) = requested {
            let Some(p) = self.providers.iter().find(|p| p.name.as_str() == name) else {
                let known: Vec<&str> = self.providers.iter().map(|p| p.name.as_str()).collect();
                return Err(ValidationError::new(
                    "provider",
                    "unknown",
                    format!(
                        "provider {:?} is not configured; configured: {}",
                        name.chars().take(40).collect::<String>(),
                        known.join(", ")
                    ),
                ));
            };
            if !p.serves(endpoint) {
                return Err(ValidationError::new(
                    "provider",
                    "unsupported",
                    format!("provider {:?} does not serve {endpoint}", p.name.as_str()),
                ));
            }
            return Ok(p);
        }
        self.routes
            .iter()
            .filter(|r| r.url.is_none_or(|u| u == endpoint) && r.model.matches(model.as_str()))
            .filter_map(|r| self.provider(&r.provider))
            .find(|p| p.serves(endpoint))
            .ok_or_else(|| {
                ValidationError::new(
                    "body.model",
                    "unroutable",
                    format!(
                        "no provider is configured for model {:?} at {endpoint}",
                        model.as_str().chars().take(80).collect::<String>()
                    ),
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> ProviderName {
        ProviderName::parse(s).unwrap()
    }

    fn model(s: &str) -> ModelName {
        ModelName::parse(s).unwrap()
    }

    fn table() -> RoutingTable {
        let p = |n: &str, kind: ProviderKind| RoutedProvider {
            name: name(n),
            kind,
            endpoints: kind.endpoints().to_vec(),
        };
        RoutingTable::new(
            vec![
                p("openai", ProviderKind::OpenAi),
                p("claude", ProviderKind::Anthropic),
                p("groq", ProviderKind::Groq),
            ],
            vec![
                Route {
                    url: Some(Endpoint::Messages),
                    model: ModelPattern::Any,
                    provider: name("claude"),
                },
                Route {
                    url: None,
                    model: ModelPattern::parse("llama-*").unwrap(),
                    provider: name("groq"),
                },
                Route {
                    url: None,
                    model: ModelPattern::parse("gpt-*").unwrap(),
                    provider: name("openai"),
                },
            ],
        )
        .unwrap()
    }

    #[test]
    fn first_matching_route_wins() {
        let t = table();
        let to = |e, m: &str| t.route(e, &model(m), None).map(|p| p.name.to_string());
        assert_eq!(to(Endpoint::Messages, "claude-haiku-4-5").unwrap(), "claude");
        assert_eq!(to(Endpoint::ChatCompletions, "llama-3.1-8b-instant").unwrap(), "groq");
        assert_eq!(to(Endpoint::ChatCompletions, "gpt-4o-mini").unwrap(), "openai");
        assert_eq!(to(Endpoint::Embeddings, "gpt-embed").unwrap(), "openai");
    }

    #[test]
    fn a_route_whose_provider_does_not_serve_the_url_is_passed_over() {
        // groq serves chat only: a llama embedding falls through to no route.
        let e = table()
            .route(Endpoint::Embeddings, &model("llama-embed"), None)
            .unwrap_err();
        assert_eq!(e.field, "body.model");
        assert!(e.message.contains("llama-embed"), "{}", e.message);
    }

    #[test]
    fn an_unroutable_model_is_refused_naming_it() {
        let e = table()
            .route(Endpoint::ChatCompletions, &model("mistral-large"), None)
            .unwrap_err();
        assert_eq!(e.field, "body.model");
        assert_eq!(e.code, "unroutable");
        assert!(e.message.contains("\"mistral-large\""), "{}", e.message);
    }

    #[test]
    fn a_named_provider_wins_over_routes_and_must_serve_the_url() {
        let t = table();
        let p = t
            .route(Endpoint::ChatCompletions, &model("gpt-4o-mini"), Some("groq"))
            .unwrap();
        assert_eq!(p.name.as_str(), "groq");
        let unknown = t
            .route(Endpoint::ChatCompletions, &model("m"), Some("nope"))
            .unwrap_err();
        assert_eq!((unknown.field.as_str(), unknown.code), ("provider", "unknown"));
        assert!(unknown.message.contains("openai, claude, groq"), "{}", unknown.message);
        let wrong = t
            .route(Endpoint::ChatCompletions, &model("m"), Some("claude"))
            .unwrap_err();
        assert_eq!((wrong.field.as_str(), wrong.code), ("provider", "unsupported"));
    }

    #[test]
    fn routes_must_name_configured_providers_serving_their_url() {
        let openai = RoutedProvider {
            name: name("openai"),
            kind: ProviderKind::OpenAi,
            endpoints: ProviderKind::OpenAi.endpoints().to_vec(),
        };
        let e = RoutingTable::new(
            vec![openai.clone()],
            vec![Route {
                url: None,
                model: ModelPattern::Any,
                provider: name("claude"),
            }],
        )
        .unwrap_err();
        assert!(e.starts_with("routes[0].provider"), "{e}");
        let e = RoutingTable::new(
            vec![openai],
            vec![Route {
                url: Some(Endpoint::Messages),
                model: ModelPattern::Any,
                provider: name("openai"),
            }],
        )
        .unwrap_err();
        assert!(e.starts_with("routes[0].url"), "{e}");
    }

    #[test]
    fn the_single_provider_table_routes_everything_its_kind_serves() {
        let t = RoutingTable::single(ProviderName::default_name(), ProviderKind::OpenAi);
        assert!(t.route(Endpoint::Embeddings, &model("anything"), None).is_ok());
        assert_eq!(
            t.route(Endpoint::Messages, &model("claude-x"), None).unwrap_err().field,
            "body.model"
        );
    }

    #[test]
    fn every_kind_names_a_valid_instance() {
        for kind in ProviderKind::ALL {
            assert_eq!(kind.instance_name().as_str(), kind.as_str());
        }
    }

    #[test]
    fn model_patterns_allow_only_a_trailing_star() {
        assert_eq!(ModelPattern::parse("*").unwrap(), ModelPattern::Any);
        assert!(ModelPattern::parse("a*b").is_err());
        assert!(ModelPattern::parse("**").is_err());
        assert!(ModelPattern::parse("").is_err());
        assert!(ModelPattern::parse("gpt-4o").unwrap().matches("gpt-4o"));
        assert!(!ModelPattern::parse("gpt-4o").unwrap().matches("gpt-4o-mini"));
    }
}
