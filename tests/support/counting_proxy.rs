//! An HTTP proxy in front of moto that counts what passes: each request is read whole,
//! sent on with reqwest, and its answer passed back. For the cost figures: how many
//! DynamoDB writes of each kind the worker makes. It can also rewrite answers, to play a
//! service that refuses part of a call (moto never does).

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use super::lambda_api::read_request;

/// Rewrites an answer: (the request's `x-amz-target`, its body, the answer's body).
pub type Rewrite = fn(&str, &[u8], Vec<u8>) -> Vec<u8>;

pub struct CountingProxy {
    pub url: String,
    /// Requests by `x-amz-target` (or path), and the bodies of the writes.
    pub seen: Arc<Mutex<Vec<(String, String)>>>,
}

impl CountingProxy {
    pub async fn start(upstream: &str) -> Self {
        Self::rewriting(upstream, |_, _, answer| answer).await
    }

    pub async fn rewriting(upstream: &str, rewrite: Rewrite) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (log, upstream) = (seen.clone(), upstream.to_owned());
        twenty_webhook::tls::install_provider();
        let client = reqwest::Client::new();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (log, upstream, client) = (log.clone(), upstream.clone(), client.clone());
                tokio::spawn(async move {
                    let (read, mut write) = stream.into_split();
                    let mut read = BufReader::new(read);
                    while let Some((method, path, headers, body)) = read_request(&mut read).await {
                        let target = headers.get("x-amz-target").cloned().unwrap_or(path.clone());
                        log.lock()
                            .unwrap()
                            .push((target.clone(), String::from_utf8_lossy(&body).into_owned()));
                        let mut request = client.request(
                            method.parse().unwrap_or(reqwest::Method::POST),
                            format!("{upstream}{path}"),
                        );
                        for (k, v) in &headers {
                            // The body is sent on whole: its framing is reqwest's.
                            let framing =
                                ["host", "content-length", "connection", "transfer-encoding"];
                            if !framing.contains(&k.as_str()) {
                                request = request.header(k, v);
                            }
                        }
                        let Ok(answer) = request.body(body.clone()).send().await else {
                            return;
                        };
                        let status = answer.status().as_u16();
                        let mut head = format!("HTTP/1.1 {status} X\r\n");
                        for (k, v) in answer.headers() {
                            if !["content-length", "transfer-encoding", "connection"]
                                .contains(&k.as_str())
                            {
                                head.push_str(&format!("{k}: {}\r\n", v.to_str().unwrap_or("")));
                            }
                        }
                        let bytes = rewrite(
                            &target,
                            &body,
                            answer.bytes().await.unwrap_or_default().to_vec(),
                        );
                        head.push_str(&format!("content-length: {}\r\n\r\n", bytes.len()));
                        if write.write_all(head.as_bytes()).await.is_err()
                            || write.write_all(&bytes).await.is_err()
                        {
                            return;
                        }
                    }
                });
            }
        });
        Self { url, seen }
    }

    /// Requests whose target ends with `operation` and whose body contains `marker`.
    pub fn count(&self, operation: &str, marker: &str) -> usize {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(t, b)| t.ends_with(operation) && b.contains(marker))
            .count()
    }
}
