//! The function binaries run as Lambda runs them: each child process talks
//! to a local stand-in for the Lambda Runtime API
//! (`/2018-06-01/runtime/invocation/next`, `…/{id}/response`, `…/{id}/error`,
//! `/runtime/init/error`) served here. "Ready" is the moment a process first
//! asks for an invocation; its peak memory comes from `wait4` when it ends.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tokio::sync::{mpsc, oneshot, watch};

type Reply = oneshot::Sender<Result<Bytes, String>>;

struct Invocation {
    event: Bytes,
    reply: Reply,
}

struct Shared {
    queue: tokio::sync::Mutex<mpsc::Receiver<Invocation>>,
    pending: Mutex<HashMap<String, Reply>>,
    ready: watch::Sender<Option<Instant>>,
    init_error: Mutex<Option<String>>,
    next_id: Mutex<u64>,
}

/// One function binary running under the stand-in Runtime API.
pub struct Function {
    pub name: String,
    pid: libc::pid_t,
    child: Option<std::process::Child>,
    started: Instant,
    tx: mpsc::Sender<Invocation>,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

/// What an ended process used.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Usage {
    /// Peak resident set size of the process itself (`VmHWM`), bytes.
    pub max_rss_bytes: u64,
    pub user_cpu_s: f64,
    pub system_cpu_s: f64,
}

async fn next(State(s): State<Arc<Shared>>) -> Response {
    s.ready.send_if_modified(|r| {
        if r.is_none() {
            *r = Some(Instant::now());
            true
        } else {
            false
        }
    });
    let inv = { s.queue.lock().await.recv().await };
    let Some(inv) = inv else {
        return StatusCode::GONE.into_response();
    };
    let id = {
        let mut n = s.next_id.lock().expect("lock");
        *n += 1;
        format!("bench-{n:08}")
    };
    s.pending.lock().expect("lock").insert(id.clone(), inv.reply);
    let deadline = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis()
        + 900_000;
    let mut headers = HeaderMap::new();
    let hv = |v: &str| HeaderValue::from_str(v).expect("header value");
    headers.insert("lambda-runtime-aws-request-id", hv(&id));
    headers.insert("lambda-runtime-deadline-ms", hv(&deadline.to_string()));
    headers.insert(
        "lambda-runtime-invoked-function-arn",
        hv("arn:aws:lambda:us-east-1:123456789012:function:batchq-bench"),
    );
    headers.insert(
        "lambda-runtime-trace-id",
        hv("Root=1-00000000-000000000000000000000000"),
    );
    headers.insert("content-type", hv("application/json"));
    (headers, inv.event).into_response()
}

async fn respond(State(s): State<Arc<Shared>>, UrlPath(id): UrlPath<String>, body: Bytes) -> StatusCode {
    if let Some(reply) = s.pending.lock().expect("lock").remove(&id) {
        let _ = reply.send(Ok(body));
    }
    StatusCode::ACCEPTED
}

async fn error(State(s): State<Arc<Shared>>, UrlPath(id): UrlPath<String>, body: Bytes) -> StatusCode {
    if let Some(reply) = s.pending.lock().expect("lock").remove(&id) {
        let _ = reply.send(Err(String::from_utf8_lossy(&body).into_owned()));
    }
    StatusCode::ACCEPTED
}

async fn init_error(State(s): State<Arc<Shared>>, body: Bytes) -> StatusCode {
    *s.init_error.lock().expect("lock") = Some(String::from_utf8_lossy(&body).into_owned());
    StatusCode::ACCEPTED
}

impl Function {
    /// Starts `binary` with `env` (plus the Lambda runtime's own variables)
    /// against a fresh Runtime API on a free port; output goes to `log`.
    pub async fn start(
        name: &str,
        binary: &Path,
        memory_mb: u32,
        env: &[(String, String)],
        log: &Path,
    ) -> Result<Self, String> {
        let (tx, rx) = mpsc::channel(1);
        let (ready, _) = watch::channel(None);
        let shared = Arc::new(Shared {
            queue: tokio::sync::Mutex::new(rx),
            pending: Mutex::new(HashMap::new()),
            ready,
            init_error: Mutex::new(None),
            next_id: Mutex::new(0),
        });
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route("/2018-06-01/runtime/invocation/{id}/response", post(respond))
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .layer(axum::extract::DefaultBodyLimit::max(64 << 20))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| e.to_string())?;
        let addr: SocketAddr = listener.local_addr().map_err(|e| e.to_string())?;
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let out = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        // BENCH_WRAP="heaptrack -o /tmp/ht" runs the binary under a tool (for experiments).
        let wrap = std::env::var("BENCH_WRAP").unwrap_or_default();
        let mut words = wrap.split_whitespace();
        let mut cmd = match words.next() {
            Some(tool) => {
                let mut c = Command::new(tool);
                c.args(words).arg(binary);
                c
            }
            None => Command::new(binary),
        };
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
            .env("AWS_LAMBDA_FUNCTION_NAME", name)
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", memory_mb.to_string())
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}"))
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "bench")
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err));
        // SAFETY: prctl is async-signal-safe; the child dies with the bench,
        // even when the bench is killed without running its destructors.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let started = Instant::now();
        let child = cmd.spawn().map_err(|e| format!("{}: {e}", binary.display()))?;
        Ok(Self {
            name: name.to_owned(),
            pid: child.id() as libc::pid_t,
            child: Some(child),
            started,
            tx,
            shared,
            server,
        })
    }

    /// Time from spawn to the first `invocation/next`.
    pub async fn ready(&mut self, timeout: Duration) -> Result<Duration, String> {
        let mut rx = self.shared.ready.subscribe();
        let until = Instant::now() + timeout;
        loop {
            if let Some(t) = *rx.borrow() {
                return Ok(t - self.started);
            }
            if let Some(e) = self.shared.init_error.lock().expect("lock").clone() {
                return Err(format!("{}: init error: {e}", self.name));
            }
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(format!("{} exited before it was ready: {status}", self.name));
                }
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!("{} not ready after {timeout:?}", self.name));
            }
            let _ = tokio::time::timeout(left.min(Duration::from_millis(50)), rx.changed()).await;
        }
    }

    /// A `/proc/PID/status` figure (`VmRSS`, `VmHWM`), bytes.
    fn proc_status(&self, field: &str) -> Option<u64> {
        proc_status(&self.pid.to_string(), field)
    }

    /// Resident set size now, bytes.
    pub fn rss_now(&self) -> Option<u64> {
        self.proc_status("VmRSS:")
    }

    /// Runs one invocation; returns the function's response body and how long
    /// the invocation took (what Lambda bills).
    pub async fn invoke(&self, event: impl Into<Bytes>) -> Result<(Bytes, Duration), String> {
        let (reply, rx) = oneshot::channel();
        let t = Instant::now();
        self.tx
            .send(Invocation {
                event: event.into(),
                reply,
            })
            .await
            .map_err(|_| format!("{}: runtime API closed", self.name))?;
        let out = rx
            .await
            .map_err(|_| format!("{}: no response (did the process die? see its log)", self.name))?;
        let took = t.elapsed();
        out.map(|b| (b, took))
            .map_err(|e| format!("{}: invocation failed: {e}", self.name))
    }

    /// Ends the process (as Lambda retires an environment) and returns what it used.
    ///
    /// The peak is the process's own high-water mark (`VmHWM`), read just
    /// before it ends. Not `wait4`'s `ru_maxrss`: the child is spawned with
    /// vfork, and Linux folds the parent's peak (this bench holds hundreds
    /// of MB of generated data) into the child's `maxrss` at exec.
    pub async fn stop(mut self) -> Usage {
        self.server.abort();
        let hwm = self.proc_status("VmHWM:").unwrap_or(0);
        let pid = self.pid;
        // The Child handle is dropped without waiting; wait4 reaps it below.
        if let Some(child) = self.child.take() {
            std::mem::forget(child);
        }
        tokio::task::spawn_blocking(move || {
            // SAFETY: plain syscalls on our own child's pid.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                let mut status = 0;
                let mut ru: libc::rusage = std::mem::zeroed();
                if libc::wait4(pid, &mut status, 0, &mut ru) < 0 {
                    return Usage::default();
                }
                let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
                Usage {
                    max_rss_bytes: hwm,
                    user_cpu_s: secs(ru.ru_utime),
                    system_cpu_s: secs(ru.ru_stime),
                }
            }
        })
        .await
        .unwrap_or_default()
    }
}

impl Drop for Function {
    fn drop(&mut self) {
        self.server.abort();
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A figure of `/proc/PROC/status` (`PROC`: a pid or `self`), such as
/// `VmHWM:` (the process's peak resident set) or `VmRSS:`, in bytes.
pub fn proc_status(proc: &str, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{proc}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
