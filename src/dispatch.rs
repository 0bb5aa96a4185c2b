//! The transaction user's front door: the checks every request passes before any event
//! package sees it (Require, Max-Forwards, served domains) and routing by method.
//! OPTIONS and the methods we do not serve are answered here.

use crate::sip::message::{Method, Request, Response};
use crate::sip::uri::Uri;

/// The option tag of request-contained list subscriptions (RFC 5367 §6), implemented
/// when `rls_request_lists` is on.
pub const RECIPIENT_LIST_SUBSCRIBE: &str = "recipient-list-subscribe";

/// Where a request goes after the common checks.
#[derive(Debug)]
pub enum Route {
    /// Answer with this response; nothing else to do.
    Respond(Response),
    /// PUBLISH or SUBSCRIBE for the presence engine.
    Engine,
}

/// Server-wide request policy.
#[derive(Debug, Clone)]
pub struct Dispatcher {
    /// Served domains, lower-case; empty serves any.
    domains: Vec<String>,
    /// Our own addresses as they may appear in a Request-URI host.
    local_hosts: Vec<String>,
    /// Methods answered by the engine (PUBLISH/SUBSCRIBE once it is wired).
    engine_methods: Vec<Method>,
    /// Event packages for Allow-Events.
    allow_events: Vec<String>,
    /// Body types for Accept.
    accept: Vec<String>,
    /// Option tags we implement (RFC 3261 §8.2.2.3: anything else in Require gets 420).
    supported: Vec<&'static str>,
}

impl Dispatcher {
    pub fn new(domains: &[String], local_hosts: Vec<String>) -> Dispatcher {
        Dispatcher {
            domains: domains.iter().map(|d| d.to_ascii_lowercase()).collect(),
            local_hosts: local_hosts
                .into_iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
            engine_methods: Vec::new(),
            allow_events: Vec::new(),
            accept: Vec::new(),
            supported: Vec::new(),
        }
    }

    /// Declares an option tag implemented (accepted in Require, listed in Supported).
    pub fn with_supported(mut self, tag: &'static str) -> Self {
        self.supported.push(tag);
        self
    }

    /// Declares what the engine serves, for routing and for Allow/Allow-Events/Accept.
    pub fn with_engine(
        mut self,
        methods: Vec<Method>,
        events: Vec<String>,
        accept: Vec<String>,
    ) -> Self {
        self.engine_methods = methods;
        self.allow_events = events;
        self.accept = accept;
        self
    }

    /// The Allow header value: what this server answers.
    pub fn allow(&self) -> String {
        let mut methods = vec!["OPTIONS", "ACK", "CANCEL"];
        methods.extend(self.engine_methods.iter().map(|m| m.as_str()));
        methods.join(", ")
    }

    pub fn allow_events(&self) -> String {
        self.allow_events.join(", ")
    }

    /// Runs the common checks and routes the request.
    pub fn route(&self, req: &Request) -> Route {
        let reply = |status: u16, reason: Option<&str>| Response::for_request(req, status, reason);

        // RFC 3261 §8.2.2.3: refuse extensions we do not implement.
        let unsupported: Vec<&str> = req
            .headers
            .require()
            .into_iter()
            .filter(|t| !self.supported.iter().any(|s| s.eq_ignore_ascii_case(t)))
            .collect();
        if !unsupported.is_empty() && req.method != Method::Cancel {
            let mut r = reply(420, None);
            r.headers.push("Unsupported", unsupported.join(", "));
            return Route::Respond(r);
        }

        // A request that arrives with no hops left cannot go further; OPTIONS is the
        // exception a UAS may answer itself (§11, §16.3 step 3).
        if let Ok(Some(0)) = req.headers.max_forwards()
            && req.method != Method::Options
        {
            return Route::Respond(reply(483, None));
        }

        if !self.serves(&req.uri) {
            return Route::Respond(reply(404, Some("Not Found - domain not served")));
        }

        match &req.method {
            Method::Options => Route::Respond(self.options_response(req)),
            // Our transactions answer at once, so nothing is left to cancel (§9.2).
            Method::Cancel => Route::Respond(reply(200, None)),
            m if self.engine_methods.contains(m) => Route::Engine,
            // §21.5.2: a method we do not recognise at all.
            Method::Other(_) => {
                let mut r = reply(501, None);
                r.headers.push("Allow", self.allow());
                Route::Respond(r)
            }
            // §8.2.1: known but not served here.
            _ => {
                let mut r = reply(405, None);
                r.headers.push("Allow", self.allow());
                Route::Respond(r)
            }
        }
    }

    fn serves(&self, uri: &Uri) -> bool {
        if self.domains.is_empty() {
            return true;
        }
        let Some(sip) = uri.as_sip() else {
            return false;
        };
        let host = sip.host.to_string().to_ascii_lowercase();
        self.domains.contains(&host) || self.local_hosts.contains(&host)
    }

    /// RFC 3261 §11.2: OPTIONS answers say what we can do.
    fn options_response(&self, req: &Request) -> Response {
        let mut r = Response::for_request(req, 200, None);
        r.headers.push("Allow", self.allow());
        if !self.accept.is_empty() {
            r.headers.push("Accept", self.accept.join(", "));
        }
        if !self.allow_events.is_empty() {
            r.headers.push("Allow-Events", self.allow_events());
        }
        r.headers.push("Supported", self.supported.join(", "));
        r
    }
}
