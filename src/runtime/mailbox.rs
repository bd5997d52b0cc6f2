//! A queue one thread drains whole: senders append under a lock and wake it
//! only if it sleeps; it takes everything queued in one step.
//!
//! For the log writer, which takes whatever arrived as one batch anyway. It
//! spins and yields a little before it sleeps, as a crossbeam receive does,
//! but looks at a flag, not the senders' lock, meanwhile (`back_off`).

use parking_lot::{Condvar, Mutex};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Before it sleeps, the receiver spins this many rounds (of 1, 2, 4, ...
/// spin-loop hints)...
const BACKOFF_SPINS: u32 = 7;
/// ... then gives its core away this many times, looking again each time.
const BACKOFF_YIELDS: u32 = 4;

pub struct Mailbox<T> {
    state: Mutex<State<T>>,
    wake: Condvar,
    /// Whether the queue holds anything: what the receiver's backoff looks
    /// at, without taking the lock senders need.
    nonempty: AtomicBool,
}

struct State<T> {
    queue: Vec<T>,
    /// The receiver waits on the condvar.
    sleeping: bool,
}

impl<T> Default for Mailbox<T> {
    fn default() -> Self {
        Mailbox {
            state: Mutex::new(State {
                queue: Vec::new(),
                sleeping: false,
            }),
            wake: Condvar::new(),
            nonempty: AtomicBool::new(false),
        }
    }
}

impl<T> Mailbox<T> {
    /// Queues `item`; wakes the receiver if it waits.
    pub fn send(&self, item: T) {
        let mut s = self.state.lock();
        s.queue.push(item);
        self.nonempty.store(true, Ordering::Release);
        if s.sleeping {
            s.sleeping = false;
            drop(s);
            self.wake.notify_one();
        }
    }

    /// Waits a little for an item before the receiver goes to sleep: under
    /// load the next one comes within microseconds, and a sleep and a
    /// wake-up cost more (as crossbeam's receive does; without this, 3
    /// nodes × 20 writers made 16% fewer writes/s at 17% more CPU each,
    /// `BENCHMARKS.md`).
    fn back_off(&self) {
        for step in 0..BACKOFF_SPINS + BACKOFF_YIELDS {
            if self.nonempty.load(Ordering::Acquire) {
                return;
            }
            match step < BACKOFF_SPINS {
                true => (0..1u32 << step).for_each(|_| std::hint::spin_loop()),
                false => std::thread::yield_now(),
            }
        }
    }

    /// Moves everything queued into `into` (in the order sent), waiting
    /// for at least one item: for ever, or until `wait` has passed (and
    /// then perhaps nothing).
    pub fn take_all(&self, into: &mut Vec<T>, wait: Option<Duration>) {
        let deadline = wait.map(|w| Instant::now() + w);
        self.back_off();
        let mut s = self.state.lock();
        while s.queue.is_empty() {
            s.sleeping = true;
            match deadline {
                None => self.wake.wait(&mut s),
                Some(d) => {
                    if self.wake.wait_until(&mut s, d).timed_out() {
                        break;
                    }
                }
            }
        }
        s.sleeping = false;
        self.nonempty.store(false, Ordering::Relaxed);
        if into.is_empty() {
            std::mem::swap(into, &mut s.queue);
        } else {
            into.append(&mut s.queue);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn everything_sent_is_taken_once_in_order_across_threads() {
        let mb = Arc::new(Mailbox::default());
        let senders: Vec<_> = (0..4u64)
            .map(|t| {
                let mb = mb.clone();
                std::thread::spawn(move || (0..10_000u64).for_each(|i| mb.send((t, i))))
            })
            .collect();
        let mut next = [0u64; 4];
        let mut got = Vec::new();
        while next.iter().sum::<u64>() < 40_000 {
            got.clear();
            mb.take_all(&mut got, Some(Duration::from_secs(10)));
            assert!(
                !got.is_empty(),
                "a wait ended with nothing while senders were sending"
            );
            for (t, i) in got.drain(..) {
                assert_eq!(i, next[t as usize], "sender {t}'s items in order, each once");
                next[t as usize] += 1;
            }
        }
        senders.into_iter().for_each(|s| s.join().unwrap());
    }

    #[test]
    fn a_wait_with_a_timeout_ends_empty_and_a_send_wakes_a_sleeper() {
        let mb = Arc::new(Mailbox::<u8>::default());
        let mut got = Vec::new();
        mb.take_all(&mut got, Some(Duration::from_millis(20)));
        assert!(got.is_empty());
        let sender = {
            let mb = mb.clone();
            std::thread::spawn(move || {
                // Until the receiver sleeps: the send must wake it.
                while !mb.state.lock().sleeping {
                    std::thread::yield_now();
                }
                mb.send(7);
            })
        };
        mb.take_all(&mut got, None);
        assert_eq!(got, vec![7]);
        sender.join().unwrap();
    }
}
