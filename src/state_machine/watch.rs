//! Watches: callers told of every change to a range of keys, in revision
//! order, each once, from a revision on (from the history, `history.rs`)
//! and then as the group applies them.
//!
//! The apply never waits for a watcher: it appends the batch's changes to
//! each matching watcher's queue and hands the watcher to the host's watch
//! thread, which runs the callbacks. A watcher whose queue passes
//! [`MAX_QUEUED_EVENTS`] or [`MAX_QUEUED_BYTES`] is ended (`Busy`: watch
//! again from the last revision seen + 1); [`WatchHub::cancel`] returns only
//! once no call of the watcher runs or will; closing the group ends every
//! watcher with a last call (`Stopped`); a snapshot loaded in place of the
//! state ends them with `Compacted` (the history came with the snapshot:
//! watch again from the last revision seen + 1).

use super::history::{in_range, WatchEvent};
use crate::error::{Error, Result};
use crossbeam_channel::Sender;
use parking_lot::Mutex;
use std::cell::Cell;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Changes queued for one watcher before it is ended as too slow.
pub const MAX_QUEUED_EVENTS: usize = 100_000;
/// Bytes of keys and values queued for one watcher before it is ended.
pub const MAX_QUEUED_BYTES: usize = 64 << 20;
/// Most changes handed to one call of a callback.
const MAX_EVENTS_PER_CALL: usize = 1_000;

/// What a callback is called with.
#[derive(Debug)]
pub enum WatchUpdate<'a> {
    /// Changes in revision order (never empty).
    Events(&'a [WatchEvent]),
    /// The watch ended by itself (the last call): `Stopped` (the group
    /// closed), `Compacted` (its state was replaced by a snapshot), `Busy`
    /// (it fell too far behind).
    Ended(Error),
}

pub type WatchCallback = Box<dyn FnMut(WatchUpdate<'_>) + Send>;

/// One watch.
pub struct Watcher {
    pub id: u64,
    start: Vec<u8>,
    end: Vec<u8>,
    /// Changes before this revision are not for it.
    from: u64,
    /// Changes before this revision came from the history: published ones
    /// are taken from this one on.
    live_from: u64,
    queue: Mutex<Queue>,
    /// Held while a call runs; `None` once the watch is over.
    callback: Mutex<Option<WatchCallback>>,
    /// Unwatched: no call starts any more.
    cancelled: AtomicBool,
}

#[derive(Default)]
struct Queue {
    events: VecDeque<WatchEvent>,
    bytes: usize,
    ended: Option<Error>,
    /// Ended (its last call given or pending): takes nothing more.
    finished: bool,
    /// Its last call was made (or skipped, unwatched): it may leave the hub.
    done: bool,
    /// Handed to the watch thread and not served yet.
    scheduled: bool,
}

thread_local! {
    /// The watcher whose callback this thread is running (0: none).
    static DELIVERING: Cell<u64> = const { Cell::new(0) };
}

impl Watcher {
    /// A watcher that is none (id 0, never registered): it tells the watch
    /// thread to stop.
    pub fn stop_marker() -> Arc<Watcher> {
        Arc::new(Watcher {
            id: 0,
            start: Vec::new(),
            end: Vec::new(),
            from: 0,
            live_from: 0,
            queue: Mutex::new(Queue::default()),
            callback: Mutex::new(None),
            cancelled: AtomicBool::new(true),
        })
    }

    /// Runs the callback on what is queued (on the watch thread).
    pub fn deliver(&self) {
        let (events, ended) = {
            let mut q = self.queue.lock();
            q.scheduled = false;
            q.bytes = 0;
            (std::mem::take(&mut q.events), q.ended.take())
        };
        let mut slot = self.callback.lock();
        let Some(cb) = slot.as_mut() else {
            return;
        };
        DELIVERING.with(|d| d.set(self.id));
        let events: Vec<WatchEvent> = events.into();
        for chunk in events.chunks(MAX_EVENTS_PER_CALL) {
            if self.cancelled.load(Ordering::Acquire) {
                break;
            }
            cb(WatchUpdate::Events(chunk));
        }
        if self.cancelled.load(Ordering::Acquire) {
            *slot = None;
        } else if let Some(e) = ended {
            cb(WatchUpdate::Ended(e));
            *slot = None;
            self.queue.lock().done = true;
        }
        DELIVERING.with(|d| d.set(0));
    }

    /// Appends what is for this watcher; whether it has something to deliver.
    fn offer(&self, events: &[WatchEvent]) -> bool {
        let mut q = self.queue.lock();
        if q.finished {
            return false;
        }
        for e in events {
            if e.mod_revision >= self.from.max(self.live_from) && in_range(&e.key, &self.start, &self.end) {
                q.bytes += e.size();
                q.events.push_back(e.clone());
            }
        }
        if q.events.len() > MAX_QUEUED_EVENTS || q.bytes > MAX_QUEUED_BYTES {
            q.events.clear();
            q.finished = true;
            q.ended = Some(Error::Busy(format!(
                "the watcher fell more than {MAX_QUEUED_EVENTS} changes or {MAX_QUEUED_BYTES} bytes behind; \
                 watch again from the last revision it saw + 1"
            )));
        }
        let due = (!q.events.is_empty() || q.ended.is_some()) && !q.scheduled;
        q.scheduled |= due;
        due
    }

    /// Queues the changes read from the history (all before `live_from`).
    fn take_history(&self, events: &[WatchEvent]) -> bool {
        let mut q = self.queue.lock();
        for e in events {
            q.bytes += e.size();
            q.events.push_back(e.clone());
        }
        let due = !q.events.is_empty() && !q.scheduled;
        q.scheduled |= due;
        due
    }

    fn is_done(&self) -> bool {
        self.queue.lock().done
    }

    fn end(&self, e: Error) -> bool {
        let mut q = self.queue.lock();
        q.events.clear();
        q.finished = true;
        q.ended = Some(e);
        let due = !q.scheduled;
        q.scheduled = true;
        due
    }
}

/// A group's watchers.
#[derive(Default)]
pub struct WatchHub {
    inner: Mutex<Inner>,
    /// The host's watch thread; without one (a state machine on its own),
    /// callbacks run on the applying thread.
    dispatch: Mutex<Option<Sender<Arc<Watcher>>>>,
}

#[derive(Default)]
struct Inner {
    /// The revision of the last change published (`None`: ask the store).
    revision: Option<u64>,
    watchers: HashMap<u64, Arc<Watcher>>,
    next_id: u64,
    closed: bool,
}

impl WatchHub {
    pub fn set_dispatch(&self, tx: Sender<Arc<Watcher>>) {
        *self.dispatch.lock() = Some(tx);
    }

    fn schedule(&self, w: Arc<Watcher>) {
        let tx = self.dispatch.lock().clone();
        match tx {
            Some(tx) => {
                if let Err(back) = tx.send(w) {
                    back.0.deliver();
                }
            }
            None => w.deliver(),
        }
    }

    /// The changes of a batch just written, up to `revision`.
    pub fn publish(&self, events: &[WatchEvent], revision: u64) {
        let due: Vec<Arc<Watcher>> = {
            let mut inner = self.inner.lock();
            inner.revision = Some(revision);
            if events.is_empty() {
                return;
            }
            let due = inner
                .watchers
                .values()
                .filter(|w| w.offer(events))
                .cloned()
                .collect();
            // One ended for falling behind leaves the hub once its last call
            // is made: until then an unwatch still finds it (and skips that call).
            inner.watchers.retain(|_, w| !w.is_done());
            due
        };
        due.into_iter().for_each(|w| self.schedule(w));
    }

    /// Registers a watch of `[start, end)` from revision `from` (0: from the
    /// next change), reading what came before from `store`'s history.
    /// Changes up to the revision published last come from the history,
    /// later ones from `publish`: none twice, none missed.
    pub fn register(
        &self,
        start: &[u8],
        end: &[u8],
        from: u64,
        callback: WatchCallback,
        store: &dyn HistorySource,
    ) -> Result<u64> {
        let history_start = store.history_start()?;
        if from != 0 && from < history_start {
            return Err(compacted(from, history_start));
        }
        // Most of the history read without holding up publishing...
        let mut early = if from != 0 {
            store.changes(from, u64::MAX)?
        } else {
            Vec::new()
        };
        let mut inner = self.inner.lock();
        if inner.closed {
            return Err(Error::Stopped("the group is closed".into()));
        }
        let published = match inner.revision {
            Some(r) => r,
            None => store.revision()?,
        };
        // ...and what was published meanwhile, under the lock. Changes past
        // `published` were written but not published yet: they come live.
        let read_to = early.last().map_or(from.saturating_sub(1), |e| e.mod_revision);
        early.retain(|e| e.mod_revision <= published);
        if from != 0 && read_to < published {
            // (Trimmed meanwhile past what was read: a gap, refused.)
            let history_start = store.history_start()?;
            if read_to + 1 < history_start {
                return Err(compacted(from, history_start));
            }
            early.extend(store.changes(read_to + 1, published)?);
        }
        inner.next_id += 1;
        let id = inner.next_id;
        let w = Arc::new(Watcher {
            id,
            start: start.to_vec(),
            end: end.to_vec(),
            from: if from == 0 { published + 1 } else { from },
            live_from: published + 1,
            queue: Mutex::new(Queue::default()),
            callback: Mutex::new(Some(callback)),
            cancelled: AtomicBool::new(false),
        });
        inner.watchers.insert(id, w.clone());
        let due = w.take_history(&early);
        drop(inner);
        if due {
            self.schedule(w);
        }
        Ok(id)
    }

    /// Ends watch `id` without a last call; once this returns its callback
    /// runs no more (called from the callback itself, it runs no more after
    /// the current call). `NotFound` if there is no such watch.
    pub fn cancel(&self, id: u64) -> Result<()> {
        let w = self.inner.lock().watchers.remove(&id).ok_or(Error::NotFound)?;
        w.cancelled.store(true, Ordering::Release);
        w.end(Error::Stopped("unwatched".into()));
        if DELIVERING.with(|d| d.get()) == id {
            // Inside its own callback: the delivery under way drops it.
            return Ok(());
        }
        *w.callback.lock() = None;
        Ok(())
    }

    /// Ends every watch with a last call carrying `e`, on this thread, and
    /// returns once every callback has run its last (`close`: `Stopped`).
    pub fn end_all(&self, e: Error, closing: bool) {
        // Each stays registered until its last call is done, so an unwatch
        // racing with this either finds it (and no call follows its return)
        // or returns NotFound after the last call.
        let watchers: Vec<Arc<Watcher>> = {
            let mut inner = self.inner.lock();
            inner.closed |= closing;
            inner.revision = None;
            inner.watchers.values().cloned().collect()
        };
        for w in watchers {
            w.end(e.clone());
            if DELIVERING.with(|d| d.get()) == w.id {
                // (Closed from its own callback: that call is its last.)
                w.cancelled.store(true, Ordering::Release);
            } else {
                let mut slot = w.callback.lock();
                if let Some(mut cb) = slot.take() {
                    if !w.cancelled.load(Ordering::Acquire) {
                        cb(WatchUpdate::Ended(e.clone()));
                    }
                }
            }
            self.inner.lock().watchers.remove(&w.id);
        }
    }
}

/// Where a watch reads the changes it starts after.
pub trait HistorySource {
    /// The changes of revisions `from..=to` to the watched range.
    fn changes(&self, from: u64, to: u64) -> Result<Vec<WatchEvent>>;
    /// The oldest revision the history holds whole.
    fn history_start(&self) -> Result<u64>;
    /// The store's revision (as written).
    fn revision(&self) -> Result<u64>;
}

fn compacted(from: u64, start: u64) -> Error {
    Error::Compacted(format!(
        "revision {from} is older than the history kept (it starts at {start})"
    ))
}

/// A group's store as a watch reads it.
struct StoreHistory<'a> {
    sm: &'a super::KvStateMachine,
    start: &'a [u8],
    end: &'a [u8],
}

impl HistorySource for StoreHistory<'_> {
    fn changes(&self, from: u64, to: u64) -> Result<Vec<WatchEvent>> {
        super::history::read(&*self.sm.db()?, &self.sm.keys, from, to, self.start, self.end)
    }

    fn history_start(&self) -> Result<u64> {
        let db = self.sm.db()?;
        match super::history::stored_start(&db, &self.sm.keys)? {
            Some(start) if start != super::history::NONE_KEPT => Ok(start),
            // No history (yet, or kept): from the next revision only.
            _ => Ok(super::range::revision(&db, &self.sm.keys)? + 1),
        }
    }

    fn revision(&self) -> Result<u64> {
        super::range::revision(&*self.sm.db()?, &self.sm.keys)
    }
}

impl super::KvStateMachine {
    /// Calls `callback` with every change to a key in `[start, end)` (`end`
    /// empty: to the last key) from revision `from` on (0: from the next),
    /// as this replica applies them; the watch's id. `Compacted` if the
    /// history no longer holds `from`.
    pub fn watch(&self, start: &[u8], end: &[u8], from: u64, callback: WatchCallback) -> Result<u64> {
        let source = StoreHistory { sm: self, start, end };
        self.watches.register(start, end, from, callback, &source)
    }

    /// Ends watch `id` (see [`WatchHub::cancel`]).
    pub fn unwatch(&self, id: u64) -> Result<()> {
        self.watches.cancel(id)
    }

    /// Where the host's watch thread takes the group's callbacks.
    pub fn set_watch_dispatch(&self, tx: Sender<Arc<Watcher>>) {
        self.watches.set_dispatch(tx);
    }

    /// How many revisions of changes the history keeps (0: none).
    pub fn set_history_revisions(&self, n: u64) {
        self.history_revisions
            .store(n, std::sync::atomic::Ordering::Relaxed);
    }
}
