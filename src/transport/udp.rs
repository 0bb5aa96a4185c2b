//! UDP receive loop: one task per bound socket, each datagram handed to the core as is,
//! on the queue its triage picks (see `InboundQueues`).

use std::sync::Arc;

use log::{debug, warn};

use crate::clock::Clock;
use crate::sip::endpoint::{Peer, Source, TransportKind};
use crate::transport::{Delivery, InboundQueues};

/// Largest possible UDP payload; anything above `max_message_size` is still read whole so
/// the core can answer 513 instead of parsing a truncated message.
const DATAGRAM_BUFFER: usize = 65_536;

pub(super) async fn receive_loop(
    sock: Arc<smol::net::UdpSocket>,
    queues: InboundQueues,
    clock: Arc<dyn Clock>,
) {
    let Ok(local) = sock.local_addr() else {
        return;
    };
    let mut buf = vec![0u8; DATAGRAM_BUFFER];
    loop {
        match sock.recv_from(&mut buf).await {
            Ok((n, peer)) => {
                let Some(bytes) = buf.get(..n) else { continue };
                // Keepalive pings (RFC 5626 §4.4.1 style CRLFs) carry no message.
                if bytes.iter().all(|b| matches!(b, b'\r' | b'\n' | b' ' | 0)) {
                    continue;
                }
                let source = Source {
                    peer: Peer {
                        kind: TransportKind::Udp,
                        addr: peer,
                        conn: None,
                    },
                    local,
                };
                match queues.deliver(bytes.to_vec(), source, clock.now()).await {
                    Delivery::Queued | Delivery::Dropped => {}
                    Delivery::Refused(to, reply) => {
                        // Best effort, like any UDP response: a lost 503 leaves the
                        // client retransmitting, as if it had been dropped.
                        if let Err(e) = sock.send_to(&reply, to.addr).await {
                            debug!("udp:{local}: 503 to {} not sent: {e}", to.addr);
                        }
                    }
                    Delivery::Closed => return,
                }
            }
            // ICMP port unreachable surfaces here on some systems; keep serving.
            Err(e) => warn!("udp:{local}: receive error: {e}"),
        }
    }
}
