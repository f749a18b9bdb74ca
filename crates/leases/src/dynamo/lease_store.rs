//! [`DynamoLeaseStore`]: the [`LeaseStore`] on a DynamoDB table with the KCL schema.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, TableStatus};

use super::admin::{IndexState, owner_index_state};
use super::config::DynamoStoreConfig;
use super::expr::Expr;
use super::request::{CallError, DynamoTable};
use crate::error::{Error, Result};
use crate::lease::Lease;
use crate::schema::{self, Item, n, s};
use crate::sequence::ExtendedSequenceNumber;
use crate::store::{LeaseStore, check_non_empty, child_shard_ids, handoff_source};

/// A [`LeaseStore`] on a DynamoDB table with the KCL 2.x/3.x schema (see [`crate::schema`]).
///
/// Retryable errors ([`Error::is_retryable`]) are retried with a jittered,
/// capped exponential backoff for at most
/// [`max_attempts`](DynamoStoreConfig::max_attempts); a failed condition is
/// never retried. When a write's response was lost and its retry then fails
/// its condition, the store re-reads the item and reports success if the
/// item shows our own write (KCL does the same for renewals).
#[derive(Clone, Debug)]
pub struct DynamoLeaseStore {
    table: DynamoTable,
    /// Set once the owner index was seen ACTIVE (it never goes back).
    index_active: Arc<AtomicBool>,
}

impl DynamoLeaseStore {
    /// A store for `table_name` with the default [`DynamoStoreConfig`].
    ///
    /// The client is cloned with one extra interceptor that records the
    /// endpoint requests go to, so [`Error::Unreachable`] can name it.
    pub fn new(client: Client, table_name: impl Into<String>) -> Self {
        Self {
            table: DynamoTable::new(client, table_name),
            index_active: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Replaces the configuration after [validating](DynamoStoreConfig::validate) it.
    pub fn with_config(mut self, config: DynamoStoreConfig) -> Result<Self> {
        self.table = self.table.with_config(config)?;
        Ok(self)
    }

    /// The lease table's name.
    pub fn table_name(&self) -> &str {
        &self.table.name
    }

    /// The configuration in use.
    pub fn config(&self) -> &DynamoStoreConfig {
        &self.table.config
    }

    /// One conditional UpdateItem returning the new item. On a failed
    /// condition after an ambiguous attempt, `ours` decides whether the
    /// stored lease is the result of our own earlier attempt.
    async fn update(
        &self,
        lease: &Lease,
        mut expr: Expr,
        condition: String,
        update: String,
        ours: impl Fn(&Lease) -> bool + Send + Sync,
    ) -> Result<Lease> {
        check_non_empty("lease_key", &lease.lease_key)?;
        let counter = expr.name(schema::LEASE_COUNTER);
        let expected = expr.value("expectedCounter", n(lease.lease_counter));
        let condition = format!("{counter} = {expected} AND ({condition})");
        let ambiguous = AtomicBool::new(false);
        let result = self
            .table
            .call(&ambiguous, || async {
                self.table
                    .client
                    .update_item()
                    .table_name(&self.table.name)
                    .key(schema::LEASE_KEY, s(&lease.lease_key))
                    .condition_expression(&condition)
                    .update_expression(&update)
                    .set_expression_attribute_names(Some(expr.names.clone()))
                    .set_expression_attribute_values(Some(expr.values.clone()))
                    .return_values(ReturnValue::AllNew)
                    .send()
                    .await
                    .map_err(|e| self.table.sdk_error("UpdateItem", e))
            })
            .await;
        match result {
            Ok(output) => {
                let item = output.attributes.unwrap_or_default();
                schema::from_item(&item)?.ok_or_else(|| {
                    Error::malformed(
                        &lease.lease_key,
                        schema::ENTITY_TYPE,
                        "the updated item is not a lease",
                    )
                })
            }
            Err(CallError::ConditionFailed) => {
                if ambiguous.load(Ordering::Relaxed)
                    && let Some(stored) = self.get_lease(&lease.lease_key).await?
                    && stored.lease_counter == lease.lease_counter + 1
                    && ours(&stored)
                {
                    tracing::info!(lease_key = %lease.lease_key, "recovered a write whose response was lost");
                    return Ok(stored);
                }
                Err(Error::LeaseLost {
                    lease_key: lease.lease_key.clone(),
                })
            }
            Err(e) => Err(e.into_error()),
        }
    }

    /// Scan pages (`consistent` or not) or, for `query_owner`, owner-index query pages.
    async fn paginate(&self, query_owner: Option<&str>, consistent: bool) -> Result<Vec<Item>> {
        let mut items = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let page = self
                .table
                .call(&AtomicBool::new(false), || async {
                    let (items, last) = match query_owner {
                        None => {
                            let out = self
                                .table
                                .client
                                .scan()
                                .table_name(&self.table.name)
                                .consistent_read(consistent)
                                .set_limit(self.table.config.page_size)
                                .set_exclusive_start_key(start.clone())
                                .send()
                                .await
                                .map_err(|e| self.table.sdk_error("Scan", e))?;
                            (out.items, out.last_evaluated_key)
                        }
                        Some(owner) => {
                            let out = self
                                .table
                                .client
                                .query()
                                .table_name(&self.table.name)
                                .index_name(schema::LEASE_OWNER_INDEX)
                                .key_condition_expression("#owner = :owner")
                                .expression_attribute_names("#owner", schema::LEASE_OWNER)
                                .expression_attribute_values(":owner", s(owner))
                                .set_limit(self.table.config.page_size)
                                .set_exclusive_start_key(start.clone())
                                .send()
                                .await
                                .map_err(|e| self.table.sdk_error("Query", e))?;
                            (out.items, out.last_evaluated_key)
                        }
                    };
                    Ok((items.unwrap_or_default(), last))
                })
                .await
                .map_err(CallError::into_error)?;
            items.extend(page.0);
            match page.1 {
                Some(last) if !last.is_empty() => start = Some(last),
                _ => return Ok(items),
            }
        }
    }
}

impl DynamoLeaseStore {
    /// Every lease item, sorted by key; fails on the first malformed one
    /// rather than hiding a shard.
    async fn scan_leases(&self, consistent: bool) -> Result<Vec<Lease>> {
        let mut leases = Vec::new();
        for item in self.paginate(None, consistent).await? {
            if let Some(lease) = schema::from_item(&item)? {
                leases.push(lease);
            }
        }
        leases.sort_by(|a, b| a.lease_key.cmp(&b.lease_key));
        Ok(leases)
    }
}

#[async_trait::async_trait]
impl LeaseStore for DynamoLeaseStore {
    /// Creates the table (with the owner index) if missing and polls until
    /// both are ACTIVE, or until
    /// [`table_ready_timeout`](DynamoStoreConfig::table_ready_timeout) passes
    /// ([`Error::TableNotReady`]).
    ///
    /// An existing table without the index (KCL 2.x) gets it requested, as
    /// KCL 3.x does, but this returns once the table is ACTIVE: backfilling
    /// an index on a large table can take long, and until it is ACTIVE
    /// [`list_lease_keys_owned_by`](LeaseStore::list_lease_keys_owned_by)
    /// falls back to a scan.
    ///
    /// Cancel-safe: CreateTable/UpdateTable are single requests; running
    /// this again finishes the job.
    async fn ensure_table(&self) -> Result<()> {
        // Whether this call created the table: its index then builds with
        // it, so wait for both.
        let created = AtomicBool::new(false);
        let (table, created) = (&self.table, &created);
        table
            .wait_until_ready(move || async move {
                let Some(description) = table.describe().await? else {
                    table.create(schema::LEASE_KEY, true, "lease").await?;
                    created.store(true, Ordering::Relaxed);
                    return Ok(Some("creating the table".to_owned()));
                };
                let table_status = description.table_status.clone();
                let table_active = matches!(table_status, Some(TableStatus::Active) | None);
                let created = created.load(Ordering::Relaxed);
                match owner_index_state(&description) {
                    IndexState::Active if table_active => {
                        self.index_active.store(true, Ordering::Relaxed);
                        Ok(None)
                    }
                    IndexState::Missing if table_active && !created => {
                        table.create_owner_index(&description).await?;
                        Ok(None)
                    }
                    IndexState::Building if table_active && !created => Ok(None),
                    index => Ok(Some(format!(
                        "table {table_status:?}, owner index {index:?}"
                    ))),
                }
            })
            .await
    }

    async fn create_lease_if_absent(&self, lease: &Lease) -> Result<bool> {
        check_non_empty("lease_key", &lease.lease_key)?;
        let item = schema::to_item(lease);
        let ambiguous = AtomicBool::new(false);
        let result = self
            .table
            .call(&ambiguous, || async {
                self.table
                    .client
                    .put_item()
                    .table_name(&self.table.name)
                    .set_item(Some(item.clone()))
                    .condition_expression("attribute_not_exists(#key)")
                    .expression_attribute_names("#key", schema::LEASE_KEY)
                    .send()
                    .await
                    .map_err(|e| self.table.sdk_error("PutItem", e))
            })
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(CallError::ConditionFailed) => {
                if ambiguous.load(Ordering::Relaxed) {
                    // Maybe our own earlier attempt created it.
                    let stored = self.get_lease(&lease.lease_key).await?;
                    let mut expected = lease.clone();
                    expected.parent_shard_ids =
                        crate::lease::sorted_unique(expected.parent_shard_ids);
                    expected.child_shard_ids =
                        crate::lease::sorted_unique(expected.child_shard_ids);
                    return Ok(stored.as_ref() == Some(&expected));
                }
                Ok(false)
            }
            Err(e) => Err(e.into_error()),
        }
    }

    /// One strongly consistent GetItem (read-only: cancel-safe).
    async fn get_lease(&self, lease_key: &str) -> Result<Option<Lease>> {
        check_non_empty("lease_key", lease_key)?;
        let output = self
            .table
            .call(&AtomicBool::new(false), || async {
                self.table
                    .client
                    .get_item()
                    .table_name(&self.table.name)
                    .key(schema::LEASE_KEY, s(lease_key))
                    .consistent_read(true)
                    .send()
                    .await
                    .map_err(|e| self.table.sdk_error("GetItem", e))
            })
            .await
            .map_err(CallError::into_error)?;
        match output.item {
            Some(item) if !item.is_empty() => schema::from_item(&item),
            _ => Ok(None),
        }
    }

    /// Strongly consistent Scan pages (read-only: cancel-safe). Fails on the
    /// first malformed lease item rather than hiding a shard.
    async fn list_leases(&self) -> Result<Vec<Lease>> {
        self.scan_leases(true).await
    }

    /// Eventually consistent Scan pages (read-only: cancel-safe).
    async fn list_leases_eventually(&self) -> Result<Vec<Lease>> {
        self.scan_leases(false).await
    }

    /// Query pages on the owner index (read-only: cancel-safe). The index is
    /// eventually consistent: a just-taken lease may be missing for a moment.
    /// While the index is missing or still building (a KCL 2.x table being
    /// upgraded), this scans the table instead, as KCL 3.x does.
    async fn list_lease_keys_owned_by(&self, owner: &str) -> Result<Vec<String>> {
        check_non_empty("owner", owner)?;
        if !self.index_active.load(Ordering::Relaxed) {
            let state = match self.table.describe().await? {
                Some(table) => owner_index_state(&table),
                None => {
                    return Err(Error::TableNotFound {
                        table: self.table.name.clone(),
                    });
                }
            };
            if state == IndexState::Active {
                self.index_active.store(true, Ordering::Relaxed);
            } else {
                tracing::debug!(table = %self.table.name, ?state, "owner index not usable, scanning");
                let leases = self.list_leases().await?;
                return Ok(leases
                    .into_iter()
                    .filter(|l| l.lease_owner.as_deref() == Some(owner))
                    .map(|l| l.lease_key)
                    .collect());
            }
        }
        let mut keys = Vec::new();
        for item in self.paginate(Some(owner), false).await? {
            match item.get(schema::LEASE_KEY) {
                Some(AttributeValue::S(key)) => keys.push(key.clone()),
                _ => {
                    return Err(Error::malformed(
                        "<missing>",
                        schema::LEASE_KEY,
                        "index item without a string key",
                    ));
                }
            }
        }
        keys.sort();
        Ok(keys)
    }

    /// One conditional UpdateItem (atomic: cancel-safe).
    async fn take_lease(&self, lease: &Lease, owner: &str) -> Result<Lease> {
        check_non_empty("owner", owner)?;
        let mut expr = Expr::default();
        let condition = expr.same_owners(lease);
        let lo = expr.name(schema::LEASE_OWNER);
        let co = expr.name(schema::CHECKPOINT_OWNER);
        let new_owner = expr.value("owner", s(owner));
        let next = expr.value("nextCounter", n(lease.lease_counter + 1));
        let lc = expr.name(schema::LEASE_COUNTER);
        let mut update = format!("SET {lo} = {new_owner}, {lc} = {next} REMOVE {co}");
        if lease.actual_owner().is_some_and(|actual| actual != owner) {
            let switches = expr.name(schema::OWNER_SWITCHES_SINCE_CHECKPOINT);
            let one = expr.value("one", n(1));
            update.push_str(&format!(" ADD {switches} {one}"));
        }
        self.update(lease, expr, condition, update, |stored| {
            stored.lease_owner.as_deref() == Some(owner) && stored.checkpoint_owner.is_none()
        })
        .await
    }

    /// One conditional UpdateItem (atomic: cancel-safe).
    async fn renew_lease(&self, lease: &Lease) -> Result<Lease> {
        let mut expr = Expr::default();
        let condition = expr.same_owners(lease);
        let update = expr.bump_counter(lease);
        self.update(lease, expr, condition, update, |stored| {
            stored.lease_owner == lease.lease_owner
                && stored.checkpoint_owner == lease.checkpoint_owner
        })
        .await
    }

    /// One conditional UpdateItem (atomic: cancel-safe).
    async fn update_checkpoint(
        &self,
        lease: &Lease,
        owner: &str,
        checkpoint: &ExtendedSequenceNumber,
    ) -> Result<Lease> {
        check_non_empty("owner", owner)?;
        let mut expr = Expr::default();
        let condition = expr.may_checkpoint(owner);
        let cp = expr.name(schema::CHECKPOINT);
        let cp_sub = expr.name(schema::CHECKPOINT_SUB_SEQUENCE_NUMBER);
        let switches = expr.name(schema::OWNER_SWITCHES_SINCE_CHECKPOINT);
        let pending = expr.name(schema::PENDING_CHECKPOINT);
        let pending_sub = expr.name(schema::PENDING_CHECKPOINT_SUB_SEQUENCE_NUMBER);
        let pending_state = expr.name(schema::PENDING_CHECKPOINT_STATE);
        let seq = expr.value("checkpoint", s(checkpoint.sequence_number.as_str()));
        let sub = expr.value("checkpointSub", n(checkpoint.sub_sequence_number));
        let zero = expr.value("zero", n(0));
        let bump = expr.bump_counter(lease);
        let update = format!(
            "{bump}, {cp} = {seq}, {cp_sub} = {sub}, {switches} = {zero} \
             REMOVE {pending}, {pending_sub}, {pending_state}"
        );
        self.update(lease, expr, condition, update, |stored| {
            &stored.checkpoint == checkpoint && stored.pending_checkpoint.is_none()
        })
        .await
    }

    /// One conditional UpdateItem (atomic: cancel-safe).
    async fn prepare_checkpoint(
        &self,
        lease: &Lease,
        owner: &str,
        pending: &ExtendedSequenceNumber,
        state: Option<&[u8]>,
    ) -> Result<Lease> {
        check_non_empty("owner", owner)?;
        let mut expr = Expr::default();
        let condition = expr.may_checkpoint(owner);
        let p = expr.name(schema::PENDING_CHECKPOINT);
        let p_sub = expr.name(schema::PENDING_CHECKPOINT_SUB_SEQUENCE_NUMBER);
        let p_state = expr.name(schema::PENDING_CHECKPOINT_STATE);
        let seq = expr.value("pending", s(pending.sequence_number.as_str()));
        let sub = expr.value("pendingSub", n(pending.sub_sequence_number));
        let bump = expr.bump_counter(lease);
        let update = match state {
            Some(bytes) => {
                let st = expr.value("pendingState", schema::b(bytes));
                format!("{bump}, {p} = {seq}, {p_sub} = {sub}, {p_state} = {st}")
            }
            None => format!("{bump}, {p} = {seq}, {p_sub} = {sub} REMOVE {p_state}"),
        };
        self.update(lease, expr, condition, update, |stored| {
            stored.pending_checkpoint.as_ref() == Some(pending)
                && stored.pending_checkpoint_state.as_deref() == state
        })
        .await
    }

    /// One conditional UpdateItem (atomic: cancel-safe).
    async fn release_lease(&self, lease: &Lease) -> Result<Lease> {
        let mut expr = Expr::default();
        let condition = expr.same_owners(lease);
        let lo = expr.name(schema::LEASE_OWNER);
        let co = expr.name(schema::CHECKPOINT_OWNER);
        let bump = expr.bump_counter(lease);
        let update = format!("{bump} REMOVE {lo}, {co}");
        self.update(lease, expr, condition, update, |stored| {
            stored.lease_owner.is_none() && stored.checkpoint_owner.is_none()
        })
        .await
    }

    /// One conditional UpdateItem (atomic: cancel-safe).
    async fn initiate_handoff(&self, lease: &Lease, new_owner: &str) -> Result<Lease> {
        check_non_empty("new_owner", new_owner)?;
        let current = handoff_source(lease)?;
        let mut expr = Expr::default();
        let condition = expr.same_owners(lease);
        let lo = expr.name(schema::LEASE_OWNER);
        let co = expr.name(schema::CHECKPOINT_OWNER);
        let next_owner = expr.value("newOwner", s(new_owner));
        let old_owner = expr.value("checkpointOwner", s(current));
        let bump = expr.bump_counter(lease);
        let update = format!("{bump}, {lo} = {next_owner}, {co} = {old_owner}");
        self.update(lease, expr, condition, update, |stored| {
            stored.lease_owner.as_deref() == Some(new_owner)
                && stored.checkpoint_owner.as_deref() == Some(current)
        })
        .await
    }

    /// One conditional UpdateItem (atomic: cancel-safe).
    async fn complete_handoff(&self, lease: &Lease, owner: &str) -> Result<Lease> {
        check_non_empty("owner", owner)?;
        let mut expr = Expr::default();
        let co = expr.name(schema::CHECKPOINT_OWNER);
        let me = expr.value("owner", s(owner));
        let condition = format!("{co} = {me}");
        let bump = expr.bump_counter(lease);
        let update = format!("{bump} REMOVE {co}");
        self.update(lease, expr, condition, update, |stored| {
            stored.checkpoint_owner.is_none()
        })
        .await
    }

    /// One conditional UpdateItem (atomic: cancel-safe).
    async fn set_child_shard_ids(&self, lease: &Lease, children: &[String]) -> Result<Lease> {
        let children = child_shard_ids(children)?;
        let mut expr = Expr::default();
        let ids = expr.name(schema::CHILD_SHARD_IDS);
        let value = expr.value("children", AttributeValue::Ss(children.clone()));
        let bump = expr.bump_counter(lease);
        let update = format!("{bump}, {ids} = {value}");
        let key = expr.name(schema::LEASE_KEY);
        self.update(
            lease,
            expr,
            format!("attribute_exists({key})"),
            update,
            |stored| stored.child_shard_ids == children,
        )
        .await
    }

    /// One conditional DeleteItem (atomic: cancel-safe).
    async fn delete_lease(&self, lease: &Lease) -> Result<()> {
        check_non_empty("lease_key", &lease.lease_key)?;
        let result = self
            .table
            .call(&AtomicBool::new(false), || async {
                self.table
                    .client
                    .delete_item()
                    .table_name(&self.table.name)
                    .key(schema::LEASE_KEY, s(&lease.lease_key))
                    .condition_expression("attribute_not_exists(#key) OR #counter = :counter")
                    .expression_attribute_names("#key", schema::LEASE_KEY)
                    .expression_attribute_names("#counter", schema::LEASE_COUNTER)
                    .expression_attribute_values(":counter", n(lease.lease_counter))
                    .send()
                    .await
                    .map_err(|e| self.table.sdk_error("DeleteItem", e))
            })
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(CallError::ConditionFailed) => Err(Error::LeaseLost {
                lease_key: lease.lease_key.clone(),
            }),
            Err(e) => Err(e.into_error()),
        }
    }
}
