//! The command's arguments, its settings (`TWENTY_API_URL`, the API key as
//! `twenty-reconcile` reads it) and what it prints. Exit codes: 0 done; 1 a service refused
//! or failed (the message says which: the key, the URL, the store, the webhook URL); 2 bad
//! arguments or settings.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::SecretSlot;
use super::connect::{Outcome, Wanted, connect};
use super::sample;
use crate::aws::secret_store::StoreSlot;
use crate::aws::{AwsSecretStore, LazySdk};
use crate::secrets::Location;
use crate::twenty_api::settings::ApiSettings;

const USAGE: &str = "usage:
  twenty-admin connect --webhook-url URL (--secret-parameter NAME | --secret-id ID)
                       [--events person.*,company.*] [--description TEXT] [--show-secret]
  twenty-admin send-test --webhook-url URL (--secret-parameter NAME | --secret-id ID)
settings from the environment: TWENTY_API_URL, TWENTY_API_KEY (or _PARAMETER, _SECRET_ID)";

/// How long the whole command may take, and one test delivery.
const TIME_LIMIT: Duration = Duration::from_secs(120);
const TEST_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, PartialEq, Eq)]
enum Command {
    Connect {
        wanted: WantedArgs,
        show_secret: bool,
    },
    SendTest {
        webhook_url: String,
        secret: Location,
    },
}

#[derive(Debug, PartialEq, Eq)]
struct WantedArgs {
    webhook_url: String,
    secret: Location,
    operations: Vec<String>,
    description: Option<String>,
}

fn parse(args: impl IntoIterator<Item = String>) -> Result<Command, String> {
    let mut args = args.into_iter();
    let sub = args
        .next()
        .ok_or("a subcommand is needed: connect or send-test")?;
    let (mut url, mut secret, mut events, mut description, mut show) =
        (None, None, None, None, false);
    while let Some(arg) = args.next() {
        let mut value = |what: &str| args.next().ok_or(format!("{arg} needs {what}"));
        match arg.as_str() {
            "--webhook-url" => url = Some(value("the Function URL")?),
            "--secret-parameter" | "--secret-id" if secret.is_some() => {
                return Err("give one of --secret-parameter and --secret-id".into());
            }
            "--secret-parameter" => secret = Some(Location::Parameter(value("a parameter name")?)),
            "--secret-id" => secret = Some(Location::SecretId(value("a secret id")?)),
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
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let webhook_url = url.ok_or("--webhook-url is required (the ingest function's URL)")?;
    let secret = secret
        .ok_or("--secret-parameter or --secret-id is required (where ingest reads its secret)")?;
    match sub.as_str() {
        "connect" => Ok(Command::Connect {
            wanted: WantedArgs {
                webhook_url,
                secret,
                operations: events.unwrap_or_else(|| vec!["*.*".into()]),
                description,
            },
            show_secret: show,
        }),
        "send-test" => Ok(Command::SendTest {
            webhook_url,
            secret,
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
    let sdk = LazySdk::default();
    let slot = |location: Location| StoreSlot {
        store: AwsSecretStore::lazy(sdk.clone()),
        location,
    };
    let deadline = Instant::now() + TIME_LIMIT;
    match command {
        Command::SendTest {
            webhook_url,
            secret,
        } => send_test(&slot(secret), &webhook_url).await,
        Command::Connect {
            wanted,
            show_secret,
        } => {
            let settings = match ApiSettings::from_lookup(&|name| std::env::var(name).ok()) {
                Ok(settings) => settings,
                Err(e) => {
                    eprintln!("twenty-admin: {e}");
                    return ExitCode::from(2);
                }
            };
            let api = match settings.client(|| Arc::new(AwsSecretStore::lazy(sdk.clone()))) {
                Ok(api) => api,
                Err(e) => {
                    eprintln!("twenty-admin: {e}");
                    return ExitCode::from(2);
                }
            };
            let slot = slot(wanted.secret.clone());
            let want = Wanted {
                webhook_url: wanted.webhook_url.clone(),
                operations: wanted.operations,
                description: wanted.description,
            };
            let connected = match connect(&api, &slot, &want, deadline).await {
                Ok(connected) => connected,
                Err(e) => {
                    eprintln!("twenty-admin: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let hook = &connected.webhook;
            let what = match &connected.outcome {
                Outcome::Created => "created".to_owned(),
                Outcome::Updated(fields) => format!("updated ({})", fields.join(", ")),
                Outcome::Unchanged => "already as asked: nothing changed".to_owned(),
            };
            println!(
                "webhook {} {what}: {} for {}",
                hook.id,
                hook.target_url,
                hook.operations.join(",")
            );
            if connected.secret_stored {
                println!("the secret Twenty signs with is now in {}", slot.name());
            }
            if show_secret && let Some(secret) = hook.secret() {
                println!("secret (keep it out of logs): {secret}");
            }
            send_test(&slot, &wanted.webhook_url).await
        }
    }
}

/// The signed test delivery, and what the Function URL answered.
async fn send_test(slot: &StoreSlot, url: &str) -> ExitCode {
    let secret = match slot.current().await {
        Ok(Some(value)) => value,
        Ok(None) => {
            eprintln!(
                "twenty-admin: {} does not exist: run connect first",
                slot.name()
            );
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!(
                "twenty-admin: the webhook secret could not be read from {}: {e}",
                slot.name()
            );
            return ExitCode::FAILURE;
        }
    };
    // During a rotation the store holds `new,old`: Twenty signs with the new one.
    let secret = secret.split(',').next().unwrap_or("").trim().to_owned();
    match sample::send(url, &secret, TEST_TIMEOUT).await {
        Ok(answer) if answer.accepted() => {
            println!("test delivery: {} {}", answer.status, answer.body);
            ExitCode::SUCCESS
        }
        Ok(answer) => {
            eprintln!(
                "twenty-admin: the test delivery was refused: {} {}",
                answer.status, answer.body
            );
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("twenty-admin: {e}");
            ExitCode::FAILURE
        }
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
            wanted,
            show_secret,
        } = c
        else {
            panic!("connect")
        };
        assert_eq!(wanted.operations, ["person.*", "company.created"]);
        assert!(!show_secret);
        assert!(matches!(
            args(&["send-test", "--webhook-url", "u", "--secret-id", "s"]),
            Ok(Command::SendTest { .. })
        ));
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
        ] {
            assert!(args(bad).is_err(), "{bad:?}");
        }
    }
}
