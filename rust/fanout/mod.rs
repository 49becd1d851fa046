//! Who receives what, and how: the subscription index, the dispatcher with its outboxes and
//! conflation, and the timer wheel for batch deadlines.
pub mod conflation;
pub mod dispatcher;
pub mod index;
pub mod outbox;
pub mod slab;
pub mod wheel;

pub use dispatcher::{Dispatcher, DispatcherLimits, DispatcherStats, Marked, Mode};
pub use index::{Change, ChannelId, ConnId, SubscriptionIndex};
pub use outbox::{Frames, Outgoing};
