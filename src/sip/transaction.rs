//! RFC 3261 §17 transaction state machines, sans-I/O.
//!
//! Each machine takes `now` and events (a retransmitted request, a response, a timer) and
//! returns what to do (bytes to (re)send, a result for the transaction user). The endpoint
//! owns the machines, their keys and the timer queue; nothing here knows about sockets.

use std::time::{Duration, Instant};

/// Timer base values (RFC 3261 §17.1.1.1 and Table 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerConfig {
    /// RTT estimate, default 500 ms.
    pub t1: Duration,
    /// Maximum retransmit interval for non-INVITE requests and INVITE responses, default 4 s.
    pub t2: Duration,
    /// Maximum time a message stays in the network, default 5 s.
    pub t4: Duration,
}

impl Default for TimerConfig {
    fn default() -> Self {
        TimerConfig {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
        }
    }
}

impl TimerConfig {
    /// 64·T1: Timers B, F, H and J.
    pub fn timeout(&self) -> Duration {
        self.t1 * 64
    }
}

/// What a state machine asks its owner to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxOutput {
    /// Send these bytes to the transaction's peer (first send or retransmission).
    Transmit(Vec<u8>),
    /// A client transaction got its final response (status code); the TU gets the message.
    Final(u16),
    /// A client transaction got a provisional response.
    Provisional(u16),
    /// Timer F or H fired: the peer never answered.
    Timeout,
    /// The machine is done; the owner may forget it.
    Terminated,
}

/// Non-INVITE server transaction (RFC 3261 §17.2.2, Figure 8).
#[derive(Debug)]
pub struct ServerNonInvite {
    state: ServerState,
    reliable: bool,
    timers: TimerConfig,
    last_response: Option<Vec<u8>>,
    timer_j: Option<Instant>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ServerState {
    Trying,
    Proceeding,
    Completed,
    Terminated,
}

impl ServerNonInvite {
    pub fn new(reliable: bool, timers: TimerConfig) -> Self {
        ServerNonInvite {
            state: ServerState::Trying,
            reliable,
            timers,
            last_response: None,
            timer_j: None,
        }
    }

    /// The request arrived again. Trying absorbs it; later states resend the last
    /// response (§17.2.2).
    pub fn on_request_retransmission(&self) -> Vec<TxOutput> {
        match (&self.state, &self.last_response) {
            (ServerState::Proceeding | ServerState::Completed, Some(r)) => {
                vec![TxOutput::Transmit(r.clone())]
            }
            _ => Vec::new(),
        }
    }

    /// The TU sends a response. Responses after the final one are refused (returns empty).
    pub fn send_response(&mut self, status: u16, bytes: Vec<u8>, now: Instant) -> Vec<TxOutput> {
        match self.state {
            ServerState::Trying | ServerState::Proceeding => {}
            _ => return Vec::new(),
        }
        let mut out = vec![TxOutput::Transmit(bytes.clone())];
        self.last_response = Some(bytes);
        if status < 200 {
            self.state = ServerState::Proceeding;
        } else if self.reliable {
            // Timer J is zero over reliable transports.
            self.state = ServerState::Terminated;
            out.push(TxOutput::Terminated);
        } else {
            self.state = ServerState::Completed;
            self.timer_j = Some(now + self.timers.timeout());
        }
        out
    }

    pub fn deadline(&self) -> Option<Instant> {
        match self.state {
            ServerState::Completed => self.timer_j,
            _ => None,
        }
    }

    pub fn on_timer(&mut self, now: Instant) -> Vec<TxOutput> {
        match (self.state, self.timer_j) {
            (ServerState::Completed, Some(j)) if now >= j => {
                self.state = ServerState::Terminated;
                vec![TxOutput::Terminated]
            }
            _ => Vec::new(),
        }
    }

    pub fn is_terminated(&self) -> bool {
        self.state == ServerState::Terminated
    }

    /// Whether the TU has sent a final response yet.
    pub fn has_final(&self) -> bool {
        matches!(self.state, ServerState::Completed | ServerState::Terminated)
    }

    /// In Completed, hands the final response over to an owner that stores it (and
    /// replays it on retransmissions) more compactly; the machine then replays nothing
    /// itself.
    pub fn take_final(&mut self) -> Option<Vec<u8>> {
        match self.state {
            ServerState::Completed => self.last_response.take(),
            _ => None,
        }
    }
}

/// INVITE server transaction, reduced to what a presence server needs (§17.2.1): it only
/// ever sends a final non-2xx response, retransmits it on Timer G until the ACK arrives,
/// gives up at Timer H, and absorbs the ACK for Timer I.
#[derive(Debug)]
pub struct ServerInvite {
    state: InviteState,
    reliable: bool,
    timers: TimerConfig,
    last_response: Option<Vec<u8>>,
    timer_g: Option<(Instant, Duration)>,
    timer_h: Option<Instant>,
    timer_i: Option<Instant>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InviteState {
    Proceeding,
    Completed,
    Confirmed,
    Terminated,
}

impl ServerInvite {
    pub fn new(reliable: bool, timers: TimerConfig) -> Self {
        ServerInvite {
            state: InviteState::Proceeding,
            reliable,
            timers,
            last_response: None,
            timer_g: None,
            timer_h: None,
            timer_i: None,
        }
    }

    pub fn on_request_retransmission(&self) -> Vec<TxOutput> {
        match (&self.state, &self.last_response) {
            (InviteState::Proceeding | InviteState::Completed, Some(r)) => {
                vec![TxOutput::Transmit(r.clone())]
            }
            _ => Vec::new(),
        }
    }

    /// Sends the final (non-2xx) response.
    pub fn send_response(&mut self, status: u16, bytes: Vec<u8>, now: Instant) -> Vec<TxOutput> {
        if self.state != InviteState::Proceeding {
            return Vec::new();
        }
        self.last_response = Some(bytes.clone());
        if status < 200 {
            return vec![TxOutput::Transmit(bytes)];
        }
        self.state = InviteState::Completed;
        if !self.reliable {
            self.timer_g = Some((now + self.timers.t1, self.timers.t1));
        }
        self.timer_h = Some(now + self.timers.timeout());
        vec![TxOutput::Transmit(bytes)]
    }

    /// The ACK for our final response arrived.
    pub fn on_ack(&mut self, now: Instant) -> Vec<TxOutput> {
        if self.state != InviteState::Completed {
            return Vec::new();
        }
        if self.reliable {
            self.state = InviteState::Terminated;
            return vec![TxOutput::Terminated];
        }
        self.state = InviteState::Confirmed;
        self.timer_i = Some(now + self.timers.t4);
        Vec::new()
    }

    pub fn deadline(&self) -> Option<Instant> {
        match self.state {
            InviteState::Completed => match (self.timer_g, self.timer_h) {
                (Some((g, _)), Some(h)) => Some(g.min(h)),
                (None, h) => h,
                (g, None) => g.map(|(g, _)| g),
            },
            InviteState::Confirmed => self.timer_i,
            _ => None,
        }
    }

    pub fn on_timer(&mut self, now: Instant) -> Vec<TxOutput> {
        let mut out = Vec::new();
        match self.state {
            InviteState::Completed => {
                if self.timer_h.is_some_and(|h| now >= h) {
                    self.state = InviteState::Terminated;
                    out.push(TxOutput::Timeout);
                    out.push(TxOutput::Terminated);
                    return out;
                }
                if let Some((g, interval)) = self.timer_g
                    && now >= g
                {
                    if let Some(r) = &self.last_response {
                        out.push(TxOutput::Transmit(r.clone()));
                    }
                    let next = (interval * 2).min(self.timers.t2);
                    self.timer_g = Some((now + next, next));
                }
            }
            InviteState::Confirmed if self.timer_i.is_some_and(|i| now >= i) => {
                self.state = InviteState::Terminated;
                out.push(TxOutput::Terminated);
            }
            _ => {}
        }
        out
    }

    pub fn is_terminated(&self) -> bool {
        self.state == InviteState::Terminated
    }
}

/// Non-INVITE client transaction (RFC 3261 §17.1.2, Figure 6), used for NOTIFY.
#[derive(Debug)]
pub struct ClientNonInvite {
    state: ClientState,
    reliable: bool,
    timers: TimerConfig,
    request: Vec<u8>,
    /// Next Timer E firing and the interval that produced it.
    timer_e: Option<(Instant, Duration)>,
    timer_f: Instant,
    timer_k: Option<Instant>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientState {
    Trying,
    Proceeding,
    Completed,
    Terminated,
}

impl ClientNonInvite {
    /// Starts the transaction; the first output is the initial transmission.
    pub fn start(
        request: Vec<u8>,
        reliable: bool,
        timers: TimerConfig,
        now: Instant,
    ) -> (Self, Vec<TxOutput>) {
        let tx = ClientNonInvite {
            state: ClientState::Trying,
            reliable,
            timers,
            request: request.clone(),
            // Timer E only over unreliable transports (§17.1.2.2).
            timer_e: (!reliable).then(|| (now + timers.t1, timers.t1)),
            timer_f: now + timers.timeout(),
            timer_k: None,
        };
        (tx, vec![TxOutput::Transmit(request)])
    }

    pub fn on_response(&mut self, status: u16, now: Instant) -> Vec<TxOutput> {
        match self.state {
            ClientState::Trying | ClientState::Proceeding => {}
            // Retransmitted finals are absorbed in Completed.
            _ => return Vec::new(),
        }
        if status < 200 {
            self.state = ClientState::Proceeding;
            return vec![TxOutput::Provisional(status)];
        }
        self.timer_e = None;
        if self.reliable {
            self.state = ClientState::Terminated;
            return vec![TxOutput::Final(status), TxOutput::Terminated];
        }
        self.state = ClientState::Completed;
        self.timer_k = Some(now + self.timers.t4);
        // Nothing is retransmitted any more; do not hold the request for Timer K.
        self.request = Vec::new();
        vec![TxOutput::Final(status)]
    }

    /// The transport could not deliver the request (§17.1.4).
    pub fn on_transport_error(&mut self) -> Vec<TxOutput> {
        match self.state {
            ClientState::Trying | ClientState::Proceeding => {
                self.state = ClientState::Terminated;
                vec![TxOutput::Timeout, TxOutput::Terminated]
            }
            _ => Vec::new(),
        }
    }

    pub fn deadline(&self) -> Option<Instant> {
        match self.state {
            ClientState::Trying | ClientState::Proceeding => Some(match self.timer_e {
                Some((e, _)) => e.min(self.timer_f),
                None => self.timer_f,
            }),
            ClientState::Completed => self.timer_k,
            ClientState::Terminated => None,
        }
    }

    pub fn on_timer(&mut self, now: Instant) -> Vec<TxOutput> {
        let mut out = Vec::new();
        match self.state {
            ClientState::Trying | ClientState::Proceeding => {
                if now >= self.timer_f {
                    self.state = ClientState::Terminated;
                    self.timer_e = None;
                    out.push(TxOutput::Timeout);
                    out.push(TxOutput::Terminated);
                    return out;
                }
                if let Some((e, interval)) = self.timer_e
                    && now >= e
                {
                    out.push(TxOutput::Transmit(self.request.clone()));
                    // Trying doubles up to T2; Proceeding retransmits every T2.
                    let next = match self.state {
                        ClientState::Trying => (interval * 2).min(self.timers.t2),
                        _ => self.timers.t2,
                    };
                    self.timer_e = Some((now + next, next));
                }
            }
            ClientState::Completed => {
                if self.timer_k.is_some_and(|k| now >= k) {
                    self.state = ClientState::Terminated;
                    out.push(TxOutput::Terminated);
                }
            }
            ClientState::Terminated => {}
        }
        out
    }

    pub fn is_terminated(&self) -> bool {
        self.state == ClientState::Terminated
    }

    /// Whether the final response (or a timeout) has been seen.
    pub fn is_completed(&self) -> bool {
        matches!(self.state, ClientState::Completed | ClientState::Terminated)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Drives a machine by jumping from deadline to deadline, recording when it sent.
    fn run_client(tx: &mut ClientNonInvite, start: Instant) -> (Vec<Duration>, Option<Duration>) {
        let mut sends = Vec::new();
        let mut timeout = None;
        while let Some(d) = tx.deadline() {
            for o in tx.on_timer(d) {
                match o {
                    TxOutput::Transmit(_) => sends.push(d - start),
                    TxOutput::Timeout => timeout = Some(d - start),
                    _ => {}
                }
            }
        }
        (sends, timeout)
    }

    #[test]
    fn udp_client_retransmits_on_rfc3261_schedule_and_times_out_at_64_t1() {
        let t0 = Instant::now();
        let (mut tx, first) =
            ClientNonInvite::start(b"NOTIFY".to_vec(), false, TimerConfig::default(), t0);
        assert_eq!(first, vec![TxOutput::Transmit(b"NOTIFY".to_vec())]);
        let (sends, timeout) = run_client(&mut tx, t0);
        // Intervals 0.5, 1, 2, 4, 4, 4, ... s after each send (§17.1.2.2).
        let expected: Vec<Duration> = [
            500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500,
        ]
        .iter()
        .map(|&m| ms(m))
        .collect();
        assert_eq!(sends, expected);
        assert_eq!(timeout, Some(ms(32_000)));
        assert!(tx.is_terminated());
    }

    #[test]
    fn tcp_client_never_retransmits_and_times_out_at_64_t1() {
        let t0 = Instant::now();
        let (mut tx, _) =
            ClientNonInvite::start(b"NOTIFY".to_vec(), true, TimerConfig::default(), t0);
        let (sends, timeout) = run_client(&mut tx, t0);
        assert!(sends.is_empty());
        assert_eq!(timeout, Some(ms(32_000)));
    }

    #[test]
    fn provisional_response_moves_retransmissions_to_t2() {
        let t0 = Instant::now();
        let (mut tx, _) = ClientNonInvite::start(b"N".to_vec(), false, TimerConfig::default(), t0);
        assert_eq!(
            tx.on_timer(t0 + ms(500)),
            vec![TxOutput::Transmit(b"N".to_vec())]
        );
        assert_eq!(
            tx.on_response(100, t0 + ms(600)),
            vec![TxOutput::Provisional(100)]
        );
        // The already-armed E (at 1.5 s) fires, then every T2.
        assert_eq!(tx.on_timer(t0 + ms(1500)).len(), 1);
        assert_eq!(tx.deadline(), Some(t0 + ms(5500)));
    }

    #[test]
    fn final_response_stops_retransmission_and_absorbs_retransmitted_finals_until_timer_k() {
        let t0 = Instant::now();
        let (mut tx, _) = ClientNonInvite::start(b"N".to_vec(), false, TimerConfig::default(), t0);
        assert_eq!(
            tx.on_response(200, t0 + ms(100)),
            vec![TxOutput::Final(200)]
        );
        assert!(tx.on_response(200, t0 + ms(200)).is_empty());
        assert_eq!(tx.deadline(), Some(t0 + ms(5100)));
        assert_eq!(tx.on_timer(t0 + ms(5100)), vec![TxOutput::Terminated]);
    }

    #[test]
    fn transport_error_reports_timeout_once() {
        let t0 = Instant::now();
        let (mut tx, _) = ClientNonInvite::start(b"N".to_vec(), true, TimerConfig::default(), t0);
        assert_eq!(
            tx.on_transport_error(),
            vec![TxOutput::Timeout, TxOutput::Terminated]
        );
        assert!(tx.on_transport_error().is_empty());
        assert_eq!(tx.deadline(), None);
    }

    #[test]
    fn server_absorbs_retransmission_while_trying_and_replays_final_until_timer_j() {
        let t0 = Instant::now();
        let mut tx = ServerNonInvite::new(false, TimerConfig::default());
        assert!(tx.on_request_retransmission().is_empty());
        let out = tx.send_response(200, b"200".to_vec(), t0);
        assert_eq!(out, vec![TxOutput::Transmit(b"200".to_vec())]);
        assert_eq!(
            tx.on_request_retransmission(),
            vec![TxOutput::Transmit(b"200".to_vec())]
        );
        assert!(tx.send_response(500, b"500".to_vec(), t0).is_empty());
        assert_eq!(tx.deadline(), Some(t0 + ms(32_000)));
        assert!(tx.on_timer(t0 + ms(31_999)).is_empty());
        assert_eq!(tx.on_timer(t0 + ms(32_000)), vec![TxOutput::Terminated]);
    }

    #[test]
    fn reliable_server_terminates_at_once_after_final() {
        let mut tx = ServerNonInvite::new(true, TimerConfig::default());
        let out = tx.send_response(200, b"200".to_vec(), Instant::now());
        assert_eq!(out.last(), Some(&TxOutput::Terminated));
        assert!(tx.is_terminated());
    }

    #[test]
    fn invite_final_is_retransmitted_until_ack_then_absorbed_until_timer_i() {
        let t0 = Instant::now();
        let mut tx = ServerInvite::new(false, TimerConfig::default());
        tx.send_response(405, b"405".to_vec(), t0);
        assert_eq!(
            tx.on_timer(t0 + ms(500)),
            vec![TxOutput::Transmit(b"405".to_vec())]
        );
        assert_eq!(tx.deadline(), Some(t0 + ms(1500)));
        assert!(tx.on_ack(t0 + ms(600)).is_empty());
        assert_eq!(tx.deadline(), Some(t0 + ms(5600)));
        assert_eq!(tx.on_timer(t0 + ms(5600)), vec![TxOutput::Terminated]);
    }

    #[test]
    fn invite_without_ack_gives_up_at_timer_h() {
        let t0 = Instant::now();
        let mut tx = ServerInvite::new(false, TimerConfig::default());
        tx.send_response(405, b"405".to_vec(), t0);
        let mut sends = 0;
        while let Some(d) = tx.deadline() {
            for o in tx.on_timer(d) {
                if matches!(o, TxOutput::Transmit(_)) {
                    sends += 1;
                }
            }
            assert!(d <= t0 + ms(32_000));
        }
        assert!(tx.is_terminated());
        // G: 0.5, 1.5, 3.5, 7.5, then every 4 s up to 31.5 → 10 retransmissions.
        assert_eq!(sends, 10);
    }
}
