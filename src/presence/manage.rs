//! What management asks of the engine (`presenced ctl`): a PUBLISH made by the server
//! itself for scripts and voicemail systems without SIP (OpenSIPS `pua_mi`), ending one
//! subscription with its terminated NOTIFY, and an expiry and housekeeping round now.
//! Each goes through the same paths as the SIP requests and timers that do the same.

use serde::Serialize;

use super::Engine;
use super::subscription::{Body, Reason};
use crate::sip::message::{Request, Response};

/// What a subscription that management ended was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Terminated {
    pub presentity: String,
    pub watcher: String,
    pub event: String,
    pub reason: &'static str,
}

/// Rows a cleanup round removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Cleaned {
    pub publications: u64,
    pub subscriptions: u64,
    pub watchers: u64,
}

impl Engine {
    /// A PUBLISH the server makes for `req`'s Request-URI: checked and stored like one
    /// from the network, with the watchers told.
    pub fn publish_local(&mut self, req: &Request, now: u64) -> Response {
        self.publish(req, now)
    }

    /// Ends the dialog (Call-ID, To tag = ours, From tag = the watcher's) with a
    /// terminated NOTIFY carrying `reason` (RFC 6665 §4.2.2); `None` when no such
    /// dialog is stored.
    pub fn terminate_subscription(
        &mut self,
        call_id: &str,
        to_tag: &str,
        from_tag: &str,
        reason: Reason,
        now: u64,
    ) -> Option<Terminated> {
        let row = match self.store.get_subscription(call_id, to_tag, from_tag) {
            Ok(Some(row)) => row,
            Ok(None) => return None,
            Err(e) => {
                log::warn!("store: {e}");
                return None;
            }
        };
        let sub = self.take_subscription(row)?;
        let done = Terminated {
            presentity: sub.resource().to_owned(),
            watcher: sub.watcher().to_owned(),
            event: sub.event().to_owned(),
            reason: reason.as_str(),
        };
        log::info!(
            "subscription of {} to {} ({}) terminated by management ({})",
            done.watcher,
            done.presentity,
            done.event,
            done.reason
        );
        self.end(sub, reason, Body::None, now);
        Some(done)
    }

    /// Everything due at `now` expires and the housekeeping round runs, without
    /// waiting for their timers.
    pub fn cleanup(&mut self, now: u64) -> Cleaned {
        let before = (
            self.store.publications_count(),
            self.store.subscriptions_count(),
            self.store.watchers_count(),
        );
        self.expire(now);
        self.housekeeping(now);
        Cleaned {
            publications: before.0.saturating_sub(self.store.publications_count()),
            subscriptions: before.1.saturating_sub(self.store.subscriptions_count()),
            watchers: before.2.saturating_sub(self.store.watchers_count()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::EngineConfig;
    use super::*;
    use crate::events::mwi::MessageSummary;
    use crate::events::package::{EventPackage, Registry};
    use crate::mgmt::inspect::LocalPublish;
    use crate::store::{Store, StoreOptions};

    fn engine() -> Engine {
        let store = Store::open_temporary(StoreOptions::default()).unwrap();
        let mut packages = Registry::new();
        packages.register(Arc::new(MessageSummary { owner_only: true }));
        Engine::new(store, packages, EngineConfig::default())
    }

    fn summary(expires: u32) -> Request {
        LocalPublish {
            uri: "sip:alice@example.com".into(),
            // The engine's own tests take the package's name from the package.
            event: MessageSummary { owner_only: true }.name().into(),
            content_type: None,
            body: "Messages-Waiting: yes\r\n".into(),
            expires,
            etag: None,
        }
        .request("t1")
        .unwrap()
    }

    #[test]
    fn cleanup_removes_what_is_due_and_nothing_else() {
        let mut e = engine();
        assert_eq!(e.publish_local(&summary(60), 1000).status, 200);
        assert_eq!(e.publish_local(&summary(600), 1000).status, 200);
        assert_eq!(e.cleanup(1030), Cleaned::default());
        let done = e.cleanup(1061);
        assert_eq!(done.publications, 1, "{done:?}");
        assert_eq!(e.store.publications_count(), 1);
    }

    #[test]
    fn terminating_an_unknown_dialog_says_so() {
        let mut e = engine();
        assert_eq!(
            e.terminate_subscription("nope", "a", "b", Reason::Deactivated, 1000),
            None
        );
    }
}
