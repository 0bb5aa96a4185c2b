//! One subscription (RFC 6665) as a state machine, the way `sip::transaction` holds one
//! transaction: a value per dialog that owns everything about it — its status, expiry,
//! remote and local CSeq, body version and the reservation of both on disk, the NOTIFY in
//! flight and the newest one waiting behind it, the connection it arrived on, its route
//! set and remote target. Transitions are methods; the engine feeds it inputs and time,
//! writes its row to the store and sends what it asks for. Dropping it is its cleanup.
//!
//! Sans-I/O and body-agnostic: bodies are opaque bytes the engine hands over, and the
//! package only names the event, the content type and any per-watcher stamp.
//!
//! NOTIFY ordering (RFC 6665 §4.2.2): one NOTIFY in flight at a time, so they never
//! overtake each other; what is asked for meanwhile waits, the newest replacing an older
//! one, except that two changes (partial bodies) cannot replace each other and become
//! "the full state" instead.
//!
//! Counters: the local CSeq and body version must keep rising across restarts, a
//! `kill -9` included (RFC 3261 §12.2.2; a version going backwards looks like an old
//! document). The row holds a reservation: the engine writes the row [`STEP`] ahead,
//! and the NOTIFYs below it take their values from memory. A NOTIFY may leave only once
//! the write that reserved its values is durable, so a new reservation is written when
//! half of the last one is used: by the time a NOTIFY needs it, the periodic flush has
//! usually made it durable and nothing waits. After a crash the subscription restarts
//! from the reservation, above anything sent. A subscription that leaves memory writes
//! its exact values back.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use crate::events::package::{EventPackage, Registry};
use crate::sip::dialog::DialogId;
use crate::sip::endpoint::{ClientResult, ConnId, Peer, TransportKind};
use crate::sip::header::NameAddr;
use crate::sip::message::{Method, Request};
use crate::sip::uri::{Host, Uri};
use crate::store::{SubscriptionRow, status as code};

/// NOTIFYs one reservation of the row's counters covers.
pub const STEP: u32 = 128;

/// Where a subscription stands (RFC 6665 §4.1.3, RFC 3857 §3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Active,
    Pending,
    /// Timed out while pending: the owner may still approve the watcher (RFC 3857).
    Waiting,
    Terminated(Reason),
}

/// Why a subscription ended, or what happened to a watcher (RFC 6665 §4.2.2 reasons,
/// RFC 3857 §3.4 events).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Subscribe,
    Approved,
    Deactivated,
    Probation,
    Rejected,
    Timeout,
    Giveup,
    Noresource,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Subscribe => "subscribe",
            Reason::Approved => "approved",
            Reason::Deactivated => "deactivated",
            Reason::Probation => "probation",
            Reason::Rejected => "rejected",
            Reason::Timeout => "timeout",
            Reason::Giveup => "giveup",
            Reason::Noresource => "noresource",
        }
    }

    pub fn parse(s: &str) -> Option<Reason> {
        [
            Reason::Subscribe,
            Reason::Approved,
            Reason::Deactivated,
            Reason::Probation,
            Reason::Rejected,
            Reason::Timeout,
            Reason::Giveup,
            Reason::Noresource,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
    }
}

impl Status {
    /// The OpenSIPS integer rows and dumps carry.
    pub fn code(self) -> u8 {
        match self {
            Status::Active => code::ACTIVE,
            Status::Pending => code::PENDING,
            Status::Waiting => code::WAITING,
            Status::Terminated(_) => code::TERMINATED,
        }
    }

    /// From a row's integer and reason; unknown integers read as pending, which grants
    /// nothing until the rules are looked at again.
    pub fn from_code(status: u8, reason: Option<&str>) -> Status {
        match status {
            code::ACTIVE => Status::Active,
            code::WAITING => Status::Waiting,
            code::TERMINATED => Status::Terminated(
                reason
                    .and_then(Reason::parse)
                    .unwrap_or(Reason::Deactivated),
            ),
            _ => Status::Pending,
        }
    }
}

/// A NOTIFY body as the engine hands it over.
#[derive(Debug, Clone)]
pub enum Body {
    /// No body (pending, or nothing to say).
    None,
    /// The whole state.
    Full(Arc<Vec<u8>>),
    /// A change to apply on top of the previous NOTIFY's state (RFC 3858 §4.4).
    Delta(Arc<Vec<u8>>),
}

impl Body {
    /// The whole state, or none.
    pub fn full(state: Option<Arc<Vec<u8>>>) -> Body {
        state.map_or(Body::None, Body::Full)
    }
}

/// The NOTIFY waiting behind the one in flight.
#[derive(Debug, Clone)]
pub enum Next {
    Send(Body),
    /// Two changes met: send the current full state, computed when it leaves.
    FullState,
}

/// What the end of a NOTIFY transaction means for the subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    Delivered,
    /// Not delivered, but the subscription goes on (the next state will be tried).
    Failed,
    /// The subscriber no longer has it (481), or does not answer and
    /// `end_sub_on_timeout` says that ends it.
    Ended,
}

/// One subscription dialog.
pub struct Subscription {
    id: DialogId,
    row: SubscriptionRow,
    package: Arc<dyn EventPackage>,
    status: Status,
    /// CSeq of the last NOTIFY sent (0: none yet).
    cseq: u32,
    /// Version the next NOTIFY's body carries.
    version: u32,
    /// (CSeq, version) the stored row holds: a reservation at or above both, and the
    /// store write (`Store::write_seq`) that reserved it.
    stored: (u32, u32, u64),
    /// The reservation before it, which still covers the NOTIFYs up to it.
    previous: (u32, u32, u64),
    in_flight: bool,
    waiting: Option<Next>,
    /// The rest of a NOTIFY cut to fit one datagram: they leave, in order, before
    /// anything waiting.
    pieces: VecDeque<Arc<Vec<u8>>>,
    conn: Option<ConnId>,
    /// Sent a NOTIFY since the last idle check.
    busy: bool,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("id", &self.id)
            .field("status", &self.status)
            .field("cseq", &self.cseq)
            .field("in_flight", &self.in_flight)
            .field("waiting", &self.waiting.is_some())
            .finish()
    }
}

impl Subscription {
    /// A new dialog, before its row exists. Its first NOTIFY is covered by the row the
    /// engine writes to create it: exact values, no reservation ahead.
    pub fn new(
        mut row: SubscriptionRow,
        package: Arc<dyn EventPackage>,
        status: Status,
        conn: Option<ConnId>,
    ) -> Subscription {
        let version = row.version;
        // The first NOTIFY needs no durable reservation: if a crash loses the row that
        // creates the dialog, the dialog is gone with it and no CSeq can repeat.
        let stored = (1, version.saturating_add(1), 0);
        row.local_cseq = stored.0;
        row.version = stored.1;
        Subscription {
            id: id_of(&row),
            row,
            package,
            status,
            cseq: 0,
            version,
            stored,
            previous: (0, 0, 0),
            in_flight: false,
            waiting: None,
            pieces: VecDeque::new(),
            conn,
            busy: true,
        }
    }

    /// A subscription read back from its row.
    pub fn from_row(row: SubscriptionRow, package: Arc<dyn EventPackage>) -> Subscription {
        let status = Status::from_code(row.status, row.reason.as_deref());
        // Read back from the disk's copy: durable as far as anyone can tell.
        let stored = (row.local_cseq, row.version, 0);
        Subscription {
            id: id_of(&row),
            status,
            cseq: stored.0,
            version: stored.1,
            stored,
            previous: (0, 0, 0),
            row,
            package,
            in_flight: false,
            waiting: None,
            pieces: VecDeque::new(),
            conn: None,
            busy: false,
        }
    }

    pub fn id(&self) -> &DialogId {
        &self.id
    }

    pub fn package(&self) -> &Arc<dyn EventPackage> {
        &self.package
    }

    pub fn status(&self) -> Status {
        self.status
    }

    pub fn resource(&self) -> &str {
        &self.row.presentity_uri
    }

    pub fn watcher(&self) -> &str {
        &self.row.watcher_uri
    }

    /// The stored Event value (package name and selectors).
    pub fn event(&self) -> &str {
        &self.row.event
    }

    pub fn event_id(&self) -> Option<&str> {
        self.row.event_id.as_deref()
    }

    /// Unix seconds.
    pub fn expires(&self) -> u64 {
        self.row.expires
    }

    pub fn local_contact(&self) -> &str {
        &self.row.local_contact
    }

    pub fn remote_target(&self) -> &str {
        &self.row.remote_target
    }

    pub fn conn(&self) -> Option<ConnId> {
        self.conn
    }

    /// Whether NOTIFYs can reach the subscriber only over the connection its
    /// SUBSCRIBE came on: a WebSocket client (RFC 7118 §5), a Contact in `.invalid`
    /// (what such clients give), or an RFC 5626 flow (`ob`). Such a subscription ends
    /// when that connection does.
    pub fn connection_bound(&self) -> bool {
        // Behind a Record-Routing proxy the connection is the proxy's: NOTIFYs follow
        // the route set, whatever becomes of that connection.
        if !self.row.record_route.is_empty() {
            return false;
        }
        if self.peer().is_some_and(|p| p.kind.inbound_only()) {
            return true;
        }
        let target = Uri::parse(&self.row.remote_target).ok();
        target.as_ref().and_then(|u| u.as_sip()).is_some_and(|sip| {
            let invalid = match &sip.host {
                Host::Domain(d) => {
                    let d = d.trim_end_matches('.');
                    d.len() >= 8
                        && d.get(d.len() - 8..)
                            .is_some_and(|tail| tail.eq_ignore_ascii_case(".invalid"))
                }
                _ => false,
            };
            invalid || sip.param("ob").is_some()
        })
    }

    pub fn is_terminated(&self) -> bool {
        matches!(self.status, Status::Terminated(_))
    }

    /// The row as the store should hold it now: status, reason and the reserved
    /// counters brought up to date.
    pub fn row(&mut self) -> &SubscriptionRow {
        self.row.status = self.status.code();
        self.row.reason = match self.status {
            Status::Terminated(r) => Some(r.as_str().to_owned()),
            _ => None,
        };
        self.row.local_cseq = self.stored.0;
        self.row.version = self.stored.1;
        &self.row
    }

    /// The row with the counters `reservation`, to write before [`Subscription::reserved`].
    pub fn row_reserving(&mut self, reservation: (u32, u32)) -> SubscriptionRow {
        let mut row = self.row().clone();
        row.local_cseq = reservation.0;
        row.version = reservation.1;
        row
    }

    // --- transitions ------------------------------------------------------------

    /// Takes a row a restore wrote for this dialog: its status and settings win, the
    /// counters keep rising (a reservation below what was sent is renewed before the
    /// next NOTIFY).
    pub fn adopt(&mut self, row: SubscriptionRow) {
        self.status = Status::from_code(row.status, row.reason.as_deref());
        self.stored = (row.local_cseq, row.version, 0);
        self.previous = (0, 0, 0);
        self.cseq = self.cseq.max(row.local_cseq);
        self.version = self.version.max(row.version);
        self.row = row;
    }

    /// An in-dialog SUBSCRIBE (RFC 6665 §4.2.1.2). `Err` when its CSeq is lower than the
    /// last one (RFC 3261 §12.2.2: answered 500).
    pub fn refresh(
        &mut self,
        remote_cseq: u32,
        expires: u64,
        target: Option<String>,
        conn: Option<ConnId>,
    ) -> Result<(), OutOfOrder> {
        if remote_cseq < self.row.remote_cseq {
            return Err(OutOfOrder);
        }
        self.row.remote_cseq = remote_cseq;
        self.row.expires = expires;
        if let Some(t) = target {
            // SUBSCRIBE is a target refresh request (RFC 6665 §4.1.2.1).
            self.row.remote_target = t;
        }
        if conn.is_some() {
            self.conn = conn;
        }
        Ok(())
    }

    /// A new authorization status; whether it changed.
    pub fn set_status(&mut self, status: Status) -> bool {
        let changed = self.status != status;
        self.status = status;
        changed
    }

    /// Asks for a NOTIFY with the current status and `body`. It waits if one is in
    /// flight; a terminated subscription takes no more.
    /// True when a NOTIFY was already waiting and this one takes its place (the two
    /// changes leave as one NOTIFY).
    pub fn notify(&mut self, body: Body) -> bool {
        if self.is_terminated() {
            return false;
        }
        let waiting = self.waiting.take();
        let coalesced = waiting.is_some();
        self.waiting = Some(match (waiting, body) {
            (Some(_), Body::Delta(_)) => Next::FullState,
            (_, body) => Next::Send(body),
        });
        coalesced
    }

    /// Ends the subscription: its final NOTIFY (`Subscription-State: terminated`) with
    /// `body` replaces anything waiting, and follows the one in flight.
    pub fn terminate(&mut self, reason: Reason, body: Body) {
        self.status = Status::Terminated(reason);
        self.waiting = Some(Next::Send(body));
        self.pieces.clear();
    }

    /// The NOTIFY that can leave now, if one waits and none is in flight: the next
    /// piece of a NOTIFY that was cut, else what waits.
    pub fn next_to_send(&self) -> Option<Next> {
        if self.in_flight {
            None
        } else if let Some(piece) = self.pieces.front() {
            Some(Next::Send(Body::Delta(piece.clone())))
        } else {
            self.waiting.clone()
        }
    }

    /// The NOTIFY just sent was the first of `rest`, cut to fit one datagram: the rest
    /// follow it, one NOTIFY each, before anything waiting.
    pub fn send_pieces_after(&mut self, rest: impl IntoIterator<Item = Arc<Vec<u8>>>) {
        self.pieces.extend(rest);
    }

    /// Whether NOTIFYs go in UDP datagrams.
    pub fn over_udp(&self) -> bool {
        self.peer().is_some_and(|p| p.kind == TransportKind::Udp)
    }

    /// A new reservation to write now, when less than half of the stored one is left
    /// for the NOTIFYs to come (never for a new dialog's first NOTIFY, which its
    /// creating row covers).
    pub fn reservation_needed(&self) -> Option<(u32, u32)> {
        let cseq = self.cseq.saturating_add(1);
        let half = STEP / 2;
        let plenty = cseq.saturating_add(half) <= self.stored.0
            && self.version.saturating_add(half) < self.stored.1;
        if self.cseq == 0 && cseq <= self.stored.0 && self.version < self.stored.1 || plenty {
            return None;
        }
        Some((
            cseq.saturating_add(STEP),
            self.version.saturating_add(1).saturating_add(STEP),
        ))
    }

    /// Records that the row now holds `reservation`, written by the store's write
    /// number `seq`.
    pub fn reserved(&mut self, reservation: (u32, u32), seq: u64) {
        self.previous = self.stored;
        self.stored = (reservation.0, reservation.1, seq);
    }

    /// Whether the row holds exactly the counters used so far.
    pub fn is_exact(&self) -> bool {
        (self.stored.0, self.stored.1) == (self.cseq, self.version)
    }

    /// Makes the row's counters the exact ones (the engine writes it): for a
    /// subscription leaving memory, so a clean restart continues without a jump.
    pub fn settle(&mut self) {
        self.stored = (self.cseq, self.version, self.stored.2);
    }

    /// Whether the row's reservation already covers the next NOTIFY (it may leave even
    /// when renewing the reservation failed).
    pub fn next_is_reserved(&self) -> bool {
        self.cseq.saturating_add(1) <= self.stored.0 && self.version < self.stored.1
    }

    /// The store write that reserved the values of the NOTIFY about to leave (0 when
    /// nothing must be durable first).
    fn covering_write(&self) -> u64 {
        let (cseq, version) = (self.cseq.saturating_add(1), self.version);
        let (c, v, seq) = self.previous;
        if cseq <= c && version < v {
            seq
        } else {
            self.stored.2
        }
    }

    /// Takes the waiting NOTIFY and builds it with `body` (the waiting one's, or the
    /// full state the engine computed for [`Next::FullState`]). Call only after any
    /// reservation was written. Returns the request, where it goes, and the store write
    /// that must be durable before it leaves (0: none). `None` when the dialog has no
    /// usable target: the caller ends it.
    pub fn send(&mut self, body: Body, now: u64) -> Option<(Request, Peer, u64)> {
        // What leaves is the next piece if there is one (see `next_to_send`), else
        // what waited.
        if self.pieces.pop_front().is_none() {
            self.waiting = None;
        }
        let to = self.peer()?;
        let after = self.covering_write();
        self.cseq = self.cseq.saturating_add(1);
        let version = self.version;
        self.version = self.version.saturating_add(1);
        self.in_flight = true;
        self.busy = true;
        let state = match self.status {
            Status::Terminated(r) => SubState::Terminated(r),
            Status::Active => SubState::Active,
            Status::Pending | Status::Waiting => SubState::Pending,
        };
        let remaining = self.row.expires.saturating_sub(now);
        let request = build_notify(
            &self.row,
            self.package.as_ref(),
            self.cseq,
            version,
            &body,
            state,
            remaining,
        );
        Some((request, to, after))
    }

    /// The NOTIFY in flight ended with `result`.
    pub fn delivered(&mut self, result: &ClientResult, end_on_timeout: bool) -> Delivery {
        self.in_flight = false;
        match result {
            ClientResult::Response(r) if (200..300).contains(&r.status) => Delivery::Delivered,
            // RFC 6665 §4.2.2: 481 means the subscriber has no such subscription.
            ClientResult::Response(r) if r.status == 481 => Delivery::Ended,
            ClientResult::Response(r) if r.status == 408 && end_on_timeout => Delivery::Ended,
            ClientResult::Timeout | ClientResult::TransportError if end_on_timeout => {
                Delivery::Ended
            }
            _ => Delivery::Failed,
        }
    }

    /// Nothing in flight and nothing waiting.
    pub fn is_quiet(&self) -> bool {
        !self.in_flight && self.waiting.is_none() && self.pieces.is_empty()
    }

    /// Whether a NOTIFY went out since the last call; clears the mark.
    pub fn take_busy(&mut self) -> bool {
        std::mem::replace(&mut self.busy, false)
    }

    /// Where NOTIFYs go: the first Route if there is a route set, else the remote target
    /// (RFC 3261 §12.2.1.1, §8.1.2), over the connection the subscription came on when
    /// it is still there. A host name we cannot resolve without DNS falls back to the
    /// address the SUBSCRIBE came from.
    fn peer(&self) -> Option<Peer> {
        let fallback: Option<(TransportKind, SocketAddr)> = parse_peer(&self.row.transport_peer);
        let target = match self.row.record_route.first() {
            Some(route) => NameAddr::parse(route).ok().map(|n| n.uri),
            None => Uri::parse(&self.row.remote_target).ok(),
        };
        let from_uri = target.as_ref().and_then(|u| u.as_sip()).and_then(|sip| {
            let ip: IpAddr = match &sip.host {
                Host::V4(a) => IpAddr::V4(*a),
                Host::V6(a) => IpAddr::V6(*a),
                Host::Domain(_) => return None,
            };
            let named = sip
                .param("transport")
                .flatten()
                .and_then(TransportKind::from_name);
            let kind = match (named, sip.scheme) {
                (Some(k), _) => k,
                (None, crate::sip::uri::Scheme::Sips) => TransportKind::Tls,
                (None, _) => fallback.map(|f| f.0).unwrap_or(TransportKind::Udp),
            };
            let port = match kind {
                TransportKind::Tls | TransportKind::Wss => 5061,
                _ => 5060,
            };
            Some((kind, SocketAddr::new(ip, sip.port.unwrap_or(port))))
        });
        // RFC 7118 §5: a WebSocket client is reached only over its own connection; the
        // address it came from is the one that connection has.
        let (kind, addr) = match (from_uri, fallback) {
            // RFC 7118 §5.2 names both WS and WSS `transport=ws`: the connection the
            // subscription came on says which.
            (Some((kind, _)), Some((fk, faddr))) if kind.inbound_only() && fk.inbound_only() => {
                (fk, faddr)
            }
            (from_uri, fallback) => from_uri.or(fallback)?,
        };
        let conn = match kind {
            TransportKind::Udp => None,
            _ => self.conn,
        };
        Some(Peer { kind, addr, conn })
    }
}

/// Why NOTIFYs could never be sent to `uri` (a Contact, or the first Record-Route), if
/// that is so: checked when a subscription is made or its target changes, so that a
/// bad target is refused with 400 instead of becoming NOTIFYs sprayed at a multicast
/// group or sent in the clear to a `sips:` target.
pub fn unusable_target(uri: &Uri) -> Option<&'static str> {
    let Some(sip) = uri.as_sip() else {
        return Some("the target is not a SIP URI");
    };
    if let Some(t) = sip.param("transport") {
        let Some(kind) = t.and_then(TransportKind::from_name) else {
            return Some(
                "the target's transport is not one this server has (udp, tcp, tls, ws, wss)",
            );
        };
        // RFC 5630 §3.1.3: a sips: target is reached over TLS (or WSS, which RFC 7118
        // §5.2 writes `transport=ws` under sips:) only.
        if sip.scheme == crate::sip::uri::Scheme::Sips && !kind.is_secure() && !kind.inbound_only()
        {
            return Some("a sips: target must be reached over TLS, not the transport it names");
        }
    }
    let ip = match &sip.host {
        Host::V4(a) => IpAddr::V4(*a),
        Host::V6(a) => IpAddr::V6(*a),
        Host::Domain(_) => return None,
    };
    let bad = match ip.to_canonical() {
        IpAddr::V4(a) => a.is_multicast() || a.is_broadcast() || a.is_unspecified(),
        IpAddr::V6(a) => a.is_multicast() || a.is_unspecified(),
    };
    bad.then_some("the target is a multicast, broadcast or unspecified address")
}

/// An in-dialog request whose CSeq went backwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutOfOrder;

/// The dialog a row belongs to.
pub fn id_of(row: &SubscriptionRow) -> DialogId {
    DialogId {
        call_id: row.call_id.clone(),
        to_tag: row.to_tag.clone(),
        from_tag: row.from_tag.clone(),
    }
}

/// The Subscription-State a NOTIFY carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SubState {
    Active,
    Pending,
    Terminated(Reason),
}

/// `udp:1.2.3.4:5060` → (Udp, addr).
fn parse_peer(s: &str) -> Option<(TransportKind, SocketAddr)> {
    let (kind, addr) = s.split_once(':')?;
    Some((TransportKind::from_name(kind)?, addr.parse().ok()?))
}

/// A NOTIFY inside the dialog (RFC 3261 §12.2.1.1; RFC 6665 §4.2.2, §8.2.3).
pub(super) fn build_notify(
    row: &SubscriptionRow,
    package: &dyn EventPackage,
    cseq: u32,
    version: u32,
    body: &Body,
    state: SubState,
    remaining: u64,
) -> Request {
    let uri = Uri::parse(&row.remote_target)
        .or_else(|_| Uri::parse(&row.watcher_uri))
        .unwrap_or_else(|_| Uri::Other(row.remote_target.clone()));
    let mut req = Request::new(Method::Notify, uri);
    let h = &mut req.headers;
    h.push_known("Max-Forwards", "70");
    let from = if row.to_uri.is_empty() {
        &row.presentity_uri
    } else {
        &row.to_uri
    };
    h.push_known("From", format!("<{from}>;tag={}", row.to_tag));
    h.push_known("To", format!("<{}>;tag={}", row.watcher_uri, row.from_tag));
    h.push_known("Call-ID", row.call_id.clone());
    h.push_known("CSeq", format!("{cseq} NOTIFY"));
    for route in &row.record_route {
        h.push_known("Route", route.clone());
    }
    h.push_known("Contact", row.local_contact.clone());
    let mut event = Registry::event_key(package);
    if let Some(id) = &row.event_id {
        event.push_str(";id=");
        event.push_str(id);
    }
    h.push_known("Event", event);
    h.push_known(
        "Subscription-State",
        match state {
            SubState::Active => format!("active;expires={remaining}"),
            SubState::Pending => format!("pending;expires={remaining}"),
            SubState::Terminated(reason) => format!("terminated;reason={}", reason.as_str()),
        },
    );
    if let Body::Full(b) | Body::Delta(b) = body {
        h.push_known("Content-Type", package.notify_type());
        req.body = package
            .watcher_body(b, version)
            .unwrap_or_else(|| b.to_vec());
    }
    req
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::package::BodyError;
    use crate::sip::message::{Message, Response};

    struct Plain;

    impl EventPackage for Plain {
        fn name(&self) -> &str {
            "x-plain"
        }
        fn publish_types(&self) -> &[&str] {
            &["x-plain/body"]
        }
        fn notify_type(&self) -> &str {
            "x-plain/body"
        }
        fn validate(&self, _body: &[u8]) -> Result<(), BodyError> {
            Ok(())
        }
        fn aggregate(&self, _resource: &str, bodies: &[&[u8]]) -> Vec<u8> {
            bodies.concat()
        }
        fn empty_body(&self, _resource: &str) -> Option<Vec<u8>> {
            None
        }
    }

    fn row(call_id: &str) -> SubscriptionRow {
        SubscriptionRow {
            presentity_uri: "sip:alice@example.com".into(),
            watcher_uri: "sip:bob@example.com".into(),
            to_uri: "sip:alice@example.com".into(),
            event: "x-plain".into(),
            event_id: None,
            call_id: call_id.into(),
            to_tag: "t".into(),
            from_tag: "f".into(),
            local_cseq: 0,
            remote_cseq: 1,
            expires: 1_000,
            status: code::ACTIVE,
            reason: None,
            version: 0,
            remote_target: "sip:bob@127.0.0.1:5070".into(),
            record_route: Vec::new(),
            local_contact: "<sip:127.0.0.1:5060>".into(),
            socket_info: "udp:127.0.0.1:5060".into(),
            transport_peer: "udp:127.0.0.1:5070".into(),
            user_agent: String::new(),
            accept: Vec::new(),
            sharing_tag: None,
        }
    }

    fn body(s: &str) -> Body {
        Body::Full(Arc::new(s.as_bytes().to_vec()))
    }

    fn delta(s: &str) -> Body {
        Body::Delta(Arc::new(s.as_bytes().to_vec()))
    }

    fn ok(req: &Request) -> ClientResult {
        let bytes = Response::for_request(req, 200, None).to_bytes();
        match Message::parse(&bytes) {
            Ok(Message::Response(r)) => ClientResult::Response(r),
            other => panic!("{other:?}"),
        }
    }

    /// Sends what waits, writing reservations as the engine would.
    fn send(s: &mut Subscription, now: u64) -> Request {
        if let Some(r) = s.reservation_needed() {
            s.reserved(r, 0);
        }
        let body = match s.next_to_send() {
            Some(Next::Send(b)) => b,
            Some(Next::FullState) => body("full"),
            None => panic!("nothing to send"),
        };
        s.send(body, now).expect("a target").0
    }

    fn cseq(r: &Request) -> u32 {
        r.headers.cseq().unwrap().seq
    }

    #[test]
    fn a_new_dialogs_first_notify_is_covered_by_the_row_that_creates_it() {
        let mut s = Subscription::new(row("c1"), Arc::new(Plain), Status::Active, None);
        assert_eq!((s.row().local_cseq, s.row().version), (1, 1));
        s.notify(body("a"));
        assert_eq!(s.reservation_needed(), None);
        let n = send(&mut s, 0);
        assert_eq!(cseq(&n), 1);
        assert!(s.is_exact(), "nothing in memory beyond the row");
        // The second reserves STEP ahead.
        s.delivered(&ok(&n), true);
        s.notify(body("b"));
        assert_eq!(s.reservation_needed(), Some((2 + STEP, 2 + STEP)));
    }

    #[test]
    fn reservations_are_renewed_at_half_and_a_restart_continues_above() {
        let mut s = Subscription::from_row(
            SubscriptionRow {
                local_cseq: 4,
                version: 10,
                ..row("c2")
            },
            Arc::new(Plain),
        );
        let mut sent = Vec::new();
        let mut writes = 0;
        for i in 0..(STEP * 2 + 7) {
            s.notify(body(&i.to_string()));
            if let Some(r) = s.reservation_needed() {
                writes += 1;
                s.reserved(r, 0);
            }
            let n = s.send(body("x"), 0).unwrap().0;
            sent.push(cseq(&n));
            s.delivered(&ok(&n), true);
        }
        // Renewed whenever less than half a step is left: at the 1st, 66th, 131st,
        // 196th and 261st NOTIFY.
        assert_eq!(writes, 5);
        assert!(sent.windows(2).all(|w| w[0] < w[1]));
        // Restart without a write-back: the row's reservation is above everything sent.
        let after = Subscription::from_row(s.row().clone(), Arc::new(Plain));
        let mut after = after;
        after.notify(body("y"));
        let first = send(&mut after, 0);
        assert!(sent.iter().all(|c| *c < cseq(&first)));
    }

    #[test]
    fn notifies_wait_behind_the_one_in_flight_and_only_the_newest_is_kept() {
        let mut s = Subscription::new(row("c3"), Arc::new(Plain), Status::Active, None);
        s.notify(body("1"));
        let first = send(&mut s, 0);
        s.notify(body("2"));
        s.notify(body("3"));
        assert!(s.next_to_send().is_none(), "one in flight");
        assert_eq!(s.delivered(&ok(&first), true), Delivery::Delivered);
        let second = send(&mut s, 0);
        assert_eq!(second.body, b"3");
        assert_eq!(cseq(&second), 2);
        assert!(!s.is_quiet());
        s.delivered(&ok(&second), true);
        assert!(s.is_quiet());
    }

    #[test]
    fn two_changes_waiting_become_the_full_state() {
        let mut s = Subscription::new(row("c4"), Arc::new(Plain), Status::Active, None);
        s.notify(body("full"));
        let first = send(&mut s, 0);
        s.notify(delta("d1"));
        assert!(matches!(s.waiting, Some(Next::Send(Body::Delta(_)))));
        s.notify(delta("d2"));
        assert!(matches!(s.waiting, Some(Next::FullState)));
        s.notify(body("newer full"));
        assert!(matches!(s.waiting, Some(Next::Send(Body::Full(_)))));
        s.delivered(&ok(&first), true);
    }

    #[test]
    fn the_final_notify_replaces_what_waits_and_nothing_follows_it() {
        let mut s = Subscription::new(row("c5"), Arc::new(Plain), Status::Active, None);
        s.notify(body("1"));
        let first = send(&mut s, 100);
        s.notify(body("2"));
        s.terminate(Reason::Timeout, Body::None);
        s.notify(body("3"));
        s.delivered(&ok(&first), true);
        let last = send(&mut s, 100);
        assert_eq!(
            last.headers.get("Subscription-State"),
            Some("terminated;reason=timeout")
        );
        assert!(last.body.is_empty());
        assert!(s.is_terminated());
    }

    #[test]
    fn a_481_ends_it_and_a_timeout_only_when_configured() {
        let mut s = Subscription::new(row("c6"), Arc::new(Plain), Status::Active, None);
        s.notify(body("1"));
        send(&mut s, 0);
        assert_eq!(s.delivered(&ClientResult::Timeout, false), Delivery::Failed);
        s.notify(body("2"));
        send(&mut s, 0);
        assert_eq!(s.delivered(&ClientResult::Timeout, true), Delivery::Ended);
    }

    #[test]
    fn a_refresh_with_a_lower_cseq_is_out_of_order() {
        let mut s = Subscription::new(row("c7"), Arc::new(Plain), Status::Active, None);
        assert_eq!(s.refresh(0, 5, None, None), Err(OutOfOrder));
        assert_eq!(
            s.refresh(2, 50, Some("sip:bob@10.0.0.1".into()), None),
            Ok(())
        );
        assert_eq!(s.expires(), 50);
        assert_eq!(s.remote_target(), "sip:bob@10.0.0.1");
    }

    #[test]
    fn statuses_map_to_the_opensips_integers_and_back() {
        for st in [
            Status::Active,
            Status::Pending,
            Status::Waiting,
            Status::Terminated(Reason::Rejected),
        ] {
            let reason = match st {
                Status::Terminated(r) => Some(r.as_str()),
                _ => None,
            };
            assert_eq!(Status::from_code(st.code(), reason), st);
        }
        assert_eq!(Status::from_code(99, None), Status::Pending);
    }
}
