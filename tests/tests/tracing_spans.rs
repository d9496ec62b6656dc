//! Log lines carry the ids of what they are about: a pipeline step's lines
//! name the Lambda request, the step, the job and its tenant (through the
//! spans they are logged in), and no line carries prompt text.

use std::io::Write;
use std::sync::{Arc, Mutex};

use batchq_core::ids::TenantId;
use batchq_tests::pipeline::{chat, keys, scheduled_event, Pipeline};
use fake_openai::FakeConfig;
use serde_json::Value;
use tracing_subscriber::fmt::MakeWriter;

/// A log sink the test reads back: JSON lines, as in Lambda.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }

    fn lines(&self) -> Vec<Value> {
        self.text()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect()
    }
}

/// The first line with `message`.
fn line<'a>(lines: &'a [Value], message: &str) -> &'a Value {
    lines
        .iter()
        .find(|l| l["message"] == message)
        .unwrap_or_else(|| panic!("no {message:?} line"))
}

/// The span named `name` a line was logged in.
fn span<'a>(line: &'a Value, name: &str) -> &'a Value {
    line["spans"]
        .as_array()
        .and_then(|spans| spans.iter().find(|s| s["name"] == name))
        .unwrap_or_else(|| panic!("no {name:?} span on {line}"))
}

#[tokio::test]
async fn pipeline_log_lines_carry_the_lambda_request_the_step_the_job_and_its_tenant() {
    let p = Pipeline::start(FakeConfig::default(), |_| {}).await;
    let reqs: Vec<_> = (0..3).map(|i| chat(i, "gpt-4o-mini")).collect();
    p.enqueue(&reqs).await;

    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(true)
        .with_writer(captured.clone())
        .with_max_level(tracing::Level::INFO)
        .finish();
    let guard = tracing::subscriber::set_default(subscriber);
    let mut event = scheduled_event();
    event.context.request_id = "lambda-submit-1".into();
    batchq_submit::handle(&p.submitter(), event).await.expect("submit");
    p.settle(&keys(&reqs), 4).await;
    drop(guard);

    let jobs = p.all_jobs().await;
    assert_eq!(jobs.len(), 1);
    let job = jobs[0].id.to_string();
    let tenant = TenantId::default_tenant().to_string();
    let lines = captured.lines();

    let uploaded = line(&lines, "input file uploaded");
    assert_eq!(span(uploaded, "lambda")["aws_request_id"], "lambda-submit-1");
    assert_eq!(span(uploaded, "step")["step"], "submit");
    let job_span = span(uploaded, "job");
    assert_eq!(job_span["job"], job.as_str());
    assert_eq!(job_span["tenant"], tenant.as_str(), "{uploaded}");

    let done = line(&lines, "job done");
    let job_span = span(done, "job");
    assert_eq!(job_span["step"], "close");
    assert_eq!(job_span["job"], job.as_str());
    assert_eq!(job_span["tenant"], tenant.as_str());

    let text = captured.text();
    assert!(
        !text.contains("the battery lasts") && !text.contains("Classify the sentiment"),
        "a log line carries prompt text"
    );
}
