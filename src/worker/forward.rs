//! Forwarding rules as router handlers: each rule's target, built with the worker's
//! clients, behind the rule's breaker and pace.

use std::sync::Arc;
use std::time::Duration;

use super::collapse::{BurstStore, Collapse};
use super::error::HandlerError;
use super::event::Event;
use super::guard::{BreakerSettings, Breakers, Gate, Pacer};
use super::idempotency::Mode;
use super::previous::{Previous, RecordStates};
use super::router::{RouteError, Router, Selection};
use super::rules::Rule;
use super::targets::http::HttpClient;
use super::targets::{Clients, Delivery};

/// Makes each rule a handler: its target, behind its breaker and pace.
#[derive(Clone)]
pub struct Forwarder {
    breakers: Arc<Breakers>,
    pacer: Arc<Pacer>,
    clients: Clients,
    /// Where `includePrevious` keeps records' states: the idempotency table.
    states: Option<Arc<dyn RecordStates>>,
    /// Where `collapseSeconds` keeps records' bursts: the idempotency table.
    bursts: Option<Arc<dyn BurstStore>>,
    /// The worker reads a FIFO queue, where a held message would hold its whole group.
    fifo: bool,
    /// `IDEMPOTENCY_MODE`: one mode for every rule, or None (`auto`): each target's own.
    mode: Option<Mode>,
}

impl Default for Forwarder {
    /// Breakers and paces kept in this process, with the default settings; HTTP only.
    fn default() -> Self {
        Self::new(
            Arc::new(Breakers::local(BreakerSettings::default())),
            Arc::new(Pacer::local()),
        )
    }
}

impl Forwarder {
    /// HTTP targets only, until `with_clients` gives the others theirs.
    pub fn new(breakers: Arc<Breakers>, pacer: Arc<Pacer>) -> Self {
        Self {
            breakers,
            pacer,
            // One HTTP client for every rule, so they share its connections.
            clients: Clients::default().with(Arc::new(HttpClient::default())),
            states: None,
            bursts: None,
            fifo: false,
            mode: None,
        }
    }

    /// With where `collapseSeconds` keeps records' bursts; without, such a rule is refused.
    pub fn with_bursts(mut self, bursts: Arc<dyn BurstStore>) -> Self {
        self.bursts = Some(bursts);
        self
    }

    /// Every rule's sends guarded by `mode`; None (`auto`, the default): `Mode::Lean` for a
    /// target that acts once per delivery id (HTTP), `Mode::Strict` for the others.
    pub fn with_mode(mut self, mode: Option<Mode>) -> Self {
        self.mode = mode;
        self
    }

    /// Reading a FIFO queue: a rule with `collapseSeconds` is refused.
    pub fn on_fifo(mut self, fifo: bool) -> Self {
        self.fifo = fifo;
        self
    }

    /// With where `includePrevious` keeps records' states; without, such a rule is refused.
    pub fn with_states(mut self, states: Arc<dyn RecordStates>) -> Self {
        self.states = Some(states);
        self
    }

    /// With the clients that other kinds of target call (`crate::aws::target_clients`).
    pub fn with_clients(mut self, clients: Clients) -> Self {
        self.clients = clients.or(&self.clients);
        self
    }

    /// A router with one handler per rule, named after it.
    pub fn router(self, rules: Vec<Rule>) -> Result<Router, RouteError> {
        self.add_rules(Router::new(), rules)
    }

    /// `router` with one more handler per rule, named after it.
    pub fn add_rules(self, router: Router, rules: Vec<Rule>) -> Result<Router, RouteError> {
        rules.into_iter().try_fold(router, |router, rule| {
            let target =
                rule.target
                    .build(&self.clients)
                    .map_err(|service| RouteError::NoClient {
                        name: rule.name.clone(),
                        service: service.to_owned(),
                    })?;
            let patterns: Vec<&str> = rule.events.iter().map(String::as_str).collect();
            let mode = self.mode.unwrap_or(if rule.target.acts_once_per_id() {
                Mode::Lean
            } else {
                Mode::Strict
            });
            let mut selection = Selection::events(&patterns).mode(mode);
            if let Some(filter) = rule.filter.clone() {
                selection = selection.filter(filter);
            }
            if rule.include_previous {
                let states = in_table(&self.states, &rule, "includePrevious")?;
                selection = selection.previous(Previous::new(states, &rule.name));
            }
            if let Some(window) = rule.collapse {
                if self.fifo {
                    return Err(RouteError::CollapseOnFifo(rule.name.clone()));
                }
                let bursts = in_table(&self.bursts, &rule, "collapseSeconds")?;
                selection = selection.collapse(Collapse::new(bursts, &rule.name, window));
            }
            let pace = rule.max_per_second.map(|n| (self.pacer.clone(), n));
            let gate = Arc::new(Gate::new(&rule.name, self.breakers.clone(), pace));
            let name: Arc<str> = Arc::from(rule.name.as_str());
            let (timeout, retry_all_errors) = (rule.timeout, rule.retry_all_errors);
            let transform = rule.transform.clone();
            router.on_gated(&rule.name, selection, Some(gate), move |event| {
                let (target, rule, transform) = (target.clone(), name.clone(), transform.clone());
                async move {
                    let Some(timeout) = time_for(&event, timeout) else {
                        return Err(HandlerError::deferred(
                            "no time left in this invocation",
                            Duration::ZERO,
                        ));
                    };
                    let transformed = match &transform {
                        None => None,
                        Some(t) => match event.json() {
                            Some(envelope) => Some(t.apply(envelope, &rule)),
                            None => {
                                return Err(HandlerError::permanent(
                                    "transform: the envelope is not JSON",
                                ));
                            }
                        },
                    };
                    let delivery = Delivery {
                        event,
                        mode,
                        rule,
                        timeout,
                        retry_all_errors,
                        transformed,
                    };
                    target.deliver(delivery).await
                }
            })
        })
    }
}

/// What a rule's `setting` keeps in the idempotency table; refused without the table.
fn in_table<T: ?Sized>(
    kept: &Option<Arc<T>>,
    rule: &Rule,
    setting: &str,
) -> Result<Arc<T>, RouteError> {
    kept.clone().ok_or_else(|| RouteError::NoClient {
        name: rule.name.clone(),
        service: format!("the idempotency table (IDEMPOTENCY_TABLE) for {setting}"),
    })
}

/// The time a call may take: the rule's, or less when the invocation has less left.
/// None when nothing is left.
fn time_for(event: &Event, rule_timeout: Duration) -> Option<Duration> {
    let timeout = match event.time_left() {
        Some(left) if left < rule_timeout => left,
        _ => rule_timeout,
    };
    (!timeout.is_zero()).then_some(timeout)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worker::rules::parse_rules;

    #[test]
    fn include_previous_needs_the_table_and_a_boolean() {
        let rules = parse_rules(
            r#"[{"name":"won","events":["*"],"url":"https://example.com/h","includePrevious":true}]"#,
        )
        .unwrap();
        let refused = Forwarder::default()
            .router(rules)
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            refused.as_deref(),
            Some(
                "rule \"won\" needs the idempotency table (IDEMPOTENCY_TABLE) for includePrevious, and the worker has no client for it"
            )
        );
        let bad = parse_rules(
            r#"[{"name":"won","events":["*"],"url":"https://example.com/h","includePrevious":"yes"}]"#,
        );
        assert_eq!(
            bad.unwrap_err().to_string(),
            "rule 1 (won): `includePrevious` must be true or false"
        );
    }

    #[test]
    fn collapsing_is_checked_at_start_up() {
        let rule = |extra: &str| {
            parse_rules(&format!(
                r#"[{{"name":"b","events":["*"],"url":"https://example.com/h"{extra}}}]"#
            ))
            .map_err(|e| e.to_string())
        };
        let window = rule(r#","collapseSeconds":2"#).unwrap()[0].collapse;
        assert_eq!(
            window.map(|w| (w.quiet.as_secs(), w.span.as_secs())),
            Some((2, 8)),
            "the span is 4 × by default"
        );
        assert!(
            rule(r#","collapseSeconds":0"#).unwrap()[0]
                .collapse
                .is_none()
        );
        for (extra, why) in [
            (
                r#","collapseSeconds":901"#,
                "`collapseSeconds` must be whole seconds from 0 to 900",
            ),
            (
                r#","collapseSeconds":1.5"#,
                "`collapseSeconds` must be whole seconds from 0 to 900",
            ),
            (
                r#","collapseMaxSeconds":9"#,
                "`collapseMaxSeconds` needs `collapseSeconds` above 0",
            ),
            (
                r#","collapseSeconds":5,"collapseMaxSeconds":4"#,
                "`collapseMaxSeconds` must be at least `collapseSeconds`",
            ),
            (
                r#","collapseSeconds":5,"includePrevious":true"#,
                "`collapseSeconds` and `includePrevious` cannot be used together (yet)",
            ),
        ] {
            assert_eq!(rule(extra).unwrap_err(), format!("rule 1 (b): {why}"));
        }
        let rules = rule(r#","collapseSeconds":2"#).unwrap();
        let on_fifo = Forwarder::default().on_fifo(true).router(rules.clone());
        assert!(matches!(on_fifo, Err(RouteError::CollapseOnFifo(name)) if name == "b"));
        let no_table = Forwarder::default().router(rules);
        assert!(matches!(no_table, Err(RouteError::NoClient { .. })));
    }

    #[test]
    fn the_zapier_example_in_the_docs_is_a_rule_that_gives_what_it_says() {
        let docs = include_str!("../../docs/worker.md");
        let start = docs.find(r#"{"name": "zapier-contact""#).unwrap();
        let end = start + docs[start..].find("\n```").unwrap();
        let rules = parse_rules(&format!("[{}]", &docs[start..end])).unwrap();
        let window = rules[0].collapse.unwrap();
        assert_eq!((window.quiet.as_secs(), window.span.as_secs()), (30, 300));
        let sent = serde_json::json!({
            "recordId": "p1", "action": "created",
            "record": {"name": {"firstName": "Ada"}, "emails": {"primaryEmail": "a@x.io"}},
            "updatedFields": ["name", "jobTitle", "emails"],
            "collapsed": {"count": 3, "firstEventDate": "T", "ids": ["a", "b", "c"]}
        });
        let body = rules[0]
            .transform
            .as_ref()
            .unwrap()
            .apply(&sent, "zapier-contact");
        let got: serde_json::Value = serde_json::from_str(&body.text).unwrap();
        assert_eq!(
            got,
            serde_json::json!({"id": "p1", "firstName": "Ada", "email": "a@x.io",
                "action": "created", "changed": ["name", "jobTitle", "emails"], "edits": 3})
        );
    }
}
