//! The command's arguments, its settings (`TWENTY_API_URL`, the API key as
//! `twenty-reconcile` reads it) and what it prints. Exit codes: 0 done; 1 a service refused
//! or failed (the message says which: the key, the URL, the store, the webhook URL, the
//! stack), or for `status` some part could not be read; 2 bad arguments or settings.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::connect::{Outcome, Wanted, connect};
use super::rotate::{self, Waits};
use super::sample;
use super::stack::Deployment;
use super::status::{Sources, gather, render};
use super::{SecretSlot, stored_secrets};
use crate::aws::cloudformation::StackOutputs;
use crate::aws::cloudwatch::CloudWatch;
use crate::aws::dynamodb::TableOverview;
use crate::aws::queues::Queues;
use crate::aws::secret_store::StoreSlot;
use crate::aws::{AwsSecretStore, LazySdk};
use crate::secrets::Location;
use crate::twenty_api::TwentyApi;
use crate::twenty_api::settings::ApiSettings;
use crate::twenty_api::webhooks::redact_token;

const USAGE: &str = "usage:
  twenty-admin connect PLACE [--events person.*,company.*] [--description TEXT] [--show-secret]
                       [--new-secret [--propagation-secs N] [--overlap-secs N | --no-wait]]
  twenty-admin rotate-secret PLACE [--propagation-secs N] [--overlap-secs N | --no-wait] [--finish]
  twenty-admin send-test PLACE
  twenty-admin status (--stack NAME | --webhook-url URL) [--json] [--queue-url URL]
                       [--dead-letter-queue-url URL] [--table NAME] [--alarm-prefix PREFIX]
                       [--count-dead-letters N]
PLACE is --stack NAME (its outputs give the Function URL and where the secret is kept), or
  --webhook-url URL (--secret-parameter NAME | --secret-id ID)
settings from the environment: TWENTY_API_URL, TWENTY_API_KEY (or _PARAMETER, _SECRET_ID);
  TWENTY_WEBHOOK_URL_TOKEN for a stack that requires a URL token";

/// The ingest function re-reads its secret every `SecretRefreshSeconds` (300 by default):
/// the new secret is given to Twenty after that, and a margin.
const PROPAGATION: Duration = Duration::from_secs(330);
const PROPAGATION_MARGIN: Duration = Duration::from_secs(30);
/// Deliveries signed with the old secret may still be on their way this long.
const OVERLAP: Duration = Duration::from_secs(900);
/// Dead letters `status` counts at most, by default.
const CENSUS_LIMIT: u64 = 1000;

/// How long the whole command may take, and one test delivery.
const TIME_LIMIT: Duration = Duration::from_secs(120);
const TEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the command acts: given, or read from a stack's outputs.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Place {
    Given {
        webhook_url: String,
        secret: Option<Location>,
    },
    Stack(String),
}

/// The waits of a rotation as given; the propagation's default is the stack's refresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct WaitArgs {
    propagation: Option<Duration>,
    overlap: Option<Duration>,
}

impl WaitArgs {
    fn waits(self, refresh: Option<Duration>) -> Waits {
        Waits {
            propagation: self
                .propagation
                .unwrap_or_else(|| refresh.map_or(PROPAGATION, |r| r + PROPAGATION_MARGIN)),
            overlap: self.overlap,
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
struct StatusArgs {
    json: bool,
    queue_url: Option<String>,
    dead_letter_queue_url: Option<String>,
    table: Option<String>,
    alarm_prefix: Option<String>,
    census_limit: u64,
}

#[derive(Debug, PartialEq, Eq)]
enum Command {
    Connect {
        place: Place,
        operations: Vec<String>,
        description: Option<String>,
        show_secret: bool,
        /// Rotate the secret of a webhook that exists, with these waits.
        new_secret: Option<WaitArgs>,
    },
    Rotate {
        place: Place,
        waits: WaitArgs,
        finish: bool,
    },
    SendTest {
        place: Place,
    },
    Status {
        place: Place,
        args: StatusArgs,
    },
}

fn parse(args: impl IntoIterator<Item = String>) -> Result<Command, String> {
    let mut args = args.into_iter();
    let sub = args
        .next()
        .ok_or("a subcommand is needed: connect, rotate-secret, send-test or status")?;
    let (mut url, mut stack, mut secret, mut events, mut description, mut show) =
        (None, None, None, None, None, false);
    let (mut new_secret, mut finish, mut no_wait) = (false, false, false);
    let (mut propagation, mut overlap) = (None, Some(OVERLAP));
    let mut status = StatusArgs {
        json: false,
        queue_url: None,
        dead_letter_queue_url: None,
        table: None,
        alarm_prefix: None,
        census_limit: CENSUS_LIMIT,
    };
    let rotates = sub == "rotate-secret" || sub == "connect";
    let is_status = sub == "status";
    let secs = |flag: &str, value: Result<String, String>| -> Result<Duration, String> {
        value?
            .parse::<u64>()
            .ok()
            .filter(|n| *n <= 86_400)
            .map(Duration::from_secs)
            .ok_or(format!("{flag} needs whole seconds, at most 86400"))
    };
    while let Some(arg) = args.next() {
        let mut value = |what: &str| args.next().ok_or(format!("{arg} needs {what}"));
        match arg.as_str() {
            "--webhook-url" => url = Some(value("the Function URL")?),
            "--stack" => stack = Some(value("a stack name")?),
            "--secret-parameter" | "--secret-id" if secret.is_some() => {
                return Err("give one of --secret-parameter and --secret-id".into());
            }
            "--secret-parameter" if !is_status => {
                secret = Some(Location::Parameter(value("a parameter name")?));
            }
            "--secret-id" if !is_status => secret = Some(Location::SecretId(value("a secret id")?)),
            "--events" if sub == "connect" => {
                let list = value("a list of operations")?;
                let ops: Vec<String> = list.split(',').map(|s| s.trim().to_owned()).collect();
                if ops.iter().any(|o| !valid_operation(o)) {
                    return Err(format!(
                        "--events {list:?}: each is <object>.<action>, `*` for either (person.*, *.created, *.*)"
                    ));
                }
                events = Some(ops);
            }
            "--description" if sub == "connect" => description = Some(value("a text")?),
            "--show-secret" if sub == "connect" => show = true,
            "--new-secret" if sub == "connect" => new_secret = true,
            "--finish" if sub == "rotate-secret" => finish = true,
            "--no-wait" if rotates => no_wait = true,
            "--propagation-secs" if rotates => propagation = Some(secs(&arg, value("seconds"))?),
            "--overlap-secs" if rotates => overlap = Some(secs(&arg, value("seconds"))?),
            "--json" if is_status => status.json = true,
            "--queue-url" if is_status => status.queue_url = Some(value("a queue URL")?),
            "--dead-letter-queue-url" if is_status => {
                status.dead_letter_queue_url = Some(value("a queue URL")?);
            }
            "--table" if is_status => status.table = Some(value("a table name")?),
            "--alarm-prefix" if is_status => status.alarm_prefix = Some(value("a prefix")?),
            "--count-dead-letters" if is_status => {
                status.census_limit = value("a number")?
                    .parse()
                    .ok()
                    .filter(|n| (1..=100_000).contains(n))
                    .ok_or("--count-dead-letters needs a number from 1 to 100000")?;
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if no_wait {
        overlap = None;
    }
    let waits = WaitArgs {
        propagation,
        overlap,
    };
    let place = match (url, stack) {
        (Some(_), Some(_)) => return Err("give one of --webhook-url and --stack".into()),
        (None, Some(stack)) if secret.is_some() => {
            return Err(format!(
                "--stack {stack:?} gives where the secret is kept: drop --secret-parameter / --secret-id"
            ));
        }
        (None, Some(stack)) => Place::Stack(stack),
        (Some(_), None) if secret.is_none() && !is_status => {
            return Err(
                "--secret-parameter or --secret-id is required with --webhook-url (where ingest reads its secret)"
                    .into(),
            );
        }
        (Some(webhook_url), None) => Place::Given {
            webhook_url,
            secret,
        },
        (None, None) => {
            return Err("--stack or --webhook-url is required (the ingest function's URL)".into());
        }
    };
    match sub.as_str() {
        "connect" => Ok(Command::Connect {
            place,
            operations: events.unwrap_or_else(|| vec!["*.*".into()]),
            description,
            show_secret: show,
            new_secret: new_secret.then_some(waits),
        }),
        "rotate-secret" => Ok(Command::Rotate {
            place,
            waits,
            finish,
        }),
        "send-test" => Ok(Command::SendTest { place }),
        "status" => Ok(Command::Status {
            place,
            args: status,
        }),
        other => Err(format!("unknown subcommand {other:?}")),
    }
}

fn valid_operation(op: &str) -> bool {
    let part =
        |p: &str| p == "*" || (!p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric()));
    matches!(op.split_once('.'), Some((o, a)) if part(o) && part(a))
}

pub async fn main() -> ExitCode {
    crate::logging::init_with_writer(std::io::stderr);
    let command = match parse(std::env::args().skip(1)) {
        Ok(command) => command,
        Err(why) => {
            if !why.is_empty() {
                eprintln!("twenty-admin: {why}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(command, &LazySdk::default()).await {
        Ok(code) => code,
        Err(Stop(code, why)) => {
            eprintln!("twenty-admin: {why}");
            ExitCode::from(code)
        }
    }
}

/// Why the command stopped, and its exit code: 1 a service refused or failed, 2 the
/// settings are wrong.
struct Stop(u8, String);

impl Stop {
    fn service(why: impl std::fmt::Display) -> Self {
        Self(1, why.to_string())
    }

    fn settings(why: impl std::fmt::Display) -> Self {
        Self(2, why.to_string())
    }
}

/// The place the command acts on, the stack's outputs read.
struct Resolved {
    webhook_url: String,
    secret: Option<Location>,
    deployment: Option<Deployment>,
}

impl Resolved {
    async fn of(place: Place, sdk: &LazySdk) -> Result<Self, Stop> {
        let name = match place {
            Place::Given {
                webhook_url,
                secret,
            } => {
                return Ok(Self {
                    webhook_url,
                    secret,
                    deployment: None,
                });
            }
            Place::Stack(name) => name,
        };
        let outputs = StackOutputs::lazy(sdk.clone())
            .read(&name)
            .await
            .map_err(|e| Stop::service(format!("stack {name:?}: {e}")))?;
        let token = std::env::var("TWENTY_WEBHOOK_URL_TOKEN").ok();
        let deployment =
            Deployment::from_outputs(&name, &outputs, token.as_deref()).map_err(Stop::settings)?;
        Ok(Self {
            webhook_url: deployment.webhook_url.clone(),
            secret: deployment.secret.clone(),
            deployment: Some(deployment),
        })
    }

    /// Where the secret is kept, for the commands that read or change it.
    fn slot(&self, sdk: &LazySdk) -> Result<StoreSlot, Stop> {
        let location = self.secret.clone().ok_or_else(|| {
            Stop::settings(
                "the stack keeps no secret in SSM or Secrets Manager (it was given WebhookSecret, or none): deploy it with WebhookSecretParameter or WebhookSecretArn",
            )
        })?;
        Ok(StoreSlot {
            store: AwsSecretStore::lazy(sdk.clone()),
            location,
        })
    }

    fn refresh(&self) -> Option<Duration> {
        self.deployment.as_ref().and_then(|d| d.refresh)
    }
}

async fn run(command: Command, sdk: &LazySdk) -> Result<ExitCode, Stop> {
    let deadline = Instant::now() + TIME_LIMIT;
    match command {
        Command::SendTest { place } => {
            let here = Resolved::of(place, sdk).await?;
            println!("{}", send_test(&here.slot(sdk)?, &here.webhook_url).await?);
        }
        Command::Rotate {
            place,
            waits,
            finish,
        } => {
            let here = Resolved::of(place, sdk).await?;
            let (api, slot) = (api(sdk)?, here.slot(sdk)?);
            let said = if finish {
                rotate::finish(&api, &slot, &here.webhook_url)
                    .await
                    .map_err(Stop::service)?;
                "the store holds the new secret alone".to_owned()
            } else {
                let waits = waits.waits(here.refresh());
                rotated(&api, &slot, &here.webhook_url, waits).await?
            };
            println!("{said}");
        }
        Command::Connect {
            place,
            operations,
            description,
            show_secret,
            new_secret,
        } => {
            let here = Resolved::of(place, sdk).await?;
            let (api, slot) = (api(sdk)?, here.slot(sdk)?);
            let want = Wanted {
                webhook_url: here.webhook_url.clone(),
                operations,
                description,
            };
            let connected = connect(&api, &slot, &want, deadline)
                .await
                .map_err(Stop::service)?;
            let hook = &connected.webhook;
            let what = match &connected.outcome {
                Outcome::Created => "created".to_owned(),
                Outcome::Updated(fields) => format!("updated ({})", fields.join(", ")),
                Outcome::Unchanged => "already as asked: nothing changed".to_owned(),
            };
            println!(
                "webhook {} {what}: {} for {}",
                hook.id,
                redact_token(&hook.target_url),
                hook.operations.join(",")
            );
            if connected.secret_stored {
                println!("the secret Twenty signs with is now in {}", slot.name());
            }
            let mut secret = hook.secret().map(str::to_owned);
            if let (Some(waits), false) = (new_secret, connected.outcome == Outcome::Created) {
                let waits = waits.waits(here.refresh());
                println!("{}", rotated(&api, &slot, &here.webhook_url, waits).await?);
                // The webhook as read before the rotation holds the old one: Twenty now
                // signs with the first secret the store holds.
                secret = match slot.current().await {
                    Ok(value) => value
                        .as_deref()
                        .and_then(|v| stored_secrets(v).next())
                        .map(str::to_owned),
                    Err(e) => return Err(Stop::service(e)),
                };
            }
            if show_secret && let Some(secret) = secret {
                println!("secret (keep it out of logs): {secret}");
            }
            println!("{}", send_test(&slot, &here.webhook_url).await?);
        }
        Command::Status { place, args } => return status(place, args, sdk).await,
    }
    Ok(ExitCode::SUCCESS)
}

/// Exit 0 when every part was read, 1 when some part could not be.
async fn status(place: Place, args: StatusArgs, sdk: &LazySdk) -> Result<ExitCode, Stop> {
    let here = Resolved::of(place, sdk).await?;
    let stack = here.deployment.as_ref();
    let pick = |given: Option<String>, from_stack: Option<&Option<String>>| {
        given.or_else(|| from_stack.cloned().flatten())
    };
    let queue_url = pick(args.queue_url, stack.map(|d| &d.queue_url));
    let dead_letter_queue_url = pick(
        args.dead_letter_queue_url,
        stack.map(|d| &d.dead_letter_queue_url),
    );
    let table_name = pick(args.table, stack.map(|d| &d.table));
    let alarm_prefix = args
        .alarm_prefix
        .or_else(|| stack.map(|d| d.alarm_prefix.clone()));
    let twenty = api(sdk).map_err(|Stop(_, why)| why);
    let table = table_name.map(|t| TableOverview::lazy(sdk.clone(), &t));
    let report = gather(&Sources {
        webhook_url: &here.webhook_url,
        twenty: twenty.as_ref().map_err(Clone::clone),
        queues: &Queues::lazy(sdk.clone()),
        cloudwatch: &CloudWatch::lazy(sdk.clone()),
        queue_url: queue_url.as_deref(),
        dead_letter_queue_url: dead_letter_queue_url.as_deref(),
        table: table.as_ref(),
        alarm_prefix: alarm_prefix.as_deref(),
        census_limit: args.census_limit,
        stack: stack.map(|d| d.name.as_str()),
    })
    .await;
    if args.json {
        let text = serde_json::to_string_pretty(&report).map_err(Stop::service)?;
        println!("{text}");
    } else {
        print!("{}", render(&report));
    }
    Ok(if report.incomplete() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// The API client, from the settings; a `Stop` naming the setting when they are wrong.
fn api(sdk: &LazySdk) -> Result<TwentyApi, Stop> {
    let settings =
        ApiSettings::from_lookup(&|name| std::env::var(name).ok()).map_err(Stop::settings)?;
    settings
        .client(|| Arc::new(AwsSecretStore::lazy(sdk.clone())))
        .map_err(Stop::settings)
}

/// A rotation, each step said as it starts; what it ended with.
async fn rotated(
    api: &TwentyApi,
    slot: &StoreSlot,
    url: &str,
    waits: Waits,
) -> Result<String, Stop> {
    let step = |what: &str| eprintln!("twenty-admin: {what}");
    let rotated = rotate::rotate(api, slot, url, waits, step)
        .await
        .map_err(Stop::service)?;
    Ok(match rotated {
        rotate::Rotated::Done => {
            "secret rotated: Twenty signs with the new one, the store holds it alone".into()
        }
        rotate::Rotated::BothKept => format!(
            "secret rotated: Twenty signs with the new one; {} holds both until rotate-secret --finish",
            slot.name()
        ),
    })
}

/// The signed test delivery, and what the Function URL answered.
async fn send_test(slot: &StoreSlot, url: &str) -> Result<String, Stop> {
    let secret = match slot.current().await {
        Ok(Some(value)) => value,
        Ok(None) => {
            return Err(Stop::service(format!(
                "{} does not exist: run connect first",
                slot.name()
            )));
        }
        Err(e) => {
            return Err(Stop::service(format!(
                "the webhook secret could not be read from {}: {e}",
                slot.name()
            )));
        }
    };
    // During a rotation the store holds `new,old`: Twenty signs with the new one.
    let secret = stored_secrets(&secret).next().unwrap_or("").to_owned();
    let answer = sample::send(url, &secret, TEST_TIMEOUT)
        .await
        .map_err(Stop::service)?;
    if answer.accepted() {
        Ok(format!("test delivery: {} {}", answer.status, answer.body))
    } else {
        Err(Stop::service(format!(
            "the test delivery was refused: {} {}",
            answer.status, answer.body
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Result<Command, String> {
        parse(list.iter().map(|s| (*s).to_owned()))
    }

    #[test]
    fn arguments() {
        let c = args(&[
            "connect",
            "--webhook-url",
            "https://x.lambda-url.eu-west-1.on.aws/",
            "--secret-parameter",
            "/twenty/webhook-secret",
            "--events",
            "person.*, company.created",
        ])
        .unwrap();
        let Command::Connect {
            operations,
            show_secret,
            place,
            ..
        } = c
        else {
            panic!("connect")
        };
        assert_eq!(operations, ["person.*", "company.created"]);
        assert!(!show_secret);
        assert!(matches!(
            place,
            Place::Given {
                secret: Some(_),
                ..
            }
        ));
        assert!(matches!(
            args(&["send-test", "--webhook-url", "u", "--secret-id", "s"]),
            Ok(Command::SendTest { .. })
        ));
        assert!(matches!(
            args(&["send-test", "--stack", "prod"]),
            Ok(Command::SendTest { place: Place::Stack(s) }) if s == "prod"
        ));
        let Ok(Command::Status { place, args: st }) = args(&[
            "status",
            "--webhook-url",
            "u",
            "--json",
            "--queue-url",
            "q",
            "--count-dead-letters",
            "50",
        ]) else {
            panic!("status")
        };
        assert_eq!(
            place,
            Place::Given {
                webhook_url: "u".into(),
                secret: None
            }
        );
        assert!(st.json);
        assert_eq!((st.queue_url.as_deref(), st.census_limit), (Some("q"), 50));
        // The propagation: given, else the stack's refresh and a margin, else 330 s.
        let Ok(Command::Rotate { waits, .. }) = args(&["rotate-secret", "--stack", "p"]) else {
            panic!("rotate")
        };
        assert_eq!(
            waits.waits(Some(Duration::from_secs(60))).propagation,
            Duration::from_secs(90)
        );
        assert_eq!(waits.waits(None).propagation, PROPAGATION);
        let Ok(Command::Rotate { waits, .. }) = args(&[
            "rotate-secret",
            "--stack",
            "p",
            "--propagation-secs",
            "5",
            "--no-wait",
        ]) else {
            panic!("rotate")
        };
        let waits = waits.waits(Some(Duration::from_secs(60)));
        assert_eq!(
            (waits.propagation, waits.overlap),
            (Duration::from_secs(5), None)
        );
        for bad in [
            &[][..],
            &["frobnicate", "--webhook-url", "u", "--secret-id", "s"],
            &["connect", "--secret-id", "s"],
            &["connect", "--webhook-url", "u"],
            &[
                "connect",
                "--webhook-url",
                "u",
                "--secret-id",
                "s",
                "--secret-parameter",
                "/p",
            ],
            &[
                "connect",
                "--webhook-url",
                "u",
                "--secret-id",
                "s",
                "--events",
                "person",
            ],
            &[
                "send-test",
                "--webhook-url",
                "u",
                "--secret-id",
                "s",
                "--events",
                "*.*",
            ],
            &["send-test", "--stack", "p", "--webhook-url", "u"],
            &["send-test", "--stack", "p", "--secret-id", "s"],
            &["status", "--stack", "p", "--secret-id", "s"],
            &["status", "--stack", "p", "--count-dead-letters", "0"],
            &["connect", "--stack", "p", "--json"],
        ] {
            assert!(args(bad).is_err(), "{bad:?}");
        }
    }
}
