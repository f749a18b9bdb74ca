//! The enhanced fan-out reader: one SubscribeToShard subscription at a time
//! per shard, re-subscribed from the last continuation sequence number when
//! it ends, fails or goes silent, feeding a queue bounded by events and bytes.

mod config;
mod reader;
mod stats;
mod subscriber;

pub use config::FanOutConfig;
pub use reader::FanOutReader;
pub use stats::{FanOutStats, FanOutStatsSnapshot, ResubscribeCause};
