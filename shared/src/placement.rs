//! Where a request's body and a result's response are kept: inline in the
//! row up to a limit, else as an object under the key [`crate::keys`] fixes
//! (content-addressed for bodies, by request and job for responses, so a
//! replay writes the same object). The rules only; `store::placed` does the
//! object-store side around any store.

use crate::keys;
use crate::request::{NewRequest, Payload, QueueGroup, Request, RequestResult};
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
    /// Its text: one JSON document, or a chunk's bodies one per line.
    pub json: String,
}

impl InlineLimits {
    /// The limits the configuration sets
    /// (`BATCHQ_INLINE_BODY_MAX_BYTES`, `BATCHQ_INLINE_RESULT_MAX_BYTES`).
    pub fn configured(limits: &crate::config::Limits) -> Self {
        Self {
            body_max: limits.inline_body_max_bytes,
            result_max: limits.inline_result_max_bytes,
        }
    }

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

    /// Where the bodies of requests inserted together go, in their order:
    /// each one's payload, and the objects to write before the rows.
    ///
    /// A body over the inline limit goes to its own object as in
    /// [`Self::place_body`]. When at least [`CHUNK_MIN_BODIES`] of the
    /// others share a queue group (a bulk call), they are written together
    /// into chunk objects of at most [`CHUNK_MAX_BYTES`], one body per line
    /// in the requests' order, and each row refers to its body's bytes:
    /// one object write instead of a body in every row, which is most of
    /// what a row store writes per request (DynamoDB charges a transaction
    /// 2 write units per KB; SQLite writes a row's pages to its log and
    /// again at the checkpoint). A queue group's requests are claimed in
    /// the order they were queued, so the rows a submit reads together
    /// point into one range of one chunk. Fewer bodies stay inline: a
    /// chunk of one costs an object write for little saved.
    pub fn place_bodies(&self, requests: &[&NewRequest]) -> (Vec<Payload>, Vec<Object>) {
        let mut payloads: Vec<Option<Payload>> = vec![None; requests.len()];
        let mut objects = Vec::new();
        let mut groups: Vec<(QueueGroup, Vec<usize>)> = Vec::new();
        for (i, r) in requests.iter().enumerate() {
            if self.body_is_object(r.body_bytes()) {
                let (payload, object) = self.place_body(r);
                payloads[i] = Some(payload);
                objects.extend(object);
                continue;
            }
            let group = r.queue_group();
            match groups.iter_mut().find(|(g, _)| *g == group) {
                Some((_, members)) => members.push(i),
                None => groups.push((group, vec![i])),
            }
        }
        for (_, members) in groups {
            if members.len() < CHUNK_MIN_BODIES {
                for i in members {
                    payloads[i] = Some(Payload::Inline(requests[i].body_json.clone()));
                }
                continue;
            }
            let mut chunk = ChunkBuilder::new();
            for i in members {
                let body = &requests[i].body_json;
                if !chunk.is_empty() && chunk.len() + body.len() > CHUNK_MAX_BYTES {
                    objects.push(std::mem::replace(&mut chunk, ChunkBuilder::new()).finish());
                }
                payloads[i] = Some(chunk.push(body));
            }
            if !chunk.is_empty() {
                objects.push(chunk.finish());
            }
        }
        let payloads = payloads.into_iter().map(|p| p.expect("every body placed")).collect();
        (payloads, objects)
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

/// Fewest bytes of an answer that points into its result file rather
/// than being held by its row: a pointer (the file's key, an offset, a
/// length) takes about 100.
pub const ANSWER_POINTER_MIN_BYTES: usize = 128;

impl InlineLimits {
    /// Where a 2xx answer goes whose body lies verbatim at `offset` (with
    /// `body`'s length) in the copied result file `file`, `None` when it is
    /// not known to. Up to the inline limit, a pointer into the file: the
    /// copy is there already and is kept as long as the result's row
    /// ([`keys::object_expiry`]), while holding the body costs the row store
    /// per byte (DynamoDB: 2 write units per KB in a transaction). An answer
    /// smaller than a pointer stays inline; one over the inline limit stays
    /// as it is, for [`Self::response_object`] to give it an object of its
    /// own (which a caller can be handed a presigned URL of).
    pub fn place_answer(&self, file: &str, offset: Option<u64>, body: String) -> Payload {
        match offset {
            Some(offset) if body.len() >= ANSWER_POINTER_MIN_BYTES && body.len() as u64 <= self.result_max => {
                Payload::Chunk {
                    key: file.to_owned(),
                    offset,
                    len: body.len() as u64,
                }
            }
            _ => Payload::Inline(body),
        }
    }
}

/// Fewest inline-size bodies of one queue group, inserted together, that
/// are written as a chunk object rather than into their rows.
pub const CHUNK_MIN_BODIES: usize = 16;

/// Most bytes of bodies in one chunk object (a bulk call of several
/// megabytes makes several).
pub const CHUNK_MAX_BYTES: usize = 4 << 20;

/// A chunk object being filled: bodies one per line, each payload naming
/// its bytes.
struct ChunkBuilder {
    key: String,
    text: String,
}

impl ChunkBuilder {
    fn new() -> Self {
        Self {
            key: keys::body_chunk(),
            text: String::new(),
        }
    }

    fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    fn len(&self) -> usize {
        self.text.len()
    }

    fn push(&mut self, body: &str) -> Payload {
        let offset = self.text.len() as u64;
        self.text.push_str(body);
        self.text.push('\n');
        Payload::Chunk {
            key: self.key.clone(),
            offset,
            len: body.len() as u64,
        }
    }

    fn finish(self) -> Object {
        Object {
            key: self.key,
            json: self.text,
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

    #[test]
    fn an_answer_found_in_its_result_file_points_into_it_up_to_the_inline_limit() {
        let limits = InlineLimits {
            body_max: 20,
            result_max: 200,
        };
        let file = "results/job_x/output.jsonl";
        let answer = "a".repeat(ANSWER_POINTER_MIN_BYTES);
        assert_eq!(
            limits.place_answer(file, Some(7), answer.clone()),
            Payload::Chunk {
                key: file.into(),
                offset: 7,
                len: answer.len() as u64
            }
        );
        // Not known to lie in the file, smaller than a pointer, or over the
        // inline limit (it gets an object of its own): as it is.
        assert_eq!(limits.place_answer(file, None, answer.clone()), Payload::Inline(answer));
        let tiny = "a".repeat(ANSWER_POINTER_MIN_BYTES - 1);
        assert_eq!(limits.place_answer(file, Some(7), tiny.clone()), Payload::Inline(tiny));
        let large = "a".repeat(201);
        assert_eq!(
            limits.place_answer(file, Some(7), large.clone()),
            Payload::Inline(large)
        );
    }

    #[test]
    fn small_bodies_of_one_queue_group_inserted_together_share_chunks_in_order() {
        let limits = InlineLimits {
            body_max: 1 << 20,
            result_max: 10,
        };
        let with_model = |id: &str, model: &str, body: String| {
            NewRequest::new(
                TenantId::parse("acme").unwrap(),
                CustomId::parse(id).unwrap(),
                Endpoint::ChatCompletions,
                ModelName::parse(model).unwrap(),
                body,
            )
        };
        // 3 MB bodies of one model (two chunks of at most CHUNK_MAX_BYTES),
        // a second model with fewer than CHUNK_MIN_BODIES (inline), and one
        // body over the inline limit (its own object).
        let big = "x".repeat(300 * 1024);
        let mut requests: Vec<NewRequest> = (0..CHUNK_MIN_BODIES + 4)
            .map(|i| with_model(&format!("a-{i}"), "gpt-4o-mini", format!(r#"{{"i":{i},"p":"{big}"}}"#)))
            .collect();
        requests.push(with_model("n-1", "gpt-4.1-nano", "{}".into()));
        requests.push(with_model(
            "huge",
            "gpt-4o-mini",
            format!(r#"{{"p":"{big}{big}{big}{big}"}}"#),
        ));
        let refs: Vec<&NewRequest> = requests.iter().collect();
        let (payloads, objects) = limits.place_bodies(&refs);

        assert_eq!(payloads.len(), requests.len());
        assert_eq!(payloads[CHUNK_MIN_BODIES + 4], Payload::Inline("{}".into()));
        assert!(matches!(&payloads[CHUNK_MIN_BODIES + 5], Payload::S3 { .. }));
        let chunks: Vec<&Object> = objects.iter().filter(|o| o.key.starts_with("bodies/chunks/")).collect();
        assert_eq!(
            chunks.len(),
            2,
            "{} bytes of bodies",
            (CHUNK_MIN_BODIES + 4) * big.len()
        );
        assert!(chunks.iter().all(|c| c.json.len() <= CHUNK_MAX_BYTES));
        for (r, p) in requests.iter().zip(&payloads).take(CHUNK_MIN_BODIES + 4) {
            let Payload::Chunk { key, offset, len } = p else {
                panic!("{p:?}")
            };
            let chunk = chunks.iter().find(|c| &c.key == key).expect("its chunk is written");
            assert_eq!(&chunk.json[*offset as usize..(offset + len) as usize], r.body_json);
        }
        // In the requests' order: the first chunk holds the first bodies.
        let first_key = |p: &Payload| match p {
            Payload::Chunk { key, offset, .. } => (key.clone(), *offset),
            _ => unreachable!(),
        };
        assert_eq!(first_key(&payloads[0]), (chunks[0].key.clone(), 0));
    }
}
