//! Partitions by packet filter: iptables rules that drop packets between
//! node addresses (127.0.b.11, .12, ...), below floyd's own transport, so
//! nothing in the code under test knows about them (unlike the
//! `FLOYD.DEBUG.CUT` hook). A dropped packet is silence, not a reset: both
//! TCP directions between the pair stall, and only floyd's own liveness
//! checks notice.
//!
//! Only inside a private network namespace (`unshare -n`), so the machine's
//! own firewall is never touched: `make harness-firewall` runs the harness
//! that way, with `FLOYD_HARNESS_FIREWALL=1`.

use std::process::Command;

pub struct Firewall {
    /// The rules in force, each as iptables arguments after `-A`/`-D`.
    rules: Vec<Vec<String>>,
}

impl Firewall {
    /// The firewall if `FLOYD_HARNESS_FIREWALL=1`; panics with the reason if
    /// it was asked for but cannot be used safely here.
    pub fn from_env() -> Option<Firewall> {
        if std::env::var("FLOYD_HARNESS_FIREWALL").ok().as_deref() != Some("1") {
            return None;
        }
        // A namespace made by `unshare -n` has loopback only; a machine's own has more.
        let dev = std::fs::read_to_string("/proc/net/dev").expect("read /proc/net/dev");
        let interfaces: Vec<&str> = dev
            .lines()
            .skip(2)
            .filter_map(|l| l.split(':').next())
            .map(str::trim)
            .collect();
        assert_eq!(
            interfaces,
            ["lo"],
            "FLOYD_HARNESS_FIREWALL=1 outside a private network namespace: run it under `unshare -n` \
             (make harness-firewall), never against this machine's firewall"
        );
        Some(Firewall { rules: Vec::new() })
    }

    fn iptables(&self, args: &[&str]) {
        let out = Command::new("iptables")
            .args(args)
            .output()
            .expect("run iptables (apt-get install iptables)");
        assert!(
            out.status.success(),
            "iptables {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Drops every packet from `a` to `b`.
    pub fn drop_from(&mut self, a: &str, b: &str) {
        let rule: Vec<String> = ["INPUT", "-s", a, "-d", b, "-j", "DROP"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let mut args = vec!["-A"];
        args.extend(rule.iter().map(String::as_str));
        self.iptables(&args);
        self.rules.push(rule);
    }

    /// Removes every rule this firewall added.
    pub fn heal(&mut self) {
        for rule in std::mem::take(&mut self.rules) {
            let mut args = vec!["-D"];
            args.extend(rule.iter().map(String::as_str));
            self.iptables(&args);
        }
    }
}

impl Drop for Firewall {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            self.heal();
        }
    }
}
