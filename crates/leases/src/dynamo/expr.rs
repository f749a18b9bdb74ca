//! [`Expr`]: DynamoDB condition and update expressions with their
//! attribute-name and value placeholders.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

use crate::lease::Lease;
use crate::schema::{self, n, s};

/// Expression attribute names and values, registered as they are used
/// (DynamoDB rejects unused ones).
#[derive(Default)]
pub(super) struct Expr {
    pub(super) names: HashMap<String, String>,
    pub(super) values: HashMap<String, AttributeValue>,
}

impl Expr {
    pub(super) fn name(&mut self, attribute: &str) -> String {
        let placeholder = format!("#{attribute}");
        self.names.insert(placeholder.clone(), attribute.to_owned());
        placeholder
    }

    pub(super) fn value(&mut self, tag: &str, value: AttributeValue) -> String {
        let placeholder = format!(":{tag}");
        self.values.insert(placeholder.clone(), value);
        placeholder
    }

    /// `attribute = value`, or `attribute_not_exists(attribute)` for `None`.
    pub(super) fn equals_or_absent(
        &mut self,
        attribute: &str,
        tag: &str,
        value: Option<&str>,
    ) -> String {
        let name = self.name(attribute);
        match value {
            Some(v) => format!("{name} = {}", self.value(tag, s(v))),
            None => format!("attribute_not_exists({name})"),
        }
    }

    /// `leaseOwner` and `checkpointOwner` are as in the caller's view.
    pub(super) fn same_owners(&mut self, lease: &Lease) -> String {
        let owner = self.equals_or_absent(
            schema::LEASE_OWNER,
            "expectedOwner",
            lease.lease_owner.as_deref(),
        );
        let checkpoint_owner = self.equals_or_absent(
            schema::CHECKPOINT_OWNER,
            "expectedCheckpointOwner",
            lease.checkpoint_owner.as_deref(),
        );
        format!("{owner} AND {checkpoint_owner}")
    }

    /// `(leaseOwner = owner AND no checkpointOwner) OR checkpointOwner = owner`:
    /// the DynamoDB spelling of [`Lease::may_checkpoint`], the one rule of
    /// who may checkpoint. Change both together.
    pub(super) fn may_checkpoint(&mut self, owner: &str) -> String {
        let lo = self.name(schema::LEASE_OWNER);
        let co = self.name(schema::CHECKPOINT_OWNER);
        let me = self.value("writer", s(owner));
        format!("({lo} = {me} AND attribute_not_exists({co})) OR {co} = {me}")
    }

    /// `SET leaseCounter = <counter + 1>` (the condition pins the old value).
    pub(super) fn bump_counter(&mut self, lease: &Lease) -> String {
        let lc = self.name(schema::LEASE_COUNTER);
        let next = self.value("nextCounter", n(lease.lease_counter + 1));
        format!("SET {lc} = {next}")
    }
}
