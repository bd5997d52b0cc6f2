//! CPU time of floyd's own threads, by host and by what the thread does:
//! where a host's cores go (the log writer, the apply workers, the peer
//! links...), read from the kernel's per-thread clocks when scraped, so
//! nothing is counted on the threads' own paths.
//!
//! A thread registers as it starts (`transport::spawn_named`) under its
//! name, `floyd-<role>-<port>[-…]`, and on its way out adds what it used to
//! its role's retired total: a role's sum never goes back when one of its
//! threads ends (a peer link replaced, a connection closed).

use parking_lot::Mutex;
use std::collections::HashMap;

struct Live {
    owner: String,
    role: String,
    /// The thread's CPU clock (`pthread_getcpuclockid`).
    clock: libc::clockid_t,
}

#[derive(Default)]
struct Registry {
    live: HashMap<u64, Live>,
    /// CPU time of threads that ended, by (owner, role), in ns.
    retired: HashMap<(String, String), u64>,
    next: u64,
}

static REGISTRY: Mutex<Option<Registry>> = Mutex::new(None);

/// Registered for as long as it lives; dropped on the thread itself.
pub struct Registered(Option<u64>);

/// The owner (the host's port, or a node's name) and role in a thread's
/// name `floyd-<role>-<owner>[-n | ->peer]`.
fn parse(name: &str) -> Option<(String, String)> {
    let (role, rest) = name.strip_prefix("floyd-")?.split_once('-')?;
    let owner = rest.split(['-', '>']).next()?;
    (!role.is_empty() && !owner.is_empty()).then(|| (owner.to_string(), role.to_string()))
}

fn cpu_ns(clock: libc::clockid_t) -> Option<u64> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write to; a clock of a thread that
    // ended answers an error, not undefined behaviour.
    let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
    (rc == 0).then(|| (ts.tv_sec as u64).saturating_mul(1_000_000_000) + ts.tv_nsec as u64)
}

/// Registers the calling thread, named `name`.
pub fn register_current(name: &str) -> Registered {
    let Some((owner, role)) = parse(name) else {
        return Registered(None);
    };
    let mut clock: libc::clockid_t = 0;
    // SAFETY: asks for the calling thread's own CPU clock id.
    if unsafe { libc::pthread_getcpuclockid(libc::pthread_self(), &mut clock) } != 0 {
        return Registered(None);
    }
    let mut r = REGISTRY.lock();
    let r = r.get_or_insert_with(Registry::default);
    r.next += 1;
    let id = r.next;
    r.live.insert(id, Live { owner, role, clock });
    Registered(Some(id))
}

impl Drop for Registered {
    fn drop(&mut self) {
        let Some(id) = self.0 else { return };
        // Read and retired under the lock, so a scrape sees the thread in
        // exactly one of the two.
        let mut r = REGISTRY.lock();
        let Some(r) = r.as_mut() else { return };
        if let Some(live) = r.live.remove(&id) {
            let used = cpu_ns(libc::CLOCK_THREAD_CPUTIME_ID).unwrap_or(0);
            *r.retired.entry((live.owner, live.role)).or_default() += used;
        }
    }
}

/// Seconds of CPU the threads of `owner` used, by role, sorted by role.
pub fn by_role(owner: &str) -> Vec<(String, f64)> {
    let mut sums: HashMap<String, u64> = HashMap::new();
    let r = REGISTRY.lock();
    if let Some(r) = r.as_ref() {
        for ((o, role), ns) in &r.retired {
            if o == owner {
                *sums.entry(role.clone()).or_default() += ns;
            }
        }
        for live in r.live.values().filter(|l| l.owner == owner) {
            *sums.entry(live.role.clone()).or_default() += cpu_ns(live.clock).unwrap_or(0);
        }
    }
    let mut out: Vec<(String, f64)> = sums.into_iter().map(|(k, ns)| (k, ns as f64 / 1e9)).collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_give_owner_and_role() {
        assert_eq!(parse("floyd-log-9001"), Some(("9001".into(), "log".into())));
        assert_eq!(parse("floyd-apply-9001-3"), Some(("9001".into(), "apply".into())));
        assert_eq!(
            parse("floyd-peer-9001->127.0.0.1:9002"),
            Some(("9001".into(), "peer".into()))
        );
        assert_eq!(parse("raftis-conn"), None);
        assert_eq!(parse("floyd-x"), None);
    }

    #[test]
    fn a_threads_time_stays_counted_after_it_ends() {
        const OWNER: &str = "cputest";
        let spin = || {
            let _r = register_current(&format!("floyd-busy-{OWNER}"));
            let t = std::time::Instant::now();
            let mut x = 0u64;
            while t.elapsed() < std::time::Duration::from_millis(30) {
                x = std::hint::black_box(x.wrapping_add(1));
            }
        };
        std::thread::spawn(spin).join().unwrap();
        let first = by_role(OWNER);
        assert_eq!(first.len(), 1);
        assert!(first[0].1 > 0.01, "30 ms of spinning: {first:?}");
        std::thread::spawn(spin).join().unwrap();
        assert!(by_role(OWNER)[0].1 > first[0].1);
    }
}
