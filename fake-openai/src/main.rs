//! `fake-openai --port N --api-key KEY`: the fake provider as a standalone
//! server, for `make demo` and manual testing. Faults are given as JSON, e.g.
//! `--faults '{"enqueued_token_limits": {"gpt-4o": 90000}, "list_lag_ms": 2000}'`
//! for tier-1 gpt-4o's enqueued-token limit and lists two seconds behind.
//! See fake-openai/README.md for every flag and fault.

use fake_openai::{FakeConfig, FakeServer, Faults};

const USAGE: &str = "usage: fake-openai [--host 127.0.0.1] [--port N] [--api-key KEY] [--step-ms MS] \
[--max-lines N] [--max-bytes N] [--max-embedding-inputs N] [--data-dir DIR] [--faults JSON]";

fn parse() -> Result<FakeConfig, String> {
    let mut cfg = FakeConfig::default();
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "-h" || flag == "--help" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        let value = args.next().ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        let num = |v: &str| v.parse::<u64>().map_err(|_| format!("{flag}: {v:?} is not a number"));
        match flag.as_str() {
            "--host" => cfg.host = value,
            "--port" => cfg.port = num(&value)? as u16,
            "--api-key" => cfg.api_key = value,
            "--step-ms" => cfg.step_ms = num(&value)?,
            "--max-lines" => cfg.max_lines = num(&value)?,
            "--max-bytes" => cfg.max_bytes = num(&value)?,
            "--max-embedding-inputs" => cfg.max_embedding_inputs = num(&value)?,
            "--data-dir" => cfg.data_dir = Some(value.into()),
            "--faults" => cfg.faults = serde_json::from_str::<Faults>(&value).map_err(|e| format!("--faults: {e}"))?,
            other => return Err(format!("unknown flag {other}\n{USAGE}")),
        }
    }
    Ok(cfg)
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt().with_writer(std::io::stderr).init();
    let cfg = match parse() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let handle = match FakeServer::start(cfg).await {
        Ok(h) => h,
        Err(e) => {
            eprintln!("fake-openai: cannot start: {e}");
            std::process::exit(1);
        }
    };
    println!("listening on http://{}", handle.addr());
    let _ = tokio::signal::ctrl_c().await;
    handle.shutdown().await;
}
