//! Hand-written prost messages for the KPL aggregation format.
//!
//! The upstream schema (proto2, `aws.kinesis.protobuf`):
//!
//! ```text
//! message AggregatedRecord {
//!   repeated string partition_key_table     = 1;
//!   repeated string explicit_hash_key_table = 2;
//!   repeated Record records                 = 3;
//! }
//! message Record {
//!   required uint64 partition_key_index     = 1;
//!   optional uint64 explicit_hash_key_index = 2;
//!   required bytes  data                    = 3;
//!   repeated Tag    tags                    = 4;
//! }
//! message Tag { required string key = 1; optional string value = 2; }
//! ```
//!
//! Deliberate differences that keep the wire format identical:
//! - `required` fields are `Option`s, so the decoder can tell "absent" from
//!   "zero" and reject what the Java protobuf runtime (and so the KCL) rejects.
//! - `string` fields are declared `bytes`: decoding stays zero-copy and an
//!   invalid UTF-8 key does not fail the whole aggregate. The Java runtime does
//!   not validate proto2 strings either; it replaces bad sequences with U+FFFD,
//!   which is what [`crate::deaggregate`] does too.

use bytes::Bytes;

/// The protobuf body of an aggregated record.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct AggregatedRecordMsg {
    /// Distinct partition keys, referenced by index from the records.
    #[prost(bytes = "bytes", repeated, tag = "1")]
    pub(crate) partition_key_table: Vec<Bytes>,
    /// Distinct explicit hash keys, referenced by index from the records.
    #[prost(bytes = "bytes", repeated, tag = "2")]
    pub(crate) explicit_hash_key_table: Vec<Bytes>,
    /// The user records, in order.
    #[prost(message, repeated, tag = "3")]
    pub(crate) records: Vec<RecordMsg>,
}

/// One user record inside an aggregate.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct RecordMsg {
    /// Required: index into `partition_key_table`.
    #[prost(uint64, optional, tag = "1")]
    pub(crate) partition_key_index: Option<u64>,
    /// Index into `explicit_hash_key_table`.
    #[prost(uint64, optional, tag = "2")]
    pub(crate) explicit_hash_key_index: Option<u64>,
    /// Required: the user data.
    #[prost(bytes = "bytes", optional, tag = "3")]
    pub(crate) data: Option<Bytes>,
    /// Tags: never written by the KPL, ignored by the KCL; decoded only so that
    /// malformed ones are rejected as the Java runtime would.
    #[prost(message, repeated, tag = "4")]
    pub(crate) tags: Vec<TagMsg>,
}

/// A key/value tag on a user record.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct TagMsg {
    /// Required.
    #[prost(bytes = "bytes", optional, tag = "1")]
    pub(crate) key: Option<Bytes>,
    /// Optional.
    #[prost(bytes = "bytes", optional, tag = "2")]
    pub(crate) value: Option<Bytes>,
}
