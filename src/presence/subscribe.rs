//! SUBSCRIBE (RFC 6665 §4.2.1): new subscriptions create a dialog, in-dialog requests
//! refresh or end it, out-of-dialog Expires: 0 is a fetch. Authorization is one function,
//! `authorize`: force_active, or the presentity's pres-rules (RFC 5025) through `policy`.

use std::sync::Arc;

use log::warn;

use crate::events::package::{EventPackage, Registry};
use crate::presence::notify::{DialogKey, SubState};
use crate::presence::{Engine, Outcome, status};
use crate::sip::endpoint::{TransportKind, random_token};
use crate::sip::message::{Request, Response};
use crate::store::{SubscriptionRow, Watcher};

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

    pub(super) fn subscribe(
        &mut self,
        req: &Request,
        source: &crate::sip::endpoint::Source,
        now: u64,
    ) -> Outcome {
        let reply = |status: u16, reason: Option<&str>| Response::for_request(req, status, reason);
        let done = |response: Response| Outcome {
            response,
            notifies: Vec::new(),
        };
        let package = match self.package_of(req) {
            Ok(p) => p,
            Err(r) => return done(r),
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
                return done(r);
            }
        }
        let expires = match self.expires_for(req, package.as_ref()) {
            Ok(e) => e,
            Err(r) => return done(r),
        };
        let (Ok(from), Ok(to), Ok(call_id), Ok(cseq)) = (
            req.headers.from(),
            req.headers.to(),
            req.headers.call_id(),
            req.headers.cseq(),
        ) else {
            return done(reply(400, None));
        };
        let Some(from_tag) = from.tag().map(str::to_string) else {
            return done(reply(400, Some("Bad Request - From without tag")));
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

        if let Some(to_tag) = to.tag() {
            let key = DialogKey {
                call_id: call_id.to_string(),
                to_tag: to_tag.to_string(),
                from_tag,
            };
            return self.refresh(req, key, package, event_id, expires, cseq.seq, contact, now);
        }

        let Some(presentity) = req.uri.as_sip().map(|u| u.aor()) else {
            return done(reply(
                400,
                Some("Bad Request - Request-URI is not a SIP URI"),
            ));
        };
        let Some(contact) = contact else {
            // RFC 6665 §4.1.2.1 requires a Contact on SUBSCRIBE.
            return done(reply(400, Some("Bad Request - missing Contact")));
        };
        let watcher_uri = match from.uri.as_sip() {
            Some(u) => u.aor(),
            None => from.uri.to_string(),
        };
        let event = Registry::event_key(package.as_ref());
        if package.owner_only() && watcher_uri != presentity {
            return done(reply(403, Some("Forbidden - only the owner may subscribe")));
        }
        let to_tag = format!("{}{}", self.config.to_tag_pref, random_token(10));
        let key = DialogKey {
            call_id: call_id.to_string(),
            to_tag: to_tag.clone(),
            from_tag,
        };
        let state = self.current_state(&presentity, package.as_ref(), now);
        let decision = self.authorize(&watcher_uri, &presentity, package.as_ref(), &state, now);
        let sub_status = super::authz::status_of(&decision);
        if sub_status == status::TERMINATED {
            // RFC 5025 §3.2.1 block; the presentity's winfo still learns of the attempt.
            let row = Watcher {
                presentity_uri: presentity.clone(),
                watcher_uri,
                event,
                status: status::TERMINATED,
                reason: Some("rejected".into()),
                inserted_time: now,
            };
            self.put_watcher_row(row, now);
            return done(reply(403, None));
        }
        let local_contact = self.local_contact(source);
        let mut dialog = SubscriptionRow {
            presentity_uri: presentity.clone(),
            watcher_uri: watcher_uri.clone(),
            to_uri: to.uri.to_string(),
            event: event.clone(),
            event_id,
            call_id: key.call_id.clone(),
            to_tag: key.to_tag.clone(),
            from_tag: key.from_tag.clone(),
            local_cseq: 0,
            remote_cseq: cseq.seq,
            expires: now + u64::from(expires),
            status: sub_status,
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

        let mut cache = super::authz::BodyCache::new();
        let body = if sub_status == status::ACTIVE {
            self.view_body(&state, &presentity, &decision.view, &mut cache)
        } else {
            None
        };
        if expires == 0 {
            // RFC 6665 §4.4.3: a fetch gets one NOTIFY and leaves nothing behind.
            let notify = self.fetch_notify(&mut dialog, package.as_ref(), body, source);
            return Outcome {
                response: r,
                notifies: notify.into_iter().collect(),
            };
        }

        if self.config.replace_stale_subscriptions {
            self.replace_stale(&dialog);
        }
        if source.peer.kind == TransportKind::Tcp
            && let Some(conn) = source.peer.conn
        {
            self.conns.insert(key.clone(), conn);
        }
        // Sending the first NOTIFY writes the dialog in one store write: a new dialog has
        // no NOTIFY counters yet, so that NOTIFY reserves them in the row (counters.rs).
        // Dialog first, watchers row second: a crash in between leaves a dialog whose
        // watchers row the store's repair re-derives at open.
        let notifies = self.queue_notify(dialog, package.as_ref(), body, now);
        if notifies.is_empty() {
            // No usable target: nothing was stored, and refreshes will get 481.
            return Outcome {
                response: r,
                notifies,
            };
        }
        let watcher = Watcher {
            presentity_uri: presentity.clone(),
            watcher_uri,
            event,
            status: sub_status,
            reason: Some("subscribe".into()),
            inserted_time: now,
        };
        self.put_watcher_row(watcher, now);
        self.stats.subscribes += 1;
        Outcome {
            response: r,
            notifies,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn refresh(
        &mut self,
        req: &Request,
        key: DialogKey,
        package: Arc<dyn EventPackage>,
        event_id: Option<String>,
        expires: u32,
        remote_cseq: u32,
        contact: Option<crate::sip::header::NameAddr>,
        now: u64,
    ) -> Outcome {
        let reply = |status: u16, reason: Option<&str>| Response::for_request(req, status, reason);
        let done = |response: Response| Outcome {
            response,
            notifies: Vec::new(),
        };
        let mut dialog = match self
            .store
            .get_subscription(&key.call_id, &key.to_tag, &key.from_tag)
        {
            Ok(Some(d)) if d.expires > now => d,
            Ok(_) => return done(reply(481, None)),
            Err(e) => {
                warn!("store: {e}");
                return done(reply(500, Some("Server Internal Error - store")));
            }
        };
        // The subscription in this dialog is identified by event and id (RFC 6665 §4.5.2).
        if dialog.event != Registry::event_key(package.as_ref()) || dialog.event_id != event_id {
            return done(reply(481, None));
        }
        // RFC 3261 §12.2.2: an out-of-order request is refused with 500.
        if remote_cseq < dialog.remote_cseq {
            return done(reply(
                500,
                Some("Server Internal Error - CSeq out of order"),
            ));
        }
        dialog.remote_cseq = remote_cseq;
        if let Some(c) = contact {
            // SUBSCRIBE is a target refresh request (RFC 6665 §4.1.2.1).
            dialog.remote_target = c.uri.to_string();
        }
        let mut r = reply(200, None);
        r.headers.push("Expires", expires.to_string());
        r.headers.push("Contact", dialog.local_contact.clone());
        let state = self.current_state(&dialog.presentity_uri, package.as_ref(), now);
        // The rules may have changed (validity, sphere) since the last look.
        let decision = self.authorize(
            &dialog.watcher_uri,
            &dialog.presentity_uri,
            package.as_ref(),
            &state,
            now,
        );
        let mut cache = super::authz::BodyCache::new();
        if expires == 0 {
            // Unsubscribe: final NOTIFY, then the dialog goes (RFC 6665 §4.2.1.4).
            dialog.expires = now;
            let body = if dialog.status == status::ACTIVE {
                self.view_body(&state, &dialog.presentity_uri, &decision.view, &mut cache)
            } else {
                None
            };
            let notifies = self.terminate(
                dialog,
                package.as_ref(),
                SubState::Terminated("timeout"),
                body,
                now,
            );
            return Outcome {
                response: r,
                notifies,
            };
        }
        dialog.expires = now + u64::from(expires);
        if let Err(e) = self.store.put_subscription(&dialog) {
            warn!("store: {e}");
            return done(reply(500, Some("Server Internal Error - store")));
        }
        let notifies = self.apply_decision(
            dialog,
            package.as_ref(),
            &decision,
            &state,
            &mut cache,
            true,
            now,
        );
        Outcome {
            response: r,
            notifies,
        }
    }

    /// The single authorization decision for a subscription. With force_active (or a
    /// package that needs none) every watcher sees everything; otherwise the
    /// presentity's pres-rules decide, and without a matching rule it waits for the
    /// presentity's consent (pending).
    pub(super) fn authorize(
        &mut self,
        watcher: &str,
        presentity: &str,
        package: &dyn EventPackage,
        state: &Option<Arc<Vec<u8>>>,
        now: u64,
    ) -> crate::policy::Decision {
        let policy = self.policy_for(presentity, package, state.as_deref().map(|b| b.as_slice()));
        self.decide(&policy, watcher, now)
    }

    /// A rebooted phone subscribes again from the same contact with a new Call-ID; its
    /// old dialog is dead, so drop it instead of letting stale rows pile up.
    fn replace_stale(&mut self, new: &SubscriptionRow) {
        let Ok(existing) =
            self.store
                .subscriptions_of_watcher(&new.presentity_uri, &new.event, &new.watcher_uri)
        else {
            return;
        };
        for old in existing {
            if old.watcher_uri == new.watcher_uri
                && old.remote_target == new.remote_target
                && old.event_id == new.event_id
                && old.call_id != new.call_id
            {
                let _ = self
                    .store
                    .delete_subscription(&old.call_id, &old.to_tag, &old.from_tag);
                let key = DialogKey::of(&old);
                self.queues.remove(&key);
                self.conns.remove(&key);
                self.counters.forget(&key);
            }
        }
    }
}
