//! Injected time. The protocol core takes `now` as a value; the daemon reads it from a
//! `Clock` so tests can run it on a manual clock and move time forward without sleeping.

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use event_listener::Event;

/// A boxed future that resolves when a deadline passes.
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The source of time for the daemon.
pub trait Clock: Send + Sync + 'static {
    /// Monotonic time for protocol timers.
    fn now(&self) -> Instant;
    /// Wall-clock time for stored expiry instants.
    fn wall(&self) -> SystemTime;
    /// Resolves once `now() >= deadline`.
    fn sleep_until(&self, deadline: Instant) -> Sleep;

    /// Wall-clock seconds since the Unix epoch (what the store keeps).
    fn unix_now(&self) -> u64 {
        self.wall()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }
}

/// The real clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
    fn wall(&self) -> SystemTime {
        SystemTime::now()
    }
    fn sleep_until(&self, deadline: Instant) -> Sleep {
        Box::pin(async move {
            smol::Timer::at(deadline).await;
        })
    }
}

/// A clock that only moves when a test says so.
pub struct ManualClock {
    state: Mutex<(Instant, SystemTime)>,
    moved: Event,
}

impl ManualClock {
    /// Starts at the real current time, then stands still.
    pub fn new() -> std::sync::Arc<ManualClock> {
        std::sync::Arc::new(ManualClock {
            state: Mutex::new((Instant::now(), SystemTime::now())),
            moved: Event::new(),
        })
    }

    /// Moves both clocks forward and wakes every sleeper whose deadline has come.
    pub fn advance(&self, by: Duration) {
        {
            let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            s.0 += by;
            s.1 += by;
        }
        self.moved.notify(usize::MAX);
    }

    fn snapshot(&self) -> (Instant, SystemTime) {
        *self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Clock for std::sync::Arc<ManualClock> {
    fn now(&self) -> Instant {
        self.snapshot().0
    }
    fn wall(&self) -> SystemTime {
        self.snapshot().1
    }
    fn sleep_until(&self, deadline: Instant) -> Sleep {
        let clock = self.clone();
        Box::pin(async move {
            loop {
                if clock.now() >= deadline {
                    return;
                }
                let listener = clock.moved.listen();
                if clock.now() >= deadline {
                    return;
                }
                listener.await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_sleeper_wakes_only_after_advance_past_deadline() {
        let clock = ManualClock::new();
        let deadline = clock.now() + Duration::from_secs(5);
        let mut sleep = clock.sleep_until(deadline);
        let waker = futures_lite::future::block_on(futures_lite::future::poll_once(&mut sleep));
        assert!(waker.is_none());
        clock.advance(Duration::from_secs(4));
        assert!(
            futures_lite::future::block_on(futures_lite::future::poll_once(&mut sleep)).is_none()
        );
        clock.advance(Duration::from_secs(1));
        assert!(
            futures_lite::future::block_on(futures_lite::future::poll_once(&mut sleep)).is_some()
        );
    }
}
