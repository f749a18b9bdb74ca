//! [`DynamoLeaseStore`]: the [`LeaseStore`] on a DynamoDB table with the KCL schema.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, CreateGlobalSecondaryIndexAction,
    GlobalSecondaryIndex, GlobalSecondaryIndexUpdate, IndexStatus, KeySchemaElement, KeyType,
    Projection, ProjectionType, ProvisionedThroughput, ReturnValue, ScalarAttributeType,
    TableDescription, TableStatus,
};
use backon::{ExponentialBuilder, Retryable};

use crate::error::{Error, Result};
use crate::lease::Lease;
use crate::schema::{self, Item, n, s};
use crate::sequence::ExtendedSequenceNumber;
use crate::store::{LeaseStore, check_non_empty, handoff_source};

mod coordinator;
pub use coordinator::DynamoCoordinatorStore;

/// How the lease table is billed when this store creates it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TableCapacity {
    /// On-demand (KCL's default too).
    PayPerRequest,
    /// Provisioned capacity units, used for the table and its index.
    Provisioned {
        /// Read capacity units (at least 1).
        read: i64,
        /// Write capacity units (at least 1).
        write: i64,
    },
}

/// Settings of a [`DynamoLeaseStore`]. Build with [`Default`] and the
/// builder methods; checked by [`DynamoLeaseStore::with_config`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct DynamoStoreConfig {
    /// Billing of a table this store creates. Default: pay per request (as KCL).
    pub capacity: TableCapacity,
    /// Attempts per request for retryable errors, first one included (1..=20).
    /// Default 5. These come on top of the SDK client's own retries.
    pub max_attempts: u32,
    /// First backoff delay (1 ms..=10 s). Default 50 ms.
    pub base_delay: Duration,
    /// Backoff cap before jitter (at least `base_delay`, at most 60 s); the
    /// jitter adds up to the same again. Default 2 s.
    pub max_delay: Duration,
    /// How long [`LeaseStore::ensure_table`] waits for the table and its
    /// index to become ACTIVE (1 s..=24 h). Default 5 min (KCL waits up to an
    /// hour for a GSI added to a large existing table; raise it for those).
    pub table_ready_timeout: Duration,
    /// Items per Scan/Query page (`Limit`), `None` for DynamoDB's 1 MB pages.
    /// Default `None`; small values are for tests of pagination.
    pub page_size: Option<i32>,
    /// Longest one attempt may take (10 ms..=5 min), after which it counts as
    /// an unreachable endpoint and is retried. Default 5 s: a request lost in
    /// a network partition must fail in bounded time, or a worker cannot
    /// notice it has been cut off. (The SDK sets no such timeout by default.)
    pub attempt_timeout: Duration,
}

impl Default for DynamoStoreConfig {
    fn default() -> Self {
        Self {
            capacity: TableCapacity::PayPerRequest,
            max_attempts: 5,
            base_delay: Duration::from_millis(50),
            max_delay: Duration::from_secs(2),
            table_ready_timeout: Duration::from_secs(300),
            page_size: None,
            attempt_timeout: Duration::from_secs(5),
        }
    }
}

impl DynamoStoreConfig {
    /// Sets [`capacity`](Self::capacity).
    pub fn capacity(mut self, capacity: TableCapacity) -> Self {
        self.capacity = capacity;
        self
    }

    /// Sets [`max_attempts`](Self::max_attempts), [`base_delay`](Self::base_delay)
    /// and [`max_delay`](Self::max_delay).
    pub fn retry(mut self, max_attempts: u32, base_delay: Duration, max_delay: Duration) -> Self {
        self.max_attempts = max_attempts;
        self.base_delay = base_delay;
        self.max_delay = max_delay;
        self
    }

    /// Sets [`table_ready_timeout`](Self::table_ready_timeout).
    pub fn table_ready_timeout(mut self, timeout: Duration) -> Self {
        self.table_ready_timeout = timeout;
        self
    }

    /// Sets [`page_size`](Self::page_size).
    pub fn page_size(mut self, page_size: Option<i32>) -> Self {
        self.page_size = page_size;
        self
    }

    /// Sets [`attempt_timeout`](Self::attempt_timeout).
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.attempt_timeout = timeout;
        self
    }

    /// Checks every field; the error names the field and its allowed range.
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &'static str, reason: &str| {
            Err(Error::InvalidConfig {
                field,
                reason: reason.to_owned(),
            })
        };
        if !(1..=20).contains(&self.max_attempts) {
            return bad("max_attempts", "must be between 1 and 20");
        }
        if !(Duration::from_millis(1)..=Duration::from_secs(10)).contains(&self.base_delay) {
            return bad("base_delay", "must be between 1 ms and 10 s");
        }
        if self.max_delay < self.base_delay || self.max_delay > Duration::from_secs(60) {
            return bad("max_delay", "must be between base_delay and 60 s");
        }
        if !(Duration::from_secs(1)..=Duration::from_secs(86_400))
            .contains(&self.table_ready_timeout)
        {
            return bad("table_ready_timeout", "must be between 1 s and 24 h");
        }
        if !(Duration::from_millis(10)..=Duration::from_secs(300)).contains(&self.attempt_timeout) {
            return bad("attempt_timeout", "must be between 10 ms and 5 min");
        }
        if self.page_size.is_some_and(|p| p < 1) {
            return bad("page_size", "must be at least 1");
        }
        if let TableCapacity::Provisioned { read, write } = self.capacity
            && (read < 1 || write < 1)
        {
            return bad(
                "capacity",
                "provisioned read and write units must be at least 1",
            );
        }
        Ok(())
    }

    fn backoff(&self) -> ExponentialBuilder {
        ExponentialBuilder::default()
            .with_min_delay(self.base_delay)
            .with_max_delay(self.max_delay)
            .with_max_times(self.max_attempts.saturating_sub(1) as usize)
            .with_jitter()
    }
}

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
    client: Client,
    table: String,
    config: DynamoStoreConfig,
    endpoint: Arc<OnceLock<String>>,
    /// Set once the owner index was seen ACTIVE (it never goes back).
    index_active: Arc<AtomicBool>,
}

impl DynamoLeaseStore {
    /// A store for `table_name` with the default [`DynamoStoreConfig`].
    ///
    /// The client is cloned with one extra interceptor that records the
    /// endpoint requests go to, so [`Error::Unreachable`] can name it.
    pub fn new(client: Client, table_name: impl Into<String>) -> Self {
        let endpoint = Arc::new(OnceLock::new());
        let recorder = EndpointRecorder {
            endpoint: endpoint.clone(),
        };
        let client = Client::from_conf(client.config().to_builder().interceptor(recorder).build());
        Self {
            client,
            table: table_name.into(),
            config: DynamoStoreConfig::default(),
            endpoint,
            index_active: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Replaces the configuration after [validating](DynamoStoreConfig::validate) it.
    pub fn with_config(mut self, config: DynamoStoreConfig) -> Result<Self> {
        config.validate()?;
        self.config = config;
        Ok(self)
    }

    /// The lease table's name.
    pub fn table_name(&self) -> &str {
        &self.table
    }

    /// The configuration in use.
    pub fn config(&self) -> &DynamoStoreConfig {
        &self.config
    }

    /// The endpoint requests went to, or a description of the default one.
    fn endpoint(&self) -> String {
        self.endpoint
            .get()
            .cloned()
            .unwrap_or_else(|| "the default AWS endpoint".to_owned())
    }

    /// Runs `request` with the retry policy. `ambiguous` is set when a
    /// failed attempt may nevertheless have been applied.
    async fn call<T, F, Fut>(&self, ambiguous: &AtomicBool, request: F) -> Result<T, CallError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, CallError>>,
    {
        let mut request = request;
        let attempt = || {
            let sent = request();
            async move {
                match tokio::time::timeout(self.config.attempt_timeout, sent).await {
                    Ok(result) => result,
                    Err(_) => Err(CallError::Failed(Error::Unreachable {
                        endpoint: self.endpoint(),
                        operation: "request",
                        source: format!("no answer within {:?}", self.config.attempt_timeout)
                            .into(),
                    })),
                }
            }
        };
        attempt
            .retry(self.config.backoff())
            .sleep(tokio::time::sleep)
            .when(|e| matches!(e, CallError::Failed(e) if e.is_retryable()))
            .notify(|e, delay| {
                if let CallError::Failed(e) = e {
                    if e.may_have_been_applied() {
                        ambiguous.store(true, Ordering::Relaxed);
                    }
                    tracing::debug!(table = %self.table, error = %e, ?delay, "retrying DynamoDB request");
                }
            })
            .await
    }

    /// Maps an SDK error to a [`CallError`]; the one place that reads AWS error codes.
    fn sdk_error<E>(&self, operation: &'static str, err: SdkError<E, HttpResponse>) -> CallError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let message = DisplayErrorContext(&err).to_string();
        let status = err.raw_response().map(|r| r.status().as_u16());
        let code = err.code().map(str::to_owned);
        let failed = |e| CallError::Failed(e);
        match &err {
            SdkError::ServiceError(_) => match code.as_deref() {
                Some("ConditionalCheckFailedException") => CallError::ConditionFailed,
                Some("ResourceInUseException") => CallError::ResourceInUse,
                Some("ResourceNotFoundException") => failed(Error::TableNotFound {
                    table: self.table.clone(),
                }),
                Some(
                    "ProvisionedThroughputExceededException"
                    | "RequestLimitExceeded"
                    | "ThrottlingException"
                    | "Throttling"
                    | "LimitExceededException",
                ) => failed(Error::Throttled {
                    operation,
                    source: err.into(),
                }),
                _ if status.is_some_and(|s| s >= 500)
                    || matches!(
                        code.as_deref(),
                        Some("InternalServerError" | "ServiceUnavailable")
                    ) =>
                {
                    failed(Error::Transient {
                        operation,
                        message,
                        source: err.into(),
                    })
                }
                _ => failed(Error::Service {
                    operation,
                    message,
                    source: err.into(),
                }),
            },
            SdkError::TimeoutError(_) => failed(Error::Unreachable {
                endpoint: self.endpoint(),
                operation,
                source: err.into(),
            }),
            SdkError::DispatchFailure(d) if !d.is_user() => failed(Error::Unreachable {
                endpoint: self.endpoint(),
                operation,
                source: err.into(),
            }),
            SdkError::ResponseError(_) => failed(Error::Transient {
                operation,
                message,
                source: err.into(),
            }),
            _ => failed(Error::Service {
                operation,
                message,
                source: err.into(),
            }),
        }
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
            .call(&ambiguous, || async {
                self.client
                    .update_item()
                    .table_name(&self.table)
                    .key(schema::LEASE_KEY, s(&lease.lease_key))
                    .condition_expression(&condition)
                    .update_expression(&update)
                    .set_expression_attribute_names(Some(expr.names.clone()))
                    .set_expression_attribute_values(Some(expr.values.clone()))
                    .return_values(ReturnValue::AllNew)
                    .send()
                    .await
                    .map_err(|e| self.sdk_error("UpdateItem", e))
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

    async fn describe(&self) -> Result<Option<TableDescription>> {
        let result = self
            .call(&AtomicBool::new(false), || async {
                self.client
                    .describe_table()
                    .table_name(&self.table)
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

    fn owner_index_key_schema() -> Vec<KeySchemaElement> {
        vec![
            Self::key_element(schema::LEASE_OWNER, KeyType::Hash),
            Self::key_element(schema::LEASE_KEY, KeyType::Range),
        ]
    }

    fn keys_only() -> Projection {
        Projection::builder()
            .projection_type(ProjectionType::KeysOnly)
            .build()
    }

    async fn create_table(&self) -> Result<()> {
        let index = GlobalSecondaryIndex::builder()
            .index_name(schema::LEASE_OWNER_INDEX)
            .set_key_schema(Some(Self::owner_index_key_schema()))
            .projection(Self::keys_only())
            .set_provisioned_throughput(self.throughput())
            .build()
            .expect("index name and key schema are set");
        let billing = match self.config.capacity {
            TableCapacity::PayPerRequest => BillingMode::PayPerRequest,
            TableCapacity::Provisioned { .. } => BillingMode::Provisioned,
        };
        let result = self
            .call(&AtomicBool::new(false), || async {
                self.client
                    .create_table()
                    .table_name(&self.table)
                    .key_schema(Self::key_element(schema::LEASE_KEY, KeyType::Hash))
                    .attribute_definitions(Self::string_attribute(schema::LEASE_KEY))
                    .attribute_definitions(Self::string_attribute(schema::LEASE_OWNER))
                    .global_secondary_indexes(index.clone())
                    .billing_mode(billing.clone())
                    .set_provisioned_throughput(self.throughput())
                    .send()
                    .await
                    .map_err(|e| self.sdk_error("CreateTable", e))
            })
            .await;
        match result {
            Ok(_) => {
                tracing::info!(table = %self.table, "created the lease table");
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
    async fn create_owner_index(&self, table: &TableDescription) -> Result<()> {
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
            .set_key_schema(Some(Self::owner_index_key_schema()))
            .projection(Self::keys_only())
            .set_provisioned_throughput(throughput)
            .build()
            .expect("index name, key schema and projection are set");
        let result = self
            .call(&AtomicBool::new(false), || async {
                self.client
                    .update_table()
                    .table_name(&self.table)
                    .attribute_definitions(Self::string_attribute(schema::LEASE_KEY))
                    .attribute_definitions(Self::string_attribute(schema::LEASE_OWNER))
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
                tracing::info!(table = %self.table, index = schema::LEASE_OWNER_INDEX, "adding the lease owner index");
                Ok(())
            }
            // The table is busy with another update (maybe this very index).
            Err(CallError::ResourceInUse) => Ok(()),
            Err(e) => Err(e.into_error()),
        }
    }

    async fn paginate(&self, query_owner: Option<&str>) -> Result<Vec<Item>> {
        let mut items = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let page = self
                .call(&AtomicBool::new(false), || async {
                    let (items, last) = match query_owner {
                        None => {
                            let out = self
                                .client
                                .scan()
                                .table_name(&self.table)
                                .consistent_read(true)
                                .set_limit(self.config.page_size)
                                .set_exclusive_start_key(start.clone())
                                .send()
                                .await
                                .map_err(|e| self.sdk_error("Scan", e))?;
                            (out.items, out.last_evaluated_key)
                        }
                        Some(owner) => {
                            let out = self
                                .client
                                .query()
                                .table_name(&self.table)
                                .index_name(schema::LEASE_OWNER_INDEX)
                                .key_condition_expression("#owner = :owner")
                                .expression_attribute_names("#owner", schema::LEASE_OWNER)
                                .expression_attribute_values(":owner", s(owner))
                                .set_limit(self.config.page_size)
                                .set_exclusive_start_key(start.clone())
                                .send()
                                .await
                                .map_err(|e| self.sdk_error("Query", e))?;
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
        let started = tokio::time::Instant::now();
        let deadline = started + self.config.table_ready_timeout;
        let mut created = false;
        let mut poll = Duration::from_millis(100);
        loop {
            let state = match self.describe().await? {
                None => {
                    self.create_table().await?;
                    created = true;
                    "creating the table".to_owned()
                }
                Some(table) => {
                    let table_status = table.table_status.clone();
                    let table_active = matches!(table_status, Some(TableStatus::Active) | None);
                    match owner_index_state(&table) {
                        IndexState::Active if table_active => {
                            self.index_active.store(true, Ordering::Relaxed);
                            return Ok(());
                        }
                        IndexState::Missing if table_active && !created => {
                            self.create_owner_index(&table).await?;
                            return Ok(());
                        }
                        IndexState::Building if table_active && !created => return Ok(()),
                        index => format!("table {table_status:?}, owner index {index:?}"),
                    }
                }
            };
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Err(Error::TableNotReady {
                    table: self.table.clone(),
                    waited: now - started,
                    state,
                });
            }
            tracing::debug!(table = %self.table, %state, "waiting for the lease table");
            tokio::time::sleep(poll.min(deadline - now)).await;
            poll = (poll * 2).min(Duration::from_secs(5));
        }
    }

    /// One conditional PutItem (atomic: cancel-safe).
    async fn create_lease_if_absent(&self, lease: &Lease) -> Result<bool> {
        check_non_empty("lease_key", &lease.lease_key)?;
        let item = schema::to_item(lease);
        let ambiguous = AtomicBool::new(false);
        let result = self
            .call(&ambiguous, || async {
                self.client
                    .put_item()
                    .table_name(&self.table)
                    .set_item(Some(item.clone()))
                    .condition_expression("attribute_not_exists(#key)")
                    .expression_attribute_names("#key", schema::LEASE_KEY)
                    .send()
                    .await
                    .map_err(|e| self.sdk_error("PutItem", e))
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
            .call(&AtomicBool::new(false), || async {
                self.client
                    .get_item()
                    .table_name(&self.table)
                    .key(schema::LEASE_KEY, s(lease_key))
                    .consistent_read(true)
                    .send()
                    .await
                    .map_err(|e| self.sdk_error("GetItem", e))
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
        let mut leases = Vec::new();
        for item in self.paginate(None).await? {
            if let Some(lease) = schema::from_item(&item)? {
                leases.push(lease);
            }
        }
        leases.sort_by(|a, b| a.lease_key.cmp(&b.lease_key));
        Ok(leases)
    }

    /// Query pages on the owner index (read-only: cancel-safe). The index is
    /// eventually consistent: a just-taken lease may be missing for a moment.
    /// While the index is missing or still building (a KCL 2.x table being
    /// upgraded), this scans the table instead, as KCL 3.x does.
    async fn list_lease_keys_owned_by(&self, owner: &str) -> Result<Vec<String>> {
        check_non_empty("owner", owner)?;
        if !self.index_active.load(Ordering::Relaxed) {
            let state = match self.describe().await? {
                Some(table) => owner_index_state(&table),
                None => {
                    return Err(Error::TableNotFound {
                        table: self.table.clone(),
                    });
                }
            };
            if state == IndexState::Active {
                self.index_active.store(true, Ordering::Relaxed);
            } else {
                tracing::debug!(table = %self.table, ?state, "owner index not usable, scanning");
                let leases = self.list_leases().await?;
                return Ok(leases
                    .into_iter()
                    .filter(|l| l.lease_owner.as_deref() == Some(owner))
                    .map(|l| l.lease_key)
                    .collect());
            }
        }
        let mut keys = Vec::new();
        for item in self.paginate(Some(owner)).await? {
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

    /// One conditional DeleteItem (atomic: cancel-safe).
    async fn delete_lease(&self, lease: &Lease) -> Result<()> {
        check_non_empty("lease_key", &lease.lease_key)?;
        let result = self
            .call(&AtomicBool::new(false), || async {
                self.client
                    .delete_item()
                    .table_name(&self.table)
                    .key(schema::LEASE_KEY, s(&lease.lease_key))
                    .condition_expression("attribute_not_exists(#key) OR #counter = :counter")
                    .expression_attribute_names("#key", schema::LEASE_KEY)
                    .expression_attribute_names("#counter", schema::LEASE_COUNTER)
                    .expression_attribute_values(":counter", n(lease.lease_counter))
                    .send()
                    .await
                    .map_err(|e| self.sdk_error("DeleteItem", e))
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

/// State of the `LeaseOwnerToLeaseKeyIndex` in a table description.
#[derive(Debug, PartialEq, Eq)]
enum IndexState {
    Missing,
    Building,
    Active,
}

fn owner_index_state(table: &TableDescription) -> IndexState {
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

/// Outcome of one request, before it becomes a public [`Error`].
#[derive(Debug)]
enum CallError {
    /// `ConditionalCheckFailedException`: someone else moved the item. Never retried.
    ConditionFailed,
    /// `ResourceInUseException` (CreateTable/UpdateTable races).
    ResourceInUse,
    /// Anything else.
    Failed(Error),
}

impl CallError {
    /// For requests where the special outcomes are unexpected.
    fn into_error(self) -> Error {
        match self {
            CallError::Failed(e) => e,
            other => Error::Service {
                operation: "request",
                message: format!("unexpected {other:?}"),
                source: format!("{other:?}").into(),
            },
        }
    }
}

/// Expression attribute names and values, registered as they are used
/// (DynamoDB rejects unused ones).
#[derive(Default)]
struct Expr {
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
}

impl Expr {
    fn name(&mut self, attribute: &str) -> String {
        let placeholder = format!("#{attribute}");
        self.names.insert(placeholder.clone(), attribute.to_owned());
        placeholder
    }

    fn value(&mut self, tag: &str, value: AttributeValue) -> String {
        let placeholder = format!(":{tag}");
        self.values.insert(placeholder.clone(), value);
        placeholder
    }

    /// `attribute = value`, or `attribute_not_exists(attribute)` for `None`.
    fn equals_or_absent(&mut self, attribute: &str, tag: &str, value: Option<&str>) -> String {
        let name = self.name(attribute);
        match value {
            Some(v) => format!("{name} = {}", self.value(tag, s(v))),
            None => format!("attribute_not_exists({name})"),
        }
    }

    /// `leaseOwner` and `checkpointOwner` are as in the caller's view.
    fn same_owners(&mut self, lease: &Lease) -> String {
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

    /// `(leaseOwner = owner AND no checkpointOwner) OR checkpointOwner = owner`.
    fn may_checkpoint(&mut self, owner: &str) -> String {
        let lo = self.name(schema::LEASE_OWNER);
        let co = self.name(schema::CHECKPOINT_OWNER);
        let me = self.value("writer", s(owner));
        format!("({lo} = {me} AND attribute_not_exists({co})) OR {co} = {me}")
    }

    /// `SET leaseCounter = <counter + 1>` (the condition pins the old value).
    fn bump_counter(&mut self, lease: &Lease) -> String {
        let lc = self.name(schema::LEASE_COUNTER);
        let next = self.value("nextCounter", n(lease.lease_counter + 1));
        format!("SET {lc} = {next}")
    }
}

/// Records the scheme and authority requests are sent to.
#[derive(Debug)]
struct EndpointRecorder {
    endpoint: Arc<OnceLock<String>>,
}

impl Intercept for EndpointRecorder {
    fn name(&self) -> &'static str {
        "kinesis_fleet_leases::EndpointRecorder"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), aws_sdk_dynamodb::error::BoxError> {
        if self.endpoint.get().is_none() {
            let uri = context.request().uri();
            let end = uri
                .find("://")
                .map(|i| i + 3)
                .and_then(|start| uri[start..].find('/').map(|j| start + j))
                .unwrap_or(uri.len());
            let _ = self.endpoint.set(uri[..end].to_owned());
        }
        Ok(())
    }
}
