//! `Dispatcher`: the fan-out. It owns the subscription index and one outbox per connection;
//! `publish` puts an update's ready frame into each receiver's outbox (immediate mode) or its
//! conflation slots (batch mode, or a slow reader), and `flush`, once per event-loop turn,
//! hands back one buffer per connection that has something to send. The edge writes each with
//! one call; no Python runs per delivery.
//!
//! Connections are integer ids handed out here. Memory per connection is bounded: the outbox
//! by `soft_cap_bytes` (past it, updates are conflated instead), the conflation by the
//! connection's channels plus `tick_cap`.

use std::hash::BuildHasher;
use std::sync::Arc;

use rustc_hash::{FxBuildHasher, FxHashMap, FxHashSet};

use super::conflation::{Conflation, Pushed};
use super::index::{Change, ConnId, SubscriptionIndex};
use super::outbox::{Frames, Outgoing};
use super::slab::Slab;
use super::wheel::TimerWheel;
use crate::encode::{json, protobuf, Compressor, EncodedUpdate, Format};
use crate::error::{CoreError, CoreResult, ErrorCode};
use crate::model::Kind;

/// The dispatcher's bounds, fixed at creation (from the gateway's config).
#[derive(Debug, Clone)]
pub struct DispatcherLimits {
    /// Past this many bytes unsent (outbox, or the socket's buffer as the edge reports with
    /// `set_paused`), a connection's updates are conflated until it drains.
    pub soft_cap_bytes: usize,
    /// Ticks held per connection while conflating; past it the oldest are dropped and counted.
    pub tick_cap: usize,
    /// A connection paused this long is reported by `lagging` (the edge closes it, 1013).
    pub lag_deadline_ms: i64,
    /// Batch deadlines are kept to this granularity (the timer wheel's tick).
    pub wheel_tick_ms: i64,
    /// Allowed batch intervals.
    pub min_interval_ms: u32,
    pub max_interval_ms: u32,
}

impl Default for DispatcherLimits {
    fn default() -> Self {
        DispatcherLimits {
            soft_cap_bytes: 256 * 1024,
            tick_cap: 1000,
            lag_deadline_ms: 10_000,
            wheel_tick_ms: 10,
            min_interval_ms: 50,
            max_interval_ms: 60_000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Every update as it comes (coalesced per event-loop turn).
    Immediate,
    /// One frame per interval with what is pending, conflated.
    Batch { interval_ms: u32 },
}

/// What `Dispatcher::frames_for` sends updates as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marked {
    /// Updates a resuming client missed: plain pushes (one batch in batch mode).
    Missed,
    /// The latest of channels just subscribed.
    Snapshot,
    /// The current state of channels whose data came back after they were stale.
    Refresh,
}

/// Running totals, read by `/metrics`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DispatcherStats {
    /// Updates given to `publish`.
    pub published: u64,
    /// Updates delivered to a connection: frames queued plus updates inside batches.
    pub deliveries: u64,
    /// Updates replaced by a newer one of the same channel before being sent.
    pub conflated: u64,
    /// Ticks dropped past `tick_cap`.
    pub ticks_dropped: u64,
    /// Batch frames handed out, and how many distinct ones were encoded for them.
    pub batches: u64,
    pub batch_encodes: u64,
    /// Bytes handed out by `flush` and `take_outbox`.
    pub bytes_out: u64,
    /// Times a connection went from free-flowing to conflated for being slow.
    pub slow_conflations: u64,
    /// Deliveries left out to shed load (`Dispatcher::set_shedding`).
    pub shed: u64,
}

/// Per connection; the fields are all this connection's delivery state.
struct Conn {
    format: Format,
    mode: Mode,
    /// Frames not yet handed to the edge (immediate mode).
    outbox: Frames,
    /// Pending conflated updates (batch mode, or while slow); allocated on first use.
    pending: Option<Box<Conflation>>,
    /// Since when the edge reported the socket over its high watermark.
    paused_since: Option<i64>,
    /// Queued in `Dispatcher::dirty` for the next flush.
    dirty: bool,
    /// XOR of the hashes of the subscribed channels: equal sets, equal hashes, so equal batch
    /// deadlines (and shared batch encodings); different sets spread over the interval.
    set_hash: u64,
    /// Bumped whenever the batch timer is replaced; older wheel entries are ignored.
    timer_generation: u32,
    /// The batch deadline now scheduled (the next one is at least an interval later).
    deadline_ms: i64,
}

impl Conn {
    fn pending(&mut self) -> &mut Conflation {
        self.pending.get_or_insert_with(Default::default)
    }

    fn has_pending(&self) -> bool {
        self.pending.as_ref().is_some_and(|p| !p.is_empty())
    }
}

pub struct Dispatcher {
    limits: DispatcherLimits,
    index: SubscriptionIndex,
    conns: Slab<Conn>,
    /// Connections with something for the next flush (each once; `Conn::dirty` guards it).
    dirty: Vec<ConnId>,
    /// Connections the edge reported as over the high watermark.
    paused: FxHashSet<ConnId>,
    wheel: TimerWheel,
    compressor: Compressor,
    stats: DispatcherStats,
    due: Vec<(ConnId, u32)>,
    /// The overload level the edge set: 1 leaves depth and klines out for immediate-mode
    /// connections, 3 delivers nothing live (level 2, conflating, is a mode change).
    shedding: u8,
}

/// Batch contents that several connections share: the same updates, drops and format.
type BatchKey = (Format, u64, Vec<usize>);

impl Dispatcher {
    pub fn new(limits: DispatcherLimits, zstd_dictionary: Option<&[u8]>) -> CoreResult<Dispatcher> {
        if limits.min_interval_ms == 0 || limits.min_interval_ms > limits.max_interval_ms {
            return Err(CoreError::new(
                ErrorCode::InvalidMode,
                "batch intervals need 0 < min_interval_ms <= max_interval_ms",
            ));
        }
        Ok(Dispatcher {
            wheel: TimerWheel::new(limits.wheel_tick_ms),
            compressor: Compressor::new(zstd_dictionary)?,
            limits,
            index: SubscriptionIndex::new(),
            conns: Slab::default(),
            dirty: Vec::new(),
            paused: FxHashSet::default(),
            stats: DispatcherStats::default(),
            due: Vec::new(),
            shedding: 0,
        })
    }

    pub fn limits(&self) -> &DispatcherLimits {
        &self.limits
    }

    pub fn stats(&self) -> &DispatcherStats {
        &self.stats
    }

    pub fn index(&self) -> &SubscriptionIndex {
        &self.index
    }

    pub fn compressor(&mut self) -> &mut Compressor {
        &mut self.compressor
    }

    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    pub fn batch_connection_count(&self) -> usize {
        self.conns.values().filter(|c| c.mode != Mode::Immediate).count()
    }

    pub fn paused_count(&self) -> usize {
        self.paused.len()
    }

    /// Checks a requested mode against the limits.
    pub fn check_mode(&self, mode: Mode) -> CoreResult<Mode> {
        if let Mode::Batch { interval_ms } = mode {
            self.check_interval(interval_ms.into())?;
        }
        Ok(mode)
    }

    /// A mode by name (`immediate`, `batch`) with its interval, as clients send it: the one
    /// place the allowed names and intervals are checked.
    pub fn parse_mode(&self, name: &str, interval_ms: i64) -> CoreResult<Mode> {
        match name {
            "immediate" => Ok(Mode::Immediate),
            "batch" => Ok(Mode::Batch {
                interval_ms: self.check_interval(interval_ms)?,
            }),
            other => Err(CoreError::new(
                ErrorCode::InvalidMode,
                format!(
                    "mode must be immediate or batch (got {:?})",
                    other.chars().take(32).collect::<String>()
                ),
            )),
        }
    }

    fn check_interval(&self, interval_ms: i64) -> CoreResult<u32> {
        let (lo, hi) = (self.limits.min_interval_ms, self.limits.max_interval_ms);
        u32::try_from(interval_ms)
            .ok()
            .filter(|i| (lo..=hi).contains(i))
            .ok_or_else(|| {
                CoreError::new(
                    ErrorCode::InvalidMode,
                    format!("interval_ms must be {lo}..{hi} (got {interval_ms})"),
                )
            })
    }

    /// A new connection's id.
    pub fn connect(&mut self, format: Format, mode: Mode, now_ms: i64) -> CoreResult<ConnId> {
        let mode = self.check_mode(mode)?;
        let id = self.conns.insert(Conn {
            format,
            mode: Mode::Immediate,
            outbox: Frames::new(format),
            pending: None,
            paused_since: None,
            dirty: false,
            set_hash: 0,
            timer_generation: 0,
            deadline_ms: 0,
        });
        self.set_mode(id, mode, now_ms)?;
        Ok(id)
    }

    /// Forgets a connection; returns the channels that lost their last receiver.
    pub fn disconnect(&mut self, id: ConnId) -> Vec<Arc<str>> {
        self.conns.remove(&id);
        self.paused.remove(&id);
        edges(self.index.remove_connection(id))
    }

    pub fn format(&self, id: ConnId) -> Option<Format> {
        self.conns.get(&id).map(|c| c.format)
    }

    pub fn mode(&self, id: ConnId) -> Option<Mode> {
        self.conns.get(&id).map(|c| c.mode)
    }

    /// Subscribes; returns the channels that gained their first receiver (what upstream must
    /// now stream).
    pub fn subscribe<S: AsRef<str>>(&mut self, id: ConnId, channels: &[S]) -> Vec<Arc<str>> {
        let Some(conn) = self.conns.get_mut(&id) else {
            return Vec::new();
        };
        let mut first = Vec::new();
        for ch in channels {
            if let Some(change) = self.index.subscribe(id, ch.as_ref()) {
                conn.set_hash ^= FxBuildHasher.hash_one(&*change.name);
                if change.edge {
                    first.push(change.name);
                }
            }
        }
        first
    }

    /// Unsubscribes; nothing of those channels is delivered after this returns. Returns the
    /// channels that lost their last receiver.
    pub fn unsubscribe<S: AsRef<str>>(&mut self, id: ConnId, channels: &[S]) -> Vec<Arc<str>> {
        let Some(conn) = self.conns.get_mut(&id) else {
            return Vec::new();
        };
        let mut last = Vec::new();
        for ch in channels {
            if let Some(change) = self.index.unsubscribe(id, ch.as_ref()) {
                conn.set_hash ^= FxBuildHasher.hash_one(&*change.name);
                if let Some(p) = conn.pending.as_mut() {
                    p.forget(change.channel);
                }
                if change.edge {
                    last.push(change.name);
                }
            }
        }
        last
    }

    /// Drops `channels` from every connection holding them (the provider refused them);
    /// returns, per connection, which of its channels were dropped.
    pub fn drop_channels<S: AsRef<str>>(&mut self, channels: &[S]) -> Vec<(ConnId, Vec<Arc<str>>)> {
        let mut by_conn: FxHashMap<ConnId, Vec<Arc<str>>> = FxHashMap::default();
        for ch in channels {
            let holders: Vec<ConnId> = self.index.receivers(ch.as_ref()).collect();
            for id in holders {
                let name: Arc<str> = ch.as_ref().into();
                self.unsubscribe(id, &[&*name]);
                by_conn.entry(id).or_default().push(name);
            }
        }
        let mut out: Vec<_> = by_conn.into_iter().collect();
        out.sort_unstable_by_key(|(id, _)| *id);
        out
    }

    /// Switches delivery mode. Into batch mode, the first batch comes within two intervals;
    /// out of it, whatever was pending goes out at the next flush as separate frames.
    pub fn set_mode(&mut self, id: ConnId, mode: Mode, now_ms: i64) -> CoreResult<()> {
        let mode = self.check_mode(mode)?;
        let Some(conn) = self.conns.get_mut(&id) else {
            return Ok(());
        };
        conn.mode = mode;
        conn.timer_generation = conn.timer_generation.wrapping_add(1);
        match mode {
            Mode::Batch { interval_ms } => {
                conn.deadline_ms = next_deadline(conn.set_hash, interval_ms, now_ms);
                self.wheel.schedule(id, conn.deadline_ms, conn.timer_generation);
            }
            Mode::Immediate => {
                if conn.has_pending() {
                    mark_dirty(&mut self.dirty, id, conn);
                }
            }
        }
        Ok(())
    }

    /// The edge reports its socket buffer over (`true`) or back under (`false`) the soft cap.
    /// While paused, updates are conflated; on resume, the outbox and what was conflated go
    /// out at the next flush.
    pub fn set_paused(&mut self, id: ConnId, paused: bool, now_ms: i64) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        if paused {
            if conn.paused_since.is_none() {
                conn.paused_since = Some(now_ms);
                self.paused.insert(id);
                self.stats.slow_conflations += 1;
            }
        } else if conn.paused_since.take().is_some() {
            self.paused.remove(&id);
            if !conn.outbox.is_empty() || (conn.mode == Mode::Immediate && conn.has_pending()) {
                mark_dirty(&mut self.dirty, id, conn);
            }
        }
    }

    /// Paused connections past the lag deadline, for the edge to close.
    pub fn lagging(&self, now_ms: i64) -> Vec<ConnId> {
        let mut out: Vec<ConnId> = self
            .paused
            .iter()
            .filter(|id| {
                self.conns
                    .get(id)
                    .and_then(|c| c.paused_since)
                    .is_some_and(|t| now_ms - t >= self.limits.lag_deadline_ms)
            })
            .copied()
            .collect();
        out.sort_unstable();
        out
    }

    /// Sheds load under overload (the seed's degradation levels): 0 none; 1 leaves depth and
    /// klines out for immediate-mode connections; 2 as 1 (the edge also moves immediate-mode
    /// connections to coarse batches); 3 delivers nothing live (snapshots only).
    pub fn set_shedding(&mut self, level: u8) {
        self.shedding = level.min(3);
    }

    /// Fans one update out to its channel's receivers; returns how many.
    pub fn publish(&mut self, update: &Arc<EncodedUpdate>) -> usize {
        self.stats.published += 1;
        let Some(channel) = self.index.channel_id(&update.update.channel) else {
            return 0;
        };
        self.index.note_seq(channel, update.update.seq);
        let shed_non_core = match self.shedding {
            0 => false,
            3 => {
                let count = self.index.receivers_of(channel).len();
                self.stats.shed += count as u64;
                return count;
            }
            _ => matches!(update.kind(), Kind::Depth | Kind::Kline(_)),
        };
        let Dispatcher {
            index,
            conns,
            dirty,
            compressor,
            stats,
            limits,
            ..
        } = self;
        let receivers = index.receivers_of(channel);
        let count = receivers.len();
        for id in receivers {
            let Some(conn) = conns.get_mut(&id) else {
                continue;
            };
            if shed_non_core && conn.mode == Mode::Immediate {
                stats.shed += 1;
                continue;
            }
            let flowing = conn.mode == Mode::Immediate && conn.paused_since.is_none();
            if flowing && conn.outbox.len() < limits.soft_cap_bytes {
                conn.outbox.push(update, compressor);
                stats.deliveries += 1;
                mark_dirty(dirty, id, conn);
                continue;
            }
            if flowing && !conn.has_pending() {
                stats.slow_conflations += 1; // the outbox alone reached the soft cap this turn
            }
            match conn.pending().push(channel, update, limits.tick_cap) {
                Pushed::Added => {}
                Pushed::Conflated => stats.conflated += 1,
                Pushed::TickDropped => stats.ticks_dropped += 1,
            }
        }
        count
    }

    /// `updates` for connection `id` alone, in its format, to be written after what is queued
    /// for it: snapshots (after a subscribe), refreshes (data back after a channel was stale),
    /// or missed updates (a resume) as pushes, or for a batch-mode client one batch (conflated
    /// channels' latest, every tick). `None` for an unknown connection or nothing to send.
    pub fn frames_for(
        &mut self,
        id: ConnId,
        updates: &[Arc<EncodedUpdate>],
        marked: Marked,
        now_ms: i64,
    ) -> Option<Vec<u8>> {
        let conn = self.conns.get(&id)?;
        if updates.is_empty() {
            return None;
        }
        let (format, mode) = (conn.format, conn.mode);
        for u in updates {
            if let Some(channel) = self.index.channel_id(&u.update.channel) {
                self.index.note_seq(channel, u.update.seq);
            }
        }
        let compressor = &mut self.compressor;
        let out: Vec<u8> = if marked != Marked::Missed {
            let refresh = marked == Marked::Refresh;
            updates
                .iter()
                .flat_map(|u| u.snapshot_frame(format, compressor, refresh))
                .collect()
        } else if mode == Mode::Immediate {
            let mut out = Vec::new();
            for u in updates {
                out.extend_from_slice(u.frame(format, compressor));
            }
            out
        } else {
            let chosen = conflate_missed(updates);
            encode_batch_of(format, chosen.into_iter(), 0, now_ms, compressor)
        };
        self.stats.bytes_out += out.len() as u64;
        Some(out)
    }

    /// `(channel, seq)`: the last update of each of `id`'s channels handed out to be written to
    /// it, for the channels with nothing still queued for it (all or none while frames wait in
    /// its outbox, which does not track channels). What its session records when it goes.
    pub fn delivered(&self, id: ConnId) -> Vec<(Arc<str>, u64)> {
        let Some(conn) = self.conns.get(&id) else {
            return Vec::new();
        };
        if !conn.outbox.is_empty() {
            return Vec::new();
        }
        let pending = conn.pending.as_deref();
        self.index
            .last_seqs_of(id, |ch| pending.is_none_or(|p| !p.holds(ch)))
    }

    /// Whatever the connection has queued, to be written before a reply so that a reply never
    /// overtakes a push queued before it.
    pub fn take_outbox(&mut self, id: ConnId) -> Option<Outgoing> {
        let conn = self.conns.get_mut(&id)?;
        if conn.outbox.is_empty() {
            return None;
        }
        let out = std::mem::replace(&mut conn.outbox, Frames::new(conn.format));
        self.stats.bytes_out += out.len() as u64;
        Some(Outgoing::Frames(out))
    }

    /// Everything due now: one buffer per dirty immediate-mode connection, one batch frame per
    /// batch-mode connection whose deadline passed (shared by connections with the same
    /// contents). Appends `(connection, bytes)` to `out`.
    pub fn flush(&mut self, now_ms: i64, out: &mut Vec<(ConnId, Outgoing)>) {
        let mut dirty = std::mem::take(&mut self.dirty);
        for id in dirty.drain(..) {
            let Some(conn) = self.conns.get_mut(&id) else {
                continue;
            };
            conn.dirty = false;
            if conn.paused_since.is_some() {
                continue; // held until the socket drains; `set_paused(false)` re-queues it
            }
            let mut frames = std::mem::replace(&mut conn.outbox, Frames::new(conn.format));
            if conn.mode == Mode::Immediate {
                if let Some(p) = conn.pending.as_mut().filter(|p| !p.is_empty()) {
                    for u in p.updates() {
                        frames.push(u, &mut self.compressor);
                    }
                    self.stats.deliveries += p.len() as u64;
                    p.clear();
                }
            }
            if !frames.is_empty() {
                self.stats.bytes_out += frames.len() as u64;
                out.push((id, Outgoing::Frames(frames)));
            }
        }
        self.dirty = dirty; // keeps its capacity
        self.flush_batches(now_ms, out);
    }

    fn flush_batches(&mut self, now_ms: i64, out: &mut Vec<(ConnId, Outgoing)>) {
        if self.wheel.is_empty() {
            return;
        }
        let mut due = std::mem::take(&mut self.due);
        self.wheel.expire(now_ms, &mut due);
        let mut shared: FxHashMap<BatchKey, Arc<Vec<u8>>> = FxHashMap::default();
        for (id, generation) in due.drain(..) {
            let Some(conn) = self.conns.get_mut(&id) else {
                continue;
            };
            let Mode::Batch { interval_ms } = conn.mode else {
                continue;
            };
            if conn.timer_generation != generation {
                continue; // replaced by a later set_mode
            }
            if conn.paused_since.is_none() && conn.has_pending() {
                let pending = conn.pending.as_mut().expect("has_pending");
                let key: BatchKey = (
                    conn.format,
                    pending.dropped_ticks(),
                    pending.updates().map(|u| Arc::as_ptr(u) as usize).collect(),
                );
                let bytes = match shared.get(&key) {
                    Some(b) => b.clone(),
                    None => {
                        let b = Arc::new(encode_batch(conn.format, pending, now_ms, &mut self.compressor));
                        self.stats.batch_encodes += 1;
                        shared.insert(key, b.clone());
                        b
                    }
                };
                self.stats.batches += 1;
                self.stats.deliveries += pending.len() as u64;
                self.stats.bytes_out += bytes.len() as u64;
                pending.clear();
                out.push((id, Outgoing::Shared(bytes)));
            }
            // Never early: at least one interval after this deadline, on the grid of the set
            // held now (a subscription change moves the connection to its new set's grid).
            let after = (conn.deadline_ms + interval_ms as i64 - 1).max(now_ms);
            conn.deadline_ms = next_deadline(conn.set_hash, interval_ms, after);
            self.wheel.schedule(id, conn.deadline_ms, generation);
        }
        self.due = due;
    }
}

fn mark_dirty(dirty: &mut Vec<ConnId>, id: ConnId, conn: &mut Conn) {
    if !conn.dirty {
        conn.dirty = true;
        dirty.push(id);
    }
}

fn edges(changes: Vec<Change>) -> Vec<Arc<str>> {
    changes.into_iter().filter(|c| c.edge).map(|c| c.name).collect()
}

/// The first point after `after_ms` on the grid `k * interval + phase`, where the phase comes
/// from the subscription set: connections with the same set and interval share deadlines
/// (so one encoded batch serves them all) and different sets spread over the interval.
fn next_deadline(set_hash: u64, interval_ms: u32, after_ms: i64) -> i64 {
    let interval = interval_ms as i64;
    let phase = (set_hash % interval_ms as u64) as i64;
    let k = (after_ms - phase).div_euclid(interval) + 1;
    k * interval + phase
}

fn encode_batch(format: Format, pending: &Conflation, now_ms: i64, compressor: &mut Compressor) -> Vec<u8> {
    encode_batch_of(
        format,
        pending.updates(),
        pending.dropped_ticks(),
        now_ms,
        compressor,
    )
}

fn encode_batch_of<'a>(
    format: Format,
    updates: impl Iterator<Item = &'a Arc<EncodedUpdate>> + Clone,
    dropped_ticks: u64,
    now_ms: i64,
    compressor: &mut Compressor,
) -> Vec<u8> {
    let items = updates.map(move |u| u.batch_item(format));
    match format {
        Format::Json => {
            let size: usize = items.clone().map(|d| d.len() + 1).sum();
            json::encode_batch_framed(items, now_ms, dropped_ticks, size)
        }
        Format::Proto => {
            let msg = protobuf::encode_batch(items, now_ms, dropped_ticks);
            crate::encode::wsframe::frame(crate::encode::wsframe::Opcode::Binary, &msg)
        }
        Format::ProtoZstd => {
            let msg = protobuf::encode_batch(items, now_ms, dropped_ticks);
            compressor.compress_framed(&msg)
        }
    }
}

/// What a batch-mode client is sent of missed updates: the latest of each conflated channel
/// (quotes, depth, klines) and every tick, in arrival order.
fn conflate_missed(updates: &[Arc<EncodedUpdate>]) -> Vec<&Arc<EncodedUpdate>> {
    let mut last: FxHashMap<&str, u64> = FxHashMap::default();
    for u in updates {
        if u.kind() != Kind::Tick {
            last.insert(&u.update.channel, u.update.seq);
        }
    }
    updates
        .iter()
        .filter(|u| u.kind() == Kind::Tick || last.get(&*u.update.channel) == Some(&u.update.seq))
        .collect()
}

#[cfg(test)]
#[path = "dispatcher_tests.rs"]
pub(crate) mod tests;
