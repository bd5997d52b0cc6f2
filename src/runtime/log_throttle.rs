//! A bound on how often one kind of line is logged: a peer that sends a
//! stream of refused messages (a bug, an attack, a member of another
//! cluster) must not fill the disk with one line each.

use parking_lot::Mutex;
use std::time::{Duration, Instant};

/// At most `burst` lines per `window`; the first line after a window in
/// which lines were left out says how many.
pub struct LogThrottle {
    burst: u32,
    window: Duration,
    state: Mutex<State>,
}

struct State {
    window_start: Option<Instant>,
    logged: u32,
    left_out: u64,
}

impl LogThrottle {
    pub const fn new(burst: u32, window: Duration) -> LogThrottle {
        LogThrottle {
            burst,
            window,
            state: Mutex::new(State {
                window_start: None,
                logged: 0,
                left_out: 0,
            }),
        }
    }

    /// Whether a line may be logged at `now`: `Some(n)`, with `n` the lines
    /// left out before it (to be said in it); `None` to leave it out.
    pub fn admit(&self, now: Instant) -> Option<u64> {
        let mut s = self.state.lock();
        let expired = s
            .window_start
            .is_none_or(|start| now.saturating_duration_since(start) >= self.window);
        if expired {
            s.window_start = Some(now);
            s.logged = 0;
        }
        if s.logged >= self.burst {
            s.left_out += 1;
            return None;
        }
        s.logged += 1;
        Some(std::mem::take(&mut s.left_out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_logged_then_counted_and_the_count_said_in_the_next_window() {
        let t = LogThrottle::new(3, Duration::from_secs(10));
        let t0 = Instant::now();
        let first: Vec<_> = (0..5).map(|_| t.admit(t0)).collect();
        assert_eq!(first, vec![Some(0), Some(0), Some(0), None, None]);
        assert_eq!(t.admit(t0 + Duration::from_secs(9)), None);
        assert_eq!(t.admit(t0 + Duration::from_secs(10)), Some(3));
        assert_eq!(t.admit(t0 + Duration::from_secs(11)), Some(0));
    }
}
