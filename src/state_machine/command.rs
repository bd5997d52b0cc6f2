//! Encoding of client commands carried in log entries.

use crate::error::{Error, Result};
use crate::options::{MAX_KEY_BYTES, MAX_VALUE_BYTES};
use crate::wire::{command::Op, Command, Delete, Get, Put};
use bytes::Bytes;
use prost::Message as _;

/// What a client asks the state machine to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandKind {
    Put { key: Bytes, value: Bytes },
    Delete { key: Bytes },
    Get { key: Bytes },
}

impl CommandKind {
    /// Checks sizes before anything is proposed.
    pub fn validate(&self) -> Result<()> {
        let (key, value_len) = match self {
            CommandKind::Put { key, value } => (key, value.len()),
            CommandKind::Delete { key } | CommandKind::Get { key } => (key, 0),
        };
        if key.is_empty() {
            return Err(Error::InvalidArgument("empty key".into()));
        }
        if key.len() > MAX_KEY_BYTES {
            return Err(Error::InvalidArgument(format!(
                "key of {} bytes exceeds {MAX_KEY_BYTES}",
                key.len()
            )));
        }
        if value_len > MAX_VALUE_BYTES {
            return Err(Error::InvalidArgument(format!(
                "value of {value_len} bytes exceeds {MAX_VALUE_BYTES}"
            )));
        }
        Ok(())
    }

    pub fn into_wire(self) -> Command {
        let op = match self {
            CommandKind::Put { key, value } => Op::Put(Put { key, value }),
            CommandKind::Delete { key } => Op::Delete(Delete { key }),
            CommandKind::Get { key } => Op::Get(Get { key }),
        };
        Command { op: Some(op) }
    }

    pub fn from_wire(cmd: Command) -> Result<Self> {
        Ok(match cmd.op {
            Some(Op::Put(p)) => CommandKind::Put {
                key: p.key,
                value: p.value,
            },
            Some(Op::Delete(d)) => CommandKind::Delete { key: d.key },
            Some(Op::Get(g)) => CommandKind::Get { key: g.key },
            None => return Err(Error::InvalidArgument("command without an operation".into())),
        })
    }
}

/// Encodes a command as a log entry payload.
pub fn encode_command(cmd: CommandKind) -> Bytes {
    Bytes::from(cmd.into_wire().encode_to_vec())
}

/// Decodes a log entry payload.
pub fn decode_command(payload: &[u8]) -> Result<Op> {
    let cmd = Command::decode(payload)
        .map_err(|e| Error::InvalidArgument(format!("command does not decode: {e}")))?;
    cmd.op
        .ok_or_else(|| Error::InvalidArgument("command without an operation".into()))
}
