//! Per-node logging: every thread a node starts logs to `<path>/LOG`, to the
//! user's callback if one is set, and on to whatever `tracing` subscriber was
//! in force where the node was opened. Nothing global is installed: the
//! node's dispatcher is the default only on the node's own threads.

use parking_lot::Mutex;
use std::fmt::{self, Write as _};
use std::fs::{File, OpenOptions};
use std::io::{LineWriter, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Dispatch, Event, Metadata, Subscriber};

/// Floyd's log levels (the numbers are part of the C API).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum LogLevel {
    Debug = 1,
    Info = 2,
    Warn = 3,
    Error = 4,
    Fatal = 5,
    None = 6,
}

impl LogLevel {
    /// The level for a C API number (1..=6).
    pub fn from_number(n: i32) -> Option<LogLevel> {
        Some(match n {
            1 => LogLevel::Debug,
            2 => LogLevel::Info,
            3 => LogLevel::Warn,
            4 => LogLevel::Error,
            5 => LogLevel::Fatal,
            6 => LogLevel::None,
            _ => return None,
        })
    }

    fn of(level: &tracing::Level) -> LogLevel {
        match *level {
            tracing::Level::TRACE | tracing::Level::DEBUG => LogLevel::Debug,
            tracing::Level::INFO => LogLevel::Info,
            tracing::Level::WARN => LogLevel::Warn,
            tracing::Level::ERROR => LogLevel::Error,
        }
    }

    fn name(self) -> &'static str {
        match self {
            LogLevel::Debug => "DEBUG",
            LogLevel::Info => "INFO",
            LogLevel::Warn => "WARN",
            LogLevel::Error => "ERROR",
            LogLevel::Fatal => "FATAL",
            LogLevel::None => "NONE",
        }
    }
}

/// Receives every log line at or above the node's level. Called on library
/// threads: it must be quick and must not call back into the same node.
#[derive(Clone)]
pub struct LogCallback(pub Arc<LogFn>);

/// The function behind a [`LogCallback`].
pub type LogFn = dyn Fn(LogLevel, &str) + Send + Sync;

impl fmt::Debug for LogCallback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LogCallback")
    }
}

/// The sink of one node. Thread-safe; the level can change at any time.
pub struct NodeLog {
    level: AtomicU8,
    file: Mutex<Option<LineWriter<File>>>,
    callback: Option<LogCallback>,
    /// The subscriber in force where the node was opened, which also gets every event.
    parent: Option<Dispatch>,
}

impl NodeLog {
    /// Opens (appending) `<dir>/LOG`; logging still works if it cannot be opened.
    pub fn open(dir: &Path, level: LogLevel, callback: Option<LogCallback>) -> Arc<NodeLog> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("LOG"))
            .ok();
        let parent = tracing::dispatcher::get_default(|d| {
            d.downcast_ref::<NodeLogger>()
                .map_or_else(|| Some(d.clone()), |_| None)
        });
        Arc::new(NodeLog {
            level: AtomicU8::new(level as u8),
            file: Mutex::new(file.map(LineWriter::new)),
            callback,
            parent,
        })
    }

    pub fn set_level(&self, level: LogLevel) {
        self.level.store(level as u8, Ordering::Relaxed);
    }

    fn level(&self) -> u8 {
        self.level.load(Ordering::Relaxed)
    }

    /// The dispatcher to make default on the node's threads.
    pub fn dispatch(self: &Arc<Self>) -> Dispatch {
        Dispatch::new(NodeLogger(self.clone()))
    }

    fn write(&self, level: LogLevel, line: &str) {
        if let Some(f) = self.file.lock().as_mut() {
            let _ = writeln!(f, "{} {:<5} {line}", utc_timestamp(), level.name());
        }
        if let Some(cb) = &self.callback {
            (cb.0)(level, line);
        }
    }
}

/// The `tracing` subscriber of a node (events only; spans are passed on untouched).
struct NodeLogger(Arc<NodeLog>);

impl Subscriber for NodeLogger {
    fn register_callsite(&self, _: &'static Metadata<'static>) -> tracing::subscriber::Interest {
        // The level can change at run time: ask every time.
        tracing::subscriber::Interest::sometimes()
    }

    fn enabled(&self, meta: &Metadata<'_>) -> bool {
        LogLevel::of(meta.level()) as u8 >= self.0.level()
            || self.0.parent.as_ref().is_some_and(|p| p.enabled(meta))
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let meta = event.metadata();
        let level = LogLevel::of(meta.level());
        if level as u8 >= self.0.level() {
            let mut line = String::new();
            let _ = write!(line, "{}: ", meta.target());
            event.record(&mut LineVisitor(&mut line));
            self.0.write(level, &line);
        }
        if let Some(p) = self.0.parent.as_ref().filter(|p| p.enabled(meta)) {
            p.event(event);
        }
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

struct LineVisitor<'a>(&'a mut String);

impl Visit for LineVisitor<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0.push_str(value);
        } else {
            let _ = write!(self.0, " {}={value}", field.name());
        }
    }
}

/// `YYYY-MM-DDTHH:MM:SS.ffffffZ` for now, without a date library.
fn utc_timestamp() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        now.subsec_micros()
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    #[test]
    fn events_reach_file_and_callback_at_or_above_the_level() {
        let dir = tempfile::tempdir().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let cb = LogCallback(Arc::new(move |lvl, msg: &str| {
            s.lock().push((lvl, msg.to_string()))
        }));
        let log = NodeLog::open(dir.path(), LogLevel::Info, Some(cb));
        tracing::dispatcher::with_default(&log.dispatch(), || {
            tracing::debug!("hidden");
            tracing::info!(node = "a:1", "shown");
            log.set_level(LogLevel::Error);
            tracing::warn!("hidden too");
            tracing::error!("loud");
        });
        let seen = seen.lock();
        assert_eq!(seen.len(), 2, "{seen:?}");
        assert_eq!(seen[0].0, LogLevel::Info);
        assert!(seen[0].1.ends_with("shown node=a:1"), "{}", seen[0].1);
        assert!(seen[1].1.ends_with("loud"));
        let file = std::fs::read_to_string(dir.path().join("LOG")).unwrap();
        assert_eq!(file.lines().count(), 2);
        assert!(file.contains(" INFO ") && file.contains(" ERROR "));
    }
}
