//! Who receives what: the subscription index.
pub mod index;

pub use index::{Change, ChannelId, ConnId, SubscriptionIndex};
