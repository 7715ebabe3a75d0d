//! `twenty-reconcile`: a command for backfills, and, run by Lambda (on a schedule), the
//! scheduled reconciliation. Settings come from the environment (`config`).

use std::collections::HashSet;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::json;
use tokio::time::Instant;

use super::change::{Context, Object};
use super::config::ReconcileConfig;
use super::run::{Mode, ObjectReport, Reconciler, SeenIndex, Watermarks};
use super::twenty_api::{ApiError, ApiKey, TwentyApi};
use super::window::{self, Window};
use crate::aws::{AwsSecretStore, DynamoLedger, LazySdk, PayloadStore, SqsTransport};
use crate::envelope::Destination;
use crate::secrets::Rotating;

const USAGE: &str = "usage: twenty-reconcile --since <RFC 3339 time> [--until <time>] \
[--objects people,companies] [--dry-run]
       twenty-reconcile --scheduled [--dry-run]   (from the watermarks, as the schedule runs)
settings from the environment: TWENTY_API_URL, TWENTY_API_KEY (or _PARAMETER, _SECRET_ID),
QUEUE_URL, IDEMPOTENCY_TABLE (skips changes the worker took; keeps the watermarks)";

/// Lambda stops the function at its deadline; the run stops reading this much before.
const LAMBDA_MARGIN: Duration = Duration::from_secs(10);
/// Twenty clamps larger pages to its own cap.
const PAGE_LIMIT: u32 = 1000;

/// The table, if one is set: seen changes and watermarks.
pub enum Table {
    Dynamo(DynamoLedger),
    None(super::run::NoTable),
}

impl SeenIndex for Table {
    async fn seen_among(&self, changes: &[String]) -> Result<HashSet<String>, String> {
        match self {
            Self::Dynamo(t) => t.seen_among(changes).await,
            Self::None(t) => t.seen_among(changes).await,
        }
    }
}

impl Watermarks for Table {
    async fn watermark(&self, scope: &str) -> Result<Option<String>, String> {
        match self {
            Self::Dynamo(t) => t.watermark(scope).await,
            Self::None(t) => t.watermark(scope).await,
        }
    }

    async fn set_watermark(&self, scope: &str, at: &str) -> Result<(), String> {
        match self {
            Self::Dynamo(t) => t.set_watermark(scope, at).await,
            Self::None(t) => t.set_watermark(scope, at).await,
        }
    }
}

/// What a run needs, made from the settings: no network call here.
pub struct Setup {
    pub config: ReconcileConfig,
    pub api: TwentyApi,
    pub transport: SqsTransport,
    pub table: Table,
}

impl Setup {
    pub async fn from_config(config: ReconcileConfig) -> Result<Self, String> {
        let sdk = LazySdk::default();
        let key = Rotating::from_source(
            &config.api_key,
            ApiKey::parse,
            config.secret_refresh,
            || Arc::new(AwsSecretStore::lazy(sdk.clone())),
        )
        .map_err(|why| format!("TWENTY_API_KEY: {why}"))?;
        let api = TwentyApi::new(&config.api_url, key, config.requests_per_minute)?;
        let mut transport = SqsTransport::connect(&config.queue_url).await;
        if config.payload_bucket.is_some() {
            transport = transport.with_payload_store(PayloadStore::lazy(sdk.clone()));
        }
        let table = match &config.table {
            Some(name) => Table::Dynamo(DynamoLedger::lazy(sdk, name, Duration::from_secs(120))),
            None => Table::None(super::run::NoTable),
        };
        Ok(Self {
            config,
            api,
            transport,
            table,
        })
    }

    /// The objects to read: those named (each checked against the workspace's, before
    /// anything is queued), or every active, non-system one.
    pub async fn objects(
        &self,
        named: &[String],
        deadline: Instant,
    ) -> Result<Vec<Object>, ApiError> {
        let all = self.api.objects(deadline).await?;
        if named.is_empty() {
            return Ok(all
                .into_iter()
                .filter(|(_, d)| *d)
                .map(|(o, _)| o)
                .collect());
        }
        named
            .iter()
            .map(|name| {
                all.iter()
                    .find(|(o, _)| &o.plural == name)
                    .map(|(o, _)| o.clone())
                    .ok_or_else(|| ApiError::UnknownObject(name.clone()))
            })
            .collect()
    }

    pub async fn run(
        &self,
        objects: &[Object],
        mode: Mode,
        dry_run: bool,
        deadline: Instant,
        progress: impl FnMut(&ObjectReport),
    ) -> Result<Vec<ObjectReport>, super::RunError> {
        let received_at = window::timestamp(SystemTime::now());
        let reconciler = Reconciler {
            api: &self.api,
            transport: &self.transport,
            table: &self.table,
            context: Context {
                received_at: &received_at,
                workspace_id: self.config.workspace_id.as_deref(),
                destination: Destination {
                    fifo: self.config.fifo,
                    payload_bucket: self.config.payload_bucket.as_deref(),
                },
            },
            dry_run,
            deadline,
            page_limit: PAGE_LIMIT,
        };
        reconciler.run(objects, mode, progress).await
    }

    fn scheduled(&self) -> Mode {
        Mode::Scheduled {
            now: SystemTime::now(),
            overlap: self.config.overlap,
            settle: self.config.settle,
            first_lookback: self.config.first_lookback,
        }
    }
}

/// `people [########------------] 40% 400/1000 read, 380 queued, 20 already seen`
fn progress_line(r: &ObjectReport) -> String {
    format!(
        "{} {} read, {} queued, {} already seen",
        r.plural,
        crate::progress::bar(r.read, r.expected),
        r.queued,
        r.seen
    )
}

struct Args {
    window: Option<Window>,
    objects: Vec<String>,
    dry_run: bool,
}

fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Args, String> {
    let (mut since, mut until, mut objects, mut dry_run, mut scheduled) =
        (None, None, None, false, false);
    let mut args = args.into_iter();
    let time = |flag: &str, value: Option<String>| {
        let value = value.ok_or(format!("{flag} needs a time"))?;
        window::parse(&value).ok_or(format!(
            "{flag} {value:?} is not an RFC 3339 time (2026-11-01T00:00:00Z)"
        ))
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--since" => since = Some(time("--since", args.next())?),
            "--until" => until = Some(time("--until", args.next())?),
            "--objects" => {
                let list = args.next().ok_or("--objects needs a list")?;
                objects = Some(
                    super::config::parse_objects(&list).map_err(|e| format!("--objects: {e}"))?,
                );
            }
            "--dry-run" => dry_run = true,
            "--scheduled" => scheduled = true,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let window = match (since, scheduled) {
        (Some(_), true) => {
            return Err("--scheduled reads from the watermarks: give no --since".into());
        }
        (Some(since), false) => {
            let until = until.unwrap_or_else(SystemTime::now);
            if since >= until {
                return Err("--since must be before --until".into());
            }
            Some(Window { since, until })
        }
        (None, true) => None,
        (None, false) => return Err("--since (or --scheduled) is required".into()),
    };
    Ok(Args {
        window,
        objects: objects.unwrap_or_default(),
        dry_run,
    })
}

/// The command. Exit codes: 0 done, 1 an error (the message says which setting, object or
/// service), 2 bad arguments or settings, 3 stopped before the end (run it again).
pub async fn main() -> ExitCode {
    if std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some() {
        // Boxed: the nested futures are too deep to lay out inline.
        return match Box::pin(lambda()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("twenty-reconcile: {e}");
                ExitCode::FAILURE
            }
        };
    }
    crate::logging::init_with_writer(std::io::stderr);
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(why) => {
            if !why.is_empty() {
                eprintln!("twenty-reconcile: {why}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let config = match ReconcileConfig::from_env() {
        Ok(mut config) => {
            if !args.objects.is_empty() {
                config.objects = args.objects.clone();
            }
            config
        }
        Err(e) => {
            eprintln!("twenty-reconcile: {e}");
            return ExitCode::from(2);
        }
    };
    let setup = match Setup::from_config(config).await {
        Ok(setup) => setup,
        Err(e) => {
            eprintln!("twenty-reconcile: {e}");
            return ExitCode::from(2);
        }
    };
    let started = std::time::Instant::now();
    let deadline = Instant::now() + Duration::from_secs(7 * 86_400);
    let objects = match setup.objects(&setup.config.objects, deadline).await {
        Ok(objects) => objects,
        Err(e) => {
            eprintln!("twenty-reconcile: {e}; nothing was queued");
            return ExitCode::FAILURE;
        }
    };
    let mode = match args.window {
        Some(window) => Mode::Backfill(window),
        None if setup.config.table.is_none() => {
            eprintln!(
                "twenty-reconcile: --scheduled keeps its watermarks in IDEMPOTENCY_TABLE, which is not set"
            );
            return ExitCode::from(2);
        }
        None => setup.scheduled(),
    };
    let terminal = std::io::stderr().is_terminal();
    let progress = |r: &ObjectReport| {
        if terminal {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K{}", progress_line(r));
            let _ = err.flush();
        }
    };
    let result = Box::pin(setup.run(&objects, mode, args.dry_run, deadline, progress)).await;
    if terminal {
        eprintln!();
    }
    let summary = |reports: &[ObjectReport]| {
        let per: Vec<String> = reports
            .iter()
            .map(|r| {
                format!(
                    "{} read {} queued {} seen {} skipped {}{}",
                    r.plural,
                    r.read,
                    r.queued,
                    r.seen,
                    r.skipped,
                    if r.complete { "" } else { " (incomplete)" }
                )
            })
            .collect();
        let sum = |f: fn(&ObjectReport) -> u64| reports.iter().map(f).sum::<u64>();
        format!(
            "twenty-reconcile{}: {}; total read {} queued {} seen {}; {} API requests in {:.1} s",
            if args.dry_run {
                " (dry run: nothing queued)"
            } else {
                ""
            },
            per.join("; "),
            sum(|r| r.read),
            sum(|r| r.queued),
            sum(|r| r.seen),
            setup.api.requests(),
            started.elapsed().as_secs_f64()
        )
    };
    match result {
        Ok(reports) => {
            println!("{}", summary(&reports));
            if reports.iter().all(|r| r.complete) {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(3)
            }
        }
        Err(e) => {
            eprintln!("twenty-reconcile: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The scheduled function: one run from the watermarks per invocation, stopping
/// `LAMBDA_MARGIN` before the deadline. A wrong key, URL or object fails the invocation.
async fn lambda() -> Result<(), Error> {
    crate::logging::init();
    let config = ReconcileConfig::from_env()?;
    if config.table.is_none() {
        return Err(
            "IDEMPOTENCY_TABLE is not set: scheduled runs keep their watermarks there".into(),
        );
    }
    let setup = Setup::from_config(config).await?;
    let setup = &setup;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<serde_json::Value>| async move {
            // A deadline already past means none was given (cargo lambda watch sends a
            // fixed, long-gone one): Lambda's longest timeout applies then.
            let remaining = event
                .context
                .deadline()
                .duration_since(SystemTime::now())
                .unwrap_or(Duration::from_secs(900));
            let deadline = Instant::now() + remaining.saturating_sub(LAMBDA_MARGIN);
            let objects = setup.objects(&setup.config.objects, deadline).await?;
            let reports = setup
                .run(&objects, setup.scheduled(), false, deadline, |_| {})
                .await?;
            let complete = reports.iter().all(|r| r.complete);
            tracing::info!(
                read = reports.iter().map(|r| r.read).sum::<u64>(),
                queued = reports.iter().map(|r| r.queued).sum::<u64>(),
                seen = reports.iter().map(|r| r.seen).sum::<u64>(),
                complete,
                "reconciled"
            );
            Ok::<_, Error>(json!({
                "complete": complete,
                "objects": reports.iter().map(|r| json!({
                    "object": r.plural, "read": r.read, "queued": r.queued,
                    "seen": r.seen, "skipped": r.skipped, "complete": r.complete
                })).collect::<Vec<_>>(),
            }))
        },
    ))
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Result<Args, String> {
        parse_args(list.iter().map(|s| (*s).to_owned()))
    }

    #[test]
    fn the_progress_bar() {
        let r = ObjectReport {
            plural: "people".into(),
            read: 400,
            expected: 1000,
            queued: 380,
            seen: 20,
            ..Default::default()
        };
        assert_eq!(
            progress_line(&r),
            "people [########------------]  40% 400/1000 read, 380 queued, 20 already seen"
        );
    }

    #[test]
    fn arguments() {
        let a = args(&[
            "--since",
            "2026-11-01T00:00:00Z",
            "--until",
            "2026-11-02T00:00:00Z",
            "--objects",
            "people,companies",
            "--dry-run",
        ])
        .unwrap();
        assert!(a.dry_run && a.window.is_some());
        assert_eq!(a.objects, ["people", "companies"]);
        assert!(args(&["--scheduled"]).unwrap().window.is_none());
        for bad in [
            &[][..],
            &["--since", "yesterday"],
            &[
                "--since",
                "2026-11-02T00:00:00Z",
                "--until",
                "2026-11-01T00:00:00Z",
            ],
            &["--since", "2026-11-01T00:00:00Z", "--scheduled"],
            &["--objects", "people;x", "--scheduled"],
            &["--frobnicate"],
        ] {
            assert!(args(bad).is_err(), "{bad:?}");
        }
    }
}
