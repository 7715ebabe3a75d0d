//! A stub of the Lambda Runtime API and Extensions API that behaves as Lambda does about
//! when an invocation ends: once the runtime has posted its answer and asked for the next
//! event, and every registered extension has asked for its next event. At that moment Lambda
//! may freeze the process; `invoke` returns then, and the test freezes it (SIGSTOP) and
//! looks at what the function did before.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;

const RUNTIME: &str = "/2018-06-01/runtime";
const EXTENSION: &str = "/2020-01-01/extension";

#[derive(Debug, Clone, Default)]
pub struct State {
    /// Invocations handed out so far; the n-th call for work (from 1) waits for number n.
    pub invocations: Vec<Invocation>,
    pub runtime_next_calls: u64,
    /// Registered extensions and how often each has asked for its next event.
    pub extension_next_calls: BTreeMap<String, u64>,
    /// Errors reported through the API (init, invocation or extension).
    pub errors: Vec<String>,
    /// Answer the extensions' next call for this invocation with an unreadable event.
    pub break_extensions_at: Option<usize>,
}

#[derive(Debug, Clone)]
pub struct Invocation {
    pub request_id: String,
    pub deadline_ms: u64,
    pub payload: String,
    /// The runtime's answer, and when it was posted.
    pub response: Option<(String, Instant)>,
}

pub struct LambdaApi {
    pub addr: String,
    state: watch::Sender<State>,
}

/// When one invocation ended, and what the function answered.
#[derive(Debug)]
pub struct Ended {
    pub response: serde_json::Value,
    pub answered_at: Instant,
    pub ended_at: Instant,
}

impl LambdaApi {
    pub async fn start() -> Arc<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind stub");
        let addr = listener.local_addr().unwrap().to_string();
        let api = Arc::new(Self {
            addr,
            state: watch::channel(State::default()).0,
        });
        let server = api.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(server.clone().connection(stream));
            }
        });
        api
    }

    pub fn state(&self) -> State {
        self.state.borrow().clone()
    }

    pub fn break_extensions_at(&self, invocation: usize) {
        self.state
            .send_modify(|s| s.break_extensions_at = Some(invocation));
    }

    /// Waits until init is over: an extension registered and the runtime asked for work.
    pub async fn ready(&self, within: Duration) {
        let mut rx = self.state.subscribe();
        tokio::time::timeout(
            within,
            rx.wait_for(|s| {
                s.runtime_next_calls >= 1
                    && !s.extension_next_calls.is_empty()
                    && s.extension_next_calls.values().all(|n| *n >= 1)
            }),
        )
        .await
        .expect("the function finished init")
        .unwrap();
    }

    /// Hands `payload` to the function and returns once the invocation has ended as Lambda
    /// sees it (the moment it may freeze the environment), or panics after `within`.
    pub async fn invoke(&self, payload: String, within: Duration) -> Ended {
        let n = self.hand_over(payload);
        self.ended(n, within).await
    }

    /// Makes `payload` the next invocation; returns its number (from 1).
    pub fn hand_over(&self, payload: String) -> usize {
        self.hand_over_until(payload, now_ms() + 30_000)
    }

    /// Makes `payload` the next invocation, to end by `deadline_ms` (epoch milliseconds).
    pub fn hand_over_until(&self, payload: String, deadline_ms: u64) -> usize {
        let mut n = 0;
        self.state.send_modify(|s| {
            n = s.invocations.len() + 1;
            s.invocations.push(Invocation {
                request_id: format!("request-{n}"),
                deadline_ms,
                payload,
                response: None,
            })
        });
        n
    }

    /// The answer to invocation `n`, once posted.
    pub async fn answer(&self, n: usize, within: Duration) -> (serde_json::Value, Instant) {
        let mut rx = self.state.subscribe();
        let state = tokio::time::timeout(
            within,
            rx.wait_for(|s| s.invocations[n - 1].response.is_some()),
        )
        .await
        .unwrap_or_else(|_| panic!("invocation {n} was not answered: {:?}", self.state()))
        .unwrap()
        .clone();
        let (body, at) = state.invocations[n - 1].response.clone().unwrap();
        (serde_json::from_str(&body).expect("the answer is JSON"), at)
    }

    /// The answer to invocation `n` and when it was posted, or None after `within`.
    pub async fn try_answer(&self, n: usize, within: Duration) -> Option<(String, Instant)> {
        let mut rx = self.state.subscribe();
        let state = tokio::time::timeout(
            within,
            rx.wait_for(|s| s.invocations[n - 1].response.is_some()),
        )
        .await
        .ok()?
        .ok()?
        .clone();
        state.invocations[n - 1].response.clone()
    }

    async fn ended(&self, n: usize, within: Duration) -> Ended {
        let mut rx = self.state.subscribe();
        let next = n as u64 + 1;
        tokio::time::timeout(
            within,
            rx.wait_for(|s| {
                s.invocations[n - 1].response.is_some()
                    && s.runtime_next_calls >= next
                    && s.extension_next_calls.values().all(|c| *c >= next)
            }),
        )
        .await
        .unwrap_or_else(|_| panic!("invocation {n} did not end: {:?}", self.state()))
        .unwrap();
        let ended_at = Instant::now();
        let (response, answered_at) = self.answer(n, within).await;
        Ended {
            response,
            answered_at,
            ended_at,
        }
    }

    async fn connection(self: Arc<Self>, stream: TcpStream) {
        let _ = stream.set_nodelay(true);
        let (read, mut write) = stream.into_split();
        let mut read = BufReader::new(read);
        while let Some((method, path, headers, body)) = read_request(&mut read).await {
            let answer = self.route(&method, &path, &headers, body).await;
            if write.write_all(answer.as_bytes()).await.is_err() {
                return;
            }
        }
    }

    async fn route(
        &self,
        method: &str,
        path: &str,
        headers: &BTreeMap<String, String>,
        body: Vec<u8>,
    ) -> String {
        let text = String::from_utf8_lossy(&body).into_owned();
        match (method, path) {
            ("POST", p) if p == format!("{EXTENSION}/register") => {
                let id = format!("extension-{}", self.state().extension_next_calls.len() + 1);
                self.state.send_modify(|s| {
                    s.extension_next_calls.insert(id.clone(), 0);
                });
                let body = r#"{"functionName":"twenty-webhook","functionVersion":"$LATEST","handler":"bootstrap"}"#;
                respond(200, &[("lambda-extension-identifier", &id)], body)
            }
            ("GET", p) if p == format!("{EXTENSION}/event/next") => {
                let id = headers
                    .get("lambda-extension-identifier")
                    .cloned()
                    .unwrap_or_default();
                let mut n = 0;
                self.state.send_modify(|s| {
                    let calls = s.extension_next_calls.entry(id.clone()).or_insert(0);
                    *calls += 1;
                    n = *calls as usize;
                });
                let invocation = self.wait_for_invocation(n).await;
                if self.state().break_extensions_at == Some(n) {
                    // After the answer has gone out, so the error meets a send in flight.
                    let mut rx = self.state.subscribe();
                    let _ = rx
                        .wait_for(|s| s.invocations[n - 1].response.is_some())
                        .await;
                    return respond(200, &[], r#"{"eventType":"NOT-AN-EVENT"}"#);
                }
                let event = serde_json::json!({
                    "eventType": "INVOKE",
                    "deadlineMs": invocation.deadline_ms,
                    "requestId": invocation.request_id,
                    "invokedFunctionArn": "arn:aws:lambda:us-east-1:123456789012:function:twenty-webhook",
                    "tracing": {"type": "X-Amzn-Trace-Id", "value": "Root=1-00000000-000000000000000000000000"}
                });
                respond(200, &[], &event.to_string())
            }
            ("GET", p) if p == format!("{RUNTIME}/invocation/next") => {
                let mut n = 0;
                self.state.send_modify(|s| {
                    s.runtime_next_calls += 1;
                    n = s.runtime_next_calls as usize;
                });
                let invocation = self.wait_for_invocation(n).await;
                let deadline = invocation.deadline_ms.to_string();
                respond(
                    200,
                    &[
                        ("lambda-runtime-aws-request-id", &invocation.request_id),
                        ("lambda-runtime-deadline-ms", &deadline),
                        (
                            "lambda-runtime-invoked-function-arn",
                            "arn:aws:lambda:us-east-1:123456789012:function:twenty-webhook",
                        ),
                        (
                            "lambda-runtime-trace-id",
                            "Root=1-00000000-000000000000000000000000",
                        ),
                    ],
                    &invocation.payload,
                )
            }
            ("POST", p) if p.starts_with(&format!("{RUNTIME}/invocation/")) => {
                let rest = &p[RUNTIME.len() + "/invocation/".len()..];
                let (id, kind) = rest.split_once('/').unwrap_or((rest, ""));
                let at = Instant::now();
                self.state.send_modify(|s| {
                    if kind == "response" {
                        if let Some(inv) = s.invocations.iter_mut().find(|i| i.request_id == id) {
                            inv.response = Some((text.clone(), at));
                        }
                    } else {
                        s.errors.push(format!("invocation {id}: {text}"));
                    }
                });
                respond(202, &[], r#"{"status":"OK"}"#)
            }
            ("POST", p) => {
                self.state
                    .send_modify(|s| s.errors.push(format!("{p}: {text}")));
                respond(202, &[], r#"{"status":"OK"}"#)
            }
            _ => respond(404, &[], "{}"),
        }
    }

    async fn wait_for_invocation(&self, n: usize) -> Invocation {
        let mut rx = self.state.subscribe();
        let state = rx.wait_for(|s| s.invocations.len() >= n).await.unwrap();
        state.invocations[n - 1].clone()
    }
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn respond(status: u16, headers: &[(&str, &str)], body: &str) -> String {
    let mut head = format!(
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    format!("{head}\r\n{body}")
}

/// Method, path, headers (names lowercased), body.
pub type Request = (String, String, BTreeMap<String, String>, Vec<u8>);

/// One HTTP/1.1 request (Content-Length or chunked body), or None at the end of the stream.
/// The other local servers of the tests read theirs with it too.
pub async fn read_request(read: &mut BufReader<tokio::net::tcp::OwnedReadHalf>) -> Option<Request> {
    let mut line = String::new();
    if read.read_line(&mut line).await.ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_owned();
    let path = parts.next()?.to_owned();
    let mut headers = BTreeMap::new();
    loop {
        let mut h = String::new();
        if read.read_line(&mut h).await.ok()? == 0 {
            return None;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
    }
    let mut body = Vec::new();
    if headers
        .get("transfer-encoding")
        .is_some_and(|v| v.contains("chunked"))
    {
        loop {
            let mut size = String::new();
            read.read_line(&mut size).await.ok()?;
            let size = usize::from_str_radix(size.trim(), 16).ok()?;
            let mut chunk = vec![0; size + 2];
            read.read_exact(&mut chunk).await.ok()?;
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    } else if let Some(length) = headers.get("content-length").and_then(|v| v.parse().ok()) {
        body = vec![0; length];
        read.read_exact(&mut body).await.ok()?;
    }
    Some((method, path, headers, body))
}
