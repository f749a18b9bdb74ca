//! The shard id.

use std::borrow::Borrow;
use std::fmt;
use std::sync::Arc;

/// A shard's id, e.g. `shardId-000000000003`. Cheap to clone.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShardId(Arc<str>);

impl ShardId {
    /// Wraps a shard id.
    pub fn new(id: impl Into<Arc<str>>) -> Self {
        ShardId(id.into())
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ShardId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for ShardId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Lets maps and sets keyed by `ShardId` be looked up with a `&str`.
impl Borrow<str> for ShardId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl From<&str> for ShardId {
    fn from(id: &str) -> Self {
        ShardId::new(id)
    }
}

impl From<String> for ShardId {
    fn from(id: String) -> Self {
        ShardId::new(id)
    }
}

impl From<ShardId> for String {
    fn from(id: ShardId) -> Self {
        id.as_str().to_owned()
    }
}

/// Lets a `&ShardId` go wherever an SDK builder takes `impl Into<String>`.
impl From<&ShardId> for String {
    fn from(id: &ShardId) -> Self {
        id.as_str().to_owned()
    }
}

impl PartialEq<str> for ShardId {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for ShardId {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<String> for ShardId {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn compares_and_looks_up_as_its_string() {
        let id = ShardId::from("shardId-000000000001");
        assert_eq!(id, "shardId-000000000001");
        assert_eq!(id.to_string(), "shardId-000000000001");
        let set: BTreeSet<ShardId> = [id.clone()].into();
        assert!(set.contains("shardId-000000000001"));
        assert_eq!(ShardId::from(String::from("shardId-000000000001")), id);
    }
}
