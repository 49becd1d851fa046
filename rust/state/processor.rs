//! `FeedProcessor`: the one pass every provider frame takes through the core:
//! decode -> normalize -> derive -> sequence. Encoding happens later, once per update, in
//! `encode` (the fan-out asks for the bytes it needs).

use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use rustc_hash::FxHashMap;

use super::calendar::DayRule;
use super::derive::DailyState;
use super::released::ReleasedSymbols;
use super::sanity::{Implausible, SanityLimits};
use crate::error::{CoreError, CoreResult, ErrorCode};
use crate::model::symbol::region_of;
use crate::model::{channel_name, Kind, MarketUpdate, KIND_SLOTS};
use crate::providers::{Control, Decoded, Observation, Provider};

/// Default bound on one provider frame. iTick frames are well under 4 KiB; a megabyte is a
/// broken or hostile peer, refused before any parsing work.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 1 << 20;

/// Bound on distinct symbols tracked, so a provider spraying random symbols cannot grow
/// the core without limit.
pub const DEFAULT_MAX_SYMBOLS: usize = 1_000_000;

#[derive(Debug, Clone)]
pub struct ProcessorConfig {
    pub provider: Provider,
    /// `None` generates a fresh epoch (process start time and randomness).
    pub epoch: Option<String>,
    pub max_frame_bytes: usize,
    pub max_symbols: usize,
    pub sanity: SanityLimits,
}

impl ProcessorConfig {
    pub fn new(provider: Provider) -> Self {
        ProcessorConfig {
            provider,
            epoch: None,
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            max_symbols: DEFAULT_MAX_SYMBOLS,
            sanity: SanityLimits::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Control(Control),
    Update(MarketUpdate),
}

struct SymbolState {
    symbol: Arc<str>,
    daily: DailyState,
    seqs: [u64; KIND_SLOTS],
    channels: [Option<Arc<str>>; KIND_SLOTS],
}

impl SymbolState {
    fn channel(&mut self, kind: Kind) -> Arc<str> {
        let symbol = &self.symbol;
        self.channels[kind.slot()]
            .get_or_insert_with(|| channel_name(symbol, kind).into())
            .clone()
    }
}

pub struct FeedProcessor {
    provider: Provider,
    provider_name: Arc<str>,
    epoch: Arc<str>,
    max_frame_bytes: usize,
    max_symbols: usize,
    symbol_ids: FxHashMap<Box<str>, usize>,
    symbols: Vec<SymbolState>,
    scratch: String,
    sanity: SanityLimits,
    frames: u64,
    updates: u64,
    errors: u64,
    /// Updates dropped as implausible, by `Implausible` reason.
    dropped: [u64; Implausible::ALL.len()],
    /// Seqs given out (and skipped) on all channels: no channel's seq is above it.
    issued: u64,
    released: ReleasedSymbols,
    /// Per provider: the canonical form its decoder gives a symbol -> the gateway's own, for
    /// providers that spell an instrument differently (`0700.HK` for `700$HK`).
    aliases: Vec<(Provider, FxHashMap<String, Arc<str>>)>,
}

impl FeedProcessor {
    pub fn new(config: ProcessorConfig) -> Self {
        FeedProcessor {
            provider: config.provider,
            provider_name: config.provider.name().into(),
            epoch: config.epoch.unwrap_or_else(new_epoch).into(),
            max_frame_bytes: config.max_frame_bytes,
            max_symbols: config.max_symbols,
            symbol_ids: FxHashMap::default(),
            symbols: Vec::new(),
            scratch: String::with_capacity(32),
            sanity: config.sanity,
            frames: 0,
            updates: 0,
            errors: 0,
            dropped: [0; Implausible::ALL.len()],
            issued: 0,
            released: ReleasedSymbols::default(),
            aliases: Vec::new(),
        }
    }

    pub fn epoch(&self) -> &str {
        &self.epoch
    }

    pub fn provider(&self) -> Provider {
        self.provider
    }

    /// (frames seen, updates produced, frames refused)
    pub fn counters(&self) -> (u64, u64, u64) {
        (self.frames, self.updates, self.errors)
    }

    /// Updates dropped as implausible, per reason.
    pub fn dropped(&self) -> impl Iterator<Item = (Implausible, u64)> + '_ {
        Implausible::ALL
            .iter()
            .map(|&why| (why, self.dropped[why as usize]))
    }

    pub fn symbol_count(&self) -> usize {
        self.symbols.len()
    }

    /// The last sequence number given on `channel` (0 if none yet).
    pub fn last_seq(&self, symbol: &str, kind: Kind) -> u64 {
        self.symbol_ids
            .get(symbol)
            .map_or(0, |&id| self.symbols[id].seqs[kind.slot()])
    }

    /// Marks a hole in `symbol`'s `kind` channel: the stream stopped reaching the gateway (the
    /// provider connection was lost, or nobody held the channel so it was not streamed), so
    /// the next update skips one seq. A client that sees the skip, or resumes across it, knows
    /// it may have missed updates the gateway never received. Nothing to mark on a channel
    /// never numbered.
    pub fn mark_gap(&mut self, symbol: &str, kind: Kind) {
        if let Some(&id) = self.symbol_ids.get(symbol) {
            let seq = &mut self.symbols[id].seqs[kind.slot()];
            if *seq > 0 {
                *seq += 1;
                self.issued += 1;
            }
        }
    }

    /// Forgets `symbol`'s state (nobody has held it for a while): memory follows what is
    /// subscribed. If it comes back, its seqs carry on above every seq given out so far, never
    /// back from 1. Returns whether there was state to release.
    pub fn release(&mut self, symbol: &str) -> bool {
        let Some(id) = self.symbol_ids.remove(symbol) else {
            return false;
        };
        self.symbols.swap_remove(id);
        if let Some(moved) = self.symbols.get(id) {
            *self
                .symbol_ids
                .get_mut(&*moved.symbol)
                .expect("every held symbol is indexed") = id;
        }
        self.released.insert(symbol);
        true
    }

    /// Maps `provider`'s spellings to the gateway's symbols (`[("0700.HK", "700$HK")]`):
    /// its updates for them are numbered as those. Replaces any map given before.
    pub fn set_symbol_map(&mut self, provider: Provider, map: &[(String, String)]) -> CoreResult<()> {
        let mut table = FxHashMap::default();
        for (theirs, ours) in map {
            let ours: Arc<str> = crate::model::symbol::canonicalize(ours)?.into();
            table.insert(provider.canonical_symbol(theirs)?, ours);
        }
        self.aliases.retain(|(p, _)| *p != provider);
        if !table.is_empty() {
            self.aliases.push((provider, table));
        }
        Ok(())
    }

    /// The gateway's symbol for what `provider`'s decoder wrote into `symbol`.
    fn unalias(&self, provider: Provider, symbol: &mut String) {
        if let Some((_, table)) = self.aliases.iter().find(|(p, _)| *p == provider) {
            if let Some(ours) = table.get(symbol.as_str()) {
                symbol.clear();
                symbol.push_str(ours);
            }
        }
    }

    /// Symbols released so far.
    pub fn released_count(&self) -> u64 {
        self.released.count()
    }

    /// Decodes one provider frame and appends what it holds to `out`. On error nothing is
    /// appended and no state changes, so one bad frame costs only itself.
    pub fn process(&mut self, frame: &[u8], recv_time_ms: i64, out: &mut Vec<Event>) -> CoreResult<()> {
        self.process_as(self.provider, frame, recv_time_ms, out)
    }

    /// As `process`, for a frame of `provider`'s protocol: one processor numbers the updates
    /// of every provider feeding the same channels (a backup taking over carries on the seqs),
    /// and each update names the provider it came from.
    pub fn process_as(
        &mut self,
        provider: Provider,
        frame: &[u8],
        recv_time_ms: i64,
        out: &mut Vec<Event>,
    ) -> CoreResult<()> {
        self.frames += 1;
        let result = self.process_inner(provider, frame, recv_time_ms, out);
        if result.is_err() {
            self.errors += 1;
        }
        result
    }

    fn process_inner(
        &mut self,
        provider: Provider,
        frame: &[u8],
        recv_time_ms: i64,
        out: &mut Vec<Event>,
    ) -> CoreResult<()> {
        if frame.len() > self.max_frame_bytes {
            return Err(CoreError::new(
                ErrorCode::FrameTooLarge,
                format!(
                    "frame of {} bytes exceeds the {} byte limit",
                    frame.len(),
                    self.max_frame_bytes
                ),
            ));
        }
        let name = if provider == self.provider {
            self.provider_name.clone()
        } else {
            provider.name().into()
        };
        match provider.decode(frame, &mut self.scratch)? {
            Decoded::Control(c) => out.push(Event::Control(c)),
            Decoded::Market(obs) => {
                let mut symbol = std::mem::take(&mut self.scratch);
                self.unalias(provider, &mut symbol);
                self.scratch = symbol;
                if let Some(why) = self.sanity.check(&obs, recv_time_ms) {
                    self.dropped[why as usize] += 1;
                    return Ok(());
                }
                let update = self.sequence(obs, recv_time_ms, &name)?;
                out.push(Event::Update(update));
            }
            Decoded::Markets(mut items) => {
                for (symbol, _) in &mut items {
                    self.unalias(provider, symbol);
                }
                // Checked whole first, so an error leaves no state changed.
                let plausible: Vec<(String, Observation)> = items
                    .into_iter()
                    .filter(|(_, obs)| match self.sanity.check(obs, recv_time_ms) {
                        Some(why) => {
                            self.dropped[why as usize] += 1;
                            false
                        }
                        None => true,
                    })
                    .collect();
                let new = plausible
                    .iter()
                    .filter(|(s, _)| !self.symbol_ids.contains_key(s.as_str()))
                    .count();
                if self.symbols.len() + new > self.max_symbols {
                    return Err(CoreError::new(
                        ErrorCode::InvalidSymbol,
                        format!("symbol table full ({} symbols)", self.max_symbols),
                    ));
                }
                for (symbol, obs) in plausible {
                    self.scratch.clear();
                    self.scratch.push_str(&symbol);
                    let update = self.sequence(obs, recv_time_ms, &name)?;
                    out.push(Event::Update(update));
                }
            }
        }
        Ok(())
    }

    /// Derives and numbers an observation whose canonical symbol is in `self.scratch`.
    fn sequence(
        &mut self,
        mut obs: Observation,
        recv_time_ms: i64,
        provider: &Arc<str>,
    ) -> CoreResult<MarketUpdate> {
        let id = self.symbol_id()?;
        let state = &mut self.symbols[id];
        let event_time_ms = obs.event_time_ms.unwrap_or(recv_time_ms);
        state.daily.apply(event_time_ms, &mut obs.payload);
        let kind = obs.payload.kind();
        state.seqs[kind.slot()] += 1;
        self.updates += 1;
        self.issued += 1;
        Ok(MarketUpdate {
            symbol: state.symbol.clone(),
            channel: state.channel(kind),
            seq: state.seqs[kind.slot()],
            epoch: self.epoch.clone(),
            provider: provider.clone(),
            event_time_ms,
            recv_time_ms,
            payload: obs.payload,
        })
    }

    fn symbol_id(&mut self) -> CoreResult<usize> {
        if let Some(&id) = self.symbol_ids.get(self.scratch.as_str()) {
            return Ok(id);
        }
        if self.symbols.len() >= self.max_symbols {
            return Err(CoreError::new(
                ErrorCode::InvalidSymbol,
                format!(
                    "symbol table full ({} symbols); refusing {}",
                    self.max_symbols, self.scratch
                ),
            ));
        }
        let symbol: Arc<str> = self.scratch.as_str().into();
        let id = self.symbols.len();
        // A symbol whose state was released carries on above every seq given out before.
        let base = if self.released.may_contain(&symbol) {
            self.issued
        } else {
            0
        };
        self.symbols.push(SymbolState {
            daily: DailyState::new(DayRule::for_region(region_of(&symbol))),
            symbol,
            seqs: [base; KIND_SLOTS],
            channels: Default::default(),
        });
        self.symbol_ids.insert(self.scratch.as_str().into(), id);
        Ok(id)
    }
}

/// Wall-clock milliseconds, for callers that do not pass a receive time.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Start time plus 32 random bits: distinct across restarts even within one millisecond.
fn new_epoch() -> String {
    let random = RandomState::new().hash_one(std::process::id()) as u32;
    format!("{:x}-{:08x}", now_ms(), random)
}

#[cfg(test)]
#[path = "processor_tests.rs"]
mod tests;
