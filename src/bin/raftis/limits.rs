//! The process-wide bound on buffered request bytes (`--max-request-buffer-bytes`).
//!
//! Every request may buffer its first [`FREE_BYTES`] of arguments on its
//! own (each argument counted with a little overhead for its `Vec`); past
//! that, each bulk string is reserved from one [`Budget`] shared
//! by all connections, from its header, before any of it is buffered. The
//! reservation lasts until the request has been executed (for a pipelined
//! SET, until floyd has answered it, as floyd holds a copy until then).
//!
//! When the budget is full, a request that has reserved nothing yet waits
//! its turn (first come, first served) and its connection stops reading its
//! socket, so the client is slowed by TCP, not refused. A request that
//! already holds part of the budget and needs more (a second large argument
//! of an MSET) does not wait, since two such requests could wait for each
//! other forever: it is refused with `-OOM`, its remaining bytes skipped and
//! its reservation given back. A request that could never fit is refused at once.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// Argument bytes a request buffers without reserving: ordinary requests
/// never touch the budget.
pub const FREE_BYTES: usize = 16 << 10;

/// Default of `--max-request-buffer-bytes`.
pub const DEFAULT_MAX_REQUEST_BUFFER: usize = 1 << 30;

/// The shared byte budget.
pub struct Budget {
    limit: usize,
    state: Mutex<State>,
    freed: Condvar,
}

#[derive(Default)]
struct State {
    used: usize,
    /// Waiters take tickets and are served in order.
    next_ticket: u64,
    serving: u64,
}

/// Bytes held from a [`Budget`], given back when dropped.
pub struct Reservation {
    budget: Arc<Budget>,
    bytes: usize,
}

/// What [`Budget::try_reserve`] decided.
pub enum Reserve {
    Granted(Reservation),
    /// Does not fit now: wait with [`Budget::reserve`] (or refuse).
    Full,
    /// Larger than the whole budget.
    Never,
}

impl Budget {
    pub fn new(limit: usize) -> Arc<Budget> {
        Arc::new(Budget {
            limit,
            state: Mutex::new(State::default()),
            freed: Condvar::new(),
        })
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Bytes reserved now, by every connection.
    pub fn used(&self) -> usize {
        self.lock().used
    }

    /// Connections waiting for room.
    pub fn waiting(&self) -> usize {
        let s = self.lock();
        (s.next_ticket - s.serving) as usize
    }

    fn grant(self: &Arc<Self>, s: &mut State, n: usize) -> Reservation {
        s.used += n;
        Reservation {
            budget: self.clone(),
            bytes: n,
        }
    }

    /// `n` bytes now if they fit. A new request (`continuing` false) does
    /// not pass connections already waiting; the rest of a request that
    /// holds part of the budget does, as it gives everything back soon.
    pub fn try_reserve(self: &Arc<Self>, n: usize, continuing: bool) -> Reserve {
        if n > self.limit {
            return Reserve::Never;
        }
        let mut s = self.lock();
        let queue_empty = s.next_ticket == s.serving;
        if s.used + n <= self.limit && (continuing || queue_empty) {
            Reserve::Granted(self.grant(&mut s, n))
        } else {
            Reserve::Full
        }
    }

    /// Waits its turn until `n` bytes (at most the limit) fit, then takes them.
    pub fn reserve(self: &Arc<Self>, n: usize) -> Reservation {
        let n = n.min(self.limit);
        let mut s = self.lock();
        let ticket = s.next_ticket;
        s.next_ticket += 1;
        while s.serving != ticket || s.used + n > self.limit {
            s = self.freed.wait(s).unwrap_or_else(|e| e.into_inner());
        }
        s.serving += 1;
        let r = self.grant(&mut s, n);
        drop(s);
        // The next in line may fit too.
        self.freed.notify_all();
        r
    }
}

impl Reservation {
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Adds `other` (from the same budget) to this reservation.
    pub fn absorb(&mut self, mut other: Reservation) {
        debug_assert!(Arc::ptr_eq(&self.budget, &other.budget));
        self.bytes += std::mem::take(&mut other.bytes);
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.bytes == 0 {
            return;
        }
        self.budget.lock().used -= self.bytes;
        self.budget.freed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_fit_in_the_limit_and_are_given_back() {
        let b = Budget::new(100);
        let Reserve::Granted(r1) = b.try_reserve(60, false) else {
            panic!("60 of 100 fit")
        };
        assert!(matches!(b.try_reserve(50, false), Reserve::Full));
        assert!(matches!(b.try_reserve(101, false), Reserve::Never));
        let Reserve::Granted(mut r2) = b.try_reserve(40, true) else {
            panic!("40 more fit")
        };
        assert_eq!(b.used(), 100);
        let Reserve::Granted(r3) = b.try_reserve(0, false) else {
            panic!("nothing always fits")
        };
        r2.absorb(r3);
        assert_eq!(r2.bytes(), 40);
        drop(r1);
        assert_eq!(b.used(), 40);
        drop(r2);
        assert_eq!(b.used(), 0);
    }

    #[test]
    fn a_waiter_is_served_once_room_frees_and_before_newcomers() {
        let b = Budget::new(100);
        let Reserve::Granted(held) = b.try_reserve(80, false) else {
            panic!()
        };
        let waiter = {
            let b = b.clone();
            std::thread::spawn(move || b.reserve(50).bytes())
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while b.waiting() == 0 {
            assert!(std::time::Instant::now() < deadline, "the waiter never queued");
            std::thread::yield_now();
        }
        // 20 bytes are free, but a newcomer does not pass the waiter.
        assert!(matches!(b.try_reserve(10, false), Reserve::Full));
        drop(held);
        assert_eq!(waiter.join().unwrap(), 50);
        assert_eq!(b.used(), 0);
        assert_eq!(b.waiting(), 0);
    }
}
