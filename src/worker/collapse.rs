//! `collapseSeconds`: one delivery per burst of a record's changes. Twenty saves as the
//! user types, so one edit arrives as several `updated` events seconds apart, each with
//! part of the change; a rule that collapses holds them and sends the latest once, with
//! the union of their `updatedFields` and `collapsed` (how many, since when, which).
//!
//! Plain code: `decide` says, from the record's stored bursts and one event, what becomes
//! of the event and what is stored next; `BurstStore` keeps the bursts (`crate::aws` in
//! DynamoDB); `Collapse` does both for one rule. Each member is held in the queue (a
//! deferral: the message's visibility) until the burst is due; the latest member then
//! sends the collapsed envelope under its own id, and the others are done (obsolete).

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::event::Event;
use super::idempotency::{self, Ledger, LedgerFuture};
use crate::adapter::AdapterError;

/// The longest `collapseSeconds`.
pub const MAX_QUIET_SECS: u64 = 900;
/// The longest `collapseMaxSeconds`.
pub const MAX_SPAN_SECS: u64 = 3_600;
/// A burst keeps this many changes at most (its item is rewritten at each one, and a
/// DynamoDB write costs a unit per KB); the next change begins a new burst.
pub const MAX_MEMBERS: usize = 50;

/// A rule's `collapseSeconds` and `collapseMaxSeconds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// A burst is due this long after its last change...
    pub quiet: Duration,
    /// ...and at most this long after its first.
    pub span: Duration,
}

/// One change a burst holds: what `decide` needs of an event.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub id: String,
    /// The record's `updatedAt`, in nanoseconds since the epoch.
    pub at: u64,
    /// The ledger's key of the change (`Event::change`).
    pub key: String,
    pub created: bool,
    pub fields: Vec<String>,
    pub event_date: Option<String>,
}

/// The member with the latest `updatedAt`: the one that sends the burst.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Latest {
    pub id: String,
    pub at: u64,
    pub key: String,
}

/// One burst of a record's changes, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Burst {
    /// The members' envelope ids and `updatedAt`s, in the order they came.
    pub ids: Vec<String>,
    pub ats: Vec<u64>,
    /// The union of their `updatedFields`, in first-seen order.
    pub fields: Vec<String>,
    /// It began with the record's creation.
    pub created: bool,
    /// When its first and last members reached the rule (epoch milliseconds).
    pub first_ms: u64,
    pub last_ms: u64,
    /// The `eventDate` of its earliest change.
    pub first_event_date: Option<String>,
    first_at: u64,
    pub latest: Latest,
}

impl Burst {
    fn new(change: &Change, now_ms: u64) -> Self {
        Self {
            ids: vec![change.id.clone()],
            ats: vec![change.at],
            fields: change.fields.clone(),
            created: change.created,
            first_ms: now_ms,
            last_ms: now_ms,
            first_event_date: change.event_date.clone(),
            first_at: change.at,
            latest: Latest {
                id: change.id.clone(),
                at: change.at,
                key: change.key.clone(),
            },
        }
    }

    /// When it is sent: `quiet` after its last member, `span` after its first at most.
    pub fn due_ms(&self, window: Window) -> u64 {
        let quiet = self.last_ms + window.quiet.as_millis() as u64;
        let span = self.first_ms + window.span.as_millis() as u64;
        quiet.min(span)
    }

    fn join(&mut self, change: &Change, now_ms: u64) {
        self.ids.push(change.id.clone());
        self.ats.push(change.at);
        for field in &change.fields {
            if !self.fields.contains(field) {
                self.fields.push(field.clone());
            }
        }
        // A creation is a record's first change, whenever it arrives.
        self.created |= change.created;
        self.last_ms = now_ms;
        if change.at < self.first_at {
            self.first_at = change.at;
            self.first_event_date = change.event_date.clone();
        }
        if change.at > self.latest.at {
            self.latest = Latest {
                id: change.id.clone(),
                at: change.at,
                key: change.key.clone(),
            };
        }
    }

    /// What the envelope of its latest member gains (or has replaced) to stand for it.
    pub fn fields_for(&self, object: &str, action: &str) -> Map<String, Value> {
        let mut out = Map::new();
        if !self.fields.is_empty() {
            out.insert("updatedFields".into(), json!(self.fields));
        }
        if self.created && action != "created" {
            out.insert("eventName".into(), json!(format!("{object}.created")));
            out.insert("action".into(), json!("created"));
        }
        out.insert(
            "collapsed".into(),
            json!({
                "count": self.ids.len(),
                "firstEventDate": self.first_event_date,
                "ids": self.ids,
            }),
        );
        out
    }
}

/// What the worker keeps of one record for one rule: the burst being gathered, and the
/// one before it, until its latest member has come back to send it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Bursts {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<Burst>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<Burst>,
}

/// What becomes of an event, as `decide` sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Send it: as the burst it is the latest of, or as it is (None).
    Send(Option<Burst>),
    /// Held back this long, then asked again.
    Hold(Duration),
    /// Another delivery stands for it: done. `mark`: record it done in the ledger (not for
    /// a twin of the sender, whose key is the sender's).
    Obsolete { mark: bool },
    /// A deletion, destruction or restore: sent once the open burst's latest change (its
    /// ledger key) is, or when `until_ms` has passed.
    AfterLatest { key: String, until_ms: u64 },
}

/// Held messages come back no sooner than this: SQS's visibility is whole seconds.
fn hold(from_ms: u64, to_ms: u64) -> Verdict {
    let ms = to_ms.saturating_sub(from_ms).max(1);
    Verdict::Hold(Duration::from_secs(ms.div_ceil(1000)))
}

/// What becomes of `change`, given the record's stored bursts at `now_ms`; and the bursts
/// to store next, None when they stay.
pub fn decide(
    stored: Option<&Bursts>,
    change: &Change,
    now_ms: u64,
    window: Window,
) -> (Verdict, Option<Bursts>) {
    let stored = stored.cloned().unwrap_or_default();
    let open = |b: &Burst| now_ms < b.due_ms(window) && b.ids.len() < MAX_MEMBERS;
    // A member coming back from its hold.
    let slots = [(&stored.current, true), (&stored.previous, false)];
    for (slot, is_current) in slots {
        let Some(burst) = slot else { continue };
        if burst.ids.contains(&change.id) {
            let verdict = if burst.latest.id != change.id {
                Verdict::Obsolete { mark: true }
            } else if is_current && now_ms < burst.due_ms(window) {
                hold(now_ms, burst.due_ms(window))
            } else {
                Verdict::Send(Some(burst.clone()))
            };
            return (verdict, None);
        }
        // The same change under another id (a reconciled twin): its first id stands for it.
        if burst.ats.contains(&change.at) {
            let mark = burst.latest.at != change.at;
            return (Verdict::Obsolete { mark }, None);
        }
    }
    let mut next = stored.clone();
    match stored.current {
        Some(mut burst) if open(&burst) => {
            burst.join(change, now_ms);
            let verdict = if burst.latest.id == change.id {
                hold(now_ms, burst.due_ms(window))
            } else {
                // Older than the latest member, which sends the burst with its fields.
                Verdict::Obsolete { mark: true }
            };
            next.current = Some(burst);
            (verdict, Some(next))
        }
        // Older than a burst already due: that burst's later state is what is sent.
        Some(burst) if change.at <= burst.latest.at => (Verdict::Obsolete { mark: true }, None),
        current => {
            let burst = Burst::new(change, now_ms);
            let verdict = hold(now_ms, burst.due_ms(window));
            next.previous = current;
            next.current = Some(burst);
            (verdict, Some(next))
        }
    }
}

/// What a deletion, destruction or restore waits for: the open burst, sent first.
pub fn decide_end(stored: Option<&Bursts>, now_ms: u64, window: Window) -> Verdict {
    match stored.and_then(|s| s.current.as_ref()) {
        Some(burst) if now_ms < burst.due_ms(window) => hold(now_ms, burst.due_ms(window)),
        Some(burst) => Verdict::AfterLatest {
            key: burst.latest.key.clone(),
            until_ms: burst.due_ms(window) + window.span.as_millis() as u64,
        },
        None => Verdict::Send(None),
    }
}

/// Where a rule keeps its records' bursts.
pub trait BurstStore: Send + Sync + 'static {
    /// The bursts stored under `key` and their version, read consistently.
    fn load<'a>(&'a self, key: &'a str) -> LedgerFuture<'a, Option<(Bursts, u64)>>;
    /// Stores `bursts` as `version`, unless the stored version is no longer `version - 1`
    /// (another worker wrote in between): false then.
    fn save<'a>(&'a self, key: &'a str, bursts: &'a Bursts, version: u64)
    -> LedgerFuture<'a, bool>;
}

/// A race lost to another worker's write is read again and decided again, this often.
const TRIES: usize = 3;

/// What the router does with an event for a collapsing rule.
#[derive(Debug)]
pub enum Step {
    Send(Arc<Event>),
    Hold(Duration),
    /// Done: another delivery stands for it; the ledger key to record done, if any.
    Obsolete(Option<String>),
}

/// One rule's `collapseSeconds`: its bursts, under its name.
#[derive(Clone)]
pub struct Collapse {
    store: Arc<dyn BurstStore>,
    rule: Arc<str>,
    window: Window,
}

impl Collapse {
    pub fn new(store: Arc<dyn BurstStore>, rule: &str, window: Window) -> Self {
        Self {
            store,
            rule: Arc::from(rule),
            window,
        }
    }

    /// What becomes of `event` for this rule; `ledger` says whether an open burst's
    /// latest change is sent, for a deletion waiting on it.
    pub async fn step<L: Ledger + ?Sized>(
        &self,
        event: &Arc<Event>,
        ledger: &L,
    ) -> Result<Step, AdapterError> {
        let as_is = || Ok(Step::Send(event.clone()));
        // A held FIFO message would hold its whole group: such queues are refused at start.
        if event
            .received
            .as_ref()
            .is_some_and(|r| r.group_id.is_some())
        {
            return as_is();
        }
        let Some(key) = event.record_key(&self.rule) else {
            return as_is();
        };
        let now_ms = crate::clock::now_ms();
        match event.action.as_str() {
            "created" | "updated" => {}
            "deleted" | "destroyed" | "restored" => {
                let stored = self.store.load(&key).await?.map(|(b, _)| b);
                return match decide_end(stored.as_ref(), now_ms, self.window) {
                    Verdict::Hold(wait) => Ok(Step::Hold(wait)),
                    Verdict::AfterLatest { key, until_ms } => {
                        let sent = ledger.done(&idempotency::key(&key, &self.rule)).await?;
                        if sent || now_ms >= until_ms {
                            as_is()
                        } else {
                            Ok(Step::Hold(Duration::from_secs(1)))
                        }
                    }
                    _ => as_is(),
                };
            }
            _ => return as_is(),
        }
        let Some(change) = change_of(event) else {
            return as_is();
        };
        for _ in 0..TRIES {
            let stored = self.store.load(&key).await?;
            let (bursts, version) = match &stored {
                Some((b, v)) => (Some(b), *v),
                None => (None, 0),
            };
            let (verdict, next) = decide(bursts, &change, crate::clock::now_ms(), self.window);
            if let Some(next) = next
                && !self.store.save(&key, &next, version + 1).await?
            {
                continue;
            }
            return Ok(match verdict {
                Verdict::Send(None) => Step::Send(event.clone()),
                Verdict::Send(Some(burst)) => Step::Send(Arc::new(collapsed(event, &burst))),
                Verdict::Hold(wait) => Step::Hold(wait),
                Verdict::Obsolete { mark } => {
                    Step::Obsolete(mark.then(|| idempotency::key(&change.key, &self.rule)))
                }
                Verdict::AfterLatest { .. } => Step::Send(event.clone()),
            });
        }
        Err(AdapterError::Throttled(format!(
            "the record's burst changed under {TRIES} tries"
        )))
    }
}

/// What a burst needs of `event`: None for one without a record change to key it on.
fn change_of(event: &Event) -> Option<Change> {
    let envelope = event.json()?;
    let record = envelope.get("record")?.as_object()?;
    Some(Change {
        id: event.id.clone(),
        at: super::previous::updated_at(record)?,
        key: event.change.clone()?,
        created: event.action == "created",
        fields: event.updated_fields(),
        event_date: envelope
            .get("eventDate")
            .and_then(Value::as_str)
            .map(str::to_owned),
    })
}

/// `event` (the burst's latest member) standing for the whole burst.
fn collapsed(event: &Event, burst: &Burst) -> Event {
    let mut out = event.with_fields(burst.fields_for(&event.object_name, &event.action));
    if burst.created {
        out.event_name = format!("{}.created", event.object_name);
        out.action = "created".to_owned();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: Window = Window {
        quiet: Duration::from_secs(2),
        span: Duration::from_secs(8),
    };

    fn change(id: &str, at: u64, fields: &[&str]) -> Change {
        Change {
            id: id.into(),
            at,
            key: format!("person:r@{at}"),
            created: false,
            fields: fields.iter().map(|f| (*f).to_owned()).collect(),
            event_date: Some(format!("T{at}")),
        }
    }

    /// Runs `changes` (each with its arrival time) through `decide`, storing as it goes.
    fn run(stored: &mut Option<Bursts>, c: &Change, now: u64) -> Verdict {
        let (verdict, next) = decide(stored.as_ref(), c, now, W);
        if let Some(next) = next {
            *stored = Some(next);
        }
        verdict
    }

    #[test]
    fn a_burst_is_sent_once_by_its_latest_member_with_every_field() {
        let mut s = None;
        let c: Vec<Change> = (1..=5)
            .map(|i| {
                change(
                    &format!("e{i}"),
                    i,
                    &[["name", "job", "name", "email", "job"][i as usize - 1]],
                )
            })
            .collect();
        for (i, member) in c.iter().enumerate() {
            let now = 1_000 + 300 * i as u64;
            assert_eq!(
                run(&mut s, member, now),
                Verdict::Hold(Duration::from_secs(2))
            );
        }
        // The first comes back: a later change stands for it.
        assert_eq!(run(&mut s, &c[0], 3_000), Verdict::Obsolete { mark: true });
        // The latest comes back before the burst is due (2 s after the last): held again.
        assert_eq!(
            run(&mut s, &c[4], 3_300),
            Verdict::Hold(Duration::from_secs(1))
        );
        let Verdict::Send(Some(burst)) = run(&mut s, &c[4], 4_200) else {
            panic!("the latest sends")
        };
        assert_eq!(burst.ids, ["e1", "e2", "e3", "e4", "e5"]);
        assert_eq!(burst.fields, ["name", "job", "email"]);
        assert_eq!(burst.first_event_date.as_deref(), Some("T1"));
        // Sent again after a crash: the same burst.
        assert_eq!(run(&mut s, &c[4], 9_000), Verdict::Send(Some(burst)));
    }

    #[test]
    fn changes_further_apart_than_the_window_are_separate_and_older_ones_obsolete() {
        let mut s = None;
        let (a, b) = (change("a", 1, &["x"]), change("b", 2, &["y"]));
        run(&mut s, &a, 0);
        // b comes after a's burst is due, before a came back: a's burst stays, as previous.
        assert!(matches!(run(&mut s, &b, 3_000), Verdict::Hold(_)));
        let Verdict::Send(Some(first)) = run(&mut s, &a, 3_100) else {
            panic!("a sends its own burst")
        };
        assert_eq!(first.ids, ["a"]);
        let Verdict::Send(Some(second)) = run(&mut s, &b, 5_100) else {
            panic!("b sends its own")
        };
        assert_eq!(second.ids, ["b"]);
        // An older change arriving after b's burst is due: b's later state stands for it.
        assert_eq!(
            run(&mut s, &change("old", 0, &["z"]), 6_000),
            Verdict::Obsolete { mark: true }
        );
        // A twin of b (same change, another id): done, and not marked (b's key is its).
        assert_eq!(
            run(&mut s, &change("b-twin", 2, &["y"]), 6_000),
            Verdict::Obsolete { mark: false }
        );
    }

    #[test]
    fn a_creation_names_the_burst_and_the_span_bounds_it() {
        let mut s = None;
        let mut created = change("c", 1, &[]);
        created.created = true;
        run(&mut s, &created, 0);
        run(&mut s, &change("u", 2, &["name"]), 500);
        let burst = s.as_ref().and_then(|b| b.current.clone()).unwrap();
        let fields = burst.fields_for("person", "updated");
        assert_eq!(fields["action"], "created");
        assert_eq!(fields["eventName"], "person.created");
        assert_eq!(fields["updatedFields"], json!(["name"]));
        assert_eq!(fields["collapsed"]["count"], 2);
        // A change every second keeps it open, but no longer than the span.
        let mut s = None;
        for i in 0..8 {
            assert!(matches!(
                run(&mut s, &change(&format!("k{i}"), i + 1, &["f"]), i * 1_000),
                Verdict::Hold(_)
            ));
        }
        assert!(matches!(
            run(&mut s, &change("k8", 9, &["f"]), 8_000),
            Verdict::Hold(_)
        ));
        let b = s.unwrap();
        assert_eq!(
            b.current.unwrap().ids,
            ["k8"],
            "the span closed the first burst"
        );
        assert_eq!(b.previous.unwrap().ids.len(), 8);
    }

    #[test]
    fn a_deletion_waits_for_the_open_burst() {
        let mut s = None;
        run(&mut s, &change("u", 1, &["name"]), 0);
        assert_eq!(
            decide_end(s.as_ref(), 500, W),
            Verdict::Hold(Duration::from_secs(2))
        );
        assert_eq!(
            decide_end(s.as_ref(), 2_500, W),
            Verdict::AfterLatest {
                key: "person:r@1".into(),
                until_ms: 10_000
            }
        );
        assert_eq!(decide_end(None, 0, W), Verdict::Send(None));
    }
}
