//! `status`: the whole chain on one screen (or as JSON), each part read from where it
//! lives: Twenty's webhook (its API), the queue and the dead-letter queue (SQS, and
//! CloudWatch for the oldest message's age), the open breakers and reconciliation's
//! progress (the worker's table), the alarms in ALARM (CloudWatch). A part that cannot be
//! read is shown as such, with why; the rest is still read.

use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use crate::adapter::AdapterError;
use crate::aws::cloudwatch::{CloudWatch, Firing};
use crate::aws::dynamodb::{OpenBreaker, Reconciliation, TableOverview};
use crate::aws::queues::{Depth, Queues};
use crate::dead_letter::Census;
use crate::twenty_api::TwentyApi;
use crate::twenty_api::webhooks::{normalise_url, redact_token, same_target};

/// One part of the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) enum Section<T> {
    Ok(T),
    /// It could not be read: why.
    Unreadable(String),
    /// Nothing says where it is: which setting would.
    NotConfigured(String),
}

impl<T> Section<T> {
    fn of<E: std::fmt::Display>(read: Result<T, E>) -> Self {
        read.map_or_else(|e| Self::Unreadable(e.to_string()), Self::Ok)
    }

    fn unreadable(&self) -> bool {
        matches!(self, Self::Unreadable(_))
    }
}

/// Twenty's side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TwentyView {
    /// The webhook whose target is this stack's Function URL.
    pub webhook: Option<HookView>,
    /// The workspace's other webhooks.
    pub others: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct HookView {
    pub id: String,
    /// With its token hidden.
    pub target_url: String,
    pub operations: Vec<String>,
    /// Whether Twenty signs its deliveries (the secret itself is never shown).
    pub signed: bool,
    /// Its URL is this one exactly, token included (else deliveries may be refused for
    /// a wrong or missing token).
    pub same_url: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct QueueView {
    pub depth: Depth,
    /// SQS's `ApproximateAgeOfOldestMessage`, latest minute; None without data.
    pub oldest_age_secs: Section<Option<f64>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DeadLetterView {
    pub depth: Depth,
    pub census: Census,
    /// Every message was counted (else the first `limit`).
    pub complete: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Report {
    pub webhook_url: String,
    pub twenty: Section<TwentyView>,
    pub queue: Section<QueueView>,
    pub dead_letters: Section<DeadLetterView>,
    /// None: the worker has not published its handlers yet.
    pub open_breakers: Section<Option<Vec<OpenBreaker>>>,
    pub reconciliation: Section<Reconciliation>,
    pub alarms: Section<Vec<Firing>>,
}

impl Report {
    /// Some part could not be read.
    pub(crate) fn incomplete(&self) -> bool {
        let oldest = matches!(&self.queue, Section::Ok(q) if q.oldest_age_secs.unreadable());
        oldest
            || self.twenty.unreadable()
            || self.queue.unreadable()
            || self.dead_letters.unreadable()
            || self.open_breakers.unreadable()
            || self.reconciliation.unreadable()
            || self.alarms.unreadable()
    }
}

/// Where each part is read from; None where nothing says.
pub(crate) struct Sources<'a> {
    pub webhook_url: &'a str,
    /// The API client, or why there is none (its settings).
    pub twenty: Result<&'a TwentyApi, String>,
    pub queues: &'a Queues,
    pub cloudwatch: &'a CloudWatch,
    pub queue_url: Option<&'a str>,
    pub dead_letter_queue_url: Option<&'a str>,
    pub table: Option<&'a TableOverview>,
    pub alarm_prefix: Option<&'a str>,
    /// The stack the places were read from, if any (for what a missing one means).
    pub stack: Option<&'a str>,
    /// Dead letters counted at most.
    pub census_limit: u64,
}

const TWENTY_TIME: Duration = Duration::from_secs(30);
const AGE_WINDOW: Duration = Duration::from_secs(15 * 60);

/// Reads every part at once.
pub(crate) async fn gather(s: &Sources<'_>) -> Report {
    let (twenty, queue, dead_letters, open_breakers, reconciliation, alarms) = tokio::join!(
        twenty(s),
        queue(s),
        dead_letters(s),
        breakers(s),
        reconciliation(s),
        alarms(s)
    );
    Report {
        webhook_url: redact_token(s.webhook_url),
        twenty,
        queue,
        dead_letters,
        open_breakers,
        reconciliation,
        alarms,
    }
}

async fn twenty(s: &Sources<'_>) -> Section<TwentyView> {
    let api = match &s.twenty {
        Ok(api) => *api,
        Err(why) => return Section::NotConfigured(why.clone()),
    };
    let listed = api.webhooks(Instant::now() + TWENTY_TIME).await;
    Section::of(listed.map(|(_, hooks)| {
        let mine = hooks
            .iter()
            .find(|h| same_target(&h.target_url, s.webhook_url));
        TwentyView {
            others: hooks.len() - usize::from(mine.is_some()),
            webhook: mine.map(|h| HookView {
                id: h.id.clone(),
                target_url: redact_token(&h.target_url),
                operations: h.operations.clone(),
                signed: h.secret().is_some(),
                same_url: normalise_url(&h.target_url) == normalise_url(s.webhook_url),
            }),
        }
    }))
}

/// A part nothing says where to read: the stack has no such output (an optional part it
/// was deployed without), or no stack was given.
fn not_configured<T>(s: &Sources<'_>, flag: &str, output: &str) -> Section<T> {
    Section::NotConfigured(match s.stack {
        Some(stack) => format!("stack {stack:?} has no {output} output (or give {flag})"),
        None => format!("give --stack or {flag}"),
    })
}

async fn queue(s: &Sources<'_>) -> Section<QueueView> {
    let Some(url) = s.queue_url else {
        return not_configured(s, "--queue-url", "QueueUrl");
    };
    let name = url.rsplit('/').next().unwrap_or(url);
    let (depth, age) = tokio::join!(
        s.queues.depth(url),
        s.cloudwatch.latest_maximum(
            "AWS/SQS",
            "ApproximateAgeOfOldestMessage",
            ("QueueName", name),
            AGE_WINDOW
        )
    );
    Section::of(depth.map(|depth| QueueView {
        depth,
        oldest_age_secs: Section::of(age),
    }))
}

async fn dead_letters(s: &Sources<'_>) -> Section<DeadLetterView> {
    let Some(url) = s.dead_letter_queue_url else {
        return not_configured(s, "--dead-letter-queue-url", "DeadLetterQueueUrl");
    };
    let read = async {
        let depth = s.queues.depth(url).await?;
        let (census, complete) = s.queues.census(url, s.census_limit).await?;
        Ok::<_, AdapterError>(DeadLetterView {
            depth,
            census,
            complete,
        })
    };
    Section::of(read.await)
}

async fn breakers(s: &Sources<'_>) -> Section<Option<Vec<OpenBreaker>>> {
    let Some(table) = s.table else {
        return not_configured(s, "--table", "IdempotencyTableName");
    };
    Section::of(table.open_breakers(crate::clock::now_ms()).await)
}

async fn reconciliation(s: &Sources<'_>) -> Section<Reconciliation> {
    let Some(table) = s.table else {
        return not_configured(s, "--table", "IdempotencyTableName");
    };
    Section::of(table.reconciliation().await)
}

async fn alarms(s: &Sources<'_>) -> Section<Vec<Firing>> {
    let Some(prefix) = s.alarm_prefix else {
        return not_configured(s, "--alarm-prefix", "alarm");
    };
    Section::of(s.cloudwatch.firing(prefix).await)
}

/// The report as one screen of text.
pub(crate) fn render(r: &Report) -> String {
    let mut out = String::new();
    let mut line = |label: &str, text: String| {
        let _ = writeln!(out, "{label:<16}{text}");
    };
    line("webhook URL", r.webhook_url.clone());
    line(
        "Twenty",
        show(&r.twenty, |t| match &t.webhook {
            Some(h) => format!(
                "webhook {} points at this stack, for {}{}{}{}",
                h.id,
                h.operations.join(","),
                if h.signed { ", signed" } else { ", UNSIGNED" },
                if h.same_url {
                    ""
                } else {
                    " (but with another token: run twenty-admin connect)"
                },
                others(t.others)
            ),
            None => format!(
                "NO webhook points at this stack{}: run twenty-admin connect",
                others(t.others)
            ),
        }),
    );
    line(
        "queue",
        show(&r.queue, |q| {
            let age = match &q.oldest_age_secs {
                Section::Ok(Some(secs)) => format!("oldest {secs:.0} s"),
                Section::Ok(None) => "oldest: no data in 15 min".into(),
                Section::Unreadable(why) => format!("oldest: unreadable ({why})"),
                Section::NotConfigured(why) => format!("oldest: {why}"),
            };
            format!("{}; {age}", depth(&q.depth))
        }),
    );
    line(
        "dead letters",
        show(&r.dead_letters, |d| {
            if d.census.counted == 0 {
                return format!("empty ({})", depth(&d.depth));
            }
            let list = |m: &std::collections::BTreeMap<String, u64>| {
                m.iter()
                    .map(|(k, n)| format!("{k} {n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            format!(
                "{}; {} counted{}: by destination {}; by reason {}",
                depth(&d.depth),
                d.census.counted,
                if d.complete { "" } else { " (the first)" },
                list(&d.census.by_destination),
                list(&d.census.by_reason)
            )
        }),
    );
    line(
        "breakers",
        show(&r.open_breakers, |b| match b {
            None => "unknown: the worker has not handled a message yet".into(),
            Some(open) if open.is_empty() => "none open".into(),
            Some(open) => open
                .iter()
                .map(|b| {
                    format!(
                        "{} open until {} ({} failures)",
                        b.destination, b.open_until, b.failures
                    )
                })
                .collect::<Vec<_>>()
                .join("; "),
        }),
    );
    line(
        "reconciliation",
        show(&r.reconciliation, |rec| match &rec.last_run {
            None => "no scheduled run recorded".into(),
            Some(run) => {
                let marks = rec
                    .watermarks
                    .iter()
                    .map(|(scope, at)| format!("{scope} {at}"))
                    .collect::<Vec<_>>()
                    .join(", ");
                format!(
                    "last run {}: {}{}, read {}, queued {}; watermarks: {}",
                    run.finished_at,
                    if run.failed { "FAILED: " } else { "" },
                    run.verdict,
                    run.read,
                    run.queued,
                    if marks.is_empty() { "none" } else { &marks }
                )
            }
        }),
    );
    line(
        "alarms",
        show(&r.alarms, |a| {
            if a.is_empty() {
                return "none in ALARM".into();
            }
            a.iter()
                .map(|f| format!("{} since {}", f.name, f.since.as_deref().unwrap_or("?")))
                .collect::<Vec<_>>()
                .join("; ")
        }),
    );
    out
}

fn show<T>(section: &Section<T>, ok: impl FnOnce(&T) -> String) -> String {
    match section {
        Section::Ok(value) => ok(value),
        Section::Unreadable(why) => format!("UNREADABLE: {why}"),
        Section::NotConfigured(why) => format!("not read: {why}"),
    }
}

fn depth(d: &Depth) -> String {
    format!(
        "{} waiting, {} in flight, {} delayed",
        d.visible, d.in_flight, d.delayed
    )
}

fn others(n: usize) -> String {
    match n {
        0 => String::new(),
        1 => " (1 other webhook)".into(),
        n => format!(" ({n} other webhooks)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> Report {
        Report {
            webhook_url: "https://x.lambda-url.eu-west-1.on.aws/".into(),
            twenty: Section::Ok(TwentyView {
                webhook: None,
                others: 2,
            }),
            queue: Section::Ok(QueueView {
                depth: Depth::default(),
                oldest_age_secs: Section::Unreadable("access denied: CloudWatch".into()),
            }),
            dead_letters: Section::Ok(DeadLetterView {
                depth: Depth::default(),
                census: Census::default(),
                complete: true,
            }),
            open_breakers: Section::Ok(None),
            reconciliation: Section::Ok(Reconciliation::default()),
            alarms: Section::NotConfigured("give --stack or --alarm-prefix".into()),
        }
    }

    #[test]
    fn each_part_says_what_it_read_or_why_not() {
        let r = report();
        let screen = render(&r);
        for part in [
            "NO webhook points at this stack (2 other webhooks): run twenty-admin connect",
            "0 waiting, 0 in flight, 0 delayed; oldest: unreadable (access denied: CloudWatch)",
            "empty (0 waiting",
            "unknown: the worker has not handled a message yet",
            "no scheduled run recorded",
            "not read: give --stack or --alarm-prefix",
        ] {
            assert!(screen.contains(part), "{part:?} in\n{screen}");
        }
        assert_eq!(screen.lines().count(), 7, "one line a part:\n{screen}");
        // The age alone unreadable is enough to say the report is incomplete; a part
        // nobody asked for is not.
        assert!(r.incomplete());
        let mut read = report();
        read.queue = Section::Ok(QueueView {
            depth: Depth::default(),
            oldest_age_secs: Section::Ok(None),
        });
        assert!(!read.incomplete());
        read.twenty = Section::Ok(TwentyView {
            webhook: Some(HookView {
                id: "w1".into(),
                target_url: "https://x/?token=…".into(),
                operations: vec!["*.*".into()],
                signed: false,
                same_url: false,
            }),
            others: 0,
        });
        let screen = render(&read);
        assert!(
            screen.contains("UNSIGNED (but with another token: run twenty-admin connect)"),
            "{screen}"
        );
        read.reconciliation = Section::Unreadable("not found: DynamoDB".into());
        assert!(read.incomplete());
        assert!(render(&read).contains("UNREADABLE: not found: DynamoDB"));
    }
}
