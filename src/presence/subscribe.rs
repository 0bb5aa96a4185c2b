//! SUBSCRIBE (RFC 6665 §4.2.1): a new subscription creates a dialog, an in-dialog
//! request refreshes or ends it, an out-of-dialog Expires: 0 is a fetch. Whether the
//! watcher may subscribe is the package's rules' decision (`state`).

use std::sync::Arc;

use log::warn;

use super::subscription::{Body, Reason, Status, Subscription};
use super::{Action, Engine};
use crate::auth::Identity;
use crate::events::package::{EventPackage, Handling, Registry};
use crate::sip::dialog::DialogId;
use crate::sip::endpoint::{ConnId, Source, TransportKind, random_token};
use crate::sip::header::NameAddr;
use crate::sip::message::{Request, Response};
use crate::store::{SubscriptionRow, Watcher};

/// What an in-dialog SUBSCRIBE carries.
struct Refresh {
    id: DialogId,
    package: Arc<dyn EventPackage>,
    event_id: Option<String>,
    expires: u32,
    remote_cseq: u32,
    contact: Option<NameAddr>,
    conn: Option<ConnId>,
    /// The authenticated identity asking, when there is one: only the dialog's own
    /// watcher may refresh or end it.
    identity: Option<String>,
}

impl Engine {
    /// The package an Event header names, or the 489 answer (RFC 6665 §8.3.1).
    pub(super) fn package_of(&self, req: &Request) -> Result<Arc<dyn EventPackage>, Response> {
        match req.headers.event() {
            Ok(Some(ev)) => self
                .packages
                .find(&ev)
                .cloned()
                .ok_or_else(|| self.bad_event(req)),
            _ => Err(self.bad_event(req)),
        }
    }

    pub(super) fn bad_event(&self, req: &Request) -> Response {
        let mut r = Response::for_request(req, 489, None);
        r.headers
            .push("Allow-Events", self.packages.allow_events().join(", "));
        r
    }

    /// `identity` is who asks (see `auth`): the watcher, whatever From says.
    pub(super) fn subscribe(
        &mut self,
        req: &Request,
        source: &Source,
        identity: &Identity,
        now: u64,
    ) -> Response {
        let package = match self.package_of(req) {
            Ok(p) => p,
            Err(r) => return r,
        };
        let in_dialog = req
            .headers
            .to()
            .ok()
            .and_then(|t| t.tag().map(drop))
            .is_some();
        // RFC 5367: a SUBSCRIBE carrying its own list subscribes to that list, kept as
        // an ad-hoc service of the subscriber's; refused, it leaves nothing behind.
        let request_list = match in_dialog {
            true => None,
            false => match self.request_list(req, identity, &package) {
                Ok(uri) => uri,
                Err(r) => return r,
            },
        };
        let r = self.subscribe_to(
            req,
            source,
            identity,
            package,
            in_dialog,
            request_list.clone(),
            now,
        );
        if let Some(uri) = request_list
            && r.status >= 300
        {
            self.drop_request_list(&uri, &identity.aor);
        }
        r
    }

    /// [`Engine::subscribe`] once the package is known and a carried list stored.
    #[allow(clippy::too_many_arguments)]
    fn subscribe_to(
        &mut self,
        req: &Request,
        source: &Source,
        identity: &Identity,
        package: Arc<dyn EventPackage>,
        in_dialog: bool,
        request_list: Option<String>,
        now: u64,
    ) -> Response {
        let reply = |status: u16, reason: Option<&str>| Response::for_request(req, status, reason);
        // A new subscription to one of the subscriber's services is a list (RFC 4662).
        let requested = request_list
            .clone()
            .or_else(|| req.uri.as_sip().map(|u| u.aor()));
        let package = match requested {
            Some(resource) if !in_dialog => {
                match self.list_subscription(req, &resource, identity, &package) {
                    Ok(list) => list.unwrap_or(package),
                    Err(r) => return r,
                }
            }
            _ => package,
        };
        // RFC 6665 §4.1.2.1 / RFC 3261 §21.4.7: we must be able to send a body the
        // subscriber accepts.
        if let Ok(accept) = req.headers.accept()
            && !accept.is_empty()
        {
            let ours = crate::sip::header::MediaType::parse(package.notify_type()).ok();
            let acceptable = ours.is_some_and(|o| accept.iter().any(|a| o.matches(a)));
            if !acceptable {
                let mut r = reply(406, None);
                r.headers.push("Accept", package.notify_type());
                return r;
            }
        }
        let expires = match self.expires_for(req, package.as_ref()) {
            Ok(e) => e,
            Err(r) => return r,
        };
        let (Ok(from), Ok(to), Ok(call_id), Ok(cseq)) = (
            req.headers.from(),
            req.headers.to(),
            req.headers.call_id(),
            req.headers.cseq(),
        ) else {
            return reply(400, None);
        };
        let Some(from_tag) = from.tag().map(str::to_string) else {
            return reply(400, Some("Bad Request - From without tag"));
        };
        let event_id = req
            .headers
            .event()
            .ok()
            .flatten()
            .and_then(|e| e.id().map(str::to_string));
        let contact = req
            .headers
            .contacts()
            .ok()
            .and_then(|c| c.into_iter().next());
        let conn = match source.peer.kind {
            TransportKind::Udp => None,
            _ => source.peer.conn,
        };

        if let Some(to_tag) = to.tag() {
            let refresh = Refresh {
                id: DialogId {
                    call_id: call_id.to_string(),
                    to_tag: to_tag.to_string(),
                    from_tag,
                },
                package,
                event_id,
                expires,
                remote_cseq: cseq.seq,
                contact,
                conn,
                identity: identity.authenticated.then(|| identity.aor.clone()),
            };
            return self.refresh(req, refresh, now);
        }

        let Some(resource) = request_list.or_else(|| req.uri.as_sip().map(|u| u.aor())) else {
            return reply(400, Some("Bad Request - Request-URI is not a SIP URI"));
        };
        let Some(contact) = contact else {
            // RFC 6665 §4.1.2.1 requires a Contact on SUBSCRIBE.
            return reply(400, Some("Bad Request - missing Contact"));
        };
        let first_route = req
            .headers
            .record_routes()
            .ok()
            .and_then(|r| r.into_iter().next());
        if let Some(why) = std::iter::once(&contact.uri)
            .chain(first_route.as_ref().map(|r| &r.uri))
            .find_map(super::subscription::unusable_target)
        {
            return reply(400, Some(&format!("Bad Request - {why}")));
        }
        let watcher_uri = identity.aor.clone();
        let event = Registry::event_key(package.as_ref());
        if package.owner_only() && !identity.is(&resource) {
            return reply(403, Some("Forbidden - only the owner may subscribe"));
        }
        let mut change = self.change(&resource, package.as_ref(), now);
        let decision = change.decide(&watcher_uri, now);
        let status = match decision.handling {
            Handling::Allow => Status::Active,
            Handling::Confirm => Status::Pending,
            Handling::Block => {
                // RFC 5025 §3.2.1 block; the owner's template packages still learn of
                // the attempt.
                let status = Status::Terminated(Reason::Rejected);
                let row = Watcher {
                    presentity_uri: resource,
                    watcher_uri,
                    event,
                    status: status.code(),
                    reason: Some(Reason::Rejected.as_str().into()),
                    inserted_time: now,
                };
                self.put_watcher_row(row, now);
                return reply(403, None);
            }
        };
        let to_tag = format!("{}{}", self.config.to_tag_pref, random_token(10));
        let local_contact = self.local_contact(source);
        let row = SubscriptionRow {
            presentity_uri: resource.clone(),
            watcher_uri: watcher_uri.clone(),
            to_uri: to.uri.to_string(),
            event: event.clone(),
            event_id,
            call_id: call_id.to_string(),
            to_tag: to_tag.clone(),
            from_tag,
            local_cseq: 0,
            remote_cseq: cseq.seq,
            expires: now + u64::from(expires),
            status: status.code(),
            reason: None,
            version: 0,
            remote_target: contact.uri.to_string(),
            record_route: req
                .headers
                .record_routes()
                .map(|v| v.iter().map(|r| r.to_string()).collect())
                .unwrap_or_default(),
            local_contact: local_contact.clone(),
            socket_info: format!("{}:{}", source.peer.kind.name(), source.local),
            transport_peer: source.peer.to_string(),
            user_agent: req
                .headers
                .get("User-Agent")
                .unwrap_or_default()
                .to_string(),
            accept: Vec::new(),
            sharing_tag: None,
        };

        let mut r = reply(200, None);
        r.set_to_tag(&to_tag);
        r.headers.push("Expires", expires.to_string());
        r.headers.push("Contact", local_contact);

        let body = match status {
            Status::Active => Body::full(change.body(decision.view, &resource)),
            _ => Body::None,
        };
        let mut sub = Subscription::new(row, package, status, conn);
        if expires == 0 {
            // RFC 6665 §4.4.3: a fetch gets one NOTIFY and leaves nothing behind.
            sub.terminate(Reason::Timeout, Body::None);
            if let Some((request, to, _)) = sub.send(body, now) {
                self.stats.notifies_sent += 1;
                self.actions.push_back(Action::Notify {
                    dialog: None,
                    request,
                    to,
                    after_write: 0,
                });
            }
            // A fetch of a request-contained list leaves no list behind either.
            let (resource, watcher) = (sub.resource().to_owned(), sub.watcher().to_owned());
            self.drop_request_list(&resource, &watcher);
            // Nor back-end dialogs started for it.
            if sub.package().as_list().is_some() {
                self.prune_backends(now);
            }
            return r;
        }
        // Every dialog has a watchers row (written after it, re-derived by repair), so a
        // watcher without one has no dialog to replace: one row read instead of a scan
        // of the by-watcher index, on a table that may be far larger than the cache.
        let may_replace = self.config.replace_stale_subscriptions
            && !matches!(
                self.store
                    .get_watcher(sub.resource(), sub.event(), sub.watcher()),
                Ok(None)
            );
        let stale = match may_replace {
            true => self.stale_dialogs(&sub),
            false => Vec::new(),
        };
        if let Some(why) = self.over_subscription_caps(&sub, stale.len() as u64) {
            return reply(403, Some(why));
        }
        self.drop_stale(stale);
        // One write creates the dialog, with the counters of its first NOTIFY
        // (subscription.rs). Dialog first, watchers row second: a crash in between
        // leaves a dialog whose watchers row the store's repair re-derives at open.
        if let Err(e) = self.store.insert_subscription(sub.row()) {
            warn!("store: {e}");
            return reply(500, Some("Server Internal Error - store"));
        }
        self.expiry_at(sub.expires());
        let watcher = Watcher {
            presentity_uri: resource,
            watcher_uri,
            event,
            status: status.code(),
            reason: Some(Reason::Subscribe.as_str().into()),
            inserted_time: now,
        };
        self.put_watcher_row(watcher, now);
        self.stats.subscribes += 1;
        if sub.notify(body) {
            self.stats.notifies_coalesced += 1;
        }
        self.pump(sub, now);
        r
    }

    fn refresh(&mut self, req: &Request, refresh: Refresh, now: u64) -> Response {
        let reply = |status: u16, reason: Option<&str>| Response::for_request(req, status, reason);
        let id = &refresh.id;
        let row = match self
            .store
            .get_subscription(&id.call_id, &id.to_tag, &id.from_tag)
        {
            Ok(Some(row)) => row,
            Ok(None) => return reply(481, None),
            Err(e) => {
                warn!("store: {e}");
                return reply(500, Some("Server Internal Error - store"));
            }
        };
        if let Some(who) = &refresh.identity
            && !crate::auth::identity_key(who).eq(crate::auth::identity_key(&row.watcher_uri))
        {
            return reply(403, Some("Forbidden - not this subscription's watcher"));
        }
        let Some(mut sub) = self.take_subscription(row) else {
            return reply(481, None);
        };
        // The subscription in this dialog is identified by event and id (RFC 6665
        // §4.5.2); one past its expiry is over even before the deadline is handled.
        let same = sub.event() == Registry::event_key(refresh.package.as_ref())
            && sub.event_id() == refresh.event_id.as_deref();
        if !same || sub.expires() <= now {
            self.keep(sub);
            return reply(481, None);
        }
        // A target refresh (RFC 6665 §4.4.1) is held to the same rule as the first one.
        if let Some(why) = refresh
            .contact
            .as_ref()
            .and_then(|c| super::subscription::unusable_target(&c.uri))
        {
            self.keep(sub);
            return reply(400, Some(&format!("Bad Request - {why}")));
        }
        let expires_at = now + u64::from(refresh.expires);
        let target = refresh.contact.map(|c| c.uri.to_string());
        if sub
            .refresh(refresh.remote_cseq, expires_at, target, refresh.conn)
            .is_err()
        {
            self.keep(sub);
            // RFC 3261 §12.2.2: an out-of-order request is refused with 500.
            return reply(500, Some("Server Internal Error - CSeq out of order"));
        }
        let mut r = reply(200, None);
        r.headers.push("Expires", refresh.expires.to_string());
        r.headers.push("Contact", sub.local_contact().to_owned());
        // The rules may have changed (validity, sphere) since the last look. The
        // dialog's own package: a list's is not the one its Event header names.
        let package = sub.package().clone();
        let mut change = self.change(sub.resource(), package.as_ref(), now);
        let decision = change.decide(sub.watcher(), now);
        if refresh.expires == 0 {
            // Unsubscribe: final NOTIFY, then the dialog goes (RFC 6665 §4.2.1.4).
            let body = match sub.status() {
                Status::Active => Body::full(change.body(decision.view, sub.resource())),
                _ => Body::None,
            };
            self.end(sub, Reason::Timeout, body, now);
            return r;
        }
        if let Err(e) = self.store.put_subscription(sub.row()) {
            warn!("store: {e}");
            self.keep(sub);
            return reply(500, Some("Server Internal Error - store"));
        }
        self.expiry_at(expires_at);
        self.apply(sub, decision, &mut change, true, now);
        r
    }

    /// The dialogs `new` replaces: a rebooted phone subscribes again from the same
    /// contact with a new Call-ID, and its old dialog is dead. Only the same watcher
    /// (the authenticated identity, when there is one) replaces its own dialogs.
    fn stale_dialogs(&self, new: &Subscription) -> Vec<SubscriptionRow> {
        let Ok(existing) =
            self.store
                .subscriptions_of_watcher(new.resource(), new.event(), new.watcher())
        else {
            return Vec::new();
        };
        existing
            .into_iter()
            .filter(|old| {
                old.watcher_uri == new.watcher()
                    && old.remote_target == new.remote_target()
                    && old.event_id.as_deref() == new.event_id()
                    && old.call_id != new.id().call_id
            })
            .collect()
    }

    /// Drops replaced dialogs instead of letting stale rows pile up.
    fn drop_stale(&mut self, stale: Vec<SubscriptionRow>) {
        for old in stale {
            if let Err(e) = self
                .store
                .delete_subscription(&old.call_id, &old.to_tag, &old.from_tag)
            {
                warn!("store: {e}");
            }
            // Dropping it is its cleanup: nothing else holds the dialog.
            self.resident.remove(&super::subscription::id_of(&old));
        }
    }

    /// Why a new dialog would take its presentity or its watcher past their caps, once
    /// the `replacing` dialogs it replaces are gone (they count in both).
    fn over_subscription_caps(&self, new: &Subscription, replacing: u64) -> Option<&'static str> {
        let reached = |n: Result<bool, _>| match n {
            Ok(reached) => reached,
            Err(e) => {
                // Unknown: let it in rather than refuse everyone over a read error.
                warn!("store: {e}");
                false
            }
        };
        let cap = self.config.max_subscriptions_per_presentity;
        if reached(self.store.subscriptions_to_at_least(
            new.resource(),
            new.event(),
            cap.saturating_add(replacing),
        )) {
            return Some("Forbidden - too many subscriptions to this presentity");
        }
        let cap = self.config.max_subscriptions_per_watcher;
        if reached(
            self.store
                .subscriptions_of_identity_at_least(new.watcher(), cap.saturating_add(replacing)),
        ) {
            return Some("Forbidden - too many subscriptions for this watcher");
        }
        None
    }
}
