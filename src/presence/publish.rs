//! PUBLISH (RFC 3903 §6): initial, refresh, modify and remove, keyed by entity-tag, and
//! the state recomputed once per change for every watcher of the resource.

use log::warn;

use super::Engine;
use crate::events::package::Registry;
use crate::sip::endpoint::random_token;
use crate::sip::message::{Request, Response};
use crate::store::Publication;

impl Engine {
    pub(super) fn publish(&mut self, req: &Request, now: u64) -> Response {
        let reply = |status: u16, reason: Option<&str>| Response::for_request(req, status, reason);

        // §6 step 2: the event package must be one we know.
        let package = match self.package_of(req) {
            Ok(p) => p,
            Err(r) => return r,
        };
        if package.publish_types().is_empty() {
            return self.bad_event(req);
        }
        let Some(presentity) = req.uri.as_sip().map(|u| u.aor()) else {
            return reply(400, Some("Bad Request - Request-URI is not a SIP URI"));
        };
        let event = Registry::event_key(package.as_ref());

        let expires = match self.expires_for(req, package.as_ref()) {
            Ok(e) => e,
            Err(r) => return r,
        };

        let has_body = !req.body.is_empty();
        if has_body {
            let limit = self
                .config
                .max_body_size_per_event
                .get(&event)
                .copied()
                .unwrap_or(self.config.max_body_size);
            if req.body.len() > limit {
                return reply(413, None);
            }
            // §6 step 3 / RFC 3261 §21.4.16: a body type the package does not take → 415.
            let ctype = match req.headers.content_type() {
                Ok(Some(t)) => t.essence(),
                _ => String::new(),
            };
            if !package.publish_types().iter().any(|t| *t == ctype) {
                let mut r = reply(415, None);
                r.headers.push("Accept", package.publish_types().join(", "));
                return r;
            }
            if let Err(e) = package.validate(&req.body) {
                return reply(400, Some(&format!("Bad Request - {}", e.0)));
            }
        }

        let if_match = req.headers.sip_if_match().map(str::to_string);
        if has_body && expires > 0 {
            let live = match self.store.publications_of(&event, &presentity) {
                Ok(p) => p,
                Err(e) => {
                    warn!("store: {e}");
                    return reply(500, Some("Server Internal Error - store"));
                }
            };
            let others = live
                .iter()
                .filter(|p| p.expires > now && Some(&p.etag) != if_match.as_ref());
            let (count, bytes) =
                others.fold((0usize, 0usize), |(n, b), p| (n + 1, b + p.body.len()));
            if if_match.is_none() && count >= self.config.max_publications_per_presentity {
                return reply(
                    403,
                    Some("Forbidden - too many publications for this presentity"),
                );
            }
            if bytes + req.body.len() > self.config.max_aggregate_size {
                return reply(
                    413,
                    Some("Request Entity Too Large - the presentity's state would be too large"),
                );
            }
        }
        let sender = req
            .headers
            .contacts()
            .ok()
            .and_then(|c| c.first().map(|c| c.uri.to_string()))
            .unwrap_or_default();

        let (changed, new_etag) = match if_match {
            None => {
                // §6 step 4: an initial PUBLISH must carry state.
                if !has_body {
                    return reply(400, Some("Bad Request - initial PUBLISH without body"));
                }
                let etag = random_token(12);
                if expires > 0 {
                    let row = Publication {
                        presentity_uri: presentity.clone(),
                        event: event.clone(),
                        etag: etag.clone(),
                        expires: now + u64::from(expires),
                        received_time: now,
                        body: req.body.clone(),
                        content_type: package
                            .publish_types()
                            .first()
                            .map(|s| s.to_string())
                            .unwrap_or_default(),
                        sender,
                        extra_hdrs: String::new(),
                        priority: self.next_priority(),
                    };
                    if let Err(e) = self.store.insert_publication(&row) {
                        warn!("store: {e}");
                        return reply(500, Some("Server Internal Error - store"));
                    }
                    self.expiry_at(row.expires);
                }
                (expires > 0, etag)
            }
            Some(etag) => {
                // §6 step 3: the entity-tag must name a live publication, else 412.
                let old = match self.store.get_publication(&event, &presentity, &etag) {
                    Ok(Some(p)) if p.expires > now => p,
                    Ok(_) => return reply(412, None),
                    Err(e) => {
                        warn!("store: {e}");
                        return reply(500, Some("Server Internal Error - store"));
                    }
                };
                if let Err(e) = self.store.delete_publication(&event, &presentity, &etag) {
                    warn!("store: {e}");
                    return reply(500, Some("Server Internal Error - store"));
                }
                if expires == 0 {
                    // §6 step 6: Expires 0 removes the publication.
                    (true, etag)
                } else {
                    let new_etag = random_token(12);
                    let mut row = old;
                    row.etag = new_etag.clone();
                    row.expires = now + u64::from(expires);
                    row.received_time = now;
                    let modified = has_body;
                    if modified {
                        row.body = req.body.clone();
                        row.priority = self.next_priority();
                        row.sender = sender;
                    }
                    if let Err(e) = self.store.insert_publication(&row) {
                        warn!("store: {e}");
                        return reply(500, Some("Server Internal Error - store"));
                    }
                    self.expiry_at(row.expires);
                    (modified, new_etag)
                }
            }
        };
        self.stats.publishes += 1;

        let mut r = reply(200, None);
        r.headers.push("SIP-ETag", new_etag);
        // expires_offset makes clients refresh a little before the publication lapses.
        let advertised = if expires > self.config.expires_offset {
            expires - self.config.expires_offset
        } else {
            expires
        };
        r.headers.push("Expires", advertised.to_string());
        if changed {
            self.fan_out(&presentity, package.as_ref(), now);
        }
        r
    }

    /// Publication order: later publications sort first in the aggregate.
    fn next_priority(&mut self) -> u64 {
        self.store.next_sequence().unwrap_or(0)
    }
}
