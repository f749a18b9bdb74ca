//! Which stream: a name, an ARN, or the KCL's serialised multi-stream identifier.

use std::fmt;
use std::str::FromStr;

/// A Kinesis stream as a worker names it.
///
/// Written as a stream name (`orders`), a stream ARN
/// (`arn:aws:kinesis:eu-west-1:123456789012:stream/orders`) or the KCL's
/// serialised multi-stream identifier (`123456789012:orders:1700000000`:
/// account, name, creation epoch in seconds). Multi-stream lease keys need
/// the account and the creation epoch ([`serialise`](Self::serialise)); a
/// worker learns what the name alone does not say from Kinesis
/// (DescribeStreamSummary) when it starts.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamIdentifier {
    name: String,
    account: Option<String>,
    region: Option<String>,
    arn: Option<String>,
    creation_epoch: Option<u64>,
}

/// Why a stream name, ARN or serialised identifier was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StreamIdentifierError {
    /// Not 1–128 of `A-Z a-z 0-9 _ - .` (Kinesis' stream-name rule).
    InvalidName {
        /// The refused name.
        name: String,
    },
    /// Not `arn:PARTITION:kinesis:REGION:ACCOUNT:stream/NAME`.
    InvalidArn {
        /// The refused ARN.
        arn: String,
        /// Which part is wrong.
        reason: &'static str,
    },
    /// Not `ACCOUNT:NAME:CREATION_EPOCH` (digits, a name, digits above 0).
    InvalidSerialised {
        /// The refused identifier.
        value: String,
        /// Which part is wrong.
        reason: &'static str,
    },
}

impl fmt::Display for StreamIdentifierError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StreamIdentifierError::InvalidName { name } => write!(
                f,
                "invalid stream name {name:?}: expected 1 to 128 of A-Z a-z 0-9 _ - ."
            ),
            StreamIdentifierError::InvalidArn { arn, reason } => write!(
                f,
                "invalid stream ARN {arn:?}: {reason} (expected arn:aws:kinesis:REGION:ACCOUNT:stream/NAME)"
            ),
            StreamIdentifierError::InvalidSerialised { value, reason } => write!(
                f,
                "invalid stream identifier {value:?}: {reason} (expected ACCOUNT:NAME:CREATION_EPOCH)"
            ),
        }
    }
}

impl std::error::Error for StreamIdentifierError {}

impl StreamIdentifier {
    /// A stream by name (account and creation epoch unknown until resolved).
    pub fn from_name(name: impl Into<String>) -> Result<Self, StreamIdentifierError> {
        let name = name.into();
        if !is_stream_name(&name) {
            return Err(StreamIdentifierError::InvalidName { name });
        }
        Ok(StreamIdentifier {
            name,
            account: None,
            region: None,
            arn: None,
            creation_epoch: None,
        })
    }

    /// A stream by ARN: `arn:PARTITION:kinesis:REGION:ACCOUNT:stream/NAME`,
    /// with a partition starting `aws`, a 12-digit account and a non-empty
    /// region of `a-z 0-9 -` (the pattern of the KCL's `StreamIdentifier`).
    pub fn from_arn(arn: &str) -> Result<Self, StreamIdentifierError> {
        let bad = |reason| StreamIdentifierError::InvalidArn {
            arn: arn.to_owned(),
            reason,
        };
        let mut parts = arn.splitn(6, ':');
        let mut next = || parts.next().unwrap_or_default();
        let (scheme, partition, service, region, account, resource) =
            (next(), next(), next(), next(), next(), next());
        if scheme != "arn" {
            return Err(bad("does not start with arn:"));
        }
        if !partition.starts_with("aws") {
            return Err(bad("the partition is not aws, aws-cn, aws-us-gov, ..."));
        }
        if service != "kinesis" {
            return Err(bad("the service is not kinesis"));
        }
        if region.is_empty()
            || !region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(bad("the region is empty or not of a-z 0-9 -"));
        }
        if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("the account is not 12 digits"));
        }
        let Some(name) = resource.strip_prefix("stream/") else {
            return Err(bad("the resource is not stream/NAME"));
        };
        if !is_stream_name(name) {
            return Err(bad("the stream name is not 1 to 128 of A-Z a-z 0-9 _ - ."));
        }
        Ok(StreamIdentifier {
            name: name.to_owned(),
            account: Some(account.to_owned()),
            region: Some(region.to_owned()),
            arn: Some(arn.to_owned()),
            creation_epoch: None,
        })
    }

    /// The KCL's serialised multi-stream identifier `ACCOUNT:NAME:CREATION_EPOCH`,
    /// as in the `streamName` attribute of a multi-stream lease.
    pub fn from_serialised(value: &str) -> Result<Self, StreamIdentifierError> {
        let bad = |reason| StreamIdentifierError::InvalidSerialised {
            value: value.to_owned(),
            reason,
        };
        let mut parts = value.split(':');
        let (Some(account), Some(name), Some(epoch), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad("not three parts separated by ':'"));
        };
        if account.is_empty() || !account.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("the account is not digits"));
        }
        if !is_stream_name(name) {
            return Err(bad("the stream name is not 1 to 128 of A-Z a-z 0-9 _ - ."));
        }
        let epoch = epoch
            .bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| epoch.parse::<u64>().ok())
            .flatten()
            .filter(|&e| e > 0)
            .ok_or_else(|| bad("the creation epoch is not a number above 0"))?;
        Ok(StreamIdentifier {
            name: name.to_owned(),
            account: Some(account.to_owned()),
            region: None,
            arn: None,
            creation_epoch: Some(epoch),
        })
    }

    /// This stream with the account and creation epoch Kinesis reported (an
    /// account already known, from an ARN or a serialised identifier, is kept).
    pub fn resolved(mut self, account: &str, creation_epoch: u64) -> Self {
        self.account.get_or_insert_with(|| account.to_owned());
        self.creation_epoch.get_or_insert(creation_epoch);
        self
    }

    /// The stream's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The owning account, when known.
    pub fn account(&self) -> Option<&str> {
        self.account.as_deref()
    }

    /// The region, when named by ARN.
    pub fn region(&self) -> Option<&str> {
        self.region.as_deref()
    }

    /// The ARN, when named by one: Kinesis calls then carry it as
    /// `StreamARN` beside `StreamName`, which is how a stream in another
    /// account is reached.
    pub fn arn(&self) -> Option<&str> {
        self.arn.as_deref()
    }

    /// The creation time in seconds since the epoch, when known.
    pub fn creation_epoch(&self) -> Option<u64> {
        self.creation_epoch
    }

    /// `ACCOUNT:NAME:CREATION_EPOCH`, the stream part of its multi-stream
    /// lease keys (the KCL's `StreamIdentifier.serialize()`), once both are known.
    pub fn serialise(&self) -> Option<String> {
        let account = self.account.as_deref()?;
        let epoch = self.creation_epoch?;
        Some(format!("{account}:{}:{epoch}", self.name))
    }
}

/// Parses an ARN (`arn:...`), a serialised identifier (`ACCOUNT:NAME:EPOCH`)
/// or a plain stream name.
impl FromStr for StreamIdentifier {
    type Err = StreamIdentifierError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.starts_with("arn:") {
            StreamIdentifier::from_arn(s)
        } else if s.contains(':') {
            StreamIdentifier::from_serialised(s)
        } else {
            StreamIdentifier::from_name(s)
        }
    }
}

impl fmt::Display for StreamIdentifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

/// Kinesis' stream-name rule: 1–128 of `A-Z a-z 0-9 _ - .`.
fn is_stream_name(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_arns_and_serialised_identifiers_parse() {
        let name: StreamIdentifier = "orders".parse().unwrap();
        assert_eq!(
            (name.name(), name.account(), name.serialise()),
            ("orders", None, None)
        );
        let arn: StreamIdentifier = "arn:aws:kinesis:eu-west-1:123456789012:stream/orders.v2"
            .parse()
            .unwrap();
        assert_eq!(arn.name(), "orders.v2");
        assert_eq!(arn.account(), Some("123456789012"));
        assert_eq!(arn.region(), Some("eu-west-1"));
        assert_eq!(
            arn.arn(),
            Some("arn:aws:kinesis:eu-west-1:123456789012:stream/orders.v2")
        );
        assert_eq!(name.arn(), None);
        assert_eq!(arn.serialise(), None, "no creation epoch yet");
        let arn = arn.resolved("999999999999", 1_700_000_000);
        assert_eq!(
            arn.serialise().as_deref(),
            Some("123456789012:orders.v2:1700000000"),
            "the ARN's account wins"
        );
        let china: StreamIdentifier = "arn:aws-cn:kinesis:cn-north-1:123456789012:stream/o"
            .parse()
            .unwrap();
        assert_eq!(china.region(), Some("cn-north-1"));
        let kcl: StreamIdentifier = "123456789012:orders:1700000000".parse().unwrap();
        assert_eq!(
            (kcl.name(), kcl.creation_epoch()),
            ("orders", Some(1_700_000_000))
        );
        assert_eq!(
            kcl.resolved("1", 2).serialise().as_deref(),
            Some("123456789012:orders:1700000000")
        );
        assert_eq!(
            name.resolved("123456789012", 5).serialise().as_deref(),
            Some("123456789012:orders:5")
        );
    }

    #[test]
    fn bad_input_is_a_typed_error_naming_the_part() {
        let arn_reason = |s: &str| match StreamIdentifier::from_arn(s) {
            Err(StreamIdentifierError::InvalidArn { reason, .. }) => reason,
            other => panic!("{s}: {other:?}"),
        };
        assert!(arn_reason("arx:aws:kinesis:r:123456789012:stream/s").contains("arn:"));
        assert!(arn_reason("arn:gcp:kinesis:r:123456789012:stream/s").contains("partition"));
        assert!(arn_reason("arn:aws:sqs:r:123456789012:stream/s").contains("service"));
        assert!(arn_reason("arn:aws:kinesis::123456789012:stream/s").contains("region"));
        assert!(arn_reason("arn:aws:kinesis:EU:123456789012:stream/s").contains("region"));
        assert!(arn_reason("arn:aws:kinesis:r:12345:stream/s").contains("account"));
        assert!(arn_reason("arn:aws:kinesis:r:123456789012:table/s").contains("resource"));
        assert!(arn_reason("arn:aws:kinesis:r:123456789012:stream/").contains("name"));
        assert!(arn_reason("arn:aws:kinesis:r:123456789012:stream/a/b").contains("name"));
        assert!(arn_reason("arn:aws:kinesis").contains("region"));
        let serialised_reason = |s: &str| match s.parse::<StreamIdentifier>() {
            Err(StreamIdentifierError::InvalidSerialised { reason, .. }) => reason,
            other => panic!("{s}: {other:?}"),
        };
        assert!(serialised_reason("1:orders").contains("three"));
        assert!(serialised_reason("1:orders:2:3").contains("three"));
        assert!(serialised_reason("x1:orders:2").contains("account"));
        assert!(serialised_reason("1:or ders:2").contains("name"));
        assert!(serialised_reason("1:orders:0").contains("epoch"));
        assert!(serialised_reason("1:orders:+2").contains("epoch"));
        assert!(serialised_reason("1:orders:99999999999999999999999").contains("epoch"));
        for name in ["", "a b", &"x".repeat(129)] {
            assert_eq!(
                name.parse::<StreamIdentifier>(),
                Err(StreamIdentifierError::InvalidName { name: name.into() })
            );
        }
        assert!(
            StreamIdentifier::from_arn("arn:aws:kinesis:r:1:stream/s")
                .unwrap_err()
                .to_string()
                .contains("arn:aws:kinesis:REGION:ACCOUNT:stream/NAME")
        );
    }
}
