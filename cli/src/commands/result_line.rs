//! One exported result line of `batchq results`, in the shape of the
//! provider API the request was written for: an OpenAI batch output line, or
//! for a Messages request (`url` `/v1/messages`) a Message Batches result
//! line. Either carries the caller's own `custom_id`.

use batchq_core::endpoint::Endpoint;
use batchq_core::request::{Request, RequestError, RequestResult};
use serde_json::{json, Value};

/// The line for `req`'s stored `result`; `body` is the stored answer
/// (the response body, or the provider's error body), parsed.
pub fn export_line(req: &Request, result: &RequestResult, body: Option<Value>) -> Value {
    match req.endpoint {
        Endpoint::Messages => anthropic_line(req.custom_id.as_str(), result, body),
        _ => openai_line(req, result, body),
    }
}

/// OpenAI's batch output line: `{id, custom_id, response: {status_code,
/// request_id, body}, error}`; `error` only when there was no response;
/// `request_id` the provider's own (null when it gave none).
fn openai_line(req: &Request, result: &RequestResult, body: Option<Value>) -> Value {
    json!({
        "id": format!("batchq_req_{}", req.key),
        "custom_id": req.custom_id,
        "response": result.status_code.map(|code| json!({
            "status_code": code,
            "request_id": result.request_id,
            "body": body.unwrap_or(Value::Null),
        })),
        "error": match (&result.error, result.status_code) {
            (Some(e), None) => json!({"code": e.code, "message": e.message}),
            _ => Value::Null,
        },
    })
}

/// Anthropic's Message Batches result line: `{custom_id, result}` with a
/// result of type `succeeded` (the message), `errored` (an error response),
/// `expired` or `canceled`.
fn anthropic_line(custom_id: &str, result: &RequestResult, body: Option<Value>) -> Value {
    let outcome = match &result.error {
        None => json!({"type": "succeeded", "message": body.unwrap_or(Value::Null)}),
        Some(error) => match error.code.as_str() {
            "batch_expired" => json!({"type": "expired"}),
            "batch_cancelled" => json!({"type": "canceled"}),
            _ => {
                let mut error_body = json!({
                    "type": "error",
                    "error": {"type": anthropic_error_type(error, result.status_code), "message": error.message},
                });
                // Anthropic's request id of an errored result, when it gave one.
                if let Some(id) = &result.request_id {
                    error_body["request_id"] = json!(id);
                }
                json!({"type": "errored", "error": error_body})
            }
        },
    };
    json!({"custom_id": custom_id, "result": outcome})
}

/// Anthropic's error types (its error responses' `error.type`).
const ANTHROPIC_ERROR_TYPES: [&str; 10] = [
    "invalid_request_error",
    "authentication_error",
    "billing_error",
    "permission_error",
    "not_found_error",
    "request_too_large",
    "rate_limit_error",
    "api_error",
    "timeout_error",
    "overloaded_error",
];

/// The Anthropic error type for a failed request: Anthropic's own when the
/// provider gave one (an `errored` result keeps it as the code), else the
/// one Anthropic answers the HTTP status with, else from batchq's code.
fn anthropic_error_type(error: &RequestError, status_code: Option<u16>) -> &'static str {
    if let Some(kind) = ANTHROPIC_ERROR_TYPES.iter().find(|k| **k == error.code) {
        return kind;
    }
    match status_code {
        Some(400) => "invalid_request_error",
        Some(401) => "authentication_error",
        Some(402) => "billing_error",
        Some(403) => "permission_error",
        Some(404) => "not_found_error",
        Some(413) => "request_too_large",
        Some(429) => "rate_limit_error",
        Some(504) => "timeout_error",
        Some(529) => "overloaded_error",
        Some(400..=499) => "invalid_request_error",
        Some(_) => "api_error",
        // batchq's own codes for a request that never got an answer: the
        // batch's token budget ran out, or batchq could not submit, keep or
        // find the request (`submit_failed`, `batch_failed`, `missing_result`,
        // `result_too_large`, `body_missing`, …): a server-side error.
        None if error.code == "token_limit_exceeded" => "rate_limit_error",
        None => "api_error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use batchq_core::ids::{CustomId, JobId, ModelName, TenantId};
    use batchq_core::request::{NewRequest, RequestStatus};
    use batchq_core::time::Timestamp;
    use batchq_core::transition;

    fn request(url: &str, status: RequestStatus) -> Request {
        let new = NewRequest::new(
            TenantId::default_tenant(),
            CustomId::parse("review-7").unwrap(),
            Endpoint::parse(url).unwrap(),
            ModelName::parse("claude-haiku-4-5").unwrap(),
            "{}".to_owned(),
        );
        Request {
            status,
            ..transition::queued(&new, Timestamp::from_millis(0))
        }
    }

    fn result(req: &Request, status_code: Option<u16>, error: Option<(&str, &str)>) -> RequestResult {
        with_request_id(req, status_code, error, None)
    }

    fn with_request_id(
        req: &Request,
        status_code: Option<u16>,
        error: Option<(&str, &str)>,
        request_id: Option<&str>,
    ) -> RequestResult {
        RequestResult {
            key: req.key.clone(),
            job_id: JobId::generate(),
            status_code,
            response: None,
            error: error.map(|(code, message)| RequestError {
                code: code.to_owned(),
                message: message.to_owned(),
                status_code,
            }),
            usage: None,
            batch_cost: None,
            realtime_cost: None,
            recorded_at: Timestamp::from_millis(0),
            request_id: request_id.map(str::to_owned),
        }
    }

    fn failed(code: &str, message: &str, status_code: Option<u16>) -> Value {
        let req = request("/v1/messages", RequestStatus::Failed);
        export_line(&req, &result(&req, status_code, Some((code, message))), None)
    }

    fn errored(kind: &str, message: &str) -> Value {
        json!({"custom_id": "review-7", "result": {"type": "errored",
            "error": {"type": "error", "error": {"type": kind, "message": message}}}})
    }

    #[test]
    fn a_succeeded_messages_request_exports_as_anthropic_result_line_with_the_callers_id() {
        let req = request("/v1/messages", RequestStatus::Completed);
        let message = json!({"id": "msg_01", "type": "message", "role": "assistant",
            "content": [{"type": "text", "text": "yes"}], "usage": {"input_tokens": 3, "output_tokens": 1}});
        let line = export_line(&req, &result(&req, Some(200), None), Some(message.clone()));
        assert_eq!(
            line,
            json!({"custom_id": "review-7", "result": {"type": "succeeded", "message": message}})
        );
    }

    #[test]
    fn an_errored_messages_request_keeps_anthropics_error_type_and_message() {
        assert_eq!(
            failed("invalid_request_error", "max_tokens: field required", Some(400)),
            errored("invalid_request_error", "max_tokens: field required")
        );
        assert_eq!(
            failed("overloaded_error", "Overloaded", Some(529)),
            errored("overloaded_error", "Overloaded")
        );
    }

    #[test]
    fn expired_and_cancelled_batches_export_as_anthropics_expired_and_canceled() {
        let expired = failed(
            "batch_expired",
            "This request could not be executed before the batch expired.",
            None,
        );
        assert_eq!(expired, json!({"custom_id": "review-7", "result": {"type": "expired"}}));
        let cancelled = failed("batch_cancelled", "The batch was cancelled.", None);
        assert_eq!(
            cancelled,
            json!({"custom_id": "review-7", "result": {"type": "canceled"}})
        );
    }

    #[test]
    fn other_failures_map_to_the_anthropic_error_type_of_their_status_or_cause() {
        assert_eq!(
            failed("http_error", "gone", Some(404)),
            errored("not_found_error", "gone")
        );
        assert_eq!(
            failed("unknown", "teapot", Some(418)),
            errored("invalid_request_error", "teapot")
        );
        assert_eq!(failed("unknown", "boom", Some(502)), errored("api_error", "boom"));
        assert_eq!(
            failed("token_limit_exceeded", "enqueued token limit", None),
            errored("rate_limit_error", "enqueued token limit")
        );
        assert_eq!(
            failed("missing_result", "no line for it", None),
            errored("api_error", "no line for it")
        );
        assert_eq!(
            failed("submit_failed", "refused", None),
            errored("api_error", "refused")
        );
    }

    #[test]
    fn other_endpoints_keep_openais_batch_output_line() {
        let req = request("/v1/chat/completions", RequestStatus::Completed);
        let body = json!({"id": "chatcmpl-1", "object": "chat.completion"});
        let line = export_line(&req, &result(&req, Some(200), None), Some(body.clone()));
        assert_eq!(
            line,
            json!({"id": format!("batchq_req_{}", req.key), "custom_id": "review-7",
                   "response": {"status_code": 200, "request_id": null, "body": body}, "error": null})
        );
        let req = request("/v1/chat/completions", RequestStatus::Failed);
        let line = export_line(&req, &result(&req, None, Some(("batch_expired", "expired"))), None);
        assert_eq!(line["response"], Value::Null);
        assert_eq!(line["error"], json!({"code": "batch_expired", "message": "expired"}));
        assert!(line.get("result").is_none());
    }

    #[test]
    fn the_providers_request_id_is_written_back_and_null_only_when_it_gave_none() {
        let req = request("/v1/chat/completions", RequestStatus::Completed);
        let body = json!({"id": "chatcmpl-1"});
        let line = export_line(
            &req,
            &with_request_id(&req, Some(200), None, Some("req_0123abcd")),
            Some(body.clone()),
        );
        assert_eq!(line["response"]["request_id"], "req_0123abcd");
        let line = export_line(&req, &result(&req, Some(200), None), Some(body));
        assert_eq!(line["response"]["request_id"], Value::Null);

        let req = request("/v1/messages", RequestStatus::Failed);
        let line = export_line(
            &req,
            &with_request_id(
                &req,
                Some(529),
                Some(("overloaded_error", "Overloaded")),
                Some("req_01ab"),
            ),
            None,
        );
        assert_eq!(line["result"]["error"]["request_id"], "req_01ab");
        assert_eq!(line["result"]["error"]["error"]["type"], "overloaded_error");
    }
}
