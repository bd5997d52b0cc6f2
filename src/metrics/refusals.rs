//! Frames and connections a host refused, counted by why: what an operator
//! looks at when `floyd_refused_frames_total` moves (a port scanner, a
//! client of another protocol on the members' port, a host of another
//! cluster, a member speaking for another, a forged or corrupt frame).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Why a connection or a frame was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A TLS handshake that failed (no certificate, an untrusted one,
    /// plain text on a TLS port).
    TlsHandshake,
    /// Whatever came first on a connection was not a readable handshake
    /// (another protocol, garbage, a frame over its size limit).
    BadHandshake,
    /// A handshake refused: not a member, another cluster, a certificate
    /// that does not speak for the member it claims.
    NotAdmitted,
    /// A connection over the host's limit of open connections.
    TooManyConnections,
    /// A frame after the handshake that could not be read (oversized,
    /// undecodable): the connection is closed.
    BadFrame,
    /// A frame of a kind a member never sends there: the connection is closed.
    UnexpectedFrame,
    /// A frame for a group this host does not have.
    UnknownGroup,
    /// A message from a node that is not a member of its group.
    NotMember,
    /// A message naming another sender than the connection's host, or
    /// this node itself.
    SenderMismatch,
    /// A message whose fields are out of range or malformed.
    Malformed,
    /// A message contradicting this node's log (an acknowledgment past the
    /// leader's last index, an entry differing from a committed one).
    ContradictsLog,
}

impl Refusal {
    pub const ALL: [Refusal; 11] = [
        Refusal::TlsHandshake,
        Refusal::BadHandshake,
        Refusal::NotAdmitted,
        Refusal::TooManyConnections,
        Refusal::BadFrame,
        Refusal::UnexpectedFrame,
        Refusal::UnknownGroup,
        Refusal::NotMember,
        Refusal::SenderMismatch,
        Refusal::Malformed,
        Refusal::ContradictsLog,
    ];

    /// The `reason` label.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::TlsHandshake => "tls_handshake",
            Refusal::BadHandshake => "bad_handshake",
            Refusal::NotAdmitted => "not_admitted",
            Refusal::TooManyConnections => "too_many_connections",
            Refusal::BadFrame => "bad_frame",
            Refusal::UnexpectedFrame => "unexpected_frame",
            Refusal::UnknownGroup => "unknown_group",
            Refusal::NotMember => "not_member",
            Refusal::SenderMismatch => "sender_mismatch",
            Refusal::Malformed => "malformed",
            Refusal::ContradictsLog => "contradicts_log",
        }
    }

    /// Whether it refused a whole connection (before or at its handshake).
    pub fn is_connection(self) -> bool {
        matches!(
            self,
            Refusal::TlsHandshake
                | Refusal::BadHandshake
                | Refusal::NotAdmitted
                | Refusal::TooManyConnections
        )
    }

    /// Whether a group's core refused it (a message, not a connection or
    /// a frame): what `floyd_refused_messages_total` sums.
    pub fn is_message(self) -> bool {
        matches!(
            self,
            Refusal::NotMember | Refusal::SenderMismatch | Refusal::Malformed | Refusal::ContradictsLog
        )
    }

    /// Why the core refused a message.
    pub fn of_rejected(why: &crate::core::Rejected) -> Refusal {
        use crate::core::Rejected;
        match why {
            Rejected::NotMember(_) => Refusal::NotMember,
            Rejected::FromSelf | Rejected::SenderMismatch { .. } => Refusal::SenderMismatch,
            Rejected::OutOfRange { .. } | Rejected::MalformedAppend(_) | Rejected::MalformedSnapshot(_) => {
                Refusal::Malformed
            }
            Rejected::AckBeyondLog { .. } | Rejected::ContradictsCommitted { .. } => Refusal::ContradictsLog,
        }
    }
}

/// A count per [`Refusal`].
#[derive(Debug, Default)]
pub struct Refusals([AtomicU64; Refusal::ALL.len()]);

impl Refusals {
    pub fn count(&self, why: Refusal) {
        self.0[why as usize].fetch_add(1, Relaxed);
    }

    pub fn get(&self, why: Refusal) -> u64 {
        self.0[why as usize].load(Relaxed)
    }

    /// Connections refused before or at their handshake, whatever the reason.
    pub fn connections(&self) -> u64 {
        self.sum(Refusal::is_connection)
    }

    /// Messages a group's core refused, whatever the reason.
    pub fn messages(&self) -> u64 {
        self.sum(Refusal::is_message)
    }

    fn sum(&self, which: fn(Refusal) -> bool) -> u64 {
        Refusal::ALL
            .into_iter()
            .filter(|w| which(*w))
            .map(|w| self.get(w))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_has_its_own_slot_and_label() {
        let r = Refusals::default();
        for (i, why) in Refusal::ALL.iter().enumerate() {
            assert_eq!(*why as usize, i);
            r.count(*why);
        }
        assert!(Refusal::ALL.iter().all(|w| r.get(*w) == 1));
        assert_eq!(r.connections(), 4);
        assert_eq!(r.messages(), 4);
        let labels: std::collections::HashSet<_> = Refusal::ALL.iter().map(|w| w.label()).collect();
        assert_eq!(labels.len(), Refusal::ALL.len());
    }
}
