//! UDP receive loop: one task per bound socket, each datagram handed to the core as is.

use std::sync::Arc;

use log::warn;
use smol::channel::Sender;

use crate::sip::endpoint::{Peer, Source, TransportKind};
use crate::transport::Inbound;

/// Largest possible UDP payload; anything above `max_message_size` is still read whole so
/// the core can answer 513 instead of parsing a truncated message.
const DATAGRAM_BUFFER: usize = 65_536;

pub(super) async fn receive_loop(sock: Arc<smol::net::UdpSocket>, events: Sender<Inbound>) {
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
                if events
                    .send(Inbound::Message {
                        bytes: bytes.to_vec(),
                        source,
                    })
                    .await
                    .is_err()
                {
                    return;
                }
            }
            // ICMP port unreachable surfaces here on some systems; keep serving.
            Err(e) => warn!("udp:{local}: receive error: {e}"),
        }
    }
}
