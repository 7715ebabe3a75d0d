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
use super::rotate::{self, Waits};
use super::sample;
use crate::aws::secret_store::StoreSlot;
use crate::aws::{AwsSecretStore, LazySdk};
use crate::secrets::Location;
use crate::twenty_api::TwentyApi;
use crate::twenty_api::settings::ApiSettings;

const USAGE: &str = "usage:
  twenty-admin connect --webhook-url URL (--secret-parameter NAME | --secret-id ID)
                       [--events person.*,company.*] [--description TEXT] [--show-secret]
                       [--new-secret [--propagation-secs N] [--overlap-secs N | --no-wait]]
  twenty-admin rotate-secret --webhook-url URL (--secret-parameter NAME | --secret-id ID)
                       [--propagation-secs N] [--overlap-secs N | --no-wait] [--finish]
  twenty-admin send-test --webhook-url URL (--secret-parameter NAME | --secret-id ID)
settings from the environment: TWENTY_API_URL, TWENTY_API_KEY (or _PARAMETER, _SECRET_ID)";

/// The ingest function re-reads its secret every `SecretRefreshSeconds` (300 by default):
/// the new secret is given to Twenty after that, and a margin.
const PROPAGATION: Duration = Duration::from_secs(330);
/// Deliveries signed with the old secret may still be on their way this long.
const OVERLAP: Duration = Duration::from_secs(900);

/// How long the whole command may take, and one test delivery.
const TIME_LIMIT: Duration = Duration::from_secs(120);
const TEST_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, PartialEq, Eq)]
enum Command {
    Connect {
        wanted: WantedArgs,
        show_secret: bool,
        /// Rotate the secret of a webhook that exists, with these waits.
        new_secret: Option<Waits>,
    },
    Rotate {
        webhook_url: String,
        secret: Location,
        waits: Waits,
        finish: bool,
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
    let (mut new_secret, mut finish, mut no_wait) = (false, false, false);
    let (mut propagation, mut overlap) = (PROPAGATION, Some(OVERLAP));
    let rotates = sub == "rotate-secret" || sub == "connect";
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
            "--new-secret" if sub == "connect" => new_secret = true,
            "--finish" if sub == "rotate-secret" => finish = true,
            "--no-wait" if rotates => no_wait = true,
            "--propagation-secs" if rotates => propagation = secs(&arg, value("seconds"))?,
            "--overlap-secs" if rotates => overlap = Some(secs(&arg, value("seconds"))?),
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if no_wait {
        overlap = None;
    }
    let waits = Waits {
        propagation,
        overlap,
    };
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
            new_secret: new_secret.then_some(waits),
        }),
        "rotate-secret" => Ok(Command::Rotate {
            webhook_url,
            secret,
            waits,
            finish,
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
        Command::Rotate {
            webhook_url,
            secret,
            waits,
            finish,
        } => {
            let api = match api(&sdk) {
                Ok(api) => api,
                Err(code) => return code,
            };
            let slot = slot(secret);
            let done = if finish {
                rotate::finish(&api, &slot, &webhook_url)
                    .await
                    .map(|()| "the store holds the new secret alone".to_owned())
            } else {
                rotated(&api, &slot, &webhook_url, waits).await
            };
            match done {
                Ok(said) => {
                    println!("{said}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("twenty-admin: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Connect {
            wanted,
            show_secret,
            new_secret,
        } => {
            let api = match api(&sdk) {
                Ok(api) => api,
                Err(code) => return code,
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
            if let (Some(waits), false) = (new_secret, connected.outcome == Outcome::Created) {
                match rotated(&api, &slot, &wanted.webhook_url, waits).await {
                    Ok(said) => println!("{said}"),
                    Err(e) => {
                        eprintln!("twenty-admin: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            }
            if show_secret && let Some(secret) = hook.secret() {
                println!("secret (keep it out of logs): {secret}");
            }
            send_test(&slot, &wanted.webhook_url).await
        }
    }
}

/// The API client, from the settings; exit 2 naming the setting when they are wrong.
fn api(sdk: &LazySdk) -> Result<TwentyApi, ExitCode> {
    let settings = ApiSettings::from_lookup(&|name| std::env::var(name).ok()).map_err(|e| {
        eprintln!("twenty-admin: {e}");
        ExitCode::from(2)
    })?;
    settings
        .client(|| Arc::new(AwsSecretStore::lazy(sdk.clone())))
        .map_err(|e| {
            eprintln!("twenty-admin: {e}");
            ExitCode::from(2)
        })
}

/// A rotation, each step said as it starts; what it ended with.
async fn rotated(
    api: &TwentyApi,
    slot: &StoreSlot,
    url: &str,
    waits: Waits,
) -> Result<String, rotate::RotateError> {
    let step = |what: &str| eprintln!("twenty-admin: {what}");
    Ok(match rotate::rotate(api, slot, url, waits, step).await? {
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
            ..
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
