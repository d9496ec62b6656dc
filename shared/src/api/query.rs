//! The URL side of a request: percent-decoding of path segments, query
//! parameters, and the opaque page cursors handed to callers.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};

use super::error::ApiError;

pub use crate::percent::{percent_decode, percent_encode};

/// Query parameters of one request, checked against the names a route reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    /// Parses a raw query string (without `?`) and refuses names the route
    /// does not read and names given twice.
    pub fn parse(raw: &str, known: &[&str]) -> Result<Self, ApiError> {
        let mut pairs: Vec<(String, String)> = Vec::new();
        for part in raw.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = part.split_once('=').unwrap_or((part, ""));
            let decode = |s: &str| {
                percent_decode(s, true).ok_or_else(|| {
                    ApiError::bad_request(None, "invalid_query", "the query string is not validly percent-encoded")
                })
            };
            let (name, value) = (decode(name)?, decode(value)?);
            if !known.contains(&name.as_str()) {
                let shown: String = name.chars().take(40).collect();
                return Err(ApiError::bad_request(
                    Some(&shown),
                    "unknown_parameter",
                    if known.is_empty() {
                        format!("unknown query parameter {shown:?}; this route takes none")
                    } else {
                        format!(
                            "unknown query parameter {shown:?}; this route takes {}",
                            known.join(", ")
                        )
                    },
                ));
            }
            if pairs.iter().any(|(n, _)| *n == name) {
                return Err(ApiError::bad_request(
                    Some(&name),
                    "repeated_parameter",
                    format!("query parameter {name:?} is given more than once"),
                ));
            }
            pairs.push((name, value));
        }
        Ok(Self { pairs })
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// A whole number in `min..=max`, or `default` when absent.
    pub fn number(&self, name: &str, default: u32, min: u32, max: u32) -> Result<u32, ApiError> {
        match self.get(name) {
            None => Ok(default),
            Some(raw) => match raw.parse::<u32>() {
                Ok(v) if (min..=max).contains(&v) => Ok(v),
                _ => Err(ApiError::bad_request(
                    Some(name),
                    "out_of_range",
                    format!(
                        "{name} must be a whole number from {min} to {max}, not {:?}",
                        raw.chars().take(40).collect::<String>()
                    ),
                )),
            },
        }
    }
}

/// Length of the check prefix of a cursor.
const CURSOR_CHECK: usize = 8;

fn cursor_check(inner: &[u8]) -> [u8; CURSOR_CHECK] {
    let mut h = Sha256::new();
    h.update(b"batchq-page-cursor\0");
    h.update(inner);
    let digest = h.finalize();
    let mut out = [0u8; CURSOR_CHECK];
    out.copy_from_slice(&digest[..CURSOR_CHECK]);
    out
}

/// Wraps a store's page cursor for callers: URL-safe, and with a check so a
/// mistyped or edited cursor is refused as bad input (400) instead of
/// reaching the store.
pub fn encode_cursor(store_cursor: &str) -> String {
    let mut bytes = cursor_check(store_cursor.as_bytes()).to_vec();
    bytes.extend_from_slice(store_cursor.as_bytes());
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The store cursor inside a caller's cursor.
pub fn decode_cursor(cursor: &str) -> Result<String, ApiError> {
    let bad = || {
        ApiError::bad_request(
            Some("cursor"),
            "invalid_cursor",
            "cursor is not one this API issued; pass next_cursor from the previous page unchanged",
        )
    };
    let bytes = URL_SAFE_NO_PAD
        .decode(cursor.trim_end_matches('='))
        .map_err(|_| bad())?;
    if bytes.len() <= CURSOR_CHECK {
        return Err(bad());
    }
    let (check, inner) = bytes.split_at(CURSOR_CHECK);
    if check != cursor_check(inner) {
        return Err(bad());
    }
    String::from_utf8(inner.to_vec()).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_escapes_decode_and_bad_ones_are_refused() {
        assert_eq!(percent_decode("a%3Ab%2d", false).as_deref(), Some("a:b-"));
        assert_eq!(percent_decode("a+b", false).as_deref(), Some("a+b"));
        assert_eq!(percent_decode("a+b", true).as_deref(), Some("a b"));
        assert_eq!(percent_decode("%zz", false), None);
        assert_eq!(percent_decode("%4", false), None);
        assert_eq!(percent_decode("%ff", false), None);
    }

    #[test]
    fn percent_encoding_keeps_unreserved_characters_and_decodes_back() {
        assert_eq!(percent_encode("a-b_c.d~9"), "a-b_c.d~9");
        assert_eq!(percent_encode("a:b/c d+é"), "a%3Ab%2Fc%20d%2B%C3%A9");
        for s in ["x", "job_1#2026-12-01", "ünï cødé/%", ""] {
            assert_eq!(percent_decode(&percent_encode(s), true).as_deref(), Some(s));
        }
    }

    #[test]
    fn query_takes_only_known_parameters_once() {
        let q = Query::parse("limit=5&cursor=abc%3D", &["limit", "cursor"]).unwrap();
        assert_eq!(q.get("cursor"), Some("abc="));
        assert_eq!(q.number("limit", 50, 1, 200).unwrap(), 5);
        assert_eq!(Query::parse("", &[]).unwrap().number("limit", 50, 1, 200).unwrap(), 50);

        let e = Query::parse("limt=5", &["limit"]).unwrap_err();
        assert_eq!((e.code(), e.field()), ("unknown_parameter", Some("limt")));
        let e = Query::parse("limit=1&limit=2", &["limit"]).unwrap_err();
        assert_eq!(e.code(), "repeated_parameter");
        for bad in ["0", "201", "-1", "ten", ""] {
            let q = Query::parse(&format!("limit={bad}"), &["limit"]).unwrap();
            let e = q.number("limit", 50, 1, 200).unwrap_err();
            assert_eq!(e.field(), Some("limit"), "{bad}");
        }
    }

    #[test]
    fn cursors_round_trip_and_edited_ones_are_refused() {
        let inner = r#"{"pk":{"S":"job#job_1"},"created":{"N":"17"}}"#;
        let c = encode_cursor(inner);
        assert!(c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_eq!(decode_cursor(&c).unwrap(), inner);

        let forged = URL_SAFE_NO_PAD.encode([&[0u8; 8][..], inner.as_bytes()].concat());
        for bad in [forged.as_str(), "", "!!", "abc", &c[..c.len() - 2]] {
            let e = decode_cursor(bad).unwrap_err();
            assert_eq!((e.status(), e.field()), (400, Some("cursor")), "{bad}");
        }
    }
}
