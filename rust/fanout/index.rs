//! `SubscriptionIndex`: channel -> receivers, and connection -> channels, built for 100k+
//! connections with tens of channels each.
//!
//! Channels are interned to dense ids so the per-update lookup is one hash of the channel
//! name and a slice walk; receivers sit in an insertion-ordered set so removal is O(1)
//! (swap-remove) and iteration is over contiguous memory. A channel's slot is freed, and its
//! id reused, when its last receiver leaves, so churn does not grow the index.

use std::sync::Arc;

use indexmap::IndexSet;
use rustc_hash::{FxBuildHasher, FxHashMap, FxHashSet};

pub type ConnId = u64;
pub type ChannelId = u32;

struct ChannelSlot {
    name: Arc<str>,
    receivers: IndexSet<ConnId, FxBuildHasher>,
    /// The seq of the last update handed to this channel's receivers (0: none yet).
    last_seq: u64,
}

/// The outcome for one channel of a subscribe/unsubscribe call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub channel: ChannelId,
    pub name: Arc<str>,
    /// Subscribe: the channel gained its first receiver. Unsubscribe: it lost its last.
    pub edge: bool,
}

#[derive(Default)]
pub struct SubscriptionIndex {
    ids: FxHashMap<Arc<str>, ChannelId>,
    slots: Vec<Option<ChannelSlot>>,
    free: Vec<ChannelId>,
    by_conn: FxHashMap<ConnId, FxHashSet<ChannelId>>,
    pairs: usize,
}

impl SubscriptionIndex {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `conn` to `channel`. `None` if it was already there.
    pub fn subscribe(&mut self, conn: ConnId, channel: &str) -> Option<Change> {
        let id = self.intern(channel);
        let slot = self.slots[id as usize]
            .as_mut()
            .expect("interned channel has a slot");
        if !slot.receivers.insert(conn) {
            return None;
        }
        self.by_conn.entry(conn).or_default().insert(id);
        self.pairs += 1;
        Some(Change {
            channel: id,
            name: slot.name.clone(),
            edge: slot.receivers.len() == 1,
        })
    }

    /// Removes `conn` from `channel`. `None` if it was not there.
    pub fn unsubscribe(&mut self, conn: ConnId, channel: &str) -> Option<Change> {
        let id = *self.ids.get(channel)?;
        let conn_channels = self.by_conn.get_mut(&conn)?;
        if !conn_channels.remove(&id) {
            return None;
        }
        if conn_channels.is_empty() {
            self.by_conn.remove(&conn);
        }
        Some(self.detach(conn, id))
    }

    /// Removes `conn` from every channel (a disconnect).
    pub fn remove_connection(&mut self, conn: ConnId) -> Vec<Change> {
        let Some(ids) = self.by_conn.remove(&conn) else {
            return Vec::new();
        };
        let mut ids: Vec<ChannelId> = ids.into_iter().collect();
        ids.sort_unstable(); // deterministic order for callers and tests
        ids.into_iter().map(|id| self.detach(conn, id)).collect()
    }

    pub fn channel_id(&self, channel: &str) -> Option<ChannelId> {
        self.ids.get(channel).copied()
    }

    pub fn receivers_of(&self, id: ChannelId) -> impl ExactSizeIterator<Item = ConnId> + '_ {
        self.slots
            .get(id as usize)
            .and_then(Option::as_ref)
            .map(|s| s.receivers.as_slice())
            .unwrap_or_default()
            .iter()
            .copied()
    }

    /// Records that the update with `seq` went to the channel's receivers.
    pub fn note_seq(&mut self, id: ChannelId, seq: u64) {
        if let Some(Some(slot)) = self.slots.get_mut(id as usize) {
            slot.last_seq = seq;
        }
    }

    /// `(channel, last seq handed out)` for `conn`'s channels that `keep` accepts and that
    /// have had an update since they gained a receiver, sorted by channel.
    pub fn last_seqs_of(&self, conn: ConnId, keep: impl Fn(ChannelId) -> bool) -> Vec<(Arc<str>, u64)> {
        let mut out: Vec<(Arc<str>, u64)> = self
            .by_conn
            .get(&conn)
            .into_iter()
            .flatten()
            .filter(|id| keep(**id))
            .filter_map(|id| self.slots[*id as usize].as_ref())
            .filter(|s| s.last_seq > 0)
            .map(|s| (s.name.clone(), s.last_seq))
            .collect();
        out.sort_unstable();
        out
    }

    pub fn receivers(&self, channel: &str) -> impl ExactSizeIterator<Item = ConnId> + '_ {
        self.receivers_of(self.channel_id(channel).unwrap_or(ChannelId::MAX))
    }

    pub fn receiver_count(&self, channel: &str) -> usize {
        self.receivers(channel).len()
    }

    /// Channel names `conn` is subscribed to, sorted.
    pub fn channels_of(&self, conn: ConnId) -> Vec<Arc<str>> {
        let mut names: Vec<Arc<str>> = self
            .by_conn
            .get(&conn)
            .into_iter()
            .flatten()
            .filter_map(|id| self.slots[*id as usize].as_ref().map(|s| s.name.clone()))
            .collect();
        names.sort_unstable();
        names
    }

    pub fn is_subscribed(&self, conn: ConnId, channel: &str) -> bool {
        self.channel_id(channel)
            .is_some_and(|id| self.by_conn.get(&conn).is_some_and(|set| set.contains(&id)))
    }

    /// Every channel with at least one receiver, sorted: what upstream must be subscribed to.
    pub fn channels(&self) -> Vec<Arc<str>> {
        let mut names: Vec<Arc<str>> = self.ids.keys().cloned().collect();
        names.sort_unstable();
        names
    }

    pub fn channel_count(&self) -> usize {
        self.ids.len()
    }

    pub fn connection_count(&self) -> usize {
        self.by_conn.len()
    }

    /// Total (connection, channel) pairs.
    pub fn subscription_count(&self) -> usize {
        self.pairs
    }

    fn intern(&mut self, channel: &str) -> ChannelId {
        if let Some(&id) = self.ids.get(channel) {
            return id;
        }
        let name: Arc<str> = channel.into();
        let slot = Some(ChannelSlot {
            name: name.clone(),
            receivers: IndexSet::default(),
            last_seq: 0,
        });
        let id = match self.free.pop() {
            Some(id) => {
                self.slots[id as usize] = slot;
                id
            }
            None => {
                self.slots.push(slot);
                (self.slots.len() - 1) as ChannelId
            }
        };
        self.ids.insert(name, id);
        id
    }

    fn detach(&mut self, conn: ConnId, id: ChannelId) -> Change {
        let entry = &mut self.slots[id as usize];
        let slot = entry.as_mut().expect("subscribed channel has a slot");
        slot.receivers.swap_remove(&conn);
        self.pairs -= 1;
        let name = slot.name.clone();
        let last = slot.receivers.is_empty();
        if last {
            *entry = None;
            self.ids.remove(&name);
            self.free.push(id);
        }
        Change {
            channel: id,
            name,
            edge: last,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(changes: &[Change]) -> Vec<(&str, bool)> {
        changes.iter().map(|c| (&*c.name, c.edge)).collect()
    }

    #[test]
    fn first_and_last_edges() {
        let mut ix = SubscriptionIndex::new();
        assert!(ix.subscribe(1, "AAPL$US:quote").unwrap().edge);
        assert!(!ix.subscribe(2, "AAPL$US:quote").unwrap().edge);
        assert_eq!(ix.subscribe(2, "AAPL$US:quote"), None, "duplicate is a no-op");
        assert_eq!(ix.receivers("AAPL$US:quote").collect::<Vec<_>>(), vec![1, 2]);
        assert!(!ix.unsubscribe(1, "AAPL$US:quote").unwrap().edge);
        assert_eq!(ix.unsubscribe(1, "AAPL$US:quote"), None);
        assert!(ix.unsubscribe(2, "AAPL$US:quote").unwrap().edge);
        assert_eq!(ix.channel_count(), 0);
        assert_eq!(ix.connection_count(), 0);
        assert_eq!(ix.subscription_count(), 0);
        assert_eq!(ix.receivers("AAPL$US:quote").len(), 0);
    }

    #[test]
    fn remove_connection_reports_emptied_channels() {
        let mut ix = SubscriptionIndex::new();
        for ch in ["A$US:quote", "B$US:quote", "C$US:tick"] {
            ix.subscribe(7, ch);
        }
        ix.subscribe(8, "B$US:quote");
        let changes = ix.remove_connection(7);
        assert_eq!(
            names(&changes),
            vec![("A$US:quote", true), ("B$US:quote", false), ("C$US:tick", true)]
        );
        assert_eq!(
            ix.channels().iter().map(|c| &**c).collect::<Vec<_>>(),
            vec!["B$US:quote"]
        );
        assert!(ix.remove_connection(7).is_empty());
        assert_eq!(ix.channels_of(8).len(), 1);
        assert!(ix.is_subscribed(8, "B$US:quote"));
        assert!(!ix.is_subscribed(7, "B$US:quote"));
    }

    #[test]
    fn channel_ids_are_reused_after_emptying() {
        let mut ix = SubscriptionIndex::new();
        let a = ix.subscribe(1, "A$US:quote").unwrap().channel;
        ix.unsubscribe(1, "A$US:quote");
        let b = ix.subscribe(1, "B$US:quote").unwrap().channel;
        assert_eq!(a, b);
        assert_eq!(ix.receivers("A$US:quote").len(), 0);
        assert_eq!(ix.receivers("B$US:quote").collect::<Vec<_>>(), vec![1]);
    }

    #[test]
    fn many_connections_stay_consistent() {
        let mut ix = SubscriptionIndex::new();
        let channels: Vec<String> = (0..50).map(|i| format!("S{i}$US:quote")).collect();
        for conn in 0..2_000u64 {
            for k in 0..10 {
                ix.subscribe(conn, &channels[((conn + k * 7) % 50) as usize]);
            }
        }
        assert_eq!(ix.subscription_count(), 20_000);
        let total: usize = channels.iter().map(|c| ix.receiver_count(c)).sum();
        assert_eq!(total, 20_000);
        for conn in (0..2_000u64).step_by(2) {
            ix.remove_connection(conn);
        }
        assert_eq!(ix.subscription_count(), 10_000);
        assert_eq!(ix.connection_count(), 1_000);
        for c in &channels {
            assert!(ix.receivers(c).all(|conn| conn % 2 == 1));
        }
    }
}
