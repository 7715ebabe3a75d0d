//! `twenty-reconcile`: a command for backfills, and, run by Lambda (on a schedule), the
//! scheduled reconciliation (`lambda`). Settings come from the environment (`config`); the
//! arguments and the progress line are here.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::SystemTime;

use tokio::time::Instant;

use super::config::ReconcileConfig;
use super::report::Summary;
use super::run::{Mode, ObjectReport, Verdict};
use super::setup::Setup;
use super::window::{self, Window};
use crate::twenty_api::ApiError;

const USAGE: &str = "usage: twenty-reconcile --since <RFC 3339 time> [--until <time>] \
[--objects people,companies] [--dry-run]
       twenty-reconcile --scheduled [--dry-run]   (from the watermarks, as the schedule runs)
settings from the environment: TWENTY_API_URL, TWENTY_API_KEY (or _PARAMETER, _SECRET_ID),
QUEUE_URL, IDEMPOTENCY_TABLE (skips changes the worker took; keeps the watermarks),
RECONCILE_TIME_LIMIT_SECS (how long a run may take)";

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

/// The command. Exit codes: 0 done; 1 an error (the message says which setting, object or
/// service; the other objects were still read); 2 bad arguments or settings; 3 stopped
/// before the end, or no progress at all (run it again).
pub async fn main() -> ExitCode {
    if std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some() {
        // Boxed: the nested futures are too deep to lay out inline.
        return match Box::pin(super::lambda::main()).await {
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
    let deadline = Instant::now() + setup.config.time_limit;
    let objects = match setup.objects(&setup.config.objects, deadline).await {
        Ok(objects) => objects,
        Err(e @ ApiError::OutOfTime { .. }) => {
            eprintln!("twenty-reconcile: no progress: {e}; nothing was queued");
            return ExitCode::from(3);
        }
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
    let reports = Box::pin(setup.run(&objects, mode, args.dry_run, deadline, progress)).await;
    if terminal {
        eprintln!();
    }
    let summary = Summary::new(&reports, setup.api.requests(), setup.api.throttled());
    println!(
        "twenty-reconcile{}: {} in {:.1} s",
        if args.dry_run {
            " (dry run: nothing queued)"
        } else {
            ""
        },
        summary.line(),
        started.elapsed().as_secs_f64()
    );
    match &summary.verdict {
        Verdict::Complete => ExitCode::SUCCESS,
        Verdict::Failed(_) => {
            eprintln!("twenty-reconcile: {}", summary.verdict);
            ExitCode::FAILURE
        }
        Verdict::Stalled(_) | Verdict::Incomplete => {
            eprintln!("twenty-reconcile: {}", summary.verdict);
            ExitCode::from(3)
        }
    }
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
