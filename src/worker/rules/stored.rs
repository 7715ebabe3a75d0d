//! The router in force: the handlers given at start-up, plus forwarding rules that may be
//! kept in a store (`FORWARD_RULES_PARAMETER` / `_SECRET_ID`: they hold destinations'
//! secrets) and change there without a redeploy.

use std::sync::{Arc, Mutex, PoisonError};

use super::{Rule, parse_rules};
use crate::secrets::Rotating;
use crate::worker::forward::Forwarder;
use crate::worker::router::Router;

/// Routers are shared, not copied: each message takes an `Arc`, not a copy of the routes.
pub struct Routes {
    base: Arc<Router>,
    stored: Option<StoredRules>,
}

struct StoredRules {
    rules: Rotating<Vec<Rule>>,
    forwarder: Forwarder,
    built: Mutex<Built>,
}

/// The router last built, and from which rules: rebuilt only when they change. Rules that
/// did not fit the handlers are kept with the reason, so they are not tried again.
#[derive(Default)]
struct Built {
    router: Option<(Arc<Vec<Rule>>, Arc<Router>)>,
    refused: Option<(Arc<Vec<Rule>>, String)>,
}

impl From<Router> for Routes {
    fn from(base: Router) -> Self {
        Self {
            base: Arc::new(base),
            stored: None,
        }
    }
}

/// How stored rules are read: as `FORWARD_RULES` is, the reason naming the rule, never a
/// value.
pub fn parse_stored_rules(text: &str) -> Result<Vec<Rule>, String> {
    parse_rules(text).map_err(|e| e.to_string())
}

impl Routes {
    /// `base` plus one forwarding handler per rule of `rules`, read when first needed.
    /// `forwarder` carries the breakers and paces the rules' destinations share.
    pub fn with_stored_rules(
        base: Router,
        rules: Rotating<Vec<Rule>>,
        forwarder: Forwarder,
    ) -> Self {
        Self {
            base: Arc::new(base),
            stored: Some(StoredRules {
                rules,
                forwarder,
                built: Mutex::new(Built::default()),
            }),
        }
    }

    /// The router to use now: built from the stored rules, or, when the latest ones could
    /// not be read or applied, from the last good ones (`not_applied` says why). Errs
    /// (with a reason to log) only when no stored rules were ever applied.
    pub async fn current(&self) -> Result<Arc<Router>, String> {
        let Some(stored) = &self.stored else {
            return Ok(Arc::clone(&self.base));
        };
        let rules = stored.rules.current().await.map_err(|e| e.to_string())?;
        let mut built = stored.built.lock().unwrap_or_else(PoisonError::into_inner);
        let in_force = |built: &Built| built.router.as_ref().map(|(_, r)| Arc::clone(r));
        if let Some((seen, router)) = &built.router
            && Arc::ptr_eq(seen, &rules)
        {
            return Ok(Arc::clone(router));
        }
        if let Some((refused, why)) = &built.refused
            && Arc::ptr_eq(refused, &rules)
        {
            return in_force(&built).ok_or_else(|| why.clone());
        }
        match stored
            .forwarder
            .clone()
            .add_rules(Router::clone(&self.base), rules.as_ref().clone())
        {
            Ok(router) => {
                let router = Arc::new(router);
                built.router = Some((rules, Arc::clone(&router)));
                built.refused = None;
                Ok(router)
            }
            Err(e) => {
                let why = format!("the stored forwarding rules: {e}");
                tracing::warn!(reason = %why, kept = built.router.is_some(), "stored forwarding rules not applied");
                built.refused = Some((rules, why.clone()));
                in_force(&built).ok_or(why)
            }
        }
    }

    /// Why the rules in the store are not the ones in force, when they are not: the last
    /// read failed or found them invalid, or they do not fit the handlers given at
    /// start-up. None without stored rules.
    pub fn not_applied(&self) -> Option<String> {
        let stored = self.stored.as_ref()?;
        if let Some(e) = stored.rules.last_error() {
            return Some(e.to_string());
        }
        let built = stored.built.lock().unwrap_or_else(PoisonError::into_inner);
        built.refused.as_ref().map(|(_, why)| why.clone())
    }
}
