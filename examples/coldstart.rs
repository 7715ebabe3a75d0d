//! Cold start: for each binary given, run many times against a stub Lambda Runtime API,
//! the time from process start to the first call for work (init), the time from process
//! start to the answer to the first invocation (what a user feels: a Twenty-signed delivery
//! to the function, anything to a floor), and the peak memory until then. Under strace (if
//! installed) it also lists every network connection made during init other than to the
//! Runtime API itself.
//!
//! A binary whose name holds `worker` or `runtime` is given an SQS event instead: one
//! queued envelope, which the worker forwards to the stub (its `/hook` answers 204). One
//! whose name holds `reconcile` is given a scheduled event: its run asks the stub for
//! Twenty's objects, gets a 404, and answers.
//!
//! `BINARY@ssm` runs the binary with its secrets in SSM Parameter Store instead of the
//! environment (`TWENTY_WEBHOOK_SECRET_PARAMETER`, `FORWARD_RULES_PARAMETER`), the stub
//! answering `GetParameter` over plain HTTP on loopback: the first answer then includes
//! making the SSM client and one read (but not a real network round trip to SSM).
//!
//!     scripts/coldstart            (builds the release binaries, then runs this)
//!     cargo run --release --example coldstart -- RUNS BINARY...   (the last is the floor)

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const SECRET: &str = "cold-start-secret";

/// What the stub saw, and when.
enum Mark {
    /// The first `GET .../runtime/invocation/next`: init is over.
    Init(Instant),
    /// The answer to the first invocation was posted.
    Answer(Instant),
}

/// Serves the Runtime and Extensions APIs for one invocation: the first call for work gets
/// a signed Function URL delivery (and the extension its INVOKE); later calls wait forever.
/// Anything else (the function's SQS calls, pointed here so that no traffic leaves the
/// machine) gets a 404.
fn stub_runtime_api(binary: &str) -> (String, mpsc::Receiver<Mark>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (tx, rx) = mpsc::channel();
    let event = Arc::new(if binary.contains("reconcile") {
        scheduled_event()
    } else if takes_sqs(binary) {
        sqs_event()
    } else {
        invocation_event()
    });
    let calls = Arc::new((AtomicUsize::new(0), AtomicUsize::new(0)));
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let (tx, event, calls) = (tx.clone(), event.clone(), calls.clone());
            std::thread::spawn(move || serve(stream, tx, &event, &calls));
        }
    });
    (addr, rx)
}

fn serve(
    mut stream: TcpStream,
    tx: mpsc::Sender<Mark>,
    event: &str,
    calls: &(AtomicUsize, AtomicUsize),
) {
    let _ = stream.set_nodelay(true);
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let (mut length, mut target) = (0, String::new());
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                break;
            }
            let lower = line.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                length = v.trim().parse().unwrap_or(0);
            }
            if let Some(v) = lower.strip_prefix("x-amz-target:") {
                target = v.trim().to_owned();
            }
        }
        let mut body = vec![0; length];
        let _ = reader.read_exact(&mut body);
        // One write per answer: `write!` on a TcpStream sends each piece of the format as
        // its own segment, which Nagle's algorithm then holds back.
        let answer = if request_line.contains("/runtime/invocation/next") {
            if calls.0.fetch_add(1, Ordering::SeqCst) > 0 {
                hang();
            }
            let _ = tx.send(Mark::Init(Instant::now()));
            let deadline = (now_ms() + 30_000).to_string();
            reply(
                200,
                &[
                    ("lambda-runtime-aws-request-id", "request-1"),
                    ("lambda-runtime-deadline-ms", &deadline),
                    (
                        "lambda-runtime-invoked-function-arn",
                        "arn:aws:lambda:eu-west-1:123456789012:function:twenty-webhook",
                    ),
                ],
                event,
            )
        } else if target == "amazonssm.getparameter" {
            let name = String::from_utf8_lossy(&body).to_string();
            let value = if name.contains("rules") {
                serde_json::to_string(&rules(&api_of(&stream))).unwrap()
            } else {
                serde_json::to_string(SECRET).unwrap()
            };
            reply(
                200,
                &[],
                &format!(
                    r#"{{"Parameter":{{"Name":"p","Type":"SecureString","Value":{value},"Version":1}}}}"#
                ),
            )
        } else if request_line.contains("/hook") {
            reply(204, &[], "")
        } else if request_line.contains("/runtime/invocation/") {
            let _ = tx.send(Mark::Answer(Instant::now()));
            reply(202, &[], "{}")
        } else if request_line.contains("/extension/register") {
            let body = r#"{"functionName":"f","functionVersion":"$LATEST","handler":"bootstrap"}"#;
            reply(200, &[("lambda-extension-identifier", "ext-1")], body)
        } else if request_line.contains("/extension/event/next") {
            if calls.1.fetch_add(1, Ordering::SeqCst) > 0 {
                hang();
            }
            let body = format!(
                r#"{{"eventType":"INVOKE","deadlineMs":{},"requestId":"request-1","invokedFunctionArn":"arn:aws:lambda:eu-west-1:123456789012:function:twenty-webhook","tracing":{{"type":"X-Amzn-Trace-Id","value":"Root=1"}}}}"#,
                now_ms() + 30_000
            );
            reply(200, &[], &body)
        } else {
            reply(404, &[], "")
        };
        let _ = stream.write_all(answer.as_bytes());
    }
}

/// The stub's own address, as the binary reached it.
fn api_of(stream: &TcpStream) -> String {
    stream
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default()
}

/// One forwarding rule to the stub's `/hook`.
fn rules(api: &str) -> String {
    format!(r#"[{{"name":"stub","events":["*"],"url":"http://{api}/hook"}}]"#)
}

fn hang() -> ! {
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

fn reply(status: u16, headers: &[(&str, &str)], body: &str) -> String {
    let mut text = format!(
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        text.push_str(&format!("{k}: {v}\r\n"));
    }
    text + "\r\n" + body
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// One queued envelope as Lambda's SQS event source hands it to the worker.
fn sqs_event() -> String {
    let body = r#"{"eventName":"person.created","workspaceId":"ws","record":{"id":"r-1","name":{"firstName":"Zoë"}}}"#;
    let payload = twenty_webhook::twenty::event::parse(body).unwrap();
    let id = twenty_webhook::envelope::body_sha256(body.as_bytes());
    let receipt = twenty_webhook::envelope::Receipt {
        body_sha256: &id,
        received_at: "2026-11-27T00:00:00.000Z",
        signature_verified: true,
    };
    let message = twenty_webhook::envelope::messages(&payload, receipt, Default::default())
        .unwrap()
        .remove(0);
    serde_json::json!({"Records": [{
        "messageId": "m-1", "receiptHandle": "r-1", "body": message.body,
        "attributes": {"ApproximateReceiveCount": "1"}, "messageAttributes": {},
        "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:eu-west-1:123456789012:events",
        "awsRegion": "eu-west-1"
    }]})
    .to_string()
}

/// What EventBridge Scheduler hands `twenty-reconcile`: its run then asks the stub for
/// Twenty's objects (a 404), and answers.
fn scheduled_event() -> String {
    serde_json::json!({
        "version": "0", "id": "e", "detail-type": "Scheduled Event", "source": "aws.events",
        "account": "123456789012", "time": "2026-12-03T10:00:00Z", "region": "eu-west-1",
        "resources": [], "detail": {}
    })
    .to_string()
}

fn takes_sqs(binary: &str) -> bool {
    binary.contains("worker") || binary.contains("runtime")
}

/// A Twenty delivery, signed now, as a Function URL hands it to Lambda.
fn invocation_event() -> String {
    let body = r#"{"targetUrl":"https://abcdefghij.lambda-url.eu-west-1.on.aws/","eventName":"person.created","objectMetadata":{"id":"5f7e0c4e-1c56-4a4b-9a0e-2f6a4cb1a001","nameSingular":"person"},"workspaceId":"20202020-1c25-4d02-bf25-6aeccf7ea419","webhookId":"8c2b6a4e-77a4-4b5e-9f0e-5a1d2c3b4e01","eventDate":"2025-02-10T15:30:45.123Z","record":{"id":"d0a4c7e2-3b5f-4a61-8c9d-0e1f2a3b4c5d","name":{"firstName":"Zoë","lastName":"Nguyễn"},"emails":{"primaryEmail":"zoe@example.com","additionalEmails":null},"city":"Paris"}}"#;
    let ts = now_ms().to_string();
    let signature =
        twenty_webhook::twenty::signature::sign(SECRET.as_bytes(), &ts, body.as_bytes());
    serde_json::json!({
        "version": "2.0", "routeKey": "$default", "rawPath": "/", "rawQueryString": "",
        "headers": {
            "content-type": "application/json", "user-agent": "axios/1.7.9",
            "x-twenty-webhook-timestamp": ts, "x-twenty-webhook-signature": signature
        },
        "requestContext": {
            "accountId": "anonymous", "apiId": "abcdefghij",
            "domainName": "abcdefghij.lambda-url.eu-west-1.on.aws", "domainPrefix": "abcdefghij",
            "http": {"method": "POST", "path": "/", "protocol": "HTTP/1.1",
                     "sourceIp": "203.0.113.10", "userAgent": "axios/1.7.9"},
            "requestId": "r", "routeKey": "$default", "stage": "$default",
            "time": "10/Feb/2025:15:30:45 +0000", "timeEpoch": 0
        },
        "body": body,
        "isBase64Encoded": false
    })
    .to_string()
}

/// The program, and whether its secrets come from SSM (`BINARY@ssm`).
fn variant(binary: &str) -> (&str, bool) {
    match binary.strip_suffix("@ssm") {
        Some(program) => (program, true),
        None => (binary, false),
    }
}

fn command(program: &str, ssm: bool, api: &str) -> Command {
    let mut c = Command::new(program);
    c.env_clear()
        .env("AWS_LAMBDA_RUNTIME_API", api)
        .env("AWS_LAMBDA_FUNCTION_NAME", "twenty-webhook")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "stream")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/twenty-webhook")
        .env("AWS_REGION", "eu-west-1")
        .env("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
        .env("AWS_SECRET_ACCESS_KEY", "secret")
        .env("AWS_SESSION_TOKEN", "token")
        .env(
            "QUEUE_URL",
            "https://sqs.eu-west-1.amazonaws.com/123456789012/events",
        )
        // The send after the answer goes to the stub (a 404), never off the machine.
        .env("AWS_ENDPOINT_URL_SQS", format!("http://{api}"))
        // Reconciliation's Twenty: the stub too.
        .env("TWENTY_API_URL", format!("http://{api}"))
        .env("TWENTY_API_KEY", "key")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // Reconciliation cannot run without its table; the worker is measured without one, as
    // its figures always were (with one, the stub's 404 would fail its first message).
    if program.contains("reconcile") {
        c.env("IDEMPOTENCY_TABLE", "twenty")
            .env("AWS_ENDPOINT_URL_DYNAMODB", format!("http://{api}"));
    }
    if ssm {
        c.env("TWENTY_WEBHOOK_SECRET_PARAMETER", "/twenty/secret")
            .env("FORWARD_RULES_PARAMETER", "/twenty/rules")
            .env("AWS_ENDPOINT_URL_SSM", format!("http://{api}"));
    } else {
        c.env("TWENTY_WEBHOOK_SECRET", SECRET)
            .env("FORWARD_RULES", rules(api));
    }
    c
}

/// One cold start: time to the first call for work, time to the first answer, and the
/// peak RSS in KiB until then.
fn once(binary: &str) -> (Duration, Duration, u64) {
    let (api, marks) = stub_runtime_api(binary);
    let start = Instant::now();
    let (program, ssm) = variant(binary);
    let mut child = command(program, ssm, &api).spawn().expect("start binary");
    let (mut init, mut answer) = (None, None);
    while answer.is_none() {
        match marks.recv_timeout(Duration::from_secs(10)) {
            Ok(Mark::Init(at)) => init = Some(at - start),
            Ok(Mark::Answer(at)) => answer = Some(at - start),
            Err(_) => panic!("{binary} did not answer its first invocation"),
        }
    }
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
    let peak_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    let _ = child.kill();
    let _ = child.wait();
    (init.expect("init mark"), answer.expect("answer"), peak_kib)
}

/// Connections other than to the Runtime API made before the first call for work.
fn network_during_init(binary: &str) -> Option<Vec<String>> {
    let (api, first_next) = stub_runtime_api(binary);
    let trace = std::env::temp_dir().join(format!("coldstart-{}.strace", std::process::id()));
    let (program, ssm) = variant(binary);
    let mut child = command("strace", ssm, &api)
        .args(["-f", "-qq", "-e", "trace=connect", "-o"])
        .arg(&trace)
        .arg(program)
        .spawn()
        .ok()?;
    while !matches!(
        first_next.recv_timeout(Duration::from_secs(20)).ok()?,
        Mark::Init(_)
    ) {}
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(&trace).ok()?;
    let _ = std::fs::remove_file(&trace);
    let port = api.rsplit(':').next().unwrap().to_owned();
    Some(
        text.lines()
            .filter(|l| l.contains("connect("))
            .filter(|l| !(l.contains("127.0.0.1") && l.contains(&format!("htons({port})"))))
            .map(str::to_owned)
            .collect(),
    )
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runs: usize = args.first().and_then(|r| r.parse().ok()).unwrap_or(100);
    let binaries = &args[1..];
    assert!(
        !binaries.is_empty(),
        "usage: coldstart RUNS BINARY... (the last is the floor)"
    );
    let strace = Command::new("strace").arg("-V").output().is_ok();

    // Runs alternate between the binaries, so that whatever else the machine is doing
    // weighs on each of them alike rather than on whichever ran during a busy spell.
    let mut inits = vec![Vec::with_capacity(runs); binaries.len()];
    let mut answers = vec![Vec::with_capacity(runs); binaries.len()];
    let mut peaks = vec![0u64; binaries.len()];
    for binary in binaries {
        let _ = once(binary); // page cache warm-up, not counted
    }
    for _ in 0..runs {
        for (i, binary) in binaries.iter().enumerate() {
            let (init, answer, rss) = once(binary);
            inits[i].push(init);
            answers[i].push(answer);
            peaks[i] = peaks[i].max(rss);
        }
    }
    for t in inits.iter_mut().chain(answers.iter_mut()) {
        t.sort();
    }
    let last = binaries.len() - 1;
    let ms = |d: Duration| format!("{:.2} ms", d.as_secs_f64() * 1000.0);
    let ratio = |a: Duration, b: Duration| format!("{:.2}x", a.as_secs_f64() / b.as_secs_f64());

    println!(
        "{:<46} {:>8} {:>10} {:>10} {:>11} {:>11} {:>11} {:>11} {:>9}",
        "binary",
        "size KiB",
        "init p50",
        "init/floor",
        "answer p50",
        "answer p90",
        "answer min",
        "answ./floor",
        "peak MiB"
    );
    for (i, binary) in binaries.iter().enumerate() {
        let (init, answer) = (&inits[i], &answers[i]);
        let size = std::fs::metadata(variant(binary).0).map_or(0, |m| m.len() / 1024);
        println!(
            "{binary:<46} {size:>8} {:>10} {:>10} {:>11} {:>11} {:>11} {:>11} {:>9.1}",
            ms(init[runs / 2]),
            ratio(init[runs / 2], inits[last][runs / 2]),
            ms(answer[runs / 2]),
            ms(answer[runs * 9 / 10]),
            ms(answer[0]),
            ratio(answer[runs / 2], answers[last][runs / 2]),
            peaks[i] as f64 / 1024.0
        );
    }
    for binary in binaries {
        let verdict = if !strace {
            "not checked (install strace)".to_owned()
        } else {
            match network_during_init(binary) {
                Some(calls) if calls.is_empty() => "none (strace: only the Runtime API)".to_owned(),
                Some(calls) => format!("{calls:?}"),
                None => "strace run failed".to_owned(),
            }
        };
        println!("network during init of {binary}: {verdict}");
    }
    println!(
        "{runs} runs each, interleaved, on {} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
}
