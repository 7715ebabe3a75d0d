//! The router in force: the handlers given at start-up, plus forwarding rules that may be
//! kept in a store (`FORWARD_RULES_PARAMETER` / `_SECRET_ID`: they hold destinations'
//! secrets) and change there without a redeploy.

use std::sync::{Arc, Mutex, PoisonError};

use super::forward::{Rule, parse_rules};
use super::forwarder::Forwarder;
use super::router::Router;
use crate::secrets::Rotating;

/// Routers are shared, not copied: each message takes an `Arc`, not a copy of the routes.
pub struct Routes {
    base: Arc<Router>,
    stored: Option<StoredRules>,
}

struct StoredRules {
    rules: Rotating<Vec<Rule>>,
    forwarder: Forwarder,
    /// The router last built, and from which rules: rebuilt only when they change.
    built: Mutex<Option<Built>>,
}

/// A router, and the rules it was built from.
type Built = (Arc<Vec<Rule>>, Arc<Router>);

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
                built: Mutex::new(None),
            }),
        }
    }

    /// The router to use now; errs (with a reason to log) when the stored rules cannot be
    /// read or do not fit the handlers given at start-up.
    pub async fn current(&self) -> Result<Arc<Router>, String> {
        let Some(stored) = &self.stored else {
            return Ok(Arc::clone(&self.base));
        };
        let rules = stored.rules.current().await.map_err(|e| e.to_string())?;
        let mut built = stored.built.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((seen, router)) = &*built
            && Arc::ptr_eq(seen, &rules)
        {
            return Ok(Arc::clone(router));
        }
        let router = stored
            .forwarder
            .clone()
            .add_rules(Router::clone(&self.base), rules.as_ref().clone())
            .map(Arc::new)
            .map_err(|e| format!("the stored forwarding rules: {e}"))?;
        *built = Some((rules, Arc::clone(&router)));
        Ok(router)
    }
}
