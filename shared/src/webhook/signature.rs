//! Standard Webhooks signatures (<https://www.standardwebhooks.com/>), the
//! scheme batchq signs its own webhooks with and OpenAI signs its batch events
//! with: `webhook-signature` = `v1,` + base64(HMAC-SHA256(key, `id.timestamp.body`)),
//! where the key is the base64 part of a `whsec_` secret.
//!
//! HMAC comes from `ring`, the crypto library rustls already builds into
//! every binary (its provider, see `tls.rs`): no second one, and the
//! primitives the TLS stack uses.
//! Signature entries are compared with `subtle` in constant time.

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use subtle::ConstantTimeEq;

/// How far a `webhook-timestamp` may be from the receiver's clock, either way.
pub const DEFAULT_TOLERANCE_SECS: i64 = 300;

/// Prefix of a secret in its text form.
pub const SECRET_PREFIX: &str = "whsec_";

/// Bytes in a generated secret (the spec asks for 24 to 64).
const GENERATED_SECRET_BYTES: usize = 32;

/// A webhook signing key (the raw bytes behind `whsec_<base64>`).
/// Never printed: `Debug` shows only that a key is there.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret(Vec<u8>);

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret(***)")
    }
}

impl WebhookSecret {
    /// Parses `whsec_<base64>`; the prefix is optional on input (some
    /// providers hand out the bare base64). An empty key is refused.
    pub fn parse(s: &str) -> Result<Self, SignatureError> {
        let b64 = s.trim().strip_prefix(SECRET_PREFIX).unwrap_or(s.trim());
        let key = STANDARD.decode(b64).map_err(|_| SignatureError::BadSecret)?;
        if key.is_empty() {
            return Err(SignatureError::BadSecret);
        }
        Ok(Self(key))
    }

    /// A fresh random key of 32 bytes from the operating system's generator.
    pub fn generate() -> Self {
        let mut key = vec![0u8; GENERATED_SECRET_BYTES];
        SystemRandom::new()
            .fill(&mut key)
            .expect("the operating system's random number generator failed");
        Self(key)
    }

    /// The text form, `whsec_<base64>`.
    pub fn to_whsec(&self) -> String {
        format!("{SECRET_PREFIX}{}", STANDARD.encode(&self.0))
    }

    fn tag(&self, msg_id: &str, timestamp: &str, body: &[u8]) -> hmac::Tag {
        let key = hmac::Key::new(hmac::HMAC_SHA256, &self.0);
        let mut ctx = hmac::Context::with_key(&key);
        ctx.update(msg_id.as_bytes());
        ctx.update(b".");
        ctx.update(timestamp.as_bytes());
        ctx.update(b".");
        ctx.update(body);
        ctx.sign()
    }
}

/// The three headers of a signed message, as received.
#[derive(Clone, Copy, Debug)]
pub struct SignedHeaders<'a> {
    pub id: &'a str,
    pub timestamp: &'a str,
    pub signature: &'a str,
}

/// Why a message's signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the {0} header is missing or empty")]
    MissingHeader(&'static str),
    #[error("webhook-timestamp is not a whole number of seconds")]
    BadTimestamp,
    #[error("webhook-timestamp is too far in the past")]
    TooOld,
    #[error("webhook-timestamp is too far in the future")]
    TooNew,
    #[error("the webhook secret is not whsec_ followed by base64")]
    BadSecret,
    #[error("no v1 signature matches the message")]
    Mismatch,
}

/// The `webhook-signature` value for a message: `v1,<base64>`.
pub fn sign(secret: &WebhookSecret, msg_id: &str, timestamp_secs: i64, body: &[u8]) -> String {
    let tag = secret.tag(msg_id, &timestamp_secs.to_string(), body);
    format!("v1,{}", STANDARD.encode(tag.as_ref()))
}

/// Checks `webhook-id`, `webhook-timestamp` (within `tolerance_secs` of
/// `now_secs`, both ways) and `webhook-signature` (a space-separated list;
/// any `v1,` entry matching passes, other versions are skipped; entries are
/// compared in constant time). The HMAC covers the timestamp exactly as sent.
pub fn verify(
    secret: &WebhookSecret,
    headers: &SignedHeaders<'_>,
    body: &[u8],
    now_secs: i64,
    tolerance_secs: i64,
) -> Result<(), SignatureError> {
    if headers.id.is_empty() {
        return Err(SignatureError::MissingHeader("webhook-id"));
    }
    if headers.timestamp.is_empty() {
        return Err(SignatureError::MissingHeader("webhook-timestamp"));
    }
    if headers.signature.trim().is_empty() {
        return Err(SignatureError::MissingHeader("webhook-signature"));
    }
    let ts: i64 = headers.timestamp.parse().map_err(|_| SignatureError::BadTimestamp)?;
    if now_secs.saturating_sub(ts) > tolerance_secs {
        return Err(SignatureError::TooOld);
    }
    if ts.saturating_sub(now_secs) > tolerance_secs {
        return Err(SignatureError::TooNew);
    }
    let expected = secret.tag(headers.id, headers.timestamp, body);
    let expected = expected.as_ref();
    let mut matched = subtle::Choice::from(0u8);
    for entry in headers.signature.split(' ').filter(|e| !e.is_empty()) {
        let Some(b64) = entry.strip_prefix("v1,") else { continue };
        let Ok(given) = STANDARD.decode(b64) else { continue };
        // `ct_eq` on slices of different lengths is false without a timing
        // difference that depends on the content.
        matched |= given.as_slice().ct_eq(expected);
    }
    if bool::from(matched) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The Standard Webhooks reference libraries' published vector
    // (standard-webhooks/standard-webhooks, libraries/*/tests: `test_sign_function`).
    const SPEC_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const SPEC_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const SPEC_TS: i64 = 1_614_265_330;
    const SPEC_BODY: &str = r#"{"test": 2432232314}"#;
    const SPEC_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn spec_secret() -> WebhookSecret {
        WebhookSecret::parse(SPEC_SECRET).unwrap()
    }

    fn headers<'a>(ts: &'a str, sig: &'a str) -> SignedHeaders<'a> {
        SignedHeaders {
            id: SPEC_ID,
            timestamp: ts,
            signature: sig,
        }
    }

    const SPEC_TS_STR: &str = "1614265330";

    #[test]
    fn sign_reproduces_the_standard_webhooks_test_vector() {
        assert_eq!(
            sign(&spec_secret(), SPEC_ID, SPEC_TS, SPEC_BODY.as_bytes()),
            SPEC_SIGNATURE
        );
    }

    #[test]
    fn verify_accepts_the_standard_webhooks_test_vector() {
        let h = headers(SPEC_TS_STR, SPEC_SIGNATURE);
        verify(
            &spec_secret(),
            &h,
            SPEC_BODY.as_bytes(),
            SPEC_TS,
            DEFAULT_TOLERANCE_SECS,
        )
        .unwrap();
    }

    #[test]
    fn secret_parses_with_or_without_the_whsec_prefix() {
        let bare = WebhookSecret::parse(SPEC_SECRET.strip_prefix("whsec_").unwrap()).unwrap();
        assert_eq!(bare, spec_secret());
        assert_eq!(bare.to_whsec(), SPEC_SECRET);
    }

    #[test]
    fn secret_that_is_not_base64_or_empty_is_refused() {
        assert_eq!(
            WebhookSecret::parse("whsec_not base64!"),
            Err(SignatureError::BadSecret)
        );
        assert_eq!(WebhookSecret::parse("whsec_"), Err(SignatureError::BadSecret));
        assert_eq!(WebhookSecret::parse(""), Err(SignatureError::BadSecret));
    }

    #[test]
    fn generated_secrets_are_distinct_whsec_keys_of_32_bytes_that_round_trip() {
        let a = WebhookSecret::generate();
        let b = WebhookSecret::generate();
        assert_ne!(a, b);
        assert_eq!(a.0.len(), 32);
        let text = a.to_whsec();
        assert!(text.starts_with("whsec_"));
        assert_eq!(WebhookSecret::parse(&text).unwrap(), a);
    }

    #[test]
    fn debug_never_prints_the_key() {
        let printed = format!("{:?}", spec_secret());
        assert!(!printed.contains("MfKQ"), "{printed}");
        assert_eq!(printed, "WebhookSecret(***)");
    }

    #[test]
    fn a_tampered_body_id_or_timestamp_is_a_mismatch() {
        let s = spec_secret();
        let body = SPEC_BODY.as_bytes();
        let tampered_body = br#"{"test": 2432232315}"#;
        assert_eq!(
            verify(&s, &headers(SPEC_TS_STR, SPEC_SIGNATURE), tampered_body, SPEC_TS, 300),
            Err(SignatureError::Mismatch)
        );
        let other_id = SignedHeaders {
            id: "msg_other",
            timestamp: SPEC_TS_STR,
            signature: SPEC_SIGNATURE,
        };
        assert_eq!(verify(&s, &other_id, body, SPEC_TS, 300), Err(SignatureError::Mismatch));
        // One second later, still inside the tolerance: the signature covers the timestamp.
        assert_eq!(
            verify(&s, &headers("1614265331", SPEC_SIGNATURE), body, SPEC_TS, 300),
            Err(SignatureError::Mismatch)
        );
        // The published "invalid signature" case: the last character changed.
        let flipped = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA=";
        assert_eq!(
            verify(&s, &headers(SPEC_TS_STR, flipped), body, SPEC_TS, 300),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn a_different_secret_is_a_mismatch() {
        let other = WebhookSecret::generate();
        assert_eq!(
            verify(
                &other,
                &headers(SPEC_TS_STR, SPEC_SIGNATURE),
                SPEC_BODY.as_bytes(),
                SPEC_TS,
                300
            ),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn any_matching_v1_entry_in_a_list_passes_and_other_versions_are_ignored() {
        let good_b64 = SPEC_SIGNATURE.strip_prefix("v1,").unwrap();
        let list = format!("v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= v2,{good_b64} {SPEC_SIGNATURE} v1,!!!");
        verify(
            &spec_secret(),
            &headers(SPEC_TS_STR, &list),
            SPEC_BODY.as_bytes(),
            SPEC_TS,
            300,
        )
        .unwrap();
        // The right bytes under another version label do not count.
        let only_v2 = format!("v2,{good_b64}");
        assert_eq!(
            verify(
                &spec_secret(),
                &headers(SPEC_TS_STR, &only_v2),
                SPEC_BODY.as_bytes(),
                SPEC_TS,
                300
            ),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn timestamps_outside_the_tolerance_are_refused_both_ways_and_the_edges_pass() {
        let s = spec_secret();
        let body = SPEC_BODY.as_bytes();
        let h = headers(SPEC_TS_STR, SPEC_SIGNATURE);
        verify(&s, &h, body, SPEC_TS + 300, 300).unwrap();
        verify(&s, &h, body, SPEC_TS - 300, 300).unwrap();
        assert_eq!(verify(&s, &h, body, SPEC_TS + 301, 300), Err(SignatureError::TooOld));
        assert_eq!(verify(&s, &h, body, SPEC_TS - 301, 300), Err(SignatureError::TooNew));
    }

    #[test]
    fn missing_headers_and_a_non_numeric_timestamp_are_named() {
        let s = spec_secret();
        let body = SPEC_BODY.as_bytes();
        let no_id = SignedHeaders {
            id: "",
            timestamp: SPEC_TS_STR,
            signature: SPEC_SIGNATURE,
        };
        assert_eq!(
            verify(&s, &no_id, body, SPEC_TS, 300),
            Err(SignatureError::MissingHeader("webhook-id"))
        );
        assert_eq!(
            verify(&s, &headers("", SPEC_SIGNATURE), body, SPEC_TS, 300),
            Err(SignatureError::MissingHeader("webhook-timestamp"))
        );
        assert_eq!(
            verify(&s, &headers(SPEC_TS_STR, " "), body, SPEC_TS, 300),
            Err(SignatureError::MissingHeader("webhook-signature"))
        );
        assert_eq!(
            verify(&s, &headers("hello", SPEC_SIGNATURE), body, SPEC_TS, 300),
            Err(SignatureError::BadTimestamp)
        );
    }
}
