//! `ReplayRing`: each channel's recent updates, kept for clients that come back after a
//! disconnect (resume) and for the latest value a new subscriber is shown at once (snapshot).
//!
//! Updates are held as the shared `EncodedUpdate`s the fan-out already has (no copy), per
//! channel in seq order, and once more in global arrival order so the oldest anywhere goes
//! first: by age (`window_ms`) and by total size (`max_bytes`), whichever bites. A resume is
//! all or nothing: either every update after the client's seq is still here, or it is told
//! the history no longer reaches back (`Replay::Gap`); never a partial replay.

use std::collections::VecDeque;
use std::sync::Arc;

use rustc_hash::FxHashMap;

use crate::encode::EncodedUpdate;

#[derive(Debug, Clone, Copy)]
pub struct ReplayLimits {
    /// How far back the ring reaches (by the gateway's receive time).
    pub window_ms: i64,
    /// Total encoded bytes held; past it the oldest updates go first.
    pub max_bytes: usize,
}

/// What a resume can have for one channel.
pub enum Replay {
    /// Every update after the asked seq, in order (empty: nothing was missed).
    Updates(Vec<Arc<EncodedUpdate>>),
    /// The ring no longer reaches back to the asked seq (or the seq was never given out).
    Gap,
}

#[derive(Debug, Default, Clone, Copy)]
pub struct ReplayStats {
    pub updates: usize,
    pub bytes: usize,
    pub channels: usize,
    pub evicted_by_age: u64,
    pub evicted_by_size: u64,
}

pub struct ReplayRing {
    limits: ReplayLimits,
    channels: FxHashMap<Arc<str>, VecDeque<Arc<EncodedUpdate>>>,
    /// Arrival order across channels: (channel, seq, receive time, bytes). The seq tells an
    /// entry from a later one of the same channel name after the channel was forgotten.
    order: VecDeque<(Arc<str>, u64, i64, usize)>,
    /// The latest update of every channel seen, however old (what a snapshot shows).
    latest: FxHashMap<Arc<str>, Arc<EncodedUpdate>>,
    stats: ReplayStats,
}

/// Bytes an update holds in the ring, counting both encodings a receiver may need. The
/// Protobuf one is estimated at half the JSON (it is about 45 % of it) rather than made on the
/// ingest path for every update, when only Protobuf clients would ever need it.
fn held_bytes(u: &EncodedUpdate) -> usize {
    let json = u.json_payload().len();
    json + json / 2 + 64
}

impl ReplayRing {
    pub fn new(limits: ReplayLimits) -> ReplayRing {
        ReplayRing {
            limits,
            channels: FxHashMap::default(),
            order: VecDeque::new(),
            latest: FxHashMap::default(),
            stats: ReplayStats::default(),
        }
    }

    pub fn append(&mut self, update: &Arc<EncodedUpdate>, now_ms: i64) {
        let channel = update.update.channel.clone();
        let bytes = held_bytes(update);
        self.latest.insert(channel.clone(), update.clone());
        self.channels
            .entry(channel.clone())
            .or_default()
            .push_back(update.clone());
        self.order
            .push_back((channel, update.update.seq, update.update.recv_time_ms, bytes));
        self.stats.bytes += bytes;
        self.stats.updates += 1;
        self.evict(now_ms);
    }

    /// Drops what is older than the window or over the size cap.
    pub fn evict(&mut self, now_ms: i64) {
        let oldest_kept = now_ms - self.limits.window_ms;
        while let Some((channel, seq, recv_ms, bytes)) = self.order.front() {
            let by_size = self.stats.bytes > self.limits.max_bytes;
            if !by_size && *recv_ms >= oldest_kept {
                break;
            }
            if by_size {
                self.stats.evicted_by_size += 1;
            } else {
                self.stats.evicted_by_age += 1;
            }
            self.stats.bytes -= bytes;
            self.stats.updates -= 1;
            if let Some(queue) = self.channels.get_mut(channel) {
                // Not when the channel was forgotten since (its entries went with it).
                if queue.front().is_some_and(|u| u.update.seq == *seq) {
                    queue.pop_front();
                }
                if queue.is_empty() {
                    self.channels.remove(channel);
                }
            }
            self.order.pop_front();
        }
    }

    /// Updates on `channel` after `after_seq`, given that the processor's last seq on it is
    /// `last_seq`.
    pub fn since(&self, channel: &str, after_seq: u64, last_seq: u64) -> Replay {
        if after_seq > last_seq {
            return Replay::Gap; // a seq this epoch never gave out
        }
        if after_seq == last_seq {
            return Replay::Updates(Vec::new());
        }
        let Some(queue) = self.channels.get(channel) else {
            return Replay::Gap;
        };
        if queue.front().is_none_or(|first| first.update.seq > after_seq + 1) {
            return Replay::Gap; // evicted past the asked seq
        }
        let missed: Vec<Arc<EncodedUpdate>> = queue
            .iter()
            .filter(|u| u.update.seq > after_seq)
            .cloned()
            .collect();
        // Every seq from the asked one to the last given out, each once: a seq the processor
        // skipped (the stream had a hole: the provider connection was lost, or nobody held the
        // channel) is a gap no replay can fill.
        let contiguous = missed
            .iter()
            .zip(after_seq + 1..)
            .all(|(u, seq)| u.update.seq == seq);
        if contiguous && missed.last().map_or(after_seq, |u| u.update.seq) == last_seq {
            Replay::Updates(missed)
        } else {
            Replay::Gap
        }
    }

    /// Drops everything held for `channels` (their symbols' state was released): what a
    /// snapshot or a resume could show of them is gone. Their bytes stay counted until their
    /// place in the arrival order ages out.
    pub fn forget<S: AsRef<str>>(&mut self, channels: &[S]) {
        for channel in channels {
            self.latest.remove(channel.as_ref());
            self.channels.remove(channel.as_ref());
        }
    }

    pub fn latest(&self, channel: &str) -> Option<&Arc<EncodedUpdate>> {
        self.latest.get(channel)
    }

    pub fn stats(&self) -> ReplayStats {
        ReplayStats {
            channels: self.channels.len(),
            ..self.stats
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quote(channel: &str, seq: u64, recv_ms: i64) -> Arc<EncodedUpdate> {
        let symbol = channel.split(':').next().unwrap();
        let mut u = crate::fanout::dispatcher::tests::update(symbol, "quote", seq);
        Arc::get_mut(&mut u).expect("a fresh update").update.recv_time_ms = recv_ms;
        u
    }

    fn seqs(r: Replay) -> Option<Vec<u64>> {
        match r {
            Replay::Updates(us) => Some(us.iter().map(|u| u.update.seq).collect()),
            Replay::Gap => None,
        }
    }

    #[test]
    fn replays_everything_after_a_seq_or_says_gap() {
        let mut ring = ReplayRing::new(ReplayLimits {
            window_ms: 1_000,
            max_bytes: 1 << 20,
        });
        for seq in 1..=5 {
            ring.append(&quote("A$US:quote", seq, seq as i64 * 100), 500);
        }
        assert_eq!(seqs(ring.since("A$US:quote", 2, 5)), Some(vec![3, 4, 5]));
        assert_eq!(seqs(ring.since("A$US:quote", 0, 5)), Some(vec![1, 2, 3, 4, 5]));
        assert_eq!(seqs(ring.since("A$US:quote", 5, 5)), Some(vec![]));
        assert_eq!(seqs(ring.since("A$US:quote", 6, 5)), None);
        assert_eq!(seqs(ring.since("B$US:quote", 0, 3)), None);
        // Older than the window: gone, and a resume from before them is a gap, never partial.
        ring.evict(1_250);
        assert_eq!(seqs(ring.since("A$US:quote", 2, 5)), Some(vec![3, 4, 5]));
        assert_eq!(seqs(ring.since("A$US:quote", 1, 5)), None);
        assert_eq!(ring.stats().evicted_by_age, 2);
        ring.evict(10_000);
        assert_eq!(ring.stats().updates, 0);
        assert_eq!(ring.stats().channels, 0);
        // The latest value stays for snapshots.
        assert_eq!(ring.latest("A$US:quote").unwrap().update.seq, 5);
    }

    #[test]
    fn a_forgotten_channel_is_gone_and_its_old_entries_never_evict_new_ones() {
        let mut ring = ReplayRing::new(ReplayLimits {
            window_ms: 1_000,
            max_bytes: 1 << 20,
        });
        for seq in 1..=3 {
            ring.append(&quote("A$US:quote", seq, 100), 100);
        }
        ring.forget(&["A$US:quote"]);
        assert!(ring.latest("A$US:quote").is_none());
        assert_eq!(seqs(ring.since("A$US:quote", 1, 3)), None);
        // Back, numbered above: the old entries ageing out leave the new ones alone.
        ring.append(&quote("A$US:quote", 10, 900), 900);
        ring.evict(1_200);
        assert_eq!(seqs(ring.since("A$US:quote", 9, 10)), Some(vec![10]));
        assert_eq!(ring.stats().updates, 1);
    }

    #[test]
    fn a_skipped_seq_is_a_gap_no_replay_fills() {
        let mut ring = ReplayRing::new(ReplayLimits {
            window_ms: 60_000,
            max_bytes: 1 << 20,
        });
        for seq in [1, 2, 3, 5, 6] {
            ring.append(&quote("A$US:quote", seq, 100), 100);
        }
        // 4 was skipped (the stream had a hole): nothing before it can be resumed.
        assert_eq!(seqs(ring.since("A$US:quote", 2, 6)), None);
        assert_eq!(seqs(ring.since("A$US:quote", 3, 6)), None);
        assert_eq!(seqs(ring.since("A$US:quote", 4, 6)), Some(vec![5, 6]));
        // Skipped after the last held update (nothing came since): a gap too.
        assert_eq!(seqs(ring.since("A$US:quote", 6, 7)), None);
        assert_eq!(seqs(ring.since("A$US:quote", 5, 7)), None);
    }

    #[test]
    fn the_size_cap_drops_the_oldest_across_channels() {
        let one = held_bytes(&quote("A$US:quote", 1, 0));
        let mut ring = ReplayRing::new(ReplayLimits {
            window_ms: i64::MAX / 2,
            max_bytes: one * 3 + one / 2,
        });
        ring.append(&quote("A$US:quote", 1, 0), 0);
        ring.append(&quote("B$US:quote", 1, 1), 1);
        ring.append(&quote("A$US:quote", 2, 2), 2);
        ring.append(&quote("B$US:quote", 2, 3), 3);
        let s = ring.stats();
        assert_eq!((s.updates, s.evicted_by_size), (3, 1));
        assert!(s.bytes <= one * 3 + one / 2);
        assert_eq!(seqs(ring.since("A$US:quote", 0, 2)), None); // A1 went first
        assert_eq!(seqs(ring.since("A$US:quote", 1, 2)), Some(vec![2]));
        assert_eq!(seqs(ring.since("B$US:quote", 0, 2)), Some(vec![1, 2]));
    }
}
