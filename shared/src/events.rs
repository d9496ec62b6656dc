//! The event shapes the scheduled and S3-triggered functions receive, reduced
//! to what the pipeline needs.

use aws_lambda_events::event::s3::S3Event;
use serde_json::Value;
use thiserror::Error;

/// What a deliver invocation asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliverEvent {
    /// The jobs table's stream: results feed entries were written for
    /// these tenants; a pass over their endpoints delivers them now.
    Feed(std::collections::BTreeSet<crate::ids::TenantId>),
    /// The schedule (or a manual invoke): a pass over every endpoint, for
    /// retries that came due and anything a stream batch missed.
    Everyone,
}

/// A deliver invocation's payload that is not one batchq understands.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DeliverEventError {
    #[error("Records[{0}]: expected a DynamoDB stream record with dynamodb.Keys.pk.S")]
    BadRecord(usize),
    #[error(transparent)]
    Scheduled(#[from] ScheduledEventError),
}

impl DeliverEvent {
    /// A DynamoDB stream event (`{"Records": [{"eventSource":
    /// "aws:dynamodb", "dynamodb": {"Keys": {"pk": {"S": "feed#T"}, ..}}}]}`;
    /// keys other than `feed#…` are ignored, the mapping's filter lets
    /// none through), or anything [`Scheduled::parse`] accepts.
    pub fn parse(event: &Value) -> Result<Self, DeliverEventError> {
        let Some(records) = event.get("Records").and_then(Value::as_array) else {
            Scheduled::parse(event)?;
            return Ok(Self::Everyone);
        };
        let mut tenants = std::collections::BTreeSet::new();
        for (i, r) in records.iter().enumerate() {
            let pk = r
                .pointer("/dynamodb/Keys/pk/S")
                .and_then(Value::as_str)
                .ok_or(DeliverEventError::BadRecord(i))?;
            if let Some(t) = pk.strip_prefix("feed#") {
                tenants.insert(crate::ids::TenantId::parse(t).map_err(|_| DeliverEventError::BadRecord(i))?);
            }
        }
        Ok(Self::Feed(tenants))
    }
}

/// A scheduled invocation's payload that is not one batchq understands.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ScheduledEventError {
    #[error("detail: expected an object")]
    DetailNotAnObject,
    #[error("expected a JSON object (an EventBridge event or {{\"force\": bool}})")]
    NotAnObject,
    #[error("force: expected true or false")]
    ForceNotABool,
    #[error("report: expected true or a day as YYYY-MM-DD")]
    BadReport,
    #[error("poll_batch: expected {{\"provider\": a provider kind, \"batch_id\": a non-empty string}}")]
    BadPollBatch,
}

/// `{"poll_batch": {"provider": "openai", "batch_id": "batch_…"}}`: poll one
/// provider batch now instead of the whole run. The enqueue function sends
/// it (an asynchronous invocation of the poll function) after a verified
/// provider webhook; it is built and read only here, so both ends agree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PollBatch {
    pub kind: crate::job::ProviderKind,
    pub batch: crate::ids::ProviderBatchId,
}

impl PollBatch {
    /// The poll function's payload.
    pub fn to_payload(&self) -> Value {
        serde_json::json!({"poll_batch": {"provider": self.kind.as_str(), "batch_id": self.batch.as_str()}})
    }

    fn parse(v: &Value) -> Result<Self, ScheduledEventError> {
        let kind = v["provider"]
            .as_str()
            .and_then(crate::job::ProviderKind::parse)
            .ok_or(ScheduledEventError::BadPollBatch)?;
        let batch = v["batch_id"]
            .as_str()
            .filter(|b| !b.trim().is_empty())
            .ok_or(ScheduledEventError::BadPollBatch)?;
        Ok(Self {
            kind,
            batch: crate::ids::ProviderBatchId::new(batch),
        })
    }
}

/// What a scheduled invocation asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scheduled {
    /// Submit every queued group now, due or not.
    pub force: bool,
    /// Write the daily report instead of the step's usual run (poll only).
    pub report: Option<ReportDay>,
    /// Poll this one batch instead of the usual run (poll only).
    pub poll_batch: Option<PollBatch>,
}

/// Which day a scheduled report covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReportDay {
    /// The UTC day before the run (`{"report": true}`, the daily schedule).
    Yesterday,
    /// One day, `YYYY-MM-DD` (`{"report": "2026-11-30"}`, a manual re-run).
    Day(String),
}

impl Scheduled {
    /// Accepts an EventBridge scheduled event (`detail-type: "Scheduled
    /// Event"`, optional `detail.force`), a rule with a constant input
    /// `{"force": true}`, or an empty payload (a manual invoke).
    pub fn parse(event: &Value) -> Result<Self, ScheduledEventError> {
        let flags = match event {
            Value::Null => return Ok(Self::default()),
            Value::Object(map) if map.contains_key("detail-type") => match map.get("detail") {
                None | Some(Value::Null) => return Ok(Self::default()),
                Some(d @ Value::Object(_)) => d,
                Some(_) => return Err(ScheduledEventError::DetailNotAnObject),
            },
            Value::Object(_) => event,
            _ => return Err(ScheduledEventError::NotAnObject),
        };
        let force = match flags.get("force") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(force)) => *force,
            Some(_) => return Err(ScheduledEventError::ForceNotABool),
        };
        let report = match flags.get("report") {
            None | Some(Value::Null) | Some(Value::Bool(false)) => None,
            Some(Value::Bool(true)) => Some(ReportDay::Yesterday),
            Some(Value::String(day)) if crate::activity::Hour::day_start(day).is_ok() => {
                Some(ReportDay::Day(day.clone()))
            }
            Some(_) => return Err(ScheduledEventError::BadReport),
        };
        let poll_batch = match flags.get("poll_batch") {
            None | Some(Value::Null) => None,
            Some(v @ Value::Object(_)) => Some(PollBatch::parse(v)?),
            Some(_) => return Err(ScheduledEventError::BadPollBatch),
        };
        Ok(Self {
            force,
            report,
            poll_batch,
        })
    }
}

/// One object an S3 notification names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedObject {
    pub bucket: String,
    /// The key, URL-decoded (S3 notifications encode keys, spaces as `+`).
    pub key: String,
}

/// The created objects of an S3 event notification (other event kinds are skipped).
pub fn created_objects(event: &S3Event) -> Vec<CreatedObject> {
    event
        .records
        .iter()
        .filter(|r| r.event_name.as_deref().is_none_or(|n| n.starts_with("ObjectCreated")))
        .filter_map(|r| {
            Some(CreatedObject {
                bucket: r.s3.bucket.name.clone()?,
                key: decode_key(r.s3.object.key.as_deref()?),
            })
        })
        .collect()
}

/// Decodes an S3 event key: `+` is a space, `%XX` a byte.
pub fn decode_key(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match u8::from_str_radix(std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz"), 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_poll_batch_payload_reads_back_as_what_it_was_built_from() {
        let want = PollBatch {
            kind: crate::job::ProviderKind::OpenAi,
            batch: crate::ids::ProviderBatchId::new("batch_abc"),
        };
        let payload = want.to_payload();
        assert_eq!(
            payload,
            json!({"poll_batch": {"provider": "openai", "batch_id": "batch_abc"}})
        );
        let got = Scheduled::parse(&payload).unwrap();
        assert_eq!((got.poll_batch, got.force, got.report), (Some(want), false, None));
        for bad in [
            json!({"poll_batch": {"provider": "openai"}}),
            json!({"poll_batch": {"provider": "nobody", "batch_id": "b"}}),
            json!({"poll_batch": {"provider": "openai", "batch_id": ""}}),
            json!({"poll_batch": "batch_abc"}),
        ] {
            assert_eq!(
                Scheduled::parse(&bad).unwrap_err(),
                ScheduledEventError::BadPollBatch,
                "{bad}"
            );
        }
        assert_eq!(Scheduled::parse(&json!({})).unwrap().poll_batch, None);
    }

    #[test]
    fn scheduled_events_and_manual_payloads_give_the_force_flag() {
        let scheduled = json!({"version": "0", "id": "e1", "detail-type": "Scheduled Event", "source": "aws.events",
            "account": "123456789012", "time": "2026-11-25T12:00:00Z", "region": "us-east-1",
            "resources": ["arn:aws:events:us-east-1:123456789012:rule/batchq-submit"], "detail": {}});
        assert_eq!(Scheduled::parse(&scheduled).unwrap(), Scheduled::default());
        let mut report = scheduled.clone();
        report["detail"] = json!({"report": true});
        assert_eq!(Scheduled::parse(&report).unwrap().report, Some(ReportDay::Yesterday));
        assert_eq!(
            Scheduled::parse(&json!({"report": "2026-11-30"})).unwrap().report,
            Some(ReportDay::Day("2026-11-30".into()))
        );
        for bad in [json!({"report": "2026-11-31"}), json!({"report": 1})] {
            assert_eq!(Scheduled::parse(&bad).unwrap_err(), ScheduledEventError::BadReport);
        }
        let mut forced = scheduled.clone();
        forced["detail"] = json!({"force": true});
        assert!(Scheduled::parse(&forced).unwrap().force);
        assert!(Scheduled::parse(&json!({"force": true})).unwrap().force);
        assert!(!Scheduled::parse(&json!({})).unwrap().force);
        assert!(!Scheduled::parse(&Value::Null).unwrap().force);
        assert_eq!(
            Scheduled::parse(&json!({"force": "yes"})).unwrap_err(),
            ScheduledEventError::ForceNotABool
        );
        assert!(Scheduled::parse(&json!([1])).is_err());
    }

    #[test]
    fn s3_keys_are_url_decoded() {
        assert_eq!(decode_key("results/job_1/output.jsonl"), "results/job_1/output.jsonl");
        assert_eq!(decode_key("a+b%2Fc%3D"), "a b/c=");
        assert_eq!(decode_key("100%"), "100%");
        assert_eq!(decode_key("%zz"), "%zz");
    }
}
