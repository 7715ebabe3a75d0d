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

const USAGE: &str = "usage: twenty-replay [--queue-url URL] [--budget-secs N] [FILE ...]
       twenty-replay redrive [--from DLQ_URL] [--to QUEUE_URL] [--destination RULE]
                             [--reason CODE] [--since TIME] [--until TIME] [--dry-run]";

struct Args {
    queue_url: String,
    budget: Duration,
    files: Vec<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut queue_url = std::env::var(QUEUE_URL).ok().filter(|u| !u.is_empty());
    let mut budget = Duration::from_secs(60);
    let mut files = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--queue-url" => queue_url = Some(args.next().ok_or("--queue-url needs a URL")?),
            "--budget-secs" => {
                let n = args.next().ok_or("--budget-secs needs a number")?;
                budget =
                    Duration::from_secs(n.parse().map_err(|_| "--budget-secs needs a number")?);
            }
            "-h" | "--help" => return Err(String::new()),
            _ => files.push(arg),
        }
    }
    Ok(Args {
        queue_url: queue_url.ok_or("no queue: set QUEUE_URL or pass --queue-url")?,
        budget,
        files,
    })
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

fn parse_redrive(
    args: impl IntoIterator<Item = String>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<RedriveArgs, String> {
    let mut from = env("DEAD_LETTER_QUEUE_URL").filter(|u| !u.is_empty());
    let mut to = env(QUEUE_URL).filter(|u| !u.is_empty());
    let (mut filter, mut dry_run) = (Filter::default(), false);
    let time = |flag: &str, value: Option<String>| -> Result<u64, String> {
        let value = value.ok_or(format!("{flag} needs a time (2026-11-29T10:00:00Z)"))?;
        let at = humantime::parse_rfc3339_weak(&value)
            .map_err(|_| format!("{flag}: {value:?} is not a time like 2026-11-29T10:00:00Z"))?;
        Ok(crate::clock::millis(at))
    };
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--from" => {
                from = Some(
                    args.next()
                        .ok_or("--from needs the dead-letter queue's URL")?,
                )
            }
            "--to" => to = Some(args.next().ok_or("--to needs the queue's URL")?),
            "--destination" => {
                filter.destination = Some(args.next().ok_or("--destination needs a rule name")?)
            }
            "--reason" => {
                filter.reason = Some(args.next().ok_or(
                    "--reason needs a code (destination_refused, horizon_passed, unreadable, …)",
                )?)
            }
            "--since" => filter.since_ms = Some(time("--since", args.next())?),
            "--until" => filter.until_ms = Some(time("--until", args.next())?),
            "--dry-run" => dry_run = true,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
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
async fn redrive(args: impl IntoIterator<Item = String>) -> ExitCode {
    let args = match parse_redrive(args, |k| std::env::var(k).ok()) {
        Ok(args) => args,
        Err(why) => {
            if !why.is_empty() {
                eprintln!("twenty-replay redrive: {why}");
            }
            eprintln!("{USAGE}");
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
    let mut argv = std::env::args().skip(1).peekable();
    if argv.peek().map(String::as_str) == Some("redrive") {
        return redrive(argv.skip(1)).await;
    }
    let args = match parse_args() {
        Ok(args) => args,
        Err(why) => {
            if !why.is_empty() {
                eprintln!("twenty-replay: {why}");
            }
            eprintln!("{USAGE}");
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
            (vec!["--bogus"], "unknown argument"),
            (vec!["--destination"], "needs a rule name"),
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
