//! UDP sending on a thread of its own. On loopback and on small boxes most of the cost of a
//! datagram is paid by the sender inside `sendto` (the kernel delivers it to the receiver
//! in the sender's context), so the core loop hands its datagrams over in batches and a
//! second core sends them, in order, with `sendmmsg`. A send that fails for a client
//! transaction comes back to the core as `Inbound::SendFailed`.

use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use log::{debug, warn};
use smol::channel::Sender;

use crate::sip::endpoint::ClientTxId;
use crate::transport::Inbound;

/// One datagram for the sending thread.
struct Datagram {
    to: SocketAddr,
    bytes: Vec<u8>,
    tx: Option<ClientTxId>,
}

/// Datagrams collected before they go to the sending thread in one hand-over.
const FLUSH_AT: usize = 32;

/// Batches the sending thread may have waiting. Past this the core loop produces faster
/// than the kernel takes datagrams; more batches are dropped (UDP loss: requests and
/// NOTIFYs are retransmitted by their transactions) instead of piling up in memory.
const QUEUED_BATCHES: usize = 1024;

/// Most datagrams passed to one `sendmmsg` call.
const MMSG_BATCH: usize = 64;

/// How long a full socket send buffer may hold a datagram back before it counts as lost.
const SEND_STALL: Duration = Duration::from_secs(1);

/// The core loop's side: collects datagrams and hands them to the thread.
pub struct UdpOut {
    pending: Vec<Datagram>,
    queue: Option<mpsc::SyncSender<Vec<Datagram>>>,
    /// Datagrams dropped because the sending thread was that far behind.
    pub dropped: u64,
    thread: Option<JoinHandle<()>>,
}

impl UdpOut {
    /// Starts the sending thread over clones of the bound sockets.
    pub(super) fn start(
        sockets: &[std::sync::Arc<smol::net::UdpSocket>],
        events: Sender<Inbound>,
    ) -> std::io::Result<UdpOut> {
        let mut out = Vec::new();
        for s in sockets {
            let local = s.local_addr()?;
            let fd = s.as_fd().try_clone_to_owned()?;
            out.push((local, std::net::UdpSocket::from(fd)));
        }
        let (queue, rx) = mpsc::sync_channel::<Vec<Datagram>>(QUEUED_BATCHES);
        let thread = std::thread::Builder::new()
            .name("presenced-udp-send".into())
            .spawn(move || send_loop(out, rx, events))?;
        Ok(UdpOut {
            pending: Vec::with_capacity(FLUSH_AT),
            queue: Some(queue),
            thread: Some(thread),
            dropped: 0,
        })
    }

    /// Queues a datagram; it leaves after every datagram queued before it.
    pub fn push(&mut self, to: SocketAddr, bytes: Vec<u8>, tx: Option<ClientTxId>) {
        self.pending.push(Datagram { to, bytes, tx });
        if self.pending.len() >= FLUSH_AT {
            self.flush();
        }
    }

    /// Hands everything queued to the sending thread.
    pub fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let batch = std::mem::replace(&mut self.pending, Vec::with_capacity(FLUSH_AT));
        let Some(q) = &self.queue else {
            return;
        };
        match q.try_send(batch) {
            Ok(()) => {}
            Err(mpsc::TrySendError::Full(batch)) => {
                if self.dropped == 0 {
                    warn!("udp: the sending thread is behind; datagrams dropped");
                }
                self.dropped += batch.len() as u64;
            }
            Err(mpsc::TrySendError::Disconnected(_)) => {
                warn!("udp: the sending thread is gone; datagrams dropped")
            }
        }
    }

    /// Sends what is queued and waits for the thread to finish.
    pub fn close(&mut self) {
        self.flush();
        self.queue = None;
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            warn!("udp: the sending thread panicked");
        }
    }
}

impl Drop for UdpOut {
    fn drop(&mut self) {
        self.close();
    }
}

fn send_loop(
    sockets: Vec<(SocketAddr, std::net::UdpSocket)>,
    rx: mpsc::Receiver<Vec<Datagram>>,
    events: Sender<Inbound>,
) {
    let mut work: Vec<Datagram> = Vec::new();
    while let Ok(batch) = rx.recv() {
        work.extend(batch);
        // Whatever else arrived meanwhile goes out in the same calls.
        while let Ok(more) = rx.try_recv() {
            work.extend(more);
        }
        let mut start = 0;
        while start < work.len() {
            let Some(first) = work.get(start) else { break };
            let v4 = first.to.is_ipv4();
            // A run of datagrams for the same address family shares one socket.
            let run = work
                .get(start..)
                .unwrap_or_default()
                .iter()
                .take(MMSG_BATCH)
                .take_while(|d| d.to.is_ipv4() == v4)
                .count();
            let chunk = work.get(start..start + run).unwrap_or_default();
            match sockets.iter().find(|(l, _)| l.is_ipv4() == v4) {
                Some((_, sock)) => send_chunk(sock, chunk, &events),
                None => {
                    for d in chunk {
                        debug!("send to udp:{} failed: no UDP socket for it", d.to);
                        fail(&events, d);
                    }
                }
            }
            start += run;
        }
        work.clear();
    }
}

fn fail(events: &Sender<Inbound>, d: &Datagram) {
    // Never block on the core: if its queue is full the transaction times out instead.
    if let Some(tx) = d.tx
        && events.try_send(Inbound::SendFailed { tx }).is_err()
    {
        debug!("udp: failure of {tx:?} not reported; the core's queue is full");
    }
}

/// Sends `chunk` in order, with as few `sendmmsg` calls as the kernel allows.
fn send_chunk(sock: &std::net::UdpSocket, chunk: &[Datagram], events: &Sender<Inbound>) {
    let mut done = 0;
    let mut stalled_since: Option<Instant> = None;
    while done < chunk.len() {
        let rest = chunk.get(done..).unwrap_or_default();
        match sendmmsg(sock, rest) {
            Ok(n) if n > 0 => {
                done += n;
                stalled_since = None;
            }
            Ok(_) => wait_writable(sock),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                // The socket buffer is full (the socket is non-blocking for the reactor).
                let since = *stalled_since.get_or_insert_with(Instant::now);
                if since.elapsed() > SEND_STALL {
                    if let Some(d) = rest.first() {
                        debug!("send to udp:{} failed: send buffer full", d.to);
                        fail(events, d);
                    }
                    done += 1;
                    stalled_since = None;
                } else {
                    wait_writable(sock);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                // The first datagram is the one that failed (ICMP errors, bad address).
                if let Some(d) = rest.first() {
                    debug!("send to udp:{} failed: {e}", d.to);
                    fail(events, d);
                }
                done += 1;
            }
        }
    }
}

#[allow(unsafe_code)]
fn wait_writable(sock: &std::net::UdpSocket) {
    let mut pfd = libc::pollfd {
        fd: sock.as_raw_fd(),
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: one valid pollfd for the duration of the call.
    unsafe {
        libc::poll(&mut pfd, 1, 100);
    }
}

/// One `sendmmsg(2)` over the front of `batch` (at most `MMSG_BATCH` datagrams); returns
/// how many the kernel took.
#[allow(unsafe_code)]
fn sendmmsg(sock: &std::net::UdpSocket, batch: &[Datagram]) -> std::io::Result<usize> {
    let batch = batch.get(..batch.len().min(MMSG_BATCH)).unwrap_or_default();
    let addrs: Vec<socket2::SockAddr> = batch.iter().map(|d| d.to.into()).collect();
    let mut iovs: Vec<libc::iovec> = batch
        .iter()
        .map(|d| libc::iovec {
            iov_base: d.bytes.as_ptr() as *mut libc::c_void,
            iov_len: d.bytes.len(),
        })
        .collect();
    let mut msgs: Vec<libc::mmsghdr> = iovs
        .iter_mut()
        .zip(&addrs)
        .map(|(iov, addr)| {
            // SAFETY: an all-zero msghdr is valid (no control data, no flags).
            let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
            hdr.msg_name = addr.as_ptr() as *mut libc::c_void;
            hdr.msg_namelen = addr.len();
            hdr.msg_iov = iov;
            hdr.msg_iovlen = 1 as _;
            libc::mmsghdr {
                msg_hdr: hdr,
                msg_len: 0,
            }
        })
        .collect();
    // SAFETY: every msghdr points at an address and an iovec that live in `addrs` and
    // `iovs` until the call returns, and each iovec at a datagram borrowed from `batch`.
    let n = unsafe {
        libc::sendmmsg(
            sock.as_raw_fd(),
            msgs.as_mut_ptr(),
            msgs.len() as libc::c_uint,
            0,
        )
    };
    if n < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn bound() -> Arc<smol::net::UdpSocket> {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        Arc::new(smol::net::UdpSocket::from(
            smol::Async::new(s).expect("async"),
        ))
    }

    #[test]
    fn datagrams_arrive_whole_and_in_order_across_batches() {
        let ours = bound();
        let peer = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        peer.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let to = peer.local_addr().expect("addr");
        let (events, _rx) = smol::channel::bounded(8);
        let mut out = UdpOut::start(std::slice::from_ref(&ours), events).expect("start");
        // More than one hand-over and more than one sendmmsg call.
        let n = FLUSH_AT * 3 + MMSG_BATCH + 5;
        for i in 0..n {
            out.push(to, format!("datagram {i}").into_bytes(), None);
        }
        out.close();
        let mut buf = [0u8; 64];
        for i in 0..n {
            let (len, from) = peer.recv_from(&mut buf).expect("datagram");
            assert_eq!(from, ours.local_addr().expect("addr"));
            assert_eq!(&buf[..len], format!("datagram {i}").as_bytes());
        }
    }

    #[test]
    fn a_failed_send_reports_its_transaction_and_the_rest_still_leave() {
        let ours = bound();
        let peer = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        peer.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let (events, rx) = smol::channel::bounded(8);
        let mut out = UdpOut::start(&[ours], events).expect("start");
        // No IPv6 socket is bound, so this one cannot leave.
        let v6: SocketAddr = "[::1]:5060".parse().expect("addr");
        out.push(v6, b"lost".to_vec(), Some(ClientTxId::for_test(7)));
        out.push(peer.local_addr().expect("addr"), b"after".to_vec(), None);
        out.close();
        match rx.try_recv() {
            Ok(Inbound::SendFailed { tx }) => assert_eq!(tx, ClientTxId::for_test(7)),
            other => panic!("expected SendFailed, got {other:?}"),
        }
        let mut buf = [0u8; 16];
        let (len, _) = peer.recv_from(&mut buf).expect("datagram");
        assert_eq!(&buf[..len], b"after");
    }
}
