//! `Conflation`: what a connection has pending when it cannot take every update as it comes
//! (batch mode, or a slow reader): the latest update per quote/depth/kline channel, and the
//! ticks, which are never conflated, in order up to a cap past which the oldest are dropped.
//!
//! Its size is bounded by the connection's channel count plus the tick cap, whatever the
//! provider sends.

use std::collections::VecDeque;
use std::sync::Arc;

use indexmap::IndexMap;
use rustc_hash::FxBuildHasher;

use super::index::ChannelId;
use crate::encode::EncodedUpdate;
use crate::model::Kind;

/// What `push` did with an update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Held; nothing was displaced.
    Added,
    /// Replaced an older update of the same channel.
    Conflated,
    /// A tick held, and the oldest tick dropped to keep the cap.
    TickDropped,
}

#[derive(Default)]
pub struct Conflation {
    /// Latest per channel, in the order each channel first had something pending.
    latest: IndexMap<ChannelId, Arc<EncodedUpdate>, FxBuildHasher>,
    ticks: VecDeque<(ChannelId, Arc<EncodedUpdate>)>,
    dropped_ticks: u64,
}

impl Conflation {
    pub fn push(&mut self, channel: ChannelId, update: &Arc<EncodedUpdate>, tick_cap: usize) -> Pushed {
        if update.kind() == Kind::Tick {
            self.ticks.push_back((channel, update.clone()));
            if self.ticks.len() > tick_cap {
                self.ticks.pop_front();
                self.dropped_ticks += 1;
                return Pushed::TickDropped;
            }
            return Pushed::Added;
        }
        match self.latest.insert(channel, update.clone()) {
            Some(_) => Pushed::Conflated,
            None => Pushed::Added,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.latest.is_empty() && self.ticks.is_empty() && self.dropped_ticks == 0
    }

    pub fn len(&self) -> usize {
        self.latest.len() + self.ticks.len()
    }

    pub fn dropped_ticks(&self) -> u64 {
        self.dropped_ticks
    }

    /// Whether anything of `channel` is pending.
    pub fn holds(&self, channel: ChannelId) -> bool {
        self.latest.contains_key(&channel) || self.ticks.iter().any(|(c, _)| *c == channel)
    }

    /// Pending updates in delivery order: conflated channels first, then the ticks.
    pub fn updates(&self) -> impl Iterator<Item = &Arc<EncodedUpdate>> + Clone {
        self.latest.values().chain(self.ticks.iter().map(|(_, u)| u))
    }

    /// Drops what is pending for a channel the connection left: nothing of it may arrive after
    /// the unsubscribe reply.
    pub fn forget(&mut self, channel: ChannelId) {
        self.latest.shift_remove(&channel);
        self.ticks.retain(|(c, _)| *c != channel);
    }

    pub fn clear(&mut self) {
        self.latest.clear();
        self.ticks.clear();
        self.dropped_ticks = 0;
        // A burst must not pin its high-water allocation for the connection's lifetime.
        if self.latest.capacity() > 64 {
            self.latest.shrink_to_fit();
        }
        if self.ticks.capacity() > 64 {
            self.ticks.shrink_to_fit();
        }
    }
}
