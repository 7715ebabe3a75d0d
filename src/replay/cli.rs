//! The `twenty-replay` command line: arguments, input, the report, the exit code.

use std::io::Read;
use std::process::ExitCode;
use std::time::Duration;

use crate::aws::SqsTransport;

use super::replay;

const USAGE: &str = "usage: twenty-replay [--queue-url URL] [--budget-secs N] [FILE ...]";

struct Args {
    queue_url: String,
    budget: Duration,
    files: Vec<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut queue_url = std::env::var("QUEUE_URL").ok().filter(|u| !u.is_empty());
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

/// The whole command: arguments, input, the replay, the report, the exit code.
pub async fn run() -> ExitCode {
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
