//! `cargo lambda watch` run as a child process: the function behind a local Function URL,
//! through the real Lambda runtime interface.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::net::TcpStream;

use super::project_dir;

/// `cargo lambda watch` in its own process group, ended with everything it started.
pub struct Watch {
    child: tokio::process::Child,
    pub url: String,
    /// The function's standard output (and watch's), as it is written.
    pub log: std::path::PathBuf,
}

impl Watch {
    pub async fn start(env: &[(&str, &str)]) -> Self {
        Self::start_with(&[], env).await
    }

    /// The function wired to a local SQS at `sqs_endpoint`, signed with the test secret;
    /// `extra` adds or overrides settings.
    pub async fn local(queue_url: &str, sqs_endpoint: &str, extra: &[(&str, &str)]) -> Self {
        let mut env = vec![
            ("QUEUE_URL", queue_url),
            ("TWENTY_WEBHOOK_SECRET", super::SECRET),
            ("AWS_ENDPOINT_URL_SQS", sqs_endpoint),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
        ];
        env.extend_from_slice(extra);
        Self::start(&env).await
    }

    /// With extra `cargo lambda watch` arguments (`--concurrency N`, say).
    pub async fn start_with(args: &[&str], env: &[(&str, &str)]) -> Self {
        build_binaries_once();
        let venv_bin = project_dir().join(".venv/bin");
        assert!(
            venv_bin.join("cargo-lambda").exists(),
            "cargo-lambda is not in .venv: run scripts/test, which installs it"
        );
        let port = free_port();
        let log = project_dir().join(format!("target/watch-{port}.log"));
        let path = format!(
            "{}:{}",
            venv_bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut command = tokio::process::Command::new("cargo");
        command
            .args([
                "lambda",
                "watch",
                "-A",
                "127.0.0.1",
                "-P",
                &port.to_string(),
                // The function under test must not be rebuilt by an edit made meanwhile.
                "--ignore-changes",
            ])
            .args(FEATURES)
            .args(args)
            .current_dir(project_dir())
            .env("PATH", path)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(log.with_extension("err")).unwrap())
            .process_group(0)
            .kill_on_drop(true);
        let child = command.spawn().expect("start cargo lambda watch");
        let url = format!("http://127.0.0.1:{port}/lambda-url/twenty-webhook/");
        let watch = Self { child, url, log };
        watch.wait_listening(port).await;
        watch
    }

    async fn wait_listening(&self, port: u16) {
        for _ in 0..600 {
            if TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("cargo lambda watch did not listen: {}", self.logs());
    }

    pub fn logs(&self) -> String {
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        let err = read(&self.log.with_extension("err"));
        let tail: String = err.lines().rev().take(40).collect::<Vec<_>>().join("\n");
        format!(
            "{}\n--- stderr (last lines, newest first) ---\n{tail}",
            read(&self.log)
        )
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        // SIGINT is what makes watch stop the function instances it started (it ignores
        // SIGTERM); SIGKILL from `kill_on_drop` follows if it has not exited by then.
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-INT", &pid.to_string()])
                .status();
            for _ in 0..100 {
                if matches!(self.child.try_wait(), Ok(Some(_))) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// An HTTP client for the Function URL: the first request may wait for a cold build.
pub fn http_client() -> reqwest::Client {
    // reqwest uses the process's rustls provider (the worker's feature set picks none).
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(900))
        .build()
        .unwrap()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The functions' features, and no more: `twenty-admin`'s SDK crates are not built twice.
const FEATURES: [&str; 3] = ["--no-default-features", "--features", "ingest,reconcile"];

/// `cargo lambda watch` runs `cargo run`, whose features are not the ones `cargo test`
/// unifies with the dev-dependencies: without this, the first request would wait for a
/// build of minutes, and a signed one would be refused as stale by then. Built once, here.
fn build_binaries_once() {
    static BUILT: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    BUILT.get_or_init(|| {
        let status = std::process::Command::new("cargo")
            .args(["build", "--bins"])
            .args(FEATURES)
            .current_dir(project_dir())
            .status()
            .expect("run cargo build --bins");
        assert!(status.success(), "cargo build --bins failed");
    });
}
