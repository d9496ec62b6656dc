//! How `batchq enqueue --api URL` authenticates to a running API.
//!
//! * `batchq serve` with `BATCHQ_API_KEYS` wants `Authorization: Bearer KEY`
//!   (and an API Gateway with a JWT authorizer wants `Bearer JWT`): the
//!   token comes from `BATCHQ_API_KEY`.
//! * The deployed API's routes use IAM authorization, so API Gateway wants
//!   a request signed with AWS Signature V4 for the service `execute-api`,
//!   with credentials from the standard AWS chain (environment, profile,
//!   SSO, web identity, container or instance role).
//!
//! `--api-auth auto` (the default) picks: a key in `BATCHQ_API_KEY` → bearer;
//! else an `*.execute-api.REGION.amazonaws.com` URL → SigV4; else nothing
//! (a local `batchq serve` without keys). A custom domain in front of API
//! Gateway looks like any other host, hence `--api-auth sigv4`.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use tokio::sync::Mutex;

use crate::Failure;

/// The service name API Gateway's IAM authorization checks signatures for.
pub const SERVICE: &str = "execute-api";

/// `--api-auth` / `BATCHQ_API_AUTH`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AuthMode {
    /// Bearer when BATCHQ_API_KEY is set, else SigV4 for an execute-api URL, else none.
    Auto,
    /// Sign with AWS credentials (SigV4, service execute-api).
    Sigv4,
    /// `Authorization: Bearer $BATCHQ_API_KEY` (a `batchq serve` key or a JWT).
    Bearer,
    /// Send no credentials.
    None,
}

/// How calls to the API are authenticated, once decided.
pub enum Auth {
    None,
    Bearer(String),
    SigV4(SigV4),
}

impl Auth {
    /// Decides how to authenticate to `url`; loads AWS credentials (once)
    /// when signing, so a missing profile or an expired SSO session is
    /// reported before the first line is sent.
    pub async fn resolve(mode: AuthMode, url: &reqwest::Url, api_key: Option<String>) -> Result<Self, Failure> {
        let api_key = api_key.map(|k| k.trim().to_owned()).filter(|k| !k.is_empty());
        let host_region = url.host_str().and_then(execute_api_region);
        match (mode, api_key) {
            (AuthMode::None, _) => Ok(Self::None),
            (AuthMode::Bearer, Some(key)) | (AuthMode::Auto, Some(key)) => Ok(Self::Bearer(key)),
            (AuthMode::Bearer, None) => {
                Err("--api-auth bearer needs the token in BATCHQ_API_KEY (a batchq serve key or a JWT)".into())
            }
            (AuthMode::Sigv4, _) => Ok(Self::SigV4(SigV4::load(host_region).await?)),
            (AuthMode::Auto, None) if host_region.is_some() => Ok(Self::SigV4(SigV4::load(host_region).await?)),
            (AuthMode::Auto, None) => Ok(Self::None),
        }
    }

    /// Adds the credentials to a request whose method, URL, content type
    /// and body are final: SigV4 signs exactly these.
    pub async fn apply(
        &self,
        req: reqwest::RequestBuilder,
        method: &str,
        url: &reqwest::Url,
        content_type: &str,
        body: &[u8],
    ) -> Result<reqwest::RequestBuilder, Failure> {
        match self {
            Self::None => Ok(req),
            Self::Bearer(key) => Ok(req.bearer_auth(key)),
            Self::SigV4(s) => {
                let creds = s.credentials().await?;
                let headers = sign_request(
                    &creds,
                    &s.region,
                    SERVICE,
                    method,
                    url.as_str(),
                    &[("content-type", content_type)],
                    body,
                    SystemTime::now(),
                )?;
                Ok(headers.into_iter().fold(req, |r, (k, v)| r.header(k, v)))
            }
        }
    }

    /// What to tell a caller whose call was refused with 401 or 403.
    pub fn refusal_hint(&self) -> String {
        match self {
            Self::None => {
                "no credentials were sent: set BATCHQ_API_KEY for a bearer key or JWT, \
                           or use --api-auth sigv4 to sign with AWS credentials (a deployed API behind a custom domain)"
                    .into()
            }
            Self::Bearer(_) => "sent BATCHQ_API_KEY as a bearer token: it must be one of batchq serve's \
                                BATCHQ_API_KEYS, or a JWT the API's authorizer accepts; a deployed API with IAM \
                                authorization (the default) wants SigV4: unset BATCHQ_API_KEY or use --api-auth sigv4"
                .into(),
            Self::SigV4(s) => format!(
                "signed with SigV4 for {SERVICE} in {} as access key {}; the caller needs execute-api:Invoke \
                 on the API (the stack's ApiInvokePolicyArn policy), and the region must be the API's \
                 (AWS_REGION for a custom domain)",
                s.region,
                s.last_access_key_id().unwrap_or_else(|| "?".into())
            ),
        }
    }
}

/// The region of an API Gateway default endpoint:
/// `{api-id}.execute-api.{region}.amazonaws.com` (also `.amazonaws.com.cn`,
/// and the VPC endpoint form `{api-id}-{vpce-id}.execute-api.{region}.vpce.amazonaws.com`).
pub fn execute_api_region(host: &str) -> Option<String> {
    let host = host.to_ascii_lowercase();
    let labels: Vec<&str> = host.trim_end_matches('.').split('.').collect();
    let at = labels.iter().position(|l| *l == "execute-api")?;
    if at == 0 {
        return None;
    }
    let region = labels.get(at + 1)?;
    let rest = labels[at + 2..].join(".");
    let is_region = !region.is_empty()
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    let aws_domain = matches!(
        rest.as_str(),
        "amazonaws.com" | "amazonaws.com.cn" | "vpce.amazonaws.com" | "vpce.amazonaws.com.cn"
    );
    (is_region && aws_domain).then(|| (*region).to_owned())
}

/// Credentials from the standard AWS chain and the region to sign for.
pub struct SigV4 {
    region: String,
    provider: SharedCredentialsProvider,
    /// The last credentials, reused until shortly before they expire (the
    /// provider chain itself does not cache: SSO or STS would be asked
    /// again for every call).
    cached: Arc<Mutex<Option<Credentials>>>,
    last_key: std::sync::Mutex<Option<String>>,
}

impl SigV4 {
    /// The region is the URL's when it is an execute-api host (a signature
    /// for another region is refused), else the configured one
    /// (`AWS_REGION`, the profile's `region`).
    async fn load(host_region: Option<String>) -> Result<Self, Failure> {
        let sdk = batchq_core::aws::config_loader().load().await;
        let region = match host_region {
            Some(r) => r,
            None => sdk.region().map(|r| r.to_string()).ok_or_else(|| {
                Failure::from("SigV4: cannot tell the API's region from its URL; set AWS_REGION (or a profile region)")
            })?,
        };
        let provider = sdk.credentials_provider().ok_or_else(|| {
            Failure::from(
                "SigV4: no AWS credentials provider is configured (AWS_PROFILE, AWS_ACCESS_KEY_ID, aws sso login, ...)",
            )
        })?;
        let s = Self {
            region,
            provider,
            cached: Arc::new(Mutex::new(None)),
            last_key: std::sync::Mutex::new(None),
        };
        s.credentials().await?;
        Ok(s)
    }

    async fn credentials(&self) -> Result<Credentials, Failure> {
        let mut cached = self.cached.lock().await;
        let fresh = |c: &Credentials| {
            c.expiry()
                .is_none_or(|at| at > SystemTime::now() + Duration::from_secs(300))
        };
        if let Some(c) = cached.as_ref().filter(|c| fresh(c)) {
            return Ok(c.clone());
        }
        let c = self
            .provider
            .provide_credentials()
            .await
            .map_err(|e| format!("SigV4: no AWS credentials: {}", with_causes(&e)))?;
        if let Ok(mut k) = self.last_key.lock() {
            *k = Some(c.access_key_id().to_owned());
        }
        *cached = Some(c.clone());
        Ok(c)
    }

    fn last_access_key_id(&self) -> Option<String> {
        self.last_key.lock().ok().and_then(|k| k.clone())
    }
}

/// An error with its causes (the credential chain's own message is often
/// just "the credentials provider was not properly configured").
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// Signs one request with SigV4 and returns the headers to add to it:
/// `authorization`, `x-amz-date` and, with temporary credentials,
/// `x-amz-security-token` (signed too, as API Gateway expects).
///
/// The signature covers the method, the URL's path and query, the `host`
/// (from the URL, as the HTTP client sends it), the given headers and the
/// SHA-256 of the exact body bytes. No `x-amz-content-sha256` header: only
/// S3 wants one; API Gateway hashes the body it received itself, so a body
/// altered on the way fails the check all the same.
#[allow(clippy::too_many_arguments)]
pub fn sign_request(
    creds: &Credentials,
    region: &str,
    service: &str,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    time: SystemTime,
) -> Result<Vec<(&'static str, String)>, Failure> {
    let identity: Identity = creds.clone().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| format!("SigV4: {e}"))?
        .into();
    let request = SignableRequest::new(method, url, headers.iter().copied(), SignableBody::Bytes(body))
        .map_err(|e| format!("SigV4: cannot sign {method} {url}: {e}"))?;
    let (instructions, _signature) = sign(request, &params)
        .map_err(|e| format!("SigV4: cannot sign {method} {url}: {e}"))?
        .into_parts();
    let (headers, _params) = instructions.into_parts();
    Ok(headers.into_iter().map(|h| (h.name(), h.value().to_owned())).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The AWS SigV4 test suite's credentials and time (2015-08-30T12:36:00Z).
    fn suite_creds(token: Option<&str>) -> Credentials {
        Credentials::new(
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            token.map(str::to_owned),
            None,
            "test",
        )
    }
    const SUITE_TIME: u64 = 1_440_938_160;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn header<'a>(h: &'a [(&'static str, String)], name: &str) -> &'a str {
        h.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("no {name} in {h:?}"))
    }

    /// The suite's `post-x-www-form-urlencoded` vector: a POST whose body
    /// and content type are signed. The expected header is the suite's.
    #[test]
    fn a_post_with_a_body_signs_like_the_aws_test_suite() {
        let h = sign_request(
            &suite_creds(None),
            "us-east-1",
            "service",
            "POST",
            "https://example.amazonaws.com/",
            &[("content-type", "application/x-www-form-urlencoded")],
            b"Param1=value1",
            at(SUITE_TIME),
        )
        .unwrap();
        assert_eq!(
            header(&h, "authorization"),
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=content-type;host;x-amz-date, \
             Signature=ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a"
        );
        assert_eq!(header(&h, "x-amz-date"), "20150830T123600Z");
        assert!(h
            .iter()
            .all(|(k, _)| *k != "x-amz-security-token" && *k != "x-amz-content-sha256"));
    }

    /// The suite's `post-vanilla`: no body, only host and date signed.
    #[test]
    fn an_empty_post_signs_like_the_aws_test_suite() {
        let h = sign_request(
            &suite_creds(None),
            "us-east-1",
            "service",
            "POST",
            "https://example.amazonaws.com/",
            &[],
            b"",
            at(SUITE_TIME),
        )
        .unwrap();
        assert!(header(&h, "authorization").ends_with(
            "SignedHeaders=host;x-amz-date, Signature=5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"
        ));
    }

    #[test]
    fn the_signature_covers_body_time_and_session_token() {
        let sign_with = |creds: &Credentials, body: &[u8], t: u64| {
            sign_request(
                creds,
                "eu-west-3",
                SERVICE,
                "POST",
                "https://abc123.execute-api.eu-west-3.amazonaws.com/v1/requests/bulk",
                &[("content-type", "application/x-ndjson")],
                body,
                at(t),
            )
            .unwrap()
        };
        let creds = suite_creds(None);
        let base = sign_with(&creds, b"{\"a\":1}", SUITE_TIME);
        let auth = header(&base, "authorization");
        assert!(
            auth.starts_with(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/eu-west-3/execute-api/aws4_request, \
                 SignedHeaders=content-type;host;x-amz-date, Signature="
            ),
            "{auth}"
        );
        let sig = |h: &[(&'static str, String)]| header(h, "authorization").rsplit('=').next().unwrap().to_owned();
        assert_eq!(sig(&base).len(), 64);
        assert_ne!(sig(&base), sig(&sign_with(&creds, b"{\"a\":2}", SUITE_TIME)), "body");
        assert_ne!(
            sig(&base),
            sig(&sign_with(&creds, b"{\"a\":1}", SUITE_TIME + 1)),
            "time"
        );

        let temp = suite_creds(Some("SESSION-TOKEN"));
        let with_token = sign_with(&temp, b"{\"a\":1}", SUITE_TIME);
        assert_eq!(header(&with_token, "x-amz-security-token"), "SESSION-TOKEN");
        assert!(header(&with_token, "authorization")
            .contains("SignedHeaders=content-type;host;x-amz-date;x-amz-security-token,"));
        assert_ne!(sig(&base), sig(&with_token));
    }

    #[test]
    fn execute_api_hosts_name_their_region() {
        for (host, region) in [
            ("abc123.execute-api.eu-west-3.amazonaws.com", Some("eu-west-3")),
            ("ABC123.Execute-Api.us-east-1.amazonaws.com.", Some("us-east-1")),
            ("abc.execute-api.cn-north-1.amazonaws.com.cn", Some("cn-north-1")),
            (
                "abc-vpce-0123.execute-api.us-west-2.vpce.amazonaws.com",
                Some("us-west-2"),
            ),
            ("api.example.com", None),
            ("execute-api.us-east-1.amazonaws.com", None),
            ("abc.execute-api.us-east-1.example.com", None),
            ("abc.execute-api.amazonaws.com", None),
            ("127.0.0.1", None),
        ] {
            assert_eq!(execute_api_region(host).as_deref(), region, "{host}");
        }
    }

    #[tokio::test]
    async fn auto_picks_bearer_for_a_key_sigv4_for_execute_api_and_none_else() {
        let local = reqwest::Url::parse("http://127.0.0.1:8080").unwrap();
        let key = Some("key-0123456789abcdef".to_owned());
        assert!(matches!(
            Auth::resolve(AuthMode::Auto, &local, key.clone()).await.unwrap(),
            Auth::Bearer(_)
        ));
        assert!(matches!(
            Auth::resolve(AuthMode::Auto, &local, Some("  ".into())).await.unwrap(),
            Auth::None
        ));
        assert!(matches!(
            Auth::resolve(AuthMode::None, &local, key.clone()).await.unwrap(),
            Auth::None
        ));
        let e = Auth::resolve(AuthMode::Bearer, &local, None).await.err().unwrap();
        assert!(e.message.contains("BATCHQ_API_KEY"), "{}", e.message);
        // An execute-api URL with a key: the key wins (a JWT authorizer takes it).
        let aws = reqwest::Url::parse("https://abc123.execute-api.eu-west-3.amazonaws.com").unwrap();
        assert!(matches!(
            Auth::resolve(AuthMode::Auto, &aws, key).await.unwrap(),
            Auth::Bearer(_)
        ));
    }
}
