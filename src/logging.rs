//! Per-node logging: every thread a node starts logs to `<path>/LOG`, to the
//! user's callback if one is set, and on to whatever `tracing` subscriber was
//! in force where the node was opened. Nothing global is installed: the
//! node's dispatcher is the default only on the node's own threads.
//!
//! `<path>/LOG` is rotated by size: before a line would take it past
//! [`Rotation::max_bytes`] (`Options::log_max_bytes`, 64 MiB by default), `LOG`
//! is renamed to `LOG.1`, `LOG.1` to `LOG.2` and so on, keeping
//! [`Rotation::keep_files`] old files (`Options::log_keep_files`, 4 by default);
//! the oldest is overwritten. Lines are written whole, so none is split
//! between two files.

use parking_lot::Mutex;
use std::fmt::{self, Write as _};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
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

/// When `<dir>/LOG` is rotated and how many old files stay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    /// LOG is rotated before a line would take it past this size (a longer line
    /// than this is still written whole, alone in its file).
    pub max_bytes: u64,
    /// `LOG.1` (newest) .. `LOG.<keep_files>`; 0 keeps no old file.
    pub keep_files: u32,
}

impl Default for Rotation {
    fn default() -> Self {
        Rotation {
            max_bytes: crate::options::DEFAULT_LOG_MAX_BYTES,
            keep_files: crate::options::DEFAULT_LOG_KEEP_FILES,
        }
    }
}

/// The open `LOG` and how much it holds.
struct LogFile {
    path: PathBuf,
    file: Option<File>,
    size: u64,
    rotation: Rotation,
}

impl LogFile {
    fn open(path: PathBuf, rotation: Rotation) -> LogFile {
        let file = OpenOptions::new().create(true).append(true).open(&path).ok();
        let size = file
            .as_ref()
            .and_then(|f| f.metadata().ok())
            .map_or(0, |m| m.len());
        LogFile {
            path,
            file,
            size,
            rotation,
        }
    }

    /// Appends one whole line (one write), rotating first if it would not fit.
    fn append(&mut self, line: &str) {
        let len = line.len() as u64;
        if self.size > 0 && self.size.saturating_add(len) > self.rotation.max_bytes {
            self.rotate();
        }
        if let Some(f) = self.file.as_mut() {
            if f.write_all(line.as_bytes()).is_ok() {
                self.size = self.size.saturating_add(len);
            }
        }
    }

    fn rotate(&mut self) {
        let old = |n: u32| {
            let mut p = self.path.clone().into_os_string();
            p.push(format!(".{n}"));
            PathBuf::from(p)
        };
        // Oldest first, so each rename overwrites a file already moved on (or the one dropped).
        for n in (1..self.rotation.keep_files).rev() {
            let _ = std::fs::rename(old(n), old(n + 1));
        }
        let moved = if self.rotation.keep_files == 0 {
            std::fs::remove_file(&self.path)
        } else {
            std::fs::rename(&self.path, old(1))
        };
        let reopened = moved.and_then(|()| OpenOptions::new().create(true).append(true).open(&self.path));
        match reopened {
            Ok(f) => {
                self.file = Some(f);
                self.size = 0;
            }
            // Keep writing to the file we have (losing no line) and try again
            // only after another max_bytes, not on every line.
            Err(_) => self.size = 0,
        }
    }
}

/// The sink of one node. Thread-safe; the level can change at any time.
pub struct NodeLog {
    level: AtomicU8,
    file: Mutex<LogFile>,
    callback: Option<LogCallback>,
    /// The subscriber in force where the node was opened, which also gets every event.
    parent: Option<Dispatch>,
}

impl NodeLog {
    /// Opens (appending) `<dir>/LOG`, rotated as `rotation` says; logging still
    /// works if it cannot be opened.
    pub fn open(
        dir: &Path,
        level: LogLevel,
        callback: Option<LogCallback>,
        rotation: Rotation,
    ) -> Arc<NodeLog> {
        let file = LogFile::open(dir.join("LOG"), rotation);
        let parent = tracing::dispatcher::get_default(|d| {
            d.downcast_ref::<NodeLogger>()
                .map_or_else(|| Some(d.clone()), |_| None)
        });
        Arc::new(NodeLog {
            level: AtomicU8::new(level as u8),
            file: Mutex::new(file),
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
        let text = format!("{} {:<5} {line}\n", utc_timestamp(), level.name());
        self.file.lock().append(&text);
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
        let log = NodeLog::open(dir.path(), LogLevel::Info, Some(cb), Rotation::default());
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

    #[test]
    fn log_is_rotated_by_size_keeping_n_files_and_every_line_whole() {
        let dir = tempfile::tempdir().unwrap();
        let rotation = Rotation {
            max_bytes: 300,
            keep_files: 2,
        };
        let log = NodeLog::open(dir.path(), LogLevel::Info, None, rotation);
        let lines = 40;
        tracing::dispatcher::with_default(&log.dispatch(), || {
            for i in 0..lines {
                tracing::info!("line {i:03} {}", "x".repeat(i % 7 * 10));
            }
        });
        let name = |f: &str| dir.path().join(f);
        assert!(!name("LOG.3").exists(), "more old files than keep_files");
        let mut seen = Vec::new();
        for f in ["LOG.2", "LOG.1", "LOG"] {
            let text = std::fs::read_to_string(name(f)).unwrap();
            assert!(
                text.len() as u64 <= rotation.max_bytes,
                "{f} is {} bytes",
                text.len()
            );
            assert!(text.ends_with('\n'), "{f} ends in a partial line");
            for l in text.lines() {
                let n: usize = l.split("line ").nth(1).unwrap()[..3].parse().unwrap();
                assert!(l.ends_with(&"x".repeat(n % 7 * 10)), "split line {l:?}");
                seen.push(n);
            }
        }
        // The kept files hold the newest lines, in order, without a gap.
        let first = seen[0];
        assert!(first > 0, "nothing was rotated away");
        assert_eq!(seen, (first..lines).collect::<Vec<_>>());
    }

    #[test]
    fn rotation_with_no_kept_files_starts_over_and_a_long_line_stays_whole() {
        let dir = tempfile::tempdir().unwrap();
        let rotation = Rotation {
            max_bytes: 100,
            keep_files: 0,
        };
        let log = NodeLog::open(dir.path(), LogLevel::Info, None, rotation);
        tracing::dispatcher::with_default(&log.dispatch(), || {
            tracing::info!("first");
            tracing::info!("{}", "y".repeat(200));
        });
        let text = std::fs::read_to_string(dir.path().join("LOG")).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(text.trim_end().ends_with(&"y".repeat(200)));
        assert!(!dir.path().join("LOG.1").exists());
    }

    #[test]
    fn an_existing_log_counts_toward_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("LOG"), "z".repeat(90) + "\n").unwrap();
        let rotation = Rotation {
            max_bytes: 100,
            keep_files: 1,
        };
        let log = NodeLog::open(dir.path(), LogLevel::Info, None, rotation);
        tracing::dispatcher::with_default(&log.dispatch(), || tracing::info!("new"));
        let old = std::fs::read_to_string(dir.path().join("LOG.1")).unwrap();
        assert_eq!(old, "z".repeat(90) + "\n");
        let text = std::fs::read_to_string(dir.path().join("LOG")).unwrap();
        assert!(text.ends_with("new\n"), "{text}");
    }
}
