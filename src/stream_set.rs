//! The streams a multi-stream worker consumes, changeable while it runs.

use kinesis_fleet_types::StreamIdentifier;
use tokio::sync::watch;

use crate::stream_routes::StreamRoutes;

/// The set of streams of a multi-stream worker
/// ([`Worker::stream_set`](crate::Worker::stream_set)). Cheap to clone.
///
/// A stream added starts at the initial position once the fleet's leader
/// has synced it (at once on the leader, else at its next shard sync). The
/// leases of a stream removed are kept, and consumed, for
/// [`removed_stream_lease_deletion_delay`](crate::WorkerConfig::removed_stream_lease_deletion_delay),
/// so that every worker of the fleet learns of the change; then the leader
/// deletes them and their holders stop (`lease_lost`). Change the set the
/// same way on every worker: the leader's set decides.
#[derive(Clone, Debug)]
pub struct StreamSet {
    streams: watch::Sender<Vec<StreamIdentifier>>,
    routes: StreamRoutes,
}

impl StreamSet {
    pub(crate) fn new(streams: Vec<StreamIdentifier>, routes: StreamRoutes) -> StreamSet {
        StreamSet {
            streams: watch::Sender::new(streams),
            routes,
        }
    }

    /// Adds `stream`, read through the worker's Kinesis client; false if a
    /// stream of its name is already in the set.
    pub fn add(&self, stream: StreamIdentifier) -> bool {
        self.add_routed(stream, None)
    }

    /// Adds `stream`, read through its own `client` (e.g. with a role of the
    /// account that owns it, see
    /// [`WorkerBuilder::stream_client`](crate::WorkerBuilder::stream_client));
    /// false if a stream of its name is already in the set.
    pub fn add_with_client(
        &self,
        stream: StreamIdentifier,
        client: aws_sdk_kinesis::Client,
    ) -> bool {
        self.add_routed(stream, Some(client))
    }

    fn add_routed(
        &self,
        stream: StreamIdentifier,
        client: Option<aws_sdk_kinesis::Client>,
    ) -> bool {
        self.streams.send_if_modified(|streams| {
            let absent = streams.iter().all(|s| s.name() != stream.name());
            if absent {
                self.routes.insert(stream.clone(), client);
                streams.push(stream);
            }
            absent
        })
    }

    /// Removes the stream named `name`; false if it was not in the set.
    pub fn remove(&self, name: &str) -> bool {
        self.streams.send_if_modified(|streams| {
            let before = streams.len();
            streams.retain(|s| s.name() != name);
            streams.len() != before
        })
    }

    /// The streams in the set now.
    pub fn streams(&self) -> Vec<StreamIdentifier> {
        self.streams.borrow().clone()
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<Vec<StreamIdentifier>> {
        self.streams.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn changes_reach_subscribers_once_per_change() {
        let stream = |s: &str| s.parse::<StreamIdentifier>().unwrap();
        let client = aws_sdk_kinesis::Client::from_conf(
            aws_sdk_kinesis::Config::builder()
                .behavior_version(aws_sdk_kinesis::config::BehaviorVersion::latest())
                .region(aws_sdk_kinesis::config::Region::new("us-east-1"))
                .build(),
        );
        let routes = StreamRoutes::new(client.clone());
        let set = StreamSet::new(vec![stream("a")], routes.clone());
        let mut changes = set.subscribe();
        assert!(!set.add(stream("123456789012:a:5")), "same name");
        assert!(!changes.has_changed().unwrap());
        let b = stream("arn:aws:kinesis:us-east-1:123456789012:stream/b");
        assert_eq!(routes.get("b").unwrap().stream, stream("b"), "by name");
        assert!(set.add_with_client(b.clone(), client));
        assert_eq!(routes.get("b").unwrap().stream, b, "as added, with its ARN");
        assert!(changes.has_changed().unwrap());
        changes.mark_unchanged();
        assert!(!set.remove("c"));
        assert!(!changes.has_changed().unwrap());
        assert!(set.remove("a"));
        changes.changed().await.unwrap();
        let names: Vec<String> = set.streams().iter().map(|s| s.name().to_owned()).collect();
        assert_eq!(names, ["b"]);
    }
}
