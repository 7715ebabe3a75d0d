//! The fake Twenty REST API (`tests/support/fake_twenty.py`), one per test, started like
//! moto: its endpoint on the first line, stopped when its standard input closes.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use serde_json::{Value, json};

pub const API_KEY: &str = "twenty-test-api-key";

pub struct FakeTwenty {
    pub url: String,
    http: reqwest::Client,
    child: Child,
}

impl FakeTwenty {
    pub fn start() -> Self {
        let mut child = Command::new(super::python())
            .arg(super::project_dir().join("tests/support/fake_twenty.py"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the fake Twenty API");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read its endpoint");
        let url = line.trim().to_owned();
        assert!(
            url.starts_with("http://127.0.0.1:"),
            "fake Twenty did not start: {line:?}"
        );
        Self {
            url,
            http: super::watch::http_client(),
            child,
        }
    }

    async fn control(&self, path: &str, body: Value) -> Value {
        self.http
            .post(format!("{}/_control/{path}", self.url))
            .json(&body)
            .send()
            .await
            .expect("control call")
            .json()
            .await
            .expect("JSON")
    }

    /// Creates or updates a record (stamping `updatedAt` now); returns the row as stored.
    pub async fn upsert(&self, plural: &str, record: Value) -> Value {
        // Distinct timestamps, as real changes have.
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
        self.control("records", json!({"object": plural, "record": record}))
            .await
    }

    /// Soft-deletes a record; returns the row.
    pub async fn delete(&self, plural: &str, id: &str) -> Value {
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
        self.control("delete", json!({"object": plural, "id": id}))
            .await
    }

    pub async fn configure(&self, config: Value) {
        self.control("config", config).await;
    }

    pub async fn stats(&self) -> Value {
        self.http
            .get(format!("{}/_control/stats", self.url))
            .send()
            .await
            .expect("stats")
            .json()
            .await
            .expect("JSON")
    }
}

impl Drop for FakeTwenty {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
