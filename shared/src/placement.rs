//! Where a request's body and a result's response are kept: inline in the
//! row up to a limit, else as an object under the key [`crate::keys`] fixes
//! (content-addressed for bodies, by request and job for responses, so a
//! replay writes the same object). The rules only; `store::placed` does the
//! object-store side around any store.

use crate::keys;
use crate::request::{NewRequest, Payload, Request, RequestResult};
use crate::time::Timestamp;
use crate::transition;

/// The largest body and response kept inline in a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InlineLimits {
    pub body_max: u64,
    pub result_max: u64,
}

/// An object to write before the row that refers to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    pub key: String,
    pub json: String,
}

impl InlineLimits {
    /// Whether a body of `bytes` bytes lives in the object store.
    pub fn body_is_object(&self, bytes: u64) -> bool {
        bytes > self.body_max
    }

    /// Where `r`'s body goes: the payload its row holds, and the object to
    /// write first when it is too large to be inline.
    pub fn place_body(&self, r: &NewRequest) -> (Payload, Option<Object>) {
        if !self.body_is_object(r.body_bytes()) {
            return (Payload::Inline(r.body_json.clone()), None);
        }
        let key = keys::body(&r.key, &r.content_hash);
        let payload = Payload::S3 {
            key: key.clone(),
            bytes: r.body_bytes(),
        };
        (
            payload,
            Some(Object {
                key,
                json: r.body_json.clone(),
            }),
        )
    }

    /// The object a result's response goes to when it is too large to be
    /// inline; `None` when it stays as it is.
    pub fn response_object(&self, res: &RequestResult) -> Option<Object> {
        match &res.response {
            Some(Payload::Inline(json)) if json.len() as u64 > self.result_max => Some(Object {
                key: keys::response(&res.key, &res.job_id),
                json: json.clone(),
            }),
            _ => None,
        }
    }
}

/// What a store writes for a new request: its queued state and its body,
/// already placed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedRow {
    pub state: Request,
    pub body: Payload,
}

impl QueuedRow {
    pub fn new(r: &NewRequest, body: Payload, now: Timestamp) -> Self {
        Self {
            state: transition::queued(r, now),
            body,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{CustomId, JobId, ModelName, TenantId};
    use crate::request::Endpoint;

    const LIMITS: InlineLimits = InlineLimits {
        body_max: 20,
        result_max: 10,
    };

    fn new_request(body: &str) -> NewRequest {
        NewRequest::new(
            TenantId::parse("acme").unwrap(),
            CustomId::parse("r-1").unwrap(),
            Endpoint::ChatCompletions,
            ModelName::parse("gpt-4o-mini").unwrap(),
            body.into(),
        )
    }

    #[test]
    fn a_body_over_the_limit_goes_to_its_content_addressed_object() {
        let small = new_request(r#"{"a":1}"#);
        assert_eq!(
            LIMITS.place_body(&small),
            (Payload::Inline(small.body_json.clone()), None)
        );

        let big = new_request(r#"{"model":"gpt-4o-mini","x":1}"#);
        let (payload, object) = LIMITS.place_body(&big);
        let key = keys::body(&big.key, &big.content_hash);
        assert_eq!(
            payload,
            Payload::S3 {
                key: key.clone(),
                bytes: big.body_bytes()
            }
        );
        assert_eq!(object.map(|o| o.key), Some(key));
    }

    #[test]
    fn a_response_over_the_limit_goes_to_the_requests_object_for_that_job() {
        let r = new_request("{}");
        let job = JobId::generate();
        let result = |json: &str| RequestResult {
            key: r.key.clone(),
            job_id: job.clone(),
            status_code: Some(200),
            response: Some(Payload::Inline(json.into())),
            error: None,
            usage: None,
            batch_cost: None,
            realtime_cost: None,
            recorded_at: Timestamp::from_millis(1),
            request_id: None,
        };
        assert_eq!(LIMITS.response_object(&result("{}")), None);
        let big = LIMITS.response_object(&result(r#"{"long":"answer"}"#)).unwrap();
        assert_eq!(big.key, keys::response(&r.key, &job));
    }
}
