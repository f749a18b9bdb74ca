//! Table administration: describing and creating the tables, adding the
//! lease table's owner index, waiting until they are ACTIVE.

use std::future::Future;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, CreateGlobalSecondaryIndexAction, GlobalSecondaryIndex,
    GlobalSecondaryIndexUpdate, IndexStatus, KeySchemaElement, KeyType, Projection, ProjectionType,
    ProvisionedThroughput, ScalarAttributeType, TableDescription,
};

use super::config::TableCapacity;
use super::request::{CallError, DynamoTable};
use crate::error::{Error, Result};
use crate::schema;

impl DynamoTable {
    /// The table's description; `None` when it does not exist.
    pub(super) async fn describe(&self) -> Result<Option<TableDescription>> {
        let result = self
            .call(&AtomicBool::new(false), || async {
                self.client
                    .describe_table()
                    .table_name(&self.name)
                    .send()
                    .await
                    .map_err(|e| self.sdk_error("DescribeTable", e))
            })
            .await;
        match result {
            Ok(output) => Ok(output.table),
            Err(CallError::Failed(Error::TableNotFound { .. })) => Ok(None),
            Err(e) => Err(e.into_error()),
        }
    }

    /// Creates this table with the string hash key `key` and, for the lease
    /// table (`owner_index`), the owner index, billed as
    /// [`capacity`](crate::DynamoStoreConfig::capacity) says; `what` names
    /// the table in the log. Succeeds when another worker created it first.
    pub(super) async fn create(&self, key: &str, owner_index: bool, what: &str) -> Result<()> {
        let index = owner_index.then(|| {
            GlobalSecondaryIndex::builder()
                .index_name(schema::LEASE_OWNER_INDEX)
                .set_key_schema(Some(owner_index_key_schema()))
                .projection(keys_only())
                .set_provisioned_throughput(self.throughput())
                .build()
                .expect("index name and key schema are set")
        });
        let mut attributes = vec![string_attribute(key)];
        if owner_index {
            attributes.push(string_attribute(schema::LEASE_OWNER));
        }
        let billing = match self.config.capacity {
            TableCapacity::PayPerRequest => BillingMode::PayPerRequest,
            TableCapacity::Provisioned { .. } => BillingMode::Provisioned,
        };
        let result = self
            .call(&AtomicBool::new(false), || async {
                self.client
                    .create_table()
                    .table_name(&self.name)
                    .key_schema(key_element(key, KeyType::Hash))
                    .set_attribute_definitions(Some(attributes.clone()))
                    .set_global_secondary_indexes(index.clone().map(|i| vec![i]))
                    .billing_mode(billing.clone())
                    .set_provisioned_throughput(self.throughput())
                    .send()
                    .await
                    .map_err(|e| self.sdk_error("CreateTable", e))
            })
            .await;
        match result {
            Ok(_) => {
                tracing::info!(table = %self.name, "created the {what} table");
                Ok(())
            }
            // Another worker created it first.
            Err(CallError::ResourceInUse) => Ok(()),
            Err(e) => Err(e.into_error()),
        }
    }

    /// Adds the owner index to a table created without it (KCL 2.x tables),
    /// as KCL 3.x does: on-demand for an on-demand table, else with the
    /// table's own provisioned capacity.
    pub(super) async fn create_owner_index(&self, table: &TableDescription) -> Result<()> {
        let on_demand = table
            .billing_mode_summary()
            .and_then(|b| b.billing_mode())
            .is_some_and(|m| *m == BillingMode::PayPerRequest);
        let throughput = table.provisioned_throughput().and_then(|p| {
            match (p.read_capacity_units(), p.write_capacity_units()) {
                (Some(read), Some(write)) if !on_demand && read > 0 && write > 0 => Some(
                    ProvisionedThroughput::builder()
                        .read_capacity_units(read)
                        .write_capacity_units(write)
                        .build()
                        .expect("both capacities are set"),
                ),
                _ => None,
            }
        });
        let create = CreateGlobalSecondaryIndexAction::builder()
            .index_name(schema::LEASE_OWNER_INDEX)
            .set_key_schema(Some(owner_index_key_schema()))
            .projection(keys_only())
            .set_provisioned_throughput(throughput)
            .build()
            .expect("index name, key schema and projection are set");
        let result = self
            .call(&AtomicBool::new(false), || async {
                self.client
                    .update_table()
                    .table_name(&self.name)
                    .attribute_definitions(string_attribute(schema::LEASE_KEY))
                    .attribute_definitions(string_attribute(schema::LEASE_OWNER))
                    .global_secondary_index_updates(
                        GlobalSecondaryIndexUpdate::builder()
                            .create(create.clone())
                            .build(),
                    )
                    .send()
                    .await
                    .map_err(|e| self.sdk_error("UpdateTable", e))
            })
            .await;
        match result {
            Ok(_) => {
                tracing::info!(table = %self.name, index = schema::LEASE_OWNER_INDEX, "adding the lease owner index");
                Ok(())
            }
            // The table is busy with another update (maybe this very index).
            Err(CallError::ResourceInUse) => Ok(()),
            Err(e) => Err(e.into_error()),
        }
    }

    /// Polls `check` until it reports the table ready (`None`), with a
    /// backoff from 100 ms to 5 s, or fails with [`Error::TableNotReady`]
    /// (naming the last state `check` described) after
    /// [`table_ready_timeout`](crate::DynamoStoreConfig::table_ready_timeout).
    pub(super) async fn wait_until_ready<F, Fut>(&self, mut check: F) -> Result<()>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Option<String>>>,
    {
        let started = tokio::time::Instant::now();
        let deadline = started + self.config.table_ready_timeout;
        let mut poll = Duration::from_millis(100);
        loop {
            let Some(state) = check().await? else {
                return Ok(());
            };
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Err(Error::TableNotReady {
                    table: self.name.clone(),
                    waited: now - started,
                    state,
                });
            }
            tracing::debug!(table = %self.name, %state, "waiting for the table");
            tokio::time::sleep(poll.min(deadline - now)).await;
            poll = (poll * 2).min(Duration::from_secs(5));
        }
    }

    fn throughput(&self) -> Option<ProvisionedThroughput> {
        match self.config.capacity {
            TableCapacity::PayPerRequest => None,
            TableCapacity::Provisioned { read, write } => Some(
                ProvisionedThroughput::builder()
                    .read_capacity_units(read)
                    .write_capacity_units(write)
                    .build()
                    .expect("both capacities are set"),
            ),
        }
    }
}

fn key_element(name: &str, key_type: KeyType) -> KeySchemaElement {
    KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(key_type)
        .build()
        .expect("name and key type are set")
}

fn string_attribute(name: &str) -> AttributeDefinition {
    AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(ScalarAttributeType::S)
        .build()
        .expect("name and type are set")
}

fn owner_index_key_schema() -> Vec<KeySchemaElement> {
    vec![
        key_element(schema::LEASE_OWNER, KeyType::Hash),
        key_element(schema::LEASE_KEY, KeyType::Range),
    ]
}

fn keys_only() -> Projection {
    Projection::builder()
        .projection_type(ProjectionType::KeysOnly)
        .build()
}

/// State of the `LeaseOwnerToLeaseKeyIndex` in a table description.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum IndexState {
    /// Not in the table (a KCL 2.x table).
    Missing,
    /// Being created or backfilled.
    Building,
    /// Usable.
    Active,
}

/// The owner index's state in `table`.
pub(super) fn owner_index_state(table: &TableDescription) -> IndexState {
    match table
        .global_secondary_indexes()
        .iter()
        .find(|i| i.index_name() == Some(schema::LEASE_OWNER_INDEX))
    {
        None => IndexState::Missing,
        // Emulators may omit the status; treat that as ACTIVE.
        Some(i) if matches!(i.index_status, Some(IndexStatus::Active) | None) => IndexState::Active,
        Some(_) => IndexState::Building,
    }
}
