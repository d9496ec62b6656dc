//! Together's shapes of the fake's objects: a batch as a Together job
//! (upper-case status, ISO times, `job_deadline`, `progress`, `model_id`,
//! one `error` string) and a file as Together's file object.

use serde_json::{json, Value};

/// Unix seconds as `YYYY-MM-DDTHH:MM:SSZ`.
pub(crate) fn iso(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01, after H. Hinnant.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn time(v: &Value) -> Value {
    v.as_i64().map(|s| Value::String(iso(s))).unwrap_or(Value::Null)
}

/// Together's status word for an OpenAI status.
pub(crate) fn status(s: &str) -> String {
    match s {
        "finalizing" => "IN_PROGRESS".into(),
        "cancelling" => "CANCELING".into(),
        other => other.to_ascii_uppercase(),
    }
}

/// A batch object as Together shows it: `input_file_id` is the file the
/// client uploaded, `file_size_bytes` its size.
pub(crate) fn job(obj: &Value, input_file_id: &str, file_size_bytes: u64) -> Value {
    let counts = &obj["request_counts"];
    let total = counts["total"].as_u64().unwrap_or(0);
    let done = counts["completed"].as_u64().unwrap_or(0) + counts["failed"].as_u64().unwrap_or(0);
    let st = obj["status"].as_str().unwrap_or("");
    let progress = match st {
        "completed" => 100.0,
        _ if total > 0 => (done as f64 * 100.0 / total as f64).min(100.0),
        _ => 0.0,
    };
    let error = obj["errors"]["data"].as_array().filter(|d| !d.is_empty()).map(|d| {
        d.iter()
            .map(|e| match e["line"].as_u64() {
                Some(l) => format!("line {l}: {}", e["message"].as_str().unwrap_or("")),
                None => e["message"].as_str().unwrap_or("").to_owned(),
            })
            .collect::<Vec<_>>()
            .join("; ")
    });
    let ended = ["completed_at", "failed_at", "expired_at", "cancelled_at"]
        .iter()
        .find(|k| !obj[**k].is_null())
        .map(|k| time(&obj[*k]))
        .unwrap_or(Value::Null);
    json!({
        "id": obj["id"], "user_id": "user_fake", "input_file_id": input_file_id,
        "file_size_bytes": file_size_bytes, "status": status(st),
        "job_deadline": time(&obj["expires_at"]), "created_at": time(&obj["created_at"]),
        "endpoint": obj["endpoint"], "progress": progress, "model_id": obj["model"],
        "output_file_id": obj["output_file_id"], "error_file_id": obj["error_file_id"],
        "error": error, "completed_at": ended,
    })
}

/// A file object as Together shows it.
pub(crate) fn file(meta: &Value) -> Value {
    json!({
        "id": meta["id"], "object": "file", "created_at": meta["created_at"], "filename": meta["filename"],
        "bytes": meta["bytes"], "purpose": meta["purpose"], "Processed": true, "FileType": "jsonl",
        "LineCount": meta["line_count"],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_formats_known_instants() {
        assert_eq!(iso(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso(1_705_329_000), "2024-01-15T14:30:00Z");
        assert_eq!(iso(1_709_164_800), "2024-02-29T00:00:00Z");
    }
}
