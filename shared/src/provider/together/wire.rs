//! Together's wire objects (batch job, file, lists, result lines) and how
//! they map into batchq's provider types.

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::ids::ProviderFileId;
use crate::job::{ProviderBatchStatus, RequestCounts};
use crate::provider::types::{Batch, BatchErrorEntry, BatchErrors, FileObject};

/// A batch job as Together answers it.
#[derive(Debug, Clone, Deserialize)]
pub struct TogetherBatch {
    pub id: String,
    #[serde(default)]
    pub input_file_id: Option<String>,
    #[serde(default)]
    pub file_size_bytes: Option<u64>,
    pub status: String,
    #[serde(default)]
    pub job_deadline: Option<String>,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default)]
    pub progress: Option<f64>,
    #[serde(default)]
    pub model_id: Option<String>,
    #[serde(default)]
    pub output_file_id: Option<String>,
    #[serde(default)]
    pub error_file_id: Option<String>,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub completed_at: Option<String>,
}

/// Create's answer: `{"job": {...}, "warning": "..."}` (a bare job is
/// taken too). Read by hand rather than as an untagged enum, which loses
/// number types on the way.
#[derive(Debug)]
pub struct CreateAnswer {
    pub job: TogetherBatch,
    pub warning: Option<String>,
}

impl<'de> Deserialize<'de> for CreateAnswer {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut v = serde_json::Value::deserialize(d)?;
        let warning = v.get("warning").and_then(|w| w.as_str()).map(str::to_owned);
        let job = match v.get_mut("job") {
            Some(job) => job.take(),
            None => v,
        };
        Ok(Self {
            job: serde_json::from_value(job).map_err(serde::de::Error::custom)?,
            warning,
        })
    }
}

impl CreateAnswer {
    pub fn into_job(self) -> (TogetherBatch, Option<String>) {
        (self.job, self.warning)
    }
}

/// `GET /batches`: a bare array (or `{"data": [...]}`).
#[derive(Debug)]
pub struct BatchList(pub Vec<TogetherBatch>);

impl<'de> Deserialize<'de> for BatchList {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut v = serde_json::Value::deserialize(d)?;
        let list = match v.get_mut("data") {
            Some(data) => data.take(),
            None => v,
        };
        serde_json::from_value(list).map(Self).map_err(serde::de::Error::custom)
    }
}

impl BatchList {
    pub fn into_vec(self) -> Vec<TogetherBatch> {
        self.0
    }
}

/// A time Together gives as ISO 8601 or as Unix seconds.
#[derive(Debug, Clone)]
pub struct WireTime(Option<i64>);

impl<'de> Deserialize<'de> for WireTime {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Self(match serde_json::Value::deserialize(d)? {
            serde_json::Value::Number(n) => n.as_i64(),
            serde_json::Value::String(s) => parse_iso8601(&s),
            _ => None,
        }))
    }
}

impl WireTime {
    fn unix(&self) -> Option<i64> {
        self.0
    }
}

/// A file object as Together answers it.
#[derive(Debug, Clone, Deserialize)]
pub struct TogetherFile {
    pub id: String,
    #[serde(default)]
    pub bytes: Option<u64>,
    #[serde(default)]
    pub created_at: Option<WireTime>,
    #[serde(default)]
    pub filename: Option<String>,
    #[serde(default)]
    pub purpose: Option<String>,
    #[serde(default, rename = "Processed")]
    pub processed: Option<bool>,
}

impl From<TogetherFile> for FileObject {
    fn from(f: TogetherFile) -> Self {
        FileObject {
            id: f.id,
            bytes: f.bytes,
            created_at: f.created_at.as_ref().and_then(WireTime::unix),
            filename: f.filename,
            purpose: f.purpose,
            status: f.processed.map(|p| if p { "processed" } else { "uploaded" }.to_owned()),
            expires_at: None,
        }
    }
}

/// `GET /files`: `{"data": [...]}`.
#[derive(Debug, Deserialize)]
pub struct FileList {
    #[serde(default)]
    pub data: Vec<TogetherFile>,
}

/// Together's status words in batchq's terms.
pub fn status(s: &str) -> ProviderBatchStatus {
    match s.to_ascii_uppercase().as_str() {
        "VALIDATING" => ProviderBatchStatus::Validating,
        "IN_PROGRESS" => ProviderBatchStatus::InProgress,
        "COMPLETED" => ProviderBatchStatus::Completed,
        "FAILED" => ProviderBatchStatus::Failed,
        "EXPIRED" => ProviderBatchStatus::Expired,
        "CANCELING" | "CANCELLING" => ProviderBatchStatus::Cancelling,
        "CANCELLED" | "CANCELED" => ProviderBatchStatus::Cancelled,
        _ => ProviderBatchStatus::Unknown(s.to_owned()),
    }
}

impl From<TogetherBatch> for Batch {
    fn from(b: TogetherBatch) -> Self {
        let status = status(&b.status);
        let at = |t: &Option<String>| t.as_deref().and_then(parse_iso8601);
        let ended = at(&b.completed_at);
        let when = |s: ProviderBatchStatus| if status == s { ended } else { None };
        let errors = b.error.filter(|e| !e.trim().is_empty()).map(|message| BatchErrors {
            data: vec![BatchErrorEntry {
                code: Some("batch_error".into()),
                message: Some(message),
                param: None,
                line: None,
            }],
        });
        Batch {
            id: b.id,
            endpoint: b.endpoint,
            model: b.model_id,
            errors,
            input_file_id: b.input_file_id,
            completion_window: Some("24h".into()),
            output_file_id: ProviderFileId::from_wire(b.output_file_id),
            error_file_id: ProviderFileId::from_wire(b.error_file_id),
            created_at: at(&b.created_at),
            in_progress_at: None,
            expires_at: at(&b.job_deadline),
            finalizing_at: None,
            completed_at: when(ProviderBatchStatus::Completed),
            failed_at: when(ProviderBatchStatus::Failed),
            expired_at: when(ProviderBatchStatus::Expired),
            cancelling_at: None,
            cancelled_at: when(ProviderBatchStatus::Cancelled),
            // Together reports a percentage, not counts.
            request_counts: RequestCounts::default(),
            metadata: None,
            usage: None,
            status,
        }
    }
}

/// An ISO 8601 / RFC 3339 UTC time (`2024-01-15T14:30:00Z`, fractions and
/// a `+HH:MM` offset allowed) as Unix seconds.
pub fn parse_iso8601(s: &str) -> Option<i64> {
    let s = s.trim();
    let b = s.as_bytes();
    if b.len() < 19
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        t.bytes().all(|c| c.is_ascii_digit()).then(|| t.parse().ok())?
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        rest = &frac[n..];
    }
    let offset = match rest {
        "" | "Z" | "z" => 0,
        o if o.len() == 6 && (o.starts_with('+') || o.starts_with('-')) && &o[3..4] == ":" => {
            let sign = if o.starts_with('-') { -1 } else { 1 };
            sign * (o[1..3].parse::<i64>().ok()? * 3600 + o[4..6].parse::<i64>().ok()? * 60)
        }
        _ => return None,
    };
    // Days from the civil date (proleptic Gregorian), after H. Hinnant.
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + mi * 60 + sec - offset)
}

/// A Together result line OpenAI's reader refuses, rewritten in OpenAI's
/// shape: an `error` that is a plain string becomes `{"message": ...}`; a
/// `response` without `status_code` is a 200. `None` when neither applies.
pub fn as_openai_line(bytes: &[u8]) -> Option<Vec<u8>> {
    #[derive(Deserialize)]
    struct Line<'a> {
        #[serde(borrow)]
        custom_id: &'a RawValue,
        #[serde(borrow, default)]
        response: Option<Response<'a>>,
        #[serde(default)]
        error: Option<serde_json::Value>,
    }
    #[derive(Deserialize)]
    struct Response<'a> {
        #[serde(default)]
        status_code: Option<u16>,
        #[serde(borrow, default)]
        body: Option<&'a RawValue>,
    }
    let text = std::str::from_utf8(bytes).ok()?;
    let line: Line<'_> = serde_json::from_str(text).ok()?;
    let id = line.custom_id.get();
    match (line.response, line.error) {
        (
            Some(Response {
                status_code: None,
                body: Some(body),
            }),
            _,
        ) => Some(
            format!(
                r#"{{"custom_id":{id},"response":{{"status_code":200,"body":{}}}}}"#,
                body.get()
            )
            .into_bytes(),
        ),
        (_, Some(serde_json::Value::String(message))) => Some(
            serde_json::json!({"custom_id": serde_json::from_str::<serde_json::Value>(id).ok()?,
                               "error": {"code": "request_failed", "message": message}})
            .to_string()
            .into_bytes(),
        ),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_times_read_as_unix_seconds() {
        assert_eq!(parse_iso8601("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_iso8601("2024-01-15T14:30:00Z"), Some(1_705_329_000));
        assert_eq!(parse_iso8601("2024-01-15T14:30:00.123456Z"), Some(1_705_329_000));
        assert_eq!(parse_iso8601("2024-01-15T15:30:00+01:00"), Some(1_705_329_000));
        assert_eq!(parse_iso8601("2024-02-29T00:00:00"), Some(1_709_164_800));
        for bad in [
            "",
            "2024-01-15",
            "2024-13-01T00:00:00Z",
            "2024-01-15T14:30:00 UTC",
            "yesterday",
        ] {
            assert_eq!(parse_iso8601(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_together_job_maps_into_a_batch() {
        let json = r#"{"id":"0123-4567","user_id":"u","input_file_id":"file-in","file_size_bytes":1048576,
            "status":"COMPLETED","job_deadline":"2024-01-16T14:30:00Z","created_at":"2024-01-15T14:30:00Z",
            "endpoint":"/v1/chat/completions","progress":100,"model_id":"meta-llama/Llama-3.3-70B-Instruct-Turbo",
            "output_file_id":"file-out","error_file_id":"file-err","error":"","completed_at":"2024-01-15T15:45:30Z"}"#;
        let b: Batch = serde_json::from_str::<TogetherBatch>(json).unwrap().into();
        assert_eq!(b.status, ProviderBatchStatus::Completed);
        assert_eq!(b.created_at, Some(1_705_329_000));
        assert_eq!(b.expires_at, Some(1_705_329_000 + 86_400));
        assert_eq!(b.completed_at, Some(1_705_333_530));
        assert_eq!(b.failed_at, None);
        assert_eq!(
            b.error_file_id,
            Some(ProviderFileId::new("file-err")),
            "a completed batch keeps its error file"
        );
        assert_eq!(b.input_file_id.as_deref(), Some("file-in"));
        assert_eq!(b.model.as_deref(), Some("meta-llama/Llama-3.3-70B-Instruct-Turbo"));
        assert!(b.job_errors().is_empty(), "an empty error string is no error");
        assert_eq!(b.job_id_metadata(), None);
    }

    #[test]
    fn upper_case_statuses_and_the_error_string_map() {
        for (wire, want) in [
            ("VALIDATING", ProviderBatchStatus::Validating),
            ("IN_PROGRESS", ProviderBatchStatus::InProgress),
            ("FAILED", ProviderBatchStatus::Failed),
            ("EXPIRED", ProviderBatchStatus::Expired),
            ("CANCELING", ProviderBatchStatus::Cancelling),
            ("CANCELLED", ProviderBatchStatus::Cancelled),
            ("PAUSED", ProviderBatchStatus::Unknown("PAUSED".into())),
        ] {
            assert_eq!(status(wire), want);
        }
        let failed: Batch =
            serde_json::from_str::<TogetherBatch>(r#"{"id":"b","status":"FAILED","error":"invalid JSON on line 3"}"#)
                .unwrap()
                .into();
        assert_eq!(failed.job_errors()[0].message, "invalid JSON on line 3");
        let wrapped: CreateAnswer =
            serde_json::from_str(r#"{"job":{"id":"b","status":"VALIDATING"},"warning":"w"}"#).unwrap();
        assert_eq!(wrapped.into_job().1.as_deref(), Some("w"));
    }
}
