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

/// What `--help` adds after the flags.
const SETTINGS: &str =
    "Settings from the environment: TWENTY_API_URL, TWENTY_API_KEY (or _PARAMETER, \
_SECRET_ID), QUEUE_URL, IDEMPOTENCY_TABLE (skips changes the worker took; keeps the \
watermarks), RECONCILE_TIME_LIMIT_SECS (how long a run may take).

Exit codes: 0 done; 1 an error (the message says which setting, object or service; the \
other objects were still read); 2 bad arguments or settings; 3 stopped before the end, or \
no progress at all (run it again).";

/// Queues the changes Twenty made but never delivered: a backfill of a window, or a run
/// from the watermarks as the schedule runs it.
#[derive(Debug, clap::Parser)]
#[command(name = "twenty-reconcile", after_help = SETTINGS)]
struct Cli {
    /// The window's start (RFC 3339: 2026-11-01T00:00:00Z).
    #[arg(long, value_name = "TIME", value_parser = time, required_unless_present = "scheduled")]
    since: Option<SystemTime>,
    /// The window's end; now if not given.
    #[arg(long, value_name = "TIME", value_parser = time)]
    until: Option<SystemTime>,
    /// Only these objects, by plural name (people,companies); all of them if not given.
    // The whole path: clap reads a plain `Vec` as a repeated flag, this is one list.
    #[arg(long, value_name = "LIST", value_parser = super::config::parse_objects)]
    objects: Option<std::vec::Vec<String>>,
    /// Read and count, queue nothing.
    #[arg(long)]
    dry_run: bool,
    /// From the watermarks, as the schedule runs (IDEMPOTENCY_TABLE keeps them).
    #[arg(long, conflicts_with = "since")]
    scheduled: bool,
}

fn time(value: &str) -> Result<SystemTime, String> {
    window::parse(value).ok_or(format!(
        "{value:?} is not an RFC 3339 time (2026-11-01T00:00:00Z)"
    ))
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

impl TryFrom<Cli> for Args {
    type Error = String;

    fn try_from(cli: Cli) -> Result<Self, String> {
        let window = match cli.since {
            Some(since) => {
                let until = cli.until.unwrap_or_else(SystemTime::now);
                if since >= until {
                    return Err("--since must be before --until".into());
                }
                Some(Window { since, until })
            }
            None => None,
        };
        Ok(Self {
            window,
            objects: cli.objects.unwrap_or_default(),
            dry_run: cli.dry_run,
        })
    }
}

/// The arguments after the program's name; as the tests give them; Err is what would be printed (clap's own usage errors
/// included).
#[cfg(test)]
fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Args, String> {
    let cli = <Cli as clap::Parser>::try_parse_from(
        std::iter::once("twenty-reconcile".to_owned()).chain(args),
    )
    .map_err(|e| e.to_string())?;
    Args::try_from(cli)
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
    // --help prints and exits 0; a usage error prints with the usage line and exits 2.
    let cli = <Cli as clap::Parser>::parse();
    let args = match Args::try_from(cli) {
        Ok(args) => args,
        Err(why) => {
            eprintln!("twenty-reconcile: {why}");
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
