//! Cold start: the time from process start to the first call for work on a stub Lambda
//! Runtime API, and the peak memory until then, for each binary given, run many times.
//! Under strace (if installed) it also lists every network connection made during init
//! other than to the Runtime API itself.
//!
//!     scripts/coldstart            (builds the release binaries, then runs this)
//!     cargo run --release --example coldstart -- RUNS BINARY...   (the last is the floor)

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Serves the Runtime and Extensions APIs just far enough for init to complete, and
/// reports the first `GET .../runtime/invocation/next`: the function asking for work.
fn stub_runtime_api() -> (String, mpsc::Receiver<Instant>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let tx = tx.clone();
            std::thread::spawn(move || serve(stream, tx));
        }
    });
    (addr, rx)
}

fn serve(mut stream: TcpStream, tx: mpsc::Sender<Instant>) {
    let _ = stream.set_nodelay(true);
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut length = 0;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        let _ = reader.read_exact(&mut body);
        if request_line.contains("/runtime/invocation/next") {
            let _ = tx.send(Instant::now());
            // Never answers: the measurement ends here.
            std::thread::sleep(Duration::from_secs(3600));
        } else if request_line.contains("/extension/register") {
            let body = r#"{"functionName":"f","functionVersion":"$LATEST","handler":"bootstrap"}"#;
            let response = format!(
                "HTTP/1.1 200 OK\r\nlambda-extension-identifier: ext-1\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            );
            // One write: `write!` on a TcpStream sends each piece of the format as its own
            // segment, which Nagle's algorithm then holds back.
            let _ = stream.write_all(response.as_bytes());
        } else if request_line.contains("/extension/event/next") {
            std::thread::sleep(Duration::from_secs(3600));
        } else {
            let _ = write!(
                stream,
                "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n"
            );
        }
    }
}

fn command(program: &str, api: &str) -> Command {
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
        .env("TWENTY_WEBHOOK_SECRET", "cold-start-secret")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c
}

/// One cold start: (time to the first call for work, peak RSS in KiB).
fn once(binary: &str) -> (Duration, u64) {
    let (api, first_next) = stub_runtime_api();
    let start = Instant::now();
    let mut child = command(binary, &api).spawn().expect("start binary");
    let asked = first_next
        .recv_timeout(Duration::from_secs(10))
        .expect("the binary asked for work");
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
    let peak_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    let _ = child.kill();
    let _ = child.wait();
    (asked - start, peak_kib)
}

/// Connections other than to the Runtime API made before the first call for work.
fn network_during_init(binary: &str) -> Option<Vec<String>> {
    let (api, first_next) = stub_runtime_api();
    let trace = std::env::temp_dir().join(format!("coldstart-{}.strace", std::process::id()));
    let mut child = command("strace", &api)
        .args(["-f", "-qq", "-e", "trace=connect", "-o"])
        .arg(&trace)
        .arg(binary)
        .spawn()
        .ok()?;
    first_next.recv_timeout(Duration::from_secs(20)).ok()?;
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
    let mut times = vec![Vec::with_capacity(runs); binaries.len()];
    let mut peaks = vec![0u64; binaries.len()];
    for binary in binaries {
        let _ = once(binary); // page cache warm-up, not counted
    }
    for _ in 0..runs {
        for (i, binary) in binaries.iter().enumerate() {
            let (t, rss) = once(binary);
            times[i].push(t);
            peaks[i] = peaks[i].max(rss);
        }
    }
    for t in &mut times {
        t.sort();
    }
    let floor = &times[binaries.len() - 1];
    let ms = |d: Duration| format!("{:.2} ms", d.as_secs_f64() * 1000.0);
    let ratio = |a: Duration, b: Duration| format!("{:.2}x", a.as_secs_f64() / b.as_secs_f64());

    println!(
        "{:<46} {:>8} {:>10} {:>10} {:>10} {:>9} {:>9} {:>9}",
        "binary",
        "size KiB",
        "init p50",
        "init p90",
        "init min",
        "p50/floor",
        "min/floor",
        "peak MiB"
    );
    for (i, binary) in binaries.iter().enumerate() {
        let t = &times[i];
        let size = std::fs::metadata(binary).map_or(0, |m| m.len() / 1024);
        println!(
            "{binary:<46} {size:>8} {:>10} {:>10} {:>10} {:>9} {:>9} {:>9.1}",
            ms(t[runs / 2]),
            ms(t[runs * 9 / 10]),
            ms(t[0]),
            ratio(t[runs / 2], floor[runs / 2]),
            ratio(t[0], floor[0]),
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
