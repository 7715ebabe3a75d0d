//! The `twenty-replay` command line: arguments, input, the report, the exit code.

use std::io::{IsTerminal, Read, Write};
use std::process::ExitCode;
use std::time::Duration;

use crate::aws::SqsTransport;
use crate::aws::redrive::Redrive;
use crate::dead_letter::Filter;
use crate::progress;
use crate::settings::QUEUE_URL;

use super::replay;

/// What `--help` adds after the flags.
const SETTINGS: &str = "Reads the files (or standard input, also as `-`), for example lines \
exported from CloudWatch Logs, and sends every undelivered event found in them. The usual \
AWS settings apply (AWS_ENDPOINT_URL_SQS...).

Exit codes: 0 done; 1 an event could not be sent, or a redrive failed or could not look at \
every message; 2 bad arguments or settings.";

/// Sends the events in the ingest function's fallback log lines back to the queue; or,
/// with `redrive`, dead-lettered messages back to it.
#[derive(Debug, clap::Parser)]
#[command(name = "twenty-replay", args_conflicts_with_subcommands = true, after_help = SETTINGS)]
struct Cli {
    #[command(subcommand)]
    command: Option<Sub>,
    /// The queue; QUEUE_URL if not given.
    #[arg(long, value_name = "URL")]
    queue_url: Option<String>,
    /// How long the sends may be retried, in seconds.
    #[arg(long, value_name = "N", default_value_t = 60)]
    budget_secs: u64,
    /// Files of log lines; none, or `-`, for standard input.
    #[arg(value_name = "FILE")]
    files: Vec<String>,
}

#[derive(Debug, clap::Subcommand)]
enum Sub {
    /// Moves dead-lettered messages back to the queue, byte for byte, each at most once a
    /// run; those a filter leaves stay.
    Redrive(RedriveCli),
}

#[derive(Debug, clap::Parser)]
#[command(name = "twenty-replay redrive")]
struct RedriveCli {
    /// The dead-letter queue; DEAD_LETTER_QUEUE_URL if not given.
    #[arg(long, value_name = "DLQ_URL")]
    from: Option<String>,
    /// The queue; QUEUE_URL if not given.
    #[arg(long, value_name = "QUEUE_URL")]
    to: Option<String>,
    /// Only what this rule's destination failed.
    #[arg(long, value_name = "RULE")]
    destination: Option<String>,
    /// Only what failed for this reason (destination_refused, horizon_passed, unreadable, …).
    #[arg(long, value_name = "CODE")]
    reason: Option<String>,
    /// Only what was dead-lettered at or after this time (2026-11-29T10:00:00Z).
    #[arg(long, value_name = "TIME", value_parser = epoch_ms)]
    since: Option<u64>,
    /// Only what was dead-lettered before this time.
    #[arg(long, value_name = "TIME", value_parser = epoch_ms)]
    until: Option<u64>,
    /// Count what would move; move nothing.
    #[arg(long)]
    dry_run: bool,
}

fn epoch_ms(value: &str) -> Result<u64, String> {
    let at = humantime::parse_rfc3339_weak(value)
        .map_err(|_| format!("{value:?} is not a time like 2026-11-29T10:00:00Z"))?;
    Ok(crate::clock::millis(at))
}

struct Args {
    queue_url: String,
    budget: Duration,
    files: Vec<String>,
}

impl Args {
    fn of(cli: Cli) -> Result<Self, String> {
        let queue_url = cli
            .queue_url
            .or_else(|| std::env::var(QUEUE_URL).ok())
            .filter(|u| !u.is_empty());
        Ok(Self {
            queue_url: queue_url.ok_or("no queue: set QUEUE_URL or pass --queue-url")?,
            budget: Duration::from_secs(cli.budget_secs),
            files: cli.files,
        })
    }
}

fn read_input(files: &[String]) -> Result<String, String> {
    if files.is_empty() {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| format!("reading standard input: {e}"))?;
        return Ok(text);
    }
    let mut text = String::new();
    for file in files {
        if file == "-" {
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| format!("reading standard input: {e}"))?;
        } else {
            text.push_str(&std::fs::read_to_string(file).map_err(|e| format!("{file}: {e}"))?);
        }
        text.push('\n');
    }
    Ok(text)
}

/// What `redrive` was asked.
#[derive(Debug, PartialEq, Eq)]
struct RedriveArgs {
    from: String,
    to: String,
    filter: Filter,
    dry_run: bool,
    hold: Duration,
}

/// How long a redrive keeps each message it looked at invisible while it runs (seconds;
/// default 120): a setting, so that a run longer than its hold can be played quickly.
const REDRIVE_HOLD: &str = "REDRIVE_HOLD_SECS";

/// `redrive`'s arguments (after `redrive`) and settings; as the tests give them; Err is what would be printed.
#[cfg(test)]
fn parse_redrive(
    args: impl IntoIterator<Item = String>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<RedriveArgs, String> {
    let cli = <RedriveCli as clap::Parser>::try_parse_from(
        std::iter::once("redrive".to_owned()).chain(args),
    )
    .map_err(|e| e.to_string())?;
    redrive_settings(cli, env)
}

fn redrive_settings(
    cli: RedriveCli,
    env: impl Fn(&str) -> Option<String>,
) -> Result<RedriveArgs, String> {
    let from = cli
        .from
        .or_else(|| env("DEAD_LETTER_QUEUE_URL"))
        .filter(|u| !u.is_empty());
    let to = cli.to.or_else(|| env(QUEUE_URL)).filter(|u| !u.is_empty());
    let filter = Filter {
        destination: cli.destination,
        reason: cli.reason,
        since_ms: cli.since,
        until_ms: cli.until,
    };
    let dry_run = cli.dry_run;
    let hold = match env(REDRIVE_HOLD).filter(|v| !v.is_empty()) {
        None => Duration::from_secs(120),
        Some(v) => v
            .parse()
            .ok()
            .filter(|n| (1..=43_200).contains(n))
            .map(Duration::from_secs)
            .ok_or(format!("{REDRIVE_HOLD} takes seconds, 1 to 43200"))?,
    };
    let from = from.ok_or("no dead-letter queue: set DEAD_LETTER_QUEUE_URL or pass --from")?;
    let to = to.ok_or("no queue: set QUEUE_URL or pass --to")?;
    if from == to {
        return Err("--from and --to are the same queue".into());
    }
    Ok(RedriveArgs {
        from,
        to,
        filter,
        dry_run,
        hold,
    })
}

/// `twenty-replay redrive`: from the dead-letter queue back to the queue.
async fn redrive(cli: RedriveCli) -> ExitCode {
    let args = match redrive_settings(cli, |k| std::env::var(k).ok()) {
        Ok(args) => args,
        Err(why) => {
            eprintln!("twenty-replay redrive: {why}");
            return ExitCode::from(2);
        }
    };
    let sdk = aws_config::load_from_env().await;
    let client = aws_sdk_sqs::Client::new(&sdk);
    let claims = crate::aws::PayloadStore::with_sdk_config(&sdk);
    let terminal = std::io::stderr().is_terminal();
    let run = Redrive {
        client: &client,
        claims: Some(&claims),
        from: &args.from,
        to: &args.to,
        filter: &args.filter,
        dry_run: args.dry_run,
        hold: args.hold,
    };
    let result = run
        .run(|r| {
            if terminal {
                let mut err = std::io::stderr().lock();
                let seen = r.moved + r.left + r.newer + r.failed.len() as u64;
                let _ = write!(
                    err,
                    "\r\x1b[2Kredrive {} looked at",
                    progress::bar(seen, r.expected)
                );
                let _ = err.flush();
            }
        })
        .await;
    if terminal {
        eprintln!();
    }
    let report = match result {
        Ok(report) => report,
        Err(why) => {
            eprintln!("twenty-replay redrive: {why}");
            return ExitCode::FAILURE;
        }
    };
    for (id, why) in &report.failed {
        println!("failed {id}: {why}");
    }
    let verb = if args.dry_run { "would move" } else { "moved" };
    println!(
        "{verb} {}, left {} (not matching) and {} (dead-lettered since the start), failed {}",
        report.moved,
        report.left,
        report.newer,
        report.failed.len()
    );
    if report.unexamined > 0 {
        println!(
            "not looked at {}: on a FIFO queue each waits behind an earlier message of its group that this run left; redrive those first (a wider filter), then run again",
            report.unexamined
        );
    }
    if report.failed.is_empty() && report.unexamined == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The whole command: arguments, input, the replay, the report, the exit code.
pub async fn run() -> ExitCode {
    // --help prints and exits 0; a usage error prints with the usage line and exits 2.
    let cli = <Cli as clap::Parser>::parse();
    let cli = match cli.command {
        Some(Sub::Redrive(redrive_cli)) => return redrive(redrive_cli).await,
        None => cli,
    };
    let args = match Args::of(cli) {
        Ok(args) => args,
        Err(why) => {
            eprintln!("twenty-replay: {why}");
            return ExitCode::from(2);
        }
    };
    let input = match read_input(&args.files) {
        Ok(text) => text,
        Err(why) => {
            eprintln!("twenty-replay: {why}");
            return ExitCode::from(2);
        }
    };
    let queue = SqsTransport::connect(&args.queue_url).await;
    let report = replay(&queue, &input, tokio::time::Instant::now() + args.budget).await;

    for id in &report.sent {
        println!("sent {id}");
    }
    for (id, reason) in &report.failed {
        println!("failed {id}: {reason}");
    }
    for id in &report.incomplete {
        println!("skipped {id}: parts missing from the input");
    }
    println!(
        "sent {}, failed {}, skipped {} ({} repeated lines, {} incomplete events)",
        report.sent.len(),
        report.failed.len(),
        report.duplicates + report.incomplete.len(),
        report.duplicates,
        report.incomplete.len()
    );
    if report.failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redrive_args(list: &[&str], env: &[(&str, &str)]) -> Result<RedriveArgs, String> {
        parse_redrive(list.iter().map(|s| (*s).to_owned()), |k| {
            env.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    #[test]
    fn redrive_arguments() {
        let env = [
            ("DEAD_LETTER_QUEUE_URL", "http://q/dlq"),
            ("QUEUE_URL", "http://q/events"),
        ];
        let a = redrive_args(&[], &env).unwrap();
        assert_eq!(
            (a.from.as_str(), a.to.as_str(), a.dry_run),
            ("http://q/dlq", "http://q/events", false)
        );
        assert_eq!(a.filter, Filter::default());
        let a = redrive_args(
            &[
                "--destination",
                "n8n",
                "--reason",
                "horizon_passed",
                "--since",
                "2026-11-29T10:00:00Z",
                "--until",
                "2026-11-29T11:00:00Z",
                "--dry-run",
                "--to",
                "http://q/other",
            ],
            &env,
        )
        .unwrap();
        assert_eq!(a.filter.destination.as_deref(), Some("n8n"));
        assert_eq!(a.filter.reason.as_deref(), Some("horizon_passed"));
        assert_eq!(a.filter.since_ms, Some(1_795_946_400_000));
        assert_eq!(a.filter.until_ms, Some(1_795_950_000_000));
        assert!(a.dry_run && a.to == "http://q/other");
        for (bad, why) in [
            (vec!["--since", "yesterday"], "not a time"),
            (vec!["--bogus"], "unexpected argument '--bogus'"),
            (
                vec!["--destination"],
                "a value is required for '--destination <RULE>'",
            ),
            (vec!["--to", "http://q/dlq"], "the same queue"),
        ] {
            let e = redrive_args(&bad, &env).unwrap_err();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
        assert!(
            redrive_args(&[], &[])
                .unwrap_err()
                .contains("DEAD_LETTER_QUEUE_URL")
        );
    }
}
