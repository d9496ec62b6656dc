//! Calls and DynamoDB capacity as counted by the emulator's meter
//! (scripts/moto_meter.py, on when moto runs with BATCHQ_MOTO_METER=1).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct OpCount {
    pub calls: u64,
    pub rcu: f64,
    pub wcu: f64,
    /// The emulator's time answering these calls (not AWS's: a hint of
    /// where a phase's wall time went here).
    #[serde(default)]
    pub seconds: f64,
}

/// service → operation → counts.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Meter(pub BTreeMap<String, BTreeMap<String, OpCount>>);

/// S3 operations billed at the PUT/COPY/POST/LIST rate; DELETE and abort are
/// free, everything else is billed at the GET rate.
pub fn s3_put_class(op: &str) -> bool {
    matches!(
        op,
        "PutObject"
            | "CopyObject"
            | "CreateMultipartUpload"
            | "UploadPart"
            | "UploadPartCopy"
            | "CompleteMultipartUpload"
            | "ListObjects"
            | "ListObjectsV2"
            | "PostObject"
            | "CreateBucket"
    )
}

fn s3_free(op: &str) -> bool {
    matches!(
        op,
        "DeleteObject" | "DeleteObjects" | "AbortMultipartUpload" | "DeleteBucket"
    )
}

impl Meter {
    pub async fn read(http: &reqwest::Client, endpoint: &str) -> Result<Self, String> {
        let url = format!("{}/_batchq/meter", endpoint.trim_end_matches('/'));
        let resp = http.get(&url).send().await.map_err(|e| format!("{url}: {e}"))?;
        if !resp.status().is_success() {
            return Err(format!(
                "{url}: {} (is the emulator running with BATCHQ_MOTO_METER=1? `make bench` starts it so)",
                resp.status()
            ));
        }
        resp.json().await.map_err(|e| format!("{url}: {e}"))
    }

    /// What happened between `earlier` and `self`.
    pub fn since(&self, earlier: &Meter) -> Meter {
        let mut out = BTreeMap::new();
        for (service, ops) in &self.0 {
            let mut o = BTreeMap::new();
            for (op, c) in ops {
                let before = earlier
                    .0
                    .get(service)
                    .and_then(|m| m.get(op))
                    .copied()
                    .unwrap_or_default();
                let d = OpCount {
                    calls: c.calls - before.calls,
                    rcu: c.rcu - before.rcu,
                    wcu: c.wcu - before.wcu,
                    seconds: c.seconds - before.seconds,
                };
                if d.calls > 0 {
                    o.insert(op.clone(), d);
                }
            }
            if !o.is_empty() {
                out.insert(service.clone(), o);
            }
        }
        Meter(out)
    }

    fn service(&self, name: &str) -> impl Iterator<Item = (&String, &OpCount)> {
        self.0.get(name).into_iter().flat_map(|m| m.iter())
    }

    pub fn dynamodb_calls(&self) -> u64 {
        self.service("dynamodb").map(|(_, c)| c.calls).sum()
    }
    pub fn rcu(&self) -> f64 {
        self.service("dynamodb").map(|(_, c)| c.rcu).sum()
    }
    pub fn wcu(&self) -> f64 {
        self.service("dynamodb").map(|(_, c)| c.wcu).sum()
    }
    pub fn s3_calls(&self) -> u64 {
        self.service("s3").map(|(_, c)| c.calls).sum()
    }
    /// (PUT-class, GET-class) S3 calls; free ones (DELETE, abort) in neither.
    pub fn s3_billed(&self) -> (u64, u64) {
        let mut put = 0;
        let mut get = 0;
        for (op, c) in self.service("s3") {
            if s3_put_class(op) {
                put += c.calls;
            } else if !s3_free(op) {
                get += c.calls;
            }
        }
        (put, get)
    }
    pub fn other_calls(&self) -> u64 {
        self.0
            .iter()
            .filter(|(s, _)| s.as_str() != "dynamodb" && s.as_str() != "s3")
            .flat_map(|(_, m)| m.values())
            .map(|c| c.calls)
            .sum()
    }
}
