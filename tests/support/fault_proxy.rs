//! A fault-injecting HTTP proxy in front of moto's SQS server.
//!
//! Each request gets its own connection (the proxy answers `Connection: close`), so a
//! fault switched on applies from the very next request. Faults:
//! refusing connections (the listener is closed), 500/503 answers, throttling, slow
//! answers, and dying mid-request (either before or after SQS has the message).

#![allow(dead_code)] // used by the fault tests and by examples/load.rs, each in part

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Forward everything.
    None,
    /// Nothing listens: connections are refused.
    Refuse,
    /// Answer this status (500, 503) with an AWS-style error body; SQS never sees it.
    Status(u16),
    /// Answer 400 ThrottlingException, as SQS does when over its rate.
    Throttle,
    /// Forward, but only after this delay.
    Slow(Duration),
    /// Read the request, then close the connection without an answer.
    DropRequest,
    /// Forward to SQS, then close without passing the answer on: SQS has the message
    /// but the sender cannot know.
    DropAnswer,
}

pub struct FaultProxy {
    pub addr: SocketAddr,
    fault: watch::Sender<Fault>,
    /// Requests seen, by what happened to them.
    pub forwarded: AtomicU64,
    pub faulted: AtomicU64,
    /// When each answer from SQS was passed on to the sender.
    pub answered_at: std::sync::Mutex<Vec<tokio::time::Instant>>,
}

impl FaultProxy {
    pub async fn start(upstream: &str) -> Arc<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().unwrap();
        let upstream = upstream.trim_start_matches("http://").to_owned();
        let (fault, _) = watch::channel(Fault::None);
        let proxy = Arc::new(Self {
            addr,
            fault,
            forwarded: AtomicU64::new(0),
            faulted: AtomicU64::new(0),
            answered_at: std::sync::Mutex::new(Vec::new()),
        });
        tokio::spawn(serve(proxy.clone(), listener, upstream));
        proxy
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set(&self, fault: Fault) {
        self.fault.send_replace(fault);
    }
}

async fn serve(proxy: Arc<FaultProxy>, listener: TcpListener, upstream: String) {
    let mut changes = proxy.fault.subscribe();
    let mut listener = Some(listener);
    loop {
        let refusing = *changes.borrow_and_update() == Fault::Refuse;
        match (&listener, refusing) {
            (Some(_), true) => listener = None,
            (None, false) => {
                // Rebind the same port; the OS may need a moment to release it.
                for _ in 0..50 {
                    if let Ok(l) = TcpListener::bind(proxy.addr).await {
                        listener = Some(l);
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            _ => {}
        }
        match &listener {
            None => {
                if changes.changed().await.is_err() {
                    return;
                }
            }
            Some(l) => tokio::select! {
                accepted = l.accept() => {
                    if let Ok((stream, _)) = accepted {
                        let fault = *proxy.fault.borrow();
                        tokio::spawn(handle(proxy.clone(), stream, upstream.clone(), fault));
                    }
                }
                changed = changes.changed() => if changed.is_err() { return },
            },
        }
    }
}

async fn handle(proxy: Arc<FaultProxy>, mut client: TcpStream, upstream: String, fault: Fault) {
    let Some(request) = read_request(&mut client).await else {
        return;
    };
    let canned = |status: u16, reason: &str, code: &str| {
        let body = format!(
            r#"{{"__type":"com.amazonaws.sqs#{code}","message":"injected by the fault proxy"}}"#
        );
        format!(
            "HTTP/1.1 {status} {reason}\r\ncontent-type: application/x-amz-json-1.0\r\nx-amzn-query-error: {code};Sender\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    let answer = match fault {
        Fault::None | Fault::Slow(_) | Fault::DropAnswer | Fault::Refuse => None,
        Fault::Status(503) => Some(canned(503, "Service Unavailable", "ServiceUnavailable")),
        Fault::Status(status) => Some(canned(status, "Internal Server Error", "InternalError")),
        Fault::Throttle => Some(canned(400, "Bad Request", "ThrottlingException")),
        Fault::DropRequest => {
            proxy.faulted.fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    if let Some(answer) = answer {
        proxy.faulted.fetch_add(1, Ordering::Relaxed);
        let _ = client.write_all(answer.as_bytes()).await;
        return;
    }
    if let Fault::Slow(delay) = fault {
        tokio::time::sleep(delay).await;
    }
    let Ok(mut server) = TcpStream::connect(&upstream).await else {
        return;
    };
    if server.write_all(&request).await.is_err() {
        return;
    }
    let mut response = Vec::new();
    if server.read_to_end(&mut response).await.is_err() {
        return;
    }
    proxy.forwarded.fetch_add(1, Ordering::Relaxed);
    if fault == Fault::DropAnswer {
        proxy.faulted.fetch_add(1, Ordering::Relaxed);
        return;
    }
    proxy
        .answered_at
        .lock()
        .unwrap()
        .push(tokio::time::Instant::now());
    let _ = client.write_all(&response).await;
}

/// One HTTP/1.1 request, rewritten to `Connection: close` so the server ends the answer
/// with the connection. Bodies are sized by Content-Length (the SDK sends no chunked body).
async fn read_request(client: &mut TcpStream) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i + 4;
        }
        let n = client.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = client.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let mut out: Vec<u8> = head
        .split("\r\n")
        .filter(|l| !l.is_empty() && !l.to_ascii_lowercase().starts_with("connection:"))
        .flat_map(|l| [l, "\r\n"])
        .collect::<String>()
        .into_bytes();
    out.extend_from_slice(b"connection: close\r\n\r\n");
    out.extend_from_slice(&buf[head_end..head_end + length]);
    Some(out)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
