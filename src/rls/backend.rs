//! Back-end subscriptions (RFC 4662 §3, SER's presence_b2b, OpenSIPS/Kamailio pua): a
//! list member this server does not serve is watched through a SUBSCRIBE dialog of our
//! own to the server that does, as a client (RFC 6665 §4.1): refreshed before it
//! expires, retried with back-off after a failure, started again when the notifier ends
//! it with a reason that invites that, and ended (`Expires: 0`) once no list needs it.
//!
//! One dialog per (resource, event, list owner), whatever number of lists name the
//! resource: the notifier authorizes the owner exactly as it would a direct subscription
//! (the SUBSCRIBE is From the owner), so lists of different owners cannot share one.
//! The last state and body each dialog's NOTIFYs brought are what the lists show for
//! the resource. Sans-I/O like the rest of the engine: requests leave through
//! [`Backends::poll_outgoing`], results and NOTIFYs come back through
//! [`Backends::on_result`] and [`Backends::on_notify`], time through
//! [`Backends::handle_timeout`]; it keeps nothing on disk (after a restart the running
//! list subscriptions ask again, and the notifier's old dialogs get 481 for their next
//! NOTIFY and end).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use crate::sip::dialog::DialogId;
use crate::sip::endpoint::{ClientResult, Peer, TransportKind, random_token};

/// A Call-ID or tag that admits NOTIFYs into a back-end dialog (they bypass digest
/// authentication): from the OS's generator, 120 bits.
fn secret_token() -> String {
    let mut bytes = [0u8; 15];
    match getrandom::fill(&mut bytes) {
        Ok(()) => bytes.iter().map(|b| format!("{b:02x}")).collect(),
        // No OS randomness: the process's generator, longer.
        Err(_) => random_token(32),
    }
}
use crate::sip::message::{Method, Request, Response};
use crate::sip::uri::{Host, Uri};

/// Where back-end SUBSCRIBEs go and what they say about us.
#[derive(Debug, Clone, Default)]
pub struct BackendConfig {
    /// The server every back-end SUBSCRIBE is sent to (`rls_backend_server`); `None`:
    /// none is made (remote members show `noresource`).
    pub server: Option<(TransportKind, SocketAddr)>,
    /// Our Contact in back-end dialogs, where the notifiers send their NOTIFYs.
    pub contact: String,
    /// Expires asked for.
    pub expires: u32,
    /// Domains served here; a resource in none of them is remote. Empty: every resource
    /// is local (and no back-end subscription is ever made).
    pub domains: Vec<String>,
}

/// `sip:HOST:PORT[;transport=udp|tcp|tls]` with an IP address as HOST (no DNS here), as
/// `rls_backend_server` is written.
pub fn parse_server(uri: &str) -> Result<(TransportKind, SocketAddr), String> {
    let bad = |why: &str| format!("{uri:?}: {why}");
    let parsed = Uri::parse(uri).map_err(|_| bad("not a SIP URI"))?;
    let sip = parsed.as_sip().ok_or_else(|| bad("not a sip: URI"))?;
    let ip: IpAddr = match &sip.host {
        Host::V4(a) => IpAddr::V4(*a),
        Host::V6(a) => IpAddr::V6(*a),
        Host::Domain(_) => return Err(bad("the host must be an IP address")),
    };
    let kind = match sip.param("transport") {
        None => TransportKind::Udp,
        Some(t) => match t.and_then(TransportKind::from_name) {
            Some(k) if !k.inbound_only() => k,
            _ => return Err(bad("the transport must be udp, tcp or tls")),
        },
    };
    let default_port = if kind == TransportKind::Tls {
        5061
    } else {
        5060
    };
    Ok((kind, SocketAddr::new(ip, sip.port.unwrap_or(default_port))))
}

/// A resource's state as its notifier last told us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Remote {
    /// Asked, no NOTIFY yet (shown as pending).
    Waiting,
    Pending,
    Active,
    /// Ended by the notifier or unreachable; the RFC 6665 reason.
    Terminated(&'static str),
}

/// (resource, event key, owner).
pub type Key = (String, String, String);

/// A request to send, in the back-end dialog `dialog`.
#[derive(Debug)]
pub struct Outgoing {
    pub request: Request,
    pub to: Peer,
    pub dialog: DialogId,
}

struct Backend {
    key: Key,
    /// The Event header value (package name).
    event: String,
    /// The body types asked for (Accept).
    accept: String,
    call_id: String,
    from_tag: String,
    to_tag: Option<String>,
    /// The notifier's Contact, the target of refreshes (RFC 6665 §4.1.2.1).
    target: Option<String>,
    /// The dialog's route set (RFC 3261 §12.1.2), as Route header values in order: set
    /// once, by what established the dialog.
    route: Vec<String>,
    /// The CSeq of the last NOTIFY taken (RFC 3261 §12.2.2: a lower one is stale).
    remote_cseq: Option<u32>,
    cseq: u32,
    to: Peer,
    state: Remote,
    body: Option<Arc<Vec<u8>>>,
    /// When the next refresh (or retry) is due, unix seconds.
    due: u64,
    failures: u32,
    in_flight: bool,
    /// An unsubscribe went out: forget it once answered.
    ending: bool,
}

/// Every back-end dialog.
#[derive(Default)]
pub struct Backends {
    config: BackendConfig,
    by_key: HashMap<Key, Backend>,
    by_call: HashMap<String, Key>,
    out: VecDeque<Outgoing>,
}

/// Back-end dialogs one list owner may have, and all of them together.
const MAX_PER_OWNER: usize = 256;
const MAX_DIALOGS: usize = 10_000;

/// Seconds before a dialog's expiry that its refresh goes out.
const REFRESH_AHEAD: u64 = 30;
/// Back-off after a failure: doubling from here, capped.
const RETRY_MIN: u64 = 2;
const RETRY_MAX: u64 = 300;
/// A notifier that refused us (rejected, noresource, 403, 404, 489) is asked again
/// after this long: documents and accounts change.
const REFUSED_RETRY: u64 = 600;

/// Seconds after which a subscription granted for `granted` seconds is refreshed: never
/// sooner than [`RETRY_MIN`], so a notifier that grants nothing is not asked in a loop.
fn refresh_after(granted: u64) -> u64 {
    granted
        .saturating_sub(REFRESH_AHEAD)
        .max(granted / 2)
        .max(RETRY_MIN)
}

/// A dialog's route set from the Record-Route of the message that established it:
/// reversed when that was a response to our request (RFC 3261 §12.1.2).
fn route_set(headers: &crate::sip::header::Headers, reverse: bool) -> Vec<String> {
    let mut set: Vec<String> = match headers.record_routes() {
        Ok(r) => r.iter().map(|n| n.to_string()).collect(),
        Err(e) => {
            log::warn!("rls: back-end dialog with an unreadable Record-Route ({e}): no route set");
            Vec::new()
        }
    };
    if reverse {
        set.reverse();
    }
    set
}

/// The RFC 6665 reasons, as the static strings an RLMI instance carries.
fn reason(r: Option<&str>) -> &'static str {
    match r.unwrap_or("") {
        "deactivated" => "deactivated",
        "probation" => "probation",
        "rejected" => "rejected",
        "timeout" => "timeout",
        "giveup" => "giveup",
        "noresource" => "noresource",
        "invariant" => "invariant",
        _ => "deactivated",
    }
}

impl Backends {
    pub fn new(config: BackendConfig) -> Backends {
        Backends {
            config,
            ..Backends::default()
        }
    }

    /// Whether `uri` is served elsewhere: its domain is none of ours.
    pub fn is_remote(&self, uri: &str) -> bool {
        if self.config.domains.is_empty() {
            return false;
        }
        let Some(sip) = Uri::parse(uri).ok().and_then(|u| u.as_sip().cloned()) else {
            return false;
        };
        let host = sip.host.to_string();
        !self
            .config
            .domains
            .iter()
            .any(|d| d.eq_ignore_ascii_case(host.trim_start_matches('[').trim_end_matches(']')))
    }

    /// Where a SUBSCRIBE for `resource` goes: the configured server only. A member's
    /// own host is never taken as one: a list (a request-contained one is any
    /// SUBSCRIBE's body) would otherwise aim our SUBSCRIBEs wherever its author likes.
    fn destination(&self) -> Option<Peer> {
        let (kind, addr) = self.config.server?;
        Some(Peer {
            kind,
            addr,
            conn: None,
        })
    }

    /// The state `owner`'s lists show for remote `resource` under `event` (the package
    /// name, `event_key` its registry key, `accept` its body type). The first ask
    /// starts the back-end dialog.
    pub fn state(
        &mut self,
        resource: &str,
        event: &str,
        event_key: &str,
        accept: &str,
        owner: &str,
        now: u64,
    ) -> (Remote, Option<Arc<Vec<u8>>>) {
        let key = (resource.to_owned(), event_key.to_owned(), owner.to_owned());
        if let Some(b) = self.by_key.get(&key) {
            return (b.state, b.body.clone());
        }
        let Some(to) = self.destination() else {
            log::debug!("rls: {resource} is not served here and no rls_backend_server is set");
            return (Remote::Terminated("noresource"), None);
        };
        let owned = self.by_key.keys().filter(|k| k.2 == owner).count();
        if owned >= MAX_PER_OWNER || self.by_key.len() >= MAX_DIALOGS {
            log::warn!("rls: back-end dialogs at their cap; {resource} not watched for {owner}");
            return (Remote::Terminated("giveup"), None);
        }
        let b = Backend {
            key: key.clone(),
            event: event.to_owned(),
            accept: accept.to_owned(),
            call_id: format!("rls-{}", secret_token()),
            from_tag: secret_token(),
            to_tag: None,
            target: None,
            route: Vec::new(),
            remote_cseq: None,
            cseq: 0,
            to,
            state: Remote::Waiting,
            body: None,
            due: now,
            failures: 0,
            in_flight: false,
            ending: false,
        };
        self.by_call.insert(b.call_id.clone(), key.clone());
        self.by_key.insert(key.clone(), b);
        self.subscribe(&key, self.config.expires, now);
        (Remote::Waiting, None)
    }

    /// Sends a SUBSCRIBE in `key`'s dialog (the initial one while it has no To tag).
    fn subscribe(&mut self, key: &Key, expires: u32, now: u64) {
        let contact = self.config.contact.clone();
        let Some(b) = self.by_key.get_mut(key) else {
            return;
        };
        b.cseq += 1;
        b.in_flight = true;
        b.due = now + u64::from(expires.max(60));
        let target = b
            .target
            .as_deref()
            .and_then(|t| Uri::parse(t).ok())
            .or_else(|| Uri::parse(&b.key.0).ok())
            .unwrap_or_else(|| Uri::Other(b.key.0.clone()));
        let mut req = Request::new(Method::Subscribe, target);
        let h = &mut req.headers;
        h.push_known("Max-Forwards", "70");
        h.push_known("From", format!("<{}>;tag={}", b.key.2, b.from_tag));
        let to_tag = b
            .to_tag
            .as_ref()
            .map(|t| format!(";tag={t}"))
            .unwrap_or_default();
        h.push_known("To", format!("<{}>{to_tag}", b.key.0));
        h.push_known("Call-ID", b.call_id.clone());
        h.push_known("CSeq", format!("{} SUBSCRIBE", b.cseq));
        for route in &b.route {
            h.push_known("Route", route.clone());
        }
        h.push_known("Contact", contact);
        h.push_known("Event", b.event.clone());
        h.push_known("Accept", b.accept.clone());
        h.push_known("Expires", expires.to_string());
        self.out.push_back(Outgoing {
            request: req,
            to: b.to,
            dialog: dialog_of(b),
        });
    }

    pub fn poll_outgoing(&mut self) -> Option<Outgoing> {
        self.out.pop_front()
    }

    /// Whether `dialog` is one of ours.
    pub fn owns(&self, dialog: &DialogId) -> bool {
        self.by_call
            .get(&dialog.call_id)
            .and_then(|k| self.by_key.get(k))
            .is_some_and(|b| b.from_tag == dialog.from_tag)
    }

    /// A back-end SUBSCRIBE's transaction ended. Returns the key when what the lists
    /// show for it changed.
    pub fn on_result(&mut self, dialog: &DialogId, result: &ClientResult, now: u64) -> Option<Key> {
        let key = self.by_call.get(&dialog.call_id)?.clone();
        let b = self.by_key.get_mut(&key)?;
        b.in_flight = false;
        if b.ending {
            self.forget(&key);
            return None;
        }
        let before = b.state;
        let mut restart_at = None;
        match result {
            ClientResult::Response(r) if (200..300).contains(&r.status) => {
                // Only a refresh that went through shows the dialog lasts: a notifier
                // that accepts and then ends each new dialog at once still backs off.
                if b.to_tag.is_some() {
                    b.failures = 0;
                }
                if b.to_tag.is_none() {
                    b.to_tag = r
                        .headers
                        .to()
                        .ok()
                        .and_then(|t| t.tag().map(str::to_string));
                    // The 2xx that makes the dialog gives its route set, reversed
                    // (RFC 3261 §12.1.2).
                    b.route = route_set(&r.headers, true);
                }
                if let Some(c) = r.headers.contacts().ok().and_then(|c| c.into_iter().next()) {
                    b.target = Some(c.uri.to_string());
                }
                let granted = r
                    .headers
                    .expires()
                    .ok()
                    .flatten()
                    .map_or(u64::from(self.config.expires), u64::from);
                b.due = now + refresh_after(granted);
            }
            ClientResult::Response(r) if matches!(r.status, 403 | 404 | 489 | 603) => {
                b.state = Remote::Terminated(if r.status == 403 || r.status == 603 {
                    "rejected"
                } else {
                    "noresource"
                });
                b.body = None;
                restart_at = Some(now + REFUSED_RETRY);
            }
            _ => {
                // 481 (the notifier lost the dialog), 408, a timeout, a transport error:
                // start over after a back-off; the lists keep the last state meanwhile.
                b.failures += 1;
                restart_at = Some(now + (RETRY_MIN << b.failures.min(8)).min(RETRY_MAX));
            }
        }
        let changed = b.state != before;
        if let Some(at) = restart_at {
            self.restart(&key, at);
        }
        changed.then_some(key)
    }

    /// A NOTIFY from a notifier. Returns the answer and, when what the lists show for
    /// the resource changed, its key.
    pub fn on_notify(&mut self, req: &Request, now: u64) -> (Response, Option<Key>) {
        let reply = |s: u16, why: Option<&str>| Response::for_request(req, s, why);
        let (Ok(call_id), Ok(to), Ok(from)) =
            (req.headers.call_id(), req.headers.to(), req.headers.from())
        else {
            return (reply(400, None), None);
        };
        let Some(key) = self.by_call.get(call_id).cloned() else {
            return (reply(481, None), None);
        };
        let Some(b) = self.by_key.get_mut(&key) else {
            return (reply(481, None), None);
        };
        if to.tag() != Some(b.from_tag.as_str()) {
            return (reply(481, None), None);
        }
        let their_tag = from.tag().map(str::to_string);
        match (&b.to_tag, &their_tag) {
            // RFC 6665 §4.1.2.4: a NOTIFY may arrive before the 200 and set the dialog,
            // its route set with it (a request's Record-Route, in order).
            (None, Some(t)) => {
                b.to_tag = Some(t.clone());
                b.route = route_set(&req.headers, false);
            }
            (Some(ours), Some(t)) if ours == t => {}
            _ => return (reply(481, None), None),
        }
        let Ok(cseq) = req.headers.cseq() else {
            return (reply(400, None), None);
        };
        if b.remote_cseq.is_some_and(|last| cseq.seq <= last) {
            // Out of order (UDP) or repeated: older than the state we show.
            return (
                reply(500, Some("Server Internal Error - CSeq out of order")),
                None,
            );
        }
        b.remote_cseq = Some(cseq.seq);
        let Ok(Some(state)) = req.headers.subscription_state() else {
            return (
                reply(400, Some("Bad Request - no Subscription-State")),
                None,
            );
        };
        if let Some(c) = req
            .headers
            .contacts()
            .ok()
            .and_then(|c| c.into_iter().next())
        {
            b.target = Some(c.uri.to_string());
        }
        let before = (b.state, b.body.clone());
        let mut restart_at = None;
        if let (Some(left), "active" | "pending") = (state.expires, state.state.as_str()) {
            // RFC 6665 §4.1.2.3: the notifier may shorten the subscription; refresh
            // before what it says is left.
            b.due = b.due.min(now + refresh_after(u64::from(left)));
        }
        match state.state.as_str() {
            "active" => b.state = Remote::Active,
            "pending" => b.state = Remote::Pending,
            "terminated" => {
                let why = reason(state.reason.as_deref());
                b.state = Remote::Terminated(why);
                // RFC 6665 §4.1.3: deactivated and timeout invite a new subscription at
                // once, probation and giveup after retry-after; rejected, noresource
                // and invariant do not.
                b.failures += 1;
                let backoff = match b.failures {
                    1 => 0,
                    n => (RETRY_MIN << n.min(8)).min(RETRY_MAX),
                };
                let after = match why {
                    "deactivated" | "timeout" => backoff,
                    "probation" | "giveup" => {
                        u64::from(state.retry_after.unwrap_or(30)).max(backoff)
                    }
                    _ => REFUSED_RETRY,
                };
                restart_at = Some(now + after);
            }
            _ => {}
        }
        if !req.body.is_empty() && b.state == Remote::Active {
            b.body = Some(Arc::new(req.body.clone()));
        } else if b.state != Remote::Active {
            b.body = None;
        }
        let changed = before.0 != b.state || before.1 != b.body;
        if let Some(at) = restart_at {
            self.restart(&key, at);
        }
        (reply(200, None), changed.then_some(key))
    }

    /// When [`Backends::handle_timeout`] next has work.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.by_key
            .values()
            .filter(|b| !b.in_flight)
            .map(|b| b.due)
            .min()
    }

    /// Refreshes what is due, restarts what waited out its back-off, and ends the
    /// dialogs `needed` says no list wants any more.
    pub fn handle_timeout(&mut self, now: u64, needed: impl Fn(&Key) -> bool) {
        let due: Vec<Key> = self
            .by_key
            .values()
            .filter(|b| !b.in_flight && b.due <= now)
            .map(|b| b.key.clone())
            .collect();
        for key in due {
            if needed(&key) {
                self.subscribe(&key, self.config.expires, now);
            } else {
                self.end(&key, now);
            }
        }
    }

    /// Ends the dialogs no list needs now.
    pub fn prune(&mut self, now: u64, needed: impl Fn(&Key) -> bool) {
        let unneeded: Vec<Key> = self.by_key.keys().filter(|k| !needed(k)).cloned().collect();
        for key in unneeded {
            self.end(&key, now);
        }
    }

    /// Unsubscribes (when the dialog stands) and forgets `key`.
    fn end(&mut self, key: &Key, now: u64) {
        let Some(b) = self.by_key.get_mut(key) else {
            return;
        };
        if b.to_tag.is_none() || b.in_flight {
            self.forget(key);
            return;
        }
        b.ending = true;
        self.subscribe(key, 0, now);
    }

    /// A new dialog from scratch at `at`: new Call-ID and tag (RFC 6665 §4.1.2.4), and
    /// whatever the old one still had in flight is ignored when it ends.
    fn restart(&mut self, key: &Key, at: u64) {
        let Some(b) = self.by_key.get_mut(key) else {
            return;
        };
        self.by_call.remove(&b.call_id);
        b.call_id = format!("rls-{}", secret_token());
        b.from_tag = secret_token();
        b.to_tag = None;
        b.target = None;
        // An initial SUBSCRIBE carries no route set of an old dialog (RFC 3261 §12.2).
        b.route.clear();
        b.remote_cseq = None;
        b.cseq = 0;
        b.in_flight = false;
        b.due = at;
        self.by_call.insert(b.call_id.clone(), key.clone());
    }

    fn forget(&mut self, key: &Key) {
        if let Some(b) = self.by_key.remove(key) {
            self.by_call.remove(&b.call_id);
        }
    }

    /// Back-end dialogs, for status and tests.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// Each dialog's resource, event and state, for `ctl` and tests.
    pub fn states(&self) -> BTreeMap<Key, Remote> {
        self.by_key
            .iter()
            .map(|(k, b)| (k.clone(), b.state))
            .collect()
    }
}

fn dialog_of(b: &Backend) -> DialogId {
    DialogId {
        call_id: b.call_id.clone(),
        to_tag: b.to_tag.clone().unwrap_or_default(),
        from_tag: b.from_tag.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::message::Message;

    /// Asks for bob's state as alice's list at time 0; the SUBSCRIBE that starts.
    fn start(b: &mut Backends) -> Outgoing {
        b.state(
            "sip:bob@remote.example",
            "presence",
            "presence",
            "application/pidf+xml",
            "sip:alice@example.com",
            0,
        );
        b.poll_outgoing().expect("a SUBSCRIBE")
    }

    fn backends() -> Backends {
        Backends::new(BackendConfig {
            server: Some((TransportKind::Udp, "127.0.0.1:5070".parse().unwrap())),
            contact: "<sip:rls@127.0.0.1:5060>".into(),
            expires: 600,
            domains: vec!["example.com".into()],
        })
    }

    fn answer(req: &Request, status: u16, extra: &str) -> Response {
        let mut r = Response::for_request(req, status, None);
        r.set_to_tag("remote1");
        for line in extra.split("\r\n").filter(|l| !l.is_empty()) {
            let (name, value) = line.split_once(": ").unwrap();
            r.headers.push(name, value);
        }
        r
    }

    fn notify(out: &Outgoing, state: &str, body: &str) -> Request {
        let h = &out.request.headers;
        let from_tag = h.from().unwrap().tag().unwrap().to_string();
        let text = format!(
            "NOTIFY sip:rls@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKn{}\r\n\
             From: <sip:bob@remote.example>;tag=remote1\r\nTo: <sip:alice@example.com>;tag={from_tag}\r\n\
             Call-ID: {}\r\nCSeq: 1 NOTIFY\r\nEvent: presence\r\nSubscription-State: {state}\r\n\
             Contact: <sip:127.0.0.1:5070>\r\nContent-Length: {}\r\n\r\n{body}",
            body.len(),
            h.call_id().unwrap(),
            body.len()
        );
        match Message::parse(text.as_bytes()).unwrap() {
            Message::Request(r) => r,
            _ => unreachable!(),
        }
    }

    #[test]
    fn backend_servers_are_addresses() {
        assert_eq!(
            parse_server("sip:127.0.0.1:5070;transport=tcp"),
            Ok((TransportKind::Tcp, "127.0.0.1:5070".parse().unwrap()))
        );
        assert_eq!(
            parse_server("sip:[::1]"),
            Ok((TransportKind::Udp, "[::1]:5060".parse().unwrap()))
        );
        assert!(parse_server("sip:presence.example.org").is_err());
        assert!(parse_server("sip:127.0.0.1;transport=ws").is_err());
        assert!(parse_server("http://127.0.0.1").is_err());
    }

    #[test]
    fn only_resources_outside_our_domains_are_remote() {
        let b = backends();
        assert!(b.is_remote("sip:bob@remote.example"));
        assert!(!b.is_remote("sip:alice@example.com"));
        assert!(!b.is_remote("sip:alice@EXAMPLE.com"));
        let all_local = Backends::new(BackendConfig::default());
        assert!(!all_local.is_remote("sip:bob@remote.example"));
    }

    #[test]
    fn one_dialog_per_resource_and_owner_and_its_notifies_set_the_state() {
        let mut b = backends();
        let ask = |b: &mut Backends, owner: &str| {
            b.state(
                "sip:bob@remote.example",
                "presence",
                "presence",
                "application/pidf+xml",
                owner,
                100,
            )
        };
        assert_eq!(
            ask(&mut b, "sip:alice@example.com"),
            (Remote::Waiting, None)
        );
        assert_eq!(ask(&mut b, "sip:alice@example.com").0, Remote::Waiting);
        let out = b.poll_outgoing().expect("a SUBSCRIBE");
        assert!(b.poll_outgoing().is_none(), "asked twice, subscribed once");
        assert_eq!(out.request.method, Method::Subscribe);
        assert_eq!(out.to.addr, "127.0.0.1:5070".parse().unwrap());
        assert_eq!(out.request.headers.get("Expires"), Some("600"));
        assert!(b.owns(&out.dialog));

        let ok = answer(
            &out.request,
            200,
            "Expires: 600\r\nContact: <sip:127.0.0.1:5070>",
        );
        assert_eq!(
            b.on_result(&out.dialog, &ClientResult::Response(ok), 100),
            None
        );
        let (r, changed) = b.on_notify(&notify(&out, "active;expires=600", "<x/>"), 101);
        assert_eq!(r.status, 200);
        assert!(changed.is_some());
        assert_eq!(
            ask(&mut b, "sip:alice@example.com"),
            (Remote::Active, Some(Arc::new(b"<x/>".to_vec())))
        );
        // Another owner: a dialog of its own (it is authorized as itself).
        ask(&mut b, "sip:carol@example.com");
        assert_eq!(b.len(), 2);

        // A NOTIFY for no dialog of ours: 481.
        let mut stray = notify(&out, "active", "");
        stray.headers.set("Call-ID", "unknown");
        assert_eq!(b.on_notify(&stray, 102).0.status, 481);
    }

    #[test]
    fn refreshes_go_before_expiry_and_failures_back_off() {
        let mut b = backends();
        let out = start(&mut b);
        let ok = answer(&out.request, 200, "Expires: 120");
        b.on_result(&out.dialog, &ClientResult::Response(ok), 0);
        assert_eq!(b.poll_timeout(), Some(90), "30 s before the granted expiry");
        b.handle_timeout(90, |_| true);
        let refresh = b.poll_outgoing().expect("a refresh");
        assert_eq!(refresh.request.headers.to().unwrap().tag(), Some("remote1"));
        assert_eq!(refresh.request.headers.cseq().unwrap().seq, 2);
        // The notifier lost the dialog: start over after a back-off, from scratch.
        let lost = answer(&refresh.request, 481, "");
        b.on_result(&refresh.dialog, &ClientResult::Response(lost), 90);
        assert!(!b.owns(&refresh.dialog), "a new dialog, a new Call-ID");
        let again_at = b.poll_timeout().unwrap();
        assert!(again_at > 90 && again_at <= 90 + RETRY_MAX);
        b.handle_timeout(again_at, |_| true);
        let fresh = b.poll_outgoing().unwrap();
        assert_eq!(fresh.request.headers.to().unwrap().tag(), None);
        assert_eq!(fresh.request.headers.cseq().unwrap().seq, 1);
    }

    #[test]
    fn refreshes_follow_the_route_set_and_a_shortened_subscription() {
        let mut b = backends();
        let out = start(&mut b);
        let ok = answer(
            &out.request,
            200,
            "Expires: 600\r\nRecord-Route: <sip:10.0.0.9;lr>\r\nRecord-Route: <sip:10.0.0.8;lr>",
        );
        b.on_result(&out.dialog, &ClientResult::Response(ok), 0);
        assert_eq!(b.poll_timeout(), Some(570));
        // The notifier says 100 s are left (RFC 6665 §4.1.2.3): refresh before that.
        let (r, _) = b.on_notify(&notify(&out, "active;expires=100", "<x/>"), 10);
        assert_eq!(r.status, 200);
        assert_eq!(b.poll_timeout(), Some(10 + 70));
        b.handle_timeout(80, |_| true);
        let refresh = b.poll_outgoing().expect("a refresh");
        let routes: Vec<&str> = refresh.request.headers.get_all("Route").collect();
        assert_eq!(
            routes,
            ["<sip:10.0.0.8;lr>", "<sip:10.0.0.9;lr>"],
            "the 2xx's Record-Route, reversed"
        );
        // A notifier that lost the dialog: the new initial SUBSCRIBE has no old route.
        let lost = answer(&refresh.request, 481, "");
        b.on_result(&refresh.dialog, &ClientResult::Response(lost), 80);
        let at = b.poll_timeout().unwrap();
        b.handle_timeout(at, |_| true);
        let fresh = b.poll_outgoing().expect("a new dialog");
        assert_eq!(fresh.request.headers.get_all("Route").count(), 0);
        assert_eq!(fresh.request.headers.to().unwrap().tag(), None);
    }

    #[test]
    fn a_longer_expires_in_a_notify_never_delays_the_refresh() {
        let mut b = backends();
        let out = start(&mut b);
        let ok = answer(&out.request, 200, "Expires: 600");
        b.on_result(&out.dialog, &ClientResult::Response(ok), 0);
        let (r, _) = b.on_notify(&notify(&out, "active;expires=100", "<x/>"), 10);
        assert_eq!(r.status, 200);
        b.handle_timeout(80, |_| true);
        let refresh = b.poll_outgoing().expect("a refresh");
        let later = answer(&refresh.request, 200, "Expires: 600");
        b.on_result(&refresh.dialog, &ClientResult::Response(later), 80);
        let mut n = notify(&out, "active;expires=3600", "<y/>");
        n.headers.set("CSeq", "5 NOTIFY");
        b.on_notify(&n, 81);
        assert_eq!(b.poll_timeout(), Some(80 + 570));
        // One that grants nothing is not asked again in a loop.
        let mut n = notify(&out, "active;expires=0", "<y/>");
        n.headers.set("CSeq", "6 NOTIFY");
        b.on_notify(&n, 90);
        assert_eq!(b.poll_timeout(), Some(90 + RETRY_MIN));
    }

    #[test]
    fn a_dialog_no_list_needs_is_unsubscribed_and_forgotten() {
        let mut b = backends();
        let out = start(&mut b);
        b.on_result(
            &out.dialog,
            &ClientResult::Response(answer(&out.request, 200, "Expires: 600")),
            0,
        );
        b.prune(10, |_| false);
        let bye = b.poll_outgoing().expect("an unsubscribe");
        assert_eq!(bye.request.headers.get("Expires"), Some("0"));
        b.on_result(
            &bye.dialog,
            &ClientResult::Response(answer(&bye.request, 200, "")),
            10,
        );
        assert!(b.is_empty());
    }

    #[test]
    fn terminated_with_a_reason_to_retry_starts_a_new_dialog() {
        let mut b = backends();
        let out = start(&mut b);
        b.on_result(
            &out.dialog,
            &ClientResult::Response(answer(&out.request, 200, "Expires: 600")),
            0,
        );
        let (_, changed) = b.on_notify(&notify(&out, "terminated;reason=deactivated", ""), 5);
        assert!(changed.is_some());
        assert_eq!(b.poll_timeout(), Some(5), "at once");
        // The old dialog is over: its NOTIFYs are refused.
        let late = b.on_notify(&notify(&out, "active", ""), 5).0;
        assert_eq!(late.status, 481);
        // A refusal is not retried soon.
        let mut b = backends();
        let out = start(&mut b);
        let (_, changed) = b.on_notify(&notify(&out, "terminated;reason=rejected", ""), 5);
        assert!(changed.is_some());
        assert_eq!(b.poll_timeout(), Some(5 + REFUSED_RETRY));
    }
}
