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

/// What `--help` adds after the flags.
const SETTINGS: &str = "Settings from the environment: TWENTY_API_URL, TWENTY_API_KEY (or \
_PARAMETER, _SECRET_ID); TWENTY_WEBHOOK_URL_TOKEN for a stack that requires a URL token.

Exit codes: 0 done; 1 a service refused or failed (the message says which), or for status \
some part could not be read; 2 bad arguments or settings.";

/// Sets Twenty up for this stack through its webhook API, and reports on the whole chain.
#[derive(Debug, clap::Parser)]
#[command(name = "twenty-admin", after_help = SETTINGS)]
struct Cli {
    #[command(subcommand)]
    command: Sub,
}

#[derive(Debug, clap::Subcommand)]
enum Sub {
    /// One webhook in Twenty for the Function URL, its secret stored first.
    Connect {
        #[command(flatten)]
        place: PlaceArgs,
        /// The operations it sends, comma-separated: <object>.<action>, `*` for either.
        // The whole path: clap reads a plain `Vec` as a repeated flag, this is one list.
        #[arg(long, value_name = "LIST", default_value = "*.*", value_parser = operations)]
        events: std::vec::Vec<String>,
        /// The webhook's description in Twenty.
        #[arg(long, value_name = "TEXT")]
        description: Option<String>,
        /// Print the secret Twenty signs with, once.
        #[arg(long)]
        show_secret: bool,
        /// Rotate the secret of a webhook that exists (see rotate-secret for the waits).
        #[arg(long)]
        new_secret: bool,
        #[command(flatten)]
        waits: WaitFlags,
    },
    /// A new secret: stored beside the old, given to Twenty once the function reads it, the
    /// old dropped after the overlap.
    RotateSecret {
        #[command(flatten)]
        place: PlaceArgs,
        #[command(flatten)]
        waits: WaitFlags,
        /// Drop the old secret now (a rotation stopped with --no-wait).
        #[arg(long)]
        finish: bool,
    },
    /// A signed test delivery to the Function URL, as Twenty would send it.
    SendTest {
        #[command(flatten)]
        place: PlaceArgs,
    },
    /// The whole chain: Twenty's webhook, the queues, the table, the alarms.
    Status {
        /// The stack: its outputs give the rest.
        #[arg(long, value_name = "NAME")]
        stack: Option<String>,
        /// The ingest function's URL, without a stack.
        #[arg(long, value_name = "URL")]
        webhook_url: Option<String>,
        /// One JSON document instead of the report.
        #[arg(long)]
        json: bool,
        #[arg(long, value_name = "URL")]
        queue_url: Option<String>,
        #[arg(long, value_name = "URL")]
        dead_letter_queue_url: Option<String>,
        /// The idempotency table.
        #[arg(long, value_name = "NAME")]
        table: Option<String>,
        /// The alarms whose names start with this.
        #[arg(long, value_name = "PREFIX")]
        alarm_prefix: Option<String>,
        /// Count at most this many dead letters.
        #[arg(long, value_name = "N", default_value_t = CENSUS_LIMIT,
              value_parser = clap::value_parser!(u64).range(1..=100_000))]
        count_dead_letters: u64,
    },
}

/// Where the command acts: --stack, or --webhook-url and where the secret is kept.
#[derive(Debug, clap::Args)]
struct PlaceArgs {
    /// The stack: its outputs give the Function URL and where the secret is kept.
    #[arg(long, value_name = "NAME")]
    stack: Option<String>,
    /// The ingest function's URL, without a stack.
    #[arg(long, value_name = "URL")]
    webhook_url: Option<String>,
    /// The SSM parameter the ingest function reads its secret from.
    #[arg(long, value_name = "NAME", conflicts_with = "secret_id")]
    secret_parameter: Option<String>,
    /// The Secrets Manager secret it reads it from.
    #[arg(long, value_name = "ID")]
    secret_id: Option<String>,
}

/// The waits of a rotation.
#[derive(Debug, clap::Args)]
struct WaitFlags {
    /// How long the function takes to read the new secret; the stack's refresh and a
    /// margin by default (330 s without a stack).
    #[arg(long, value_name = "N", value_parser = seconds)]
    propagation_secs: Option<Duration>,
    /// How long deliveries signed with the old secret may still come (900 by default).
    #[arg(long, value_name = "N", value_parser = seconds)]
    overlap_secs: Option<Duration>,
    /// Do not wait out the overlap: finish later with rotate-secret --finish.
    #[arg(long, conflicts_with = "overlap_secs")]
    no_wait: bool,
}

fn seconds(value: &str) -> Result<Duration, String> {
    value
        .parse::<u64>()
        .ok()
        .filter(|n| *n <= 86_400)
        .map(Duration::from_secs)
        .ok_or("whole seconds, at most 86400".to_owned())
}

fn operations(list: &str) -> Result<Vec<String>, String> {
    let ops: Vec<String> = list.split(',').map(|s| s.trim().to_owned()).collect();
    if ops.iter().any(|o| !valid_operation(o)) {
        return Err(format!(
            "{list:?}: each is <object>.<action>, `*` for either (person.*, *.created, *.*)"
        ));
    }
    Ok(ops)
}

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

/// The arguments after the program's name; as the tests give them; Err is what would be printed (clap's own usage errors
/// included).
#[cfg(test)]
fn parse(args: impl IntoIterator<Item = String>) -> Result<Command, String> {
    let cli = <Cli as clap::Parser>::try_parse_from(
        std::iter::once("twenty-admin".to_owned()).chain(args),
    )
    .map_err(|e| e.to_string())?;
    Command::try_from(cli.command)
}

impl PlaceArgs {
    /// The place: a stack, or a URL and, when the command reads or changes the secret
    /// (`secret_needed`), where the secret is kept.
    fn place(self, secret_needed: bool) -> Result<Place, String> {
        let secret = match (self.secret_parameter, self.secret_id) {
            (Some(name), _) => Some(Location::Parameter(name)),
            (None, Some(id)) => Some(Location::SecretId(id)),
            (None, None) => None,
        };
        match (self.webhook_url, self.stack) {
            (Some(_), Some(_)) => Err("give one of --webhook-url and --stack".into()),
            (None, Some(stack)) if secret.is_some() => Err(format!(
                "--stack {stack:?} gives where the secret is kept: drop --secret-parameter / --secret-id"
            )),
            (None, Some(stack)) => Ok(Place::Stack(stack)),
            (Some(_), None) if secret.is_none() && secret_needed => Err(
                "--secret-parameter or --secret-id is required with --webhook-url (where ingest reads its secret)"
                    .into(),
            ),
            (Some(webhook_url), None) => Ok(Place::Given {
                webhook_url,
                secret,
            }),
            (None, None) => {
                Err("--stack or --webhook-url is required (the ingest function's URL)".into())
            }
        }
    }
}

impl From<WaitFlags> for WaitArgs {
    fn from(flags: WaitFlags) -> Self {
        Self {
            propagation: flags.propagation_secs,
            overlap: (!flags.no_wait).then(|| flags.overlap_secs.unwrap_or(OVERLAP)),
        }
    }
}

impl TryFrom<Sub> for Command {
    type Error = String;

    fn try_from(sub: Sub) -> Result<Self, String> {
        Ok(match sub {
            Sub::Connect {
                place,
                events,
                description,
                show_secret,
                new_secret,
                waits,
            } => Command::Connect {
                place: place.place(true)?,
                operations: events,
                description,
                show_secret,
                new_secret: new_secret.then(|| waits.into()),
            },
            Sub::RotateSecret {
                place,
                waits,
                finish,
            } => Command::Rotate {
                place: place.place(true)?,
                waits: waits.into(),
                finish,
            },
            Sub::SendTest { place } => Command::SendTest {
                place: place.place(true)?,
            },
            Sub::Status {
                stack,
                webhook_url,
                json,
                queue_url,
                dead_letter_queue_url,
                table,
                alarm_prefix,
                count_dead_letters,
            } => {
                // Status reads no secret: it takes no --secret-* flags, and needs none.
                let place = PlaceArgs {
                    stack,
                    webhook_url,
                    secret_parameter: None,
                    secret_id: None,
                }
                .place(false)?;
                Command::Status {
                    place,
                    args: StatusArgs {
                        json,
                        queue_url,
                        dead_letter_queue_url,
                        table,
                        alarm_prefix,
                        census_limit: count_dead_letters,
                    },
                }
            }
        })
    }
}

fn valid_operation(op: &str) -> bool {
    let part =
        |p: &str| p == "*" || (!p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric()));
    matches!(op.split_once('.'), Some((o, a)) if part(o) && part(a))
}

pub async fn main() -> ExitCode {
    crate::logging::init_with_writer(std::io::stderr);
    // --help prints and exits 0; a usage error prints with the usage line and exits 2.
    let cli = <Cli as clap::Parser>::parse();
    let command = match Command::try_from(cli.command) {
        Ok(command) => command,
        Err(why) => {
            eprintln!("twenty-admin: {why}");
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
