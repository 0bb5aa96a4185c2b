//! NOTIFY (RFC 6665 §4.2.2): building the request inside a subscription dialog, the
//! per-dialog queue that keeps one NOTIFY in flight so they never overtake each other
//! (later states replace earlier ones still waiting), and what a NOTIFY's outcome does to
//! the subscription.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use log::{debug, warn};

use crate::events::package::{EventPackage, Registry};
use crate::presence::{Engine, Outgoing, status};
use crate::sip::endpoint::{ClientResult, ClientTxId, Peer, TransportKind};
use crate::sip::message::{Method, Request};
use crate::sip::uri::{Host, Uri};
use crate::store::SubscriptionRow;

/// Identifies a subscription dialog (RFC 3261 §12: Call-ID and both tags).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DialogKey {
    pub call_id: String,
    pub to_tag: String,
    pub from_tag: String,
}

impl DialogKey {
    pub fn of(d: &SubscriptionRow) -> DialogKey {
        DialogKey {
            call_id: d.call_id.clone(),
            to_tag: d.to_tag.clone(),
            from_tag: d.from_tag.clone(),
        }
    }
}

/// The Subscription-State a NOTIFY carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubState {
    Active,
    Pending,
    /// With the reason (RFC 6665 §4.2.2: timeout, rejected, noresource, ...).
    Terminated(&'static str),
}

struct Pending {
    /// The dialog as it was when this NOTIFY was asked for. Every change to a dialog
    /// (refresh, authorization, end) asks for a NOTIFY and so replaces it here; a dialog
    /// removed without one drops its queue.
    dialog: SubscriptionRow,
    /// The reason of a final NOTIFY (the dialog has left the store).
    terminal: Option<&'static str>,
    body: Option<Arc<Vec<u8>>>,
}

/// One dialog's NOTIFY pipeline.
#[derive(Default)]
pub(super) struct Queue {
    in_flight: bool,
    next: Option<Pending>,
}

impl Engine {
    /// Sends (or queues behind the one in flight) a NOTIFY with the dialog's current
    /// subscription state and `body`.
    pub(super) fn queue_notify(
        &mut self,
        dialog: SubscriptionRow,
        package: &dyn EventPackage,
        body: Option<Arc<Vec<u8>>>,
        now: u64,
    ) -> Vec<Outgoing> {
        let key = DialogKey::of(&dialog);
        let q = self.queues.entry(key.clone()).or_default();
        if q.in_flight {
            let mut body = body;
            if q.next.as_ref().is_some_and(|p| p.terminal.is_none())
                && let Some(watched) = Self::winfo_of(package)
            {
                // Two partial winfo documents cannot replace each other without losing
                // a change: the one that waits becomes the full list (RFC 3858 §4.4).
                body = Some(Arc::new(self.winfo_full(&dialog.presentity_uri, &watched)));
            }
            let q = self.queues.entry(key).or_default();
            if q.next.as_ref().is_none_or(|p| p.terminal.is_none()) {
                q.next = Some(Pending {
                    dialog,
                    terminal: None,
                    body,
                });
            }
            return Vec::new();
        }
        self.send_now(dialog, package, body, None, now)
            .into_iter()
            .collect()
    }

    /// Ends a subscription: the dialog leaves the store now and a final NOTIFY with
    /// `Subscription-State: terminated;reason=…` follows any NOTIFY still in flight.
    pub(super) fn terminate(
        &mut self,
        dialog: SubscriptionRow,
        package: &dyn EventPackage,
        state: SubState,
        body: Option<Arc<Vec<u8>>>,
        now: u64,
    ) -> Vec<Outgoing> {
        let reason = match state {
            SubState::Terminated(r) => r,
            _ => "timeout",
        };
        self.forget_dialog(&dialog, reason, now);
        let key = DialogKey::of(&dialog);
        let q = self.queues.entry(key).or_default();
        if q.in_flight {
            q.next = Some(Pending {
                dialog,
                terminal: Some(reason),
                body,
            });
            return Vec::new();
        }
        self.send_now(dialog, package, body, Some(reason), now)
            .into_iter()
            .collect()
    }

    /// The one NOTIFY of a fetch (RFC 6665 §4.4.3): nothing is stored or queued.
    pub(super) fn fetch_notify(
        &mut self,
        dialog: &mut SubscriptionRow,
        package: &dyn EventPackage,
        body: Option<Arc<Vec<u8>>>,
        source: &crate::sip::endpoint::Source,
    ) -> Option<Outgoing> {
        dialog.local_cseq = 1;
        let request = build_notify(
            dialog,
            package,
            body.as_deref().map(|b| b.as_slice()),
            &SubState::Terminated("timeout"),
            0,
        );
        let mut to = self.peer_for(dialog)?;
        if to.kind == TransportKind::Tcp {
            to.conn = source.peer.conn;
        }
        self.stats.notifies_sent += 1;
        Some(Outgoing {
            dialog: DialogKey::of(dialog),
            request,
            to,
        })
    }

    fn send_now(
        &mut self,
        mut dialog: SubscriptionRow,
        package: &dyn EventPackage,
        body: Option<Arc<Vec<u8>>>,
        terminal: Option<&'static str>,
        now: u64,
    ) -> Option<Outgoing> {
        let key = DialogKey::of(&dialog);
        let Some(to) = self.peer_for(&dialog) else {
            warn!("no usable target for dialog {}; ending it", key.call_id);
            if terminal.is_none() {
                self.forget_dialog(&dialog, "noresource", now);
            }
            self.queues.remove(&key);
            return None;
        };
        let next = self.counters.next(&key, dialog.local_cseq, dialog.version);
        dialog.local_cseq = next.cseq;
        dialog.version = next.version;
        let state = match (terminal, dialog.status) {
            (Some(r), _) => SubState::Terminated(r),
            (None, status::ACTIVE) => SubState::Active,
            (None, _) => SubState::Pending,
        };
        let remaining = dialog.expires.saturating_sub(now);
        let request = build_notify(
            &dialog,
            package,
            body.as_deref().map(|b| b.as_slice()),
            &state,
            remaining,
        );
        match (terminal, next.reserve) {
            (Some(_), _) => self.counters.forget(&key),
            // The counters keep rising across restarts: reserve the next ones in the
            // row before this NOTIFY leaves (see counters.rs).
            (None, Some((cseq, version))) => {
                dialog.local_cseq = cseq;
                dialog.version = version;
                if let Err(e) = self.store.put_subscription(&dialog) {
                    warn!("store: {e}");
                }
            }
            (None, None) => {}
        }
        self.queues.entry(key.clone()).or_default().in_flight = true;
        self.stats.notifies_sent += 1;
        Some(Outgoing {
            dialog: key,
            request,
            to,
        })
    }

    /// A NOTIFY's client transaction ended; returns the next NOTIFY of that dialog.
    pub fn notify_finished(
        &mut self,
        tx: ClientTxId,
        result: &ClientResult,
        now: u64,
    ) -> Vec<Outgoing> {
        let mut out = self.notify_finished_inner(tx, result, now);
        out.append(&mut self.pending_out);
        out
    }

    fn notify_finished_inner(
        &mut self,
        tx: ClientTxId,
        result: &ClientResult,
        now: u64,
    ) -> Vec<Outgoing> {
        let Some(key) = self.in_flight.remove(&tx) else {
            return Vec::new();
        };
        let status_code = match result {
            ClientResult::Response(r) => Some(r.status),
            _ => None,
        };
        let ended = match status_code {
            Some(200..=299) => false,
            // RFC 6665 §4.2.2: 481 means the subscriber has no such subscription.
            Some(481) => true,
            Some(408) | None => self.config.end_sub_on_timeout,
            Some(_) => false,
        };
        if !matches!(status_code, Some(200..=299)) {
            self.stats.notify_failures += 1;
            debug!("NOTIFY in dialog {} ended with {result:?}", key.call_id);
        }
        if ended {
            if let Ok(Some(d)) =
                self.store
                    .get_subscription(&key.call_id, &key.to_tag, &key.from_tag)
            {
                self.forget_dialog(&d, "deactivated", now);
            }
            self.queues.remove(&key);
            self.conns.remove(&key);
            self.counters.forget(&key);
            return Vec::new();
        }
        let Some(q) = self.queues.get_mut(&key) else {
            return Vec::new();
        };
        q.in_flight = false;
        let Some(next) = q.next.take() else {
            self.queues.remove(&key);
            return Vec::new();
        };
        let Some(package) = self.package_for_key(&next.dialog.event) else {
            return Vec::new();
        };
        match next.terminal {
            Some(reason) => {
                let out =
                    self.send_now(next.dialog, package.as_ref(), next.body, Some(reason), now);
                out.into_iter().collect()
            }
            // Expired meanwhile: the sweep ends it with its own final NOTIFY.
            None if next.dialog.expires <= now => {
                self.queues.remove(&key);
                Vec::new()
            }
            None => {
                let out = self.send_now(next.dialog, package.as_ref(), next.body, None, now);
                self.durable();
                out.into_iter().collect()
            }
        }
    }

    /// Removes a dialog and marks its watchers row terminated, or waiting when a
    /// subscription still pending consent timed out (RFC 3857 §3.3: the presentity may
    /// still approve it). The winfo subscribers hear of it.
    pub(super) fn forget_dialog(&mut self, dialog: &SubscriptionRow, reason: &str, now: u64) {
        if let Err(e) =
            self.store
                .delete_subscription(&dialog.call_id, &dialog.to_tag, &dialog.from_tag)
        {
            warn!("store: {e}");
        }
        let new_status = if dialog.status == status::PENDING && reason == "timeout" {
            status::WAITING
        } else {
            status::TERMINATED
        };
        self.set_watcher_status(dialog, new_status, reason, now);
    }

    /// Where a dialog's NOTIFYs go: the first Route if there is a route set, else the
    /// remote target (RFC 3261 §12.2.1.1, §8.1.2). A host name we cannot resolve without
    /// DNS falls back to the address the SUBSCRIBE came from.
    fn peer_for(&self, dialog: &SubscriptionRow) -> Option<Peer> {
        let fallback: Option<(TransportKind, SocketAddr)> = parse_peer(&dialog.transport_peer);
        let target = match dialog.record_route.first() {
            Some(route) => crate::sip::header::NameAddr::parse(route)
                .ok()
                .map(|n| n.uri),
            None => Uri::parse(&dialog.remote_target).ok(),
        };
        let from_uri = target.as_ref().and_then(|u| u.as_sip()).and_then(|sip| {
            let ip: IpAddr = match &sip.host {
                Host::V4(a) => IpAddr::V4(*a),
                Host::V6(a) => IpAddr::V6(*a),
                Host::Domain(_) => return None,
            };
            let kind = match sip.param("transport").flatten() {
                Some(t) if t.eq_ignore_ascii_case("tcp") => TransportKind::Tcp,
                Some(t) if t.eq_ignore_ascii_case("udp") => TransportKind::Udp,
                _ => fallback.map(|f| f.0).unwrap_or(TransportKind::Udp),
            };
            Some((kind, SocketAddr::new(ip, sip.port.unwrap_or(5060))))
        });
        let (kind, addr) = from_uri.or(fallback)?;
        let conn = match kind {
            TransportKind::Tcp => self.conns.get(&DialogKey::of(dialog)).copied(),
            TransportKind::Udp => None,
        };
        Some(Peer { kind, addr, conn })
    }
}

/// `udp:1.2.3.4:5060` → (Udp, addr).
fn parse_peer(s: &str) -> Option<(TransportKind, SocketAddr)> {
    let (kind, addr) = s.split_once(':')?;
    let kind = match kind {
        "udp" => TransportKind::Udp,
        "tcp" => TransportKind::Tcp,
        _ => return None,
    };
    Some((kind, addr.parse().ok()?))
}

/// A NOTIFY inside the dialog (RFC 3261 §12.2.1.1; RFC 6665 §4.2.2, §8.2.3).
pub(super) fn build_notify(
    dialog: &SubscriptionRow,
    package: &dyn EventPackage,
    body: Option<&[u8]>,
    state: &SubState,
    remaining: u64,
) -> Request {
    let uri = Uri::parse(&dialog.remote_target)
        .or_else(|_| Uri::parse(&dialog.watcher_uri))
        .unwrap_or_else(|_| Uri::Other(dialog.remote_target.clone()));
    let mut req = Request::new(Method::Notify, uri);
    let h = &mut req.headers;
    h.push_known("Max-Forwards", "70");
    let from = if dialog.to_uri.is_empty() {
        &dialog.presentity_uri
    } else {
        &dialog.to_uri
    };
    h.push_known("From", format!("<{from}>;tag={}", dialog.to_tag));
    h.push_known(
        "To",
        format!("<{}>;tag={}", dialog.watcher_uri, dialog.from_tag),
    );
    h.push_known("Call-ID", dialog.call_id.clone());
    h.push_known("CSeq", format!("{} NOTIFY", dialog.local_cseq));
    for route in &dialog.record_route {
        h.push_known("Route", route.clone());
    }
    h.push_known("Contact", dialog.local_contact.clone());
    let mut event = Registry::event_key(package);
    if let Some(id) = &dialog.event_id {
        event.push_str(";id=");
        event.push_str(id);
    }
    h.push_known("Event", event);
    h.push_known(
        "Subscription-State",
        match state {
            SubState::Active => format!("active;expires={remaining}"),
            SubState::Pending => format!("pending;expires={remaining}"),
            SubState::Terminated(reason) => format!("terminated;reason={reason}"),
        },
    );
    if let Some(b) = body {
        h.push_known("Content-Type", package.notify_type());
        req.body = package
            .watcher_body(b, dialog.version)
            .unwrap_or_else(|| b.to_vec());
    }
    req
}
