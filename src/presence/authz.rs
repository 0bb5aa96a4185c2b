//! Authorization by pres-rules (RFC 5025) inside the engine: the decision for one
//! watcher, the re-evaluation of all of a presentity's watchers when its rules or its
//! state change (OpenSIPS refreshWatchers), and the body each watcher gets, built once
//! per distinct permission set.

use std::collections::HashMap;
use std::sync::Arc;

use log::{debug, warn};

use crate::events::package::{EventPackage, Registry};
use crate::events::pidf;
use crate::policy::{self, Decision, Ruleset, SubHandling, Subject, View};
use crate::presence::notify::SubState;
use crate::presence::{Engine, Outgoing, status};
use crate::store::SubscriptionRow;
use crate::store::xcap::doc_type;

/// Bodies already built for this fan-out, one per permission set.
pub(super) type BodyCache = HashMap<View, Option<Arc<Vec<u8>>>>;

/// `sip:alice@example.com` → (`alice`, `example.com`), the xcap table's user key.
pub fn split_aor(uri: &str) -> Option<(&str, &str)> {
    let rest = uri.split_once(':').map_or(uri, |(_, r)| r);
    let (user, host) = rest.split_once('@')?;
    let host = host.split([';', '?', '>']).next().unwrap_or(host);
    (!user.is_empty() && !host.is_empty()).then_some((user, host))
}

/// The subscription status a decision gives (OpenSIPS integers).
pub(super) fn status_of(d: &Decision) -> u8 {
    match d.sub_handling {
        SubHandling::Allow | SubHandling::PoliteBlock => status::ACTIVE,
        SubHandling::Confirm => status::PENDING,
        SubHandling::Block => status::TERMINATED,
    }
}

/// The presentity's rules and RPID sphere, read once per fan-out.
pub(super) struct Policy {
    /// `None`: the package needs no authorization or force_active is on.
    rules: Option<Vec<Ruleset>>,
    sphere: Option<String>,
}

impl Engine {
    /// The rules that govern `presentity`'s watchers of `package`, read once.
    pub(super) fn policy_for(
        &mut self,
        presentity: &str,
        package: &dyn EventPackage,
        state: Option<&[u8]>,
    ) -> Policy {
        if self.config.force_active || !package.needs_authorization() {
            return Policy {
                rules: None,
                sphere: None,
            };
        }
        let mut rules = Vec::new();
        if let Some((user, domain)) = split_aor(presentity) {
            match self
                .store
                .xcap_for_user(user, domain, Some(doc_type::PRES_RULES))
            {
                Ok(docs) => {
                    if docs.is_empty() && self.config.fetch_rules {
                        self.fetch_wanted
                            .insert((user.to_owned(), domain.to_owned()));
                    }
                    for d in docs {
                        match Ruleset::parse(&d.doc) {
                            Ok(r) => rules.push(r),
                            Err(e) => warn!("pres-rules {} of {presentity}: {e}", d.doc_uri),
                        }
                    }
                }
                Err(e) => warn!("store: {e}"),
            }
        }
        Policy {
            rules: Some(rules),
            // RFC 4480 §3.7 / RFC 4745 §7.2: the sphere the presentity is in now.
            sphere: state.and_then(|b| pidf::rpid_spheres(b).into_iter().next()),
        }
    }

    pub(super) fn decide(&self, policy: &Policy, watcher: &str, now: u64) -> Decision {
        match &policy.rules {
            None => Decision::allow_all(),
            Some(rules) => policy::evaluate(
                rules,
                &Subject {
                    watcher,
                    now,
                    sphere: policy.sphere.as_deref(),
                },
            ),
        }
    }

    /// The body a watcher with `view` gets from the shared `state`, built at most once
    /// per distinct view in `cache`.
    pub(super) fn view_body(
        &self,
        state: &Option<Arc<Vec<u8>>>,
        presentity: &str,
        view: &View,
        cache: &mut BodyCache,
    ) -> Option<Arc<Vec<u8>>> {
        if *view == View::Full {
            return state.clone();
        }
        cache
            .entry(view.clone())
            .or_insert_with(|| match (state, view) {
                (_, View::Neutral) => Some(Arc::new(pidf::closed_document(presentity))),
                (Some(body), _) => Some(Arc::new(policy::apply(body, presentity, view))),
                (None, _) => None,
            })
            .clone()
    }

    /// Re-evaluates every subscription of `presentity` to `package` and NOTIFYs: active
    /// ones get the current state as their rules let them see it, pending ones that are
    /// now allowed get their first full state, blocked ones end with `rejected`.
    pub(super) fn fan_out(
        &mut self,
        presentity: &str,
        package: &dyn EventPackage,
        now: u64,
    ) -> Vec<Outgoing> {
        let event = Registry::event_key(package);
        let dialogs = match self.store.subscriptions_to(presentity, &event) {
            Ok(d) => d,
            Err(e) => {
                warn!("store: {e}");
                return Vec::new();
            }
        };
        // Nobody to tell: the aggregate would be built for nothing (the common case for
        // a device publishing before anyone watches it).
        if dialogs.iter().all(|d| d.expires <= now) {
            return Vec::new();
        }
        let state = self.current_state(presentity, package, now);
        let policy = self.policy_for(presentity, package, state.as_deref().map(|b| b.as_slice()));
        let mut cache = BodyCache::new();
        let mut out = Vec::new();
        for d in dialogs {
            if d.expires <= now {
                continue;
            }
            let decision = self.decide(&policy, &d.watcher_uri, now);
            out.extend(self.apply_decision(d, package, &decision, &state, &mut cache, false, now));
        }
        if cache.len() > 1 {
            debug!("{presentity}: {} distinct permission sets", cache.len());
        }
        out
    }

    /// Puts one dialog in the state `decision` gives and sends what that calls for.
    /// `always_notify`: a SUBSCRIBE refresh, which gets a NOTIFY even when pending.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn apply_decision(
        &mut self,
        mut dialog: SubscriptionRow,
        package: &dyn EventPackage,
        decision: &Decision,
        state: &Option<Arc<Vec<u8>>>,
        cache: &mut BodyCache,
        always_notify: bool,
        now: u64,
    ) -> Vec<Outgoing> {
        let new_status = status_of(decision);
        if new_status == status::TERMINATED {
            // RFC 5025 §3.2.1 block: the subscription ends, RFC 6665 §4.2.2 reason rejected.
            return self.terminate(dialog, package, SubState::Terminated("rejected"), None, now);
        }
        let changed = new_status != dialog.status;
        if changed {
            dialog.status = new_status;
            if let Err(e) = self.store.put_subscription(&dialog) {
                warn!("store: {e}");
            }
            let reason = match new_status {
                status::ACTIVE => "approved",
                _ => "subscribe",
            };
            self.set_watcher_status(&dialog, new_status, reason, now);
        } else if dialog.status != status::ACTIVE && !always_notify {
            return Vec::new();
        }
        let body = if dialog.status == status::ACTIVE {
            self.view_body(state, &dialog.presentity_uri, &decision.view, cache)
        } else {
            None
        };
        self.queue_notify(dialog, package, body, now)
    }

    /// OpenSIPS `refreshWatchers <presentity_uri> <event>`: re-reads the presentity's
    /// rules and state and updates its watchers at once. Unknown events do nothing.
    pub fn refresh_watchers(&mut self, presentity: &str, event: &str, now: u64) -> Vec<Outgoing> {
        let Some(package) = self.package_for_key(event) else {
            warn!("refreshWatchers: unknown event {event:?}");
            return Vec::new();
        };
        let mut out = self.fan_out(presentity, package.as_ref(), now);
        out.append(&mut self.pending_out);
        self.durable();
        out
    }

    /// An XCAP document of `username@domain` was written, replaced or removed: rules
    /// changes re-evaluate the presence watchers; a pidf-manipulation change is a
    /// change of state (RFC 4827).
    pub fn xcap_changed(
        &mut self,
        username: &str,
        domain: &str,
        doc: u8,
        now: u64,
    ) -> Vec<Outgoing> {
        let presentity = format!("sip:{username}@{domain}");
        match doc {
            doc_type::PRES_RULES => self.refresh_watchers(&presentity, "presence", now),
            doc_type::PIDF_MANIPULATION if self.config.pidf_manipulation => {
                self.refresh_watchers(&presentity, "presence", now)
            }
            _ => Vec::new(),
        }
    }

    /// Users whose pres-rules were missing when needed, for the XCAP fetcher (when
    /// documents live on external servers). Each is reported once per call.
    pub fn take_fetch_requests(&mut self) -> Vec<(String, String)> {
        std::mem::take(&mut self.fetch_wanted).into_iter().collect()
    }
}
