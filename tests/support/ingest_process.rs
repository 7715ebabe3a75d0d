//! The `twenty-webhook` binary as Lambda runs it, on a stub Runtime API (`lambda_api`), its
//! output (stdout and stderr) kept whole: for the benchmarks that count its log bytes.

use std::process::Stdio;
use std::sync::{Arc, Mutex};

use tokio::io::AsyncReadExt;

use super::lambda_api::LambdaApi;

pub struct IngestProcess {
    child: tokio::process::Child,
    pub output: Arc<Mutex<Vec<u8>>>,
}

impl IngestProcess {
    /// Starts `binary` sending to `queue_url` through `sqs_endpoint`, with `extra` settings
    /// (the log format, say) on top of the function's own.
    pub fn start(
        binary: &str,
        api: &LambdaApi,
        queue_url: &str,
        sqs_endpoint: &str,
        extra: &[(&str, &str)],
    ) -> Self {
        let mut child = tokio::process::Command::new(binary)
            .env_clear()
            .envs([
                ("AWS_LAMBDA_RUNTIME_API", api.addr.as_str()),
                ("AWS_LAMBDA_FUNCTION_NAME", "twenty-webhook"),
                ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256"),
                ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
                ("AWS_LAMBDA_LOG_STREAM_NAME", "stream"),
                ("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/twenty-webhook"),
                ("QUEUE_URL", queue_url),
                ("TWENTY_WEBHOOK_SECRET", super::SECRET),
                ("AWS_ENDPOINT_URL_SQS", sqs_endpoint),
                ("AWS_REGION", "us-east-1"),
                ("AWS_ACCESS_KEY_ID", "test"),
                ("AWS_SECRET_ACCESS_KEY", "test"),
            ])
            .envs(extra.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start twenty-webhook");
        let output = Arc::new(Mutex::new(Vec::<u8>::new()));
        for mut stream in [
            Box::new(child.stdout.take().expect("stdout"))
                as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
            Box::new(child.stderr.take().expect("stderr")),
        ] {
            let sink = output.clone();
            tokio::spawn(async move {
                let mut buf = vec![0; 65536];
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 {
                        return;
                    }
                    sink.lock().unwrap().extend_from_slice(&buf[..n]);
                }
            });
        }
        Self { child, output }
    }

    /// Bytes written so far.
    pub fn written(&self) -> usize {
        self.output.lock().unwrap().len()
    }

    pub async fn kill(mut self) {
        let _ = self.child.kill().await;
    }
}
