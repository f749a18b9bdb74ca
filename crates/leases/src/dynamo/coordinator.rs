//! [`DynamoCoordinatorStore`]: the coordinator table on DynamoDB, on the
//! same [`DynamoTable`] plumbing as the lease store (retries, error
//! mapping, endpoint naming).

use std::sync::atomic::AtomicBool;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, TableStatus};

use super::config::DynamoStoreConfig;
use super::expr::Expr;
use super::request::{CallError, DynamoTable};
use crate::coordinator_store::{
    CoordinatorStore, CoordinatorView, KEY, LEADER_KEY, LeaderRecord, WORKER_KEY_PREFIX,
    WorkerRecord, WorkerState, leader_lost,
};
use crate::error::{Error, Result};
use crate::schema::{Item, n, s};

const WORKER_ID: &str = "workerId";
const HEARTBEAT_COUNTER: &str = "heartbeatCounter";
const HEARTBEAT_AT: &str = "heartbeatAt";
const STARTED_AT: &str = "startedAt";
const STATE: &str = "state";
const LEADER_ID: &str = "leaderId";
const LEADER_COUNTER: &str = "leaderCounter";
const LEADER_HEARTBEAT: &str = "leaderHeartbeatCounter";
const ASSIGNMENTS_AT: &str = "assignmentsAt";
const ASSIGNMENTS_SEEN: &str = "assignmentsSeen";

/// The coordinator table `<application>-coordinator` on DynamoDB.
#[derive(Clone, Debug)]
pub struct DynamoCoordinatorStore {
    table: DynamoTable,
}

impl DynamoCoordinatorStore {
    /// A store for `table_name` with the default [`DynamoStoreConfig`].
    pub fn new(client: Client, table_name: impl Into<String>) -> Self {
        Self {
            table: DynamoTable::new(client, table_name),
        }
    }

    /// Replaces the configuration after validating it.
    pub fn with_config(self, config: DynamoStoreConfig) -> Result<Self> {
        Ok(Self {
            table: self.table.with_config(config)?,
        })
    }

    /// The table's name.
    pub fn table_name(&self) -> &str {
        &self.table.name
    }

    fn malformed(key: &str, attribute: &'static str, reason: &str) -> Error {
        Error::MalformedLease {
            lease_key: key.to_owned(),
            attribute,
            reason: reason.to_owned(),
        }
    }

    fn string(item: &Item, key: &str, attribute: &'static str) -> Result<String> {
        match item.get(attribute) {
            Some(AttributeValue::S(v)) if !v.is_empty() => Ok(v.clone()),
            _ => Err(Self::malformed(
                key,
                attribute,
                "missing or not a non-empty string",
            )),
        }
    }

    fn number(item: &Item, key: &str, attribute: &'static str) -> Result<u64> {
        match item.get(attribute) {
            Some(AttributeValue::N(v)) => v
                .parse()
                .map_err(|_| Self::malformed(key, attribute, "not a non-negative integer")),
            None => Ok(0),
            _ => Err(Self::malformed(key, attribute, "not a number")),
        }
    }

    fn parse_leader(item: &Item, key: &str) -> Result<LeaderRecord> {
        Ok(LeaderRecord {
            leader_id: Self::string(item, key, LEADER_ID)?,
            leader_counter: Self::number(item, key, LEADER_COUNTER)?,
            // Absent in items written before it existed: 0, never seen.
            heartbeat_counter: Self::number(item, key, LEADER_HEARTBEAT)?,
            heartbeat_at_ms: Self::number(item, key, HEARTBEAT_AT)?,
            // Absent in items written before it existed: 0, which no
            // worker's query followed.
            assignments_at: Self::number(item, key, ASSIGNMENTS_AT)?,
        })
    }

    fn parse_item(item: &Item, view: &mut CoordinatorView) -> Result<()> {
        let Some(AttributeValue::S(key)) = item.get(KEY) else {
            return Err(Self::malformed(
                "<missing>",
                "key",
                "missing or not a string",
            ));
        };
        if key == LEADER_KEY {
            view.leader = Some(Self::parse_leader(item, key)?);
        } else if key.starts_with(WORKER_KEY_PREFIX) {
            let state = Self::string(item, key, STATE)?;
            let worker = WorkerRecord {
                worker_id: Self::string(item, key, WORKER_ID)?,
                heartbeat_counter: Self::number(item, key, HEARTBEAT_COUNTER)?,
                heartbeat_at_ms: Self::number(item, key, HEARTBEAT_AT)?,
                started_at_ms: Self::number(item, key, STARTED_AT)?,
                state: WorkerState::parse(&state)
                    .ok_or_else(|| Self::malformed(key, STATE, "unknown state"))?,
                assignments_seen: Self::number(item, key, ASSIGNMENTS_SEEN)?,
            };
            view.workers.insert(worker.worker_id.clone(), worker);
        }
        Ok(())
    }

    /// The coordinator-table item of `worker`'s heartbeat, as written.
    pub fn worker_item(worker: &WorkerRecord) -> Item {
        Item::from([
            (
                KEY.to_owned(),
                s(&format!("{WORKER_KEY_PREFIX}{}", worker.worker_id)),
            ),
            (WORKER_ID.to_owned(), s(&worker.worker_id)),
            (HEARTBEAT_COUNTER.to_owned(), n(worker.heartbeat_counter)),
            (HEARTBEAT_AT.to_owned(), n(worker.heartbeat_at_ms)),
            (STARTED_AT.to_owned(), n(worker.started_at_ms)),
            (STATE.to_owned(), s(worker.state.as_str())),
            (ASSIGNMENTS_SEEN.to_owned(), n(worker.assignments_seen)),
        ])
    }

    /// The coordinator-table item of `leader`, as written.
    pub fn leader_item(leader: &LeaderRecord) -> Item {
        Item::from([
            (KEY.to_owned(), s(LEADER_KEY)),
            (LEADER_ID.to_owned(), s(&leader.leader_id)),
            (LEADER_COUNTER.to_owned(), n(leader.leader_counter)),
            (LEADER_HEARTBEAT.to_owned(), n(leader.heartbeat_counter)),
            (HEARTBEAT_AT.to_owned(), n(leader.heartbeat_at_ms)),
            (ASSIGNMENTS_AT.to_owned(), n(leader.assignments_at)),
        ])
    }

    /// `leaderId = current.leader_id AND leaderCounter = current.leader_counter`.
    fn is_still(expr: &mut Expr, current: &LeaderRecord) -> String {
        let id = expr.name(LEADER_ID);
        let counter = expr.name(LEADER_COUNTER);
        let expected_id = expr.value("expectedLeader", s(&current.leader_id));
        let expected_counter = expr.value("expectedCounter", n(current.leader_counter));
        format!("{id} = {expected_id} AND {counter} = {expected_counter}")
    }

    async fn put_leader(&self, leader: &LeaderRecord, condition: String, expr: Expr) -> Result<()> {
        let t = &self.table;
        let item = Self::leader_item(leader);
        let result = t
            .call(&AtomicBool::new(false), || async {
                t.client
                    .put_item()
                    .table_name(&t.name)
                    .set_item(Some(item.clone()))
                    .condition_expression(&condition)
                    .set_expression_attribute_names(Some(expr.names.clone()))
                    .set_expression_attribute_values(
                        Some(expr.values.clone()).filter(|v| !v.is_empty()),
                    )
                    .send()
                    .await
                    .map_err(|e| t.sdk_error("PutItem", e))
            })
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(CallError::ConditionFailed) => Err(leader_lost()),
            Err(e) => Err(e.into_error()),
        }
    }
}

#[async_trait::async_trait]
impl CoordinatorStore for DynamoCoordinatorStore {
    async fn ensure_table(&self) -> Result<()> {
        let table = &self.table;
        table
            .wait_until_ready(|| async {
                match table.describe().await? {
                    None => {
                        table.create(KEY, false, "coordinator").await?;
                        Ok(Some("creating".to_owned()))
                    }
                    Some(d) if matches!(d.table_status, Some(TableStatus::Active) | None) => {
                        Ok(None)
                    }
                    Some(d) => Ok(Some(format!("{:?}", d.table_status))),
                }
            })
            .await
    }

    async fn put_worker(&self, worker: &WorkerRecord) -> Result<()> {
        let t = &self.table;
        let item = Self::worker_item(worker);
        t.call(&AtomicBool::new(false), || async {
            t.client
                .put_item()
                .table_name(&t.name)
                .set_item(Some(item.clone()))
                .send()
                .await
                .map_err(|e| t.sdk_error("PutItem", e))
        })
        .await
        .map(|_| ())
        .map_err(CallError::into_error)
    }

    async fn delete_worker(&self, worker_id: &str) -> Result<()> {
        let t = &self.table;
        let key = format!("{WORKER_KEY_PREFIX}{worker_id}");
        t.call(&AtomicBool::new(false), || async {
            t.client
                .delete_item()
                .table_name(&t.name)
                .key(KEY, s(&key))
                .send()
                .await
                .map_err(|e| t.sdk_error("DeleteItem", e))
        })
        .await
        .map(|_| ())
        .map_err(CallError::into_error)
    }

    async fn read(&self) -> Result<CoordinatorView> {
        let t = &self.table;
        let mut view = CoordinatorView::default();
        let mut start: Option<Item> = None;
        loop {
            let output = t
                .call(&AtomicBool::new(false), || async {
                    t.client
                        .scan()
                        .table_name(&t.name)
                        .consistent_read(true)
                        .set_exclusive_start_key(start.clone())
                        .send()
                        .await
                        .map_err(|e| t.sdk_error("Scan", e))
                })
                .await
                .map_err(CallError::into_error)?;
            for item in output.items() {
                Self::parse_item(item, &mut view)?;
            }
            match output.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(view),
            }
        }
    }

    async fn read_leader(&self) -> Result<Option<LeaderRecord>> {
        let t = &self.table;
        let output = t
            .call(&AtomicBool::new(false), || async {
                t.client
                    .get_item()
                    .table_name(&t.name)
                    .key(KEY, s(LEADER_KEY))
                    .send()
                    .await
                    .map_err(|e| t.sdk_error("GetItem", e))
            })
            .await
            .map_err(CallError::into_error)?;
        output
            .item
            .map(|item| Self::parse_leader(&item, LEADER_KEY))
            .transpose()
    }

    async fn claim_leader(
        &self,
        me: &str,
        expected: Option<&LeaderRecord>,
        heartbeat_counter: u64,
        now_ms: u64,
    ) -> Result<LeaderRecord> {
        let mut expr = Expr::default();
        let condition = match expected {
            None => format!("attribute_not_exists({})", expr.name(KEY)),
            Some(e) => Self::is_still(&mut expr, e),
        };
        let leader = LeaderRecord::claimed(me, expected, heartbeat_counter, now_ms);
        self.put_leader(&leader, condition, expr).await?;
        Ok(leader)
    }

    async fn renew_leader(
        &self,
        current: &LeaderRecord,
        heartbeat_counter: u64,
        now_ms: u64,
        assignments_changed: bool,
    ) -> Result<LeaderRecord> {
        let mut expr = Expr::default();
        let condition = Self::is_still(&mut expr, current);
        let leader = current.renewed(heartbeat_counter, now_ms, assignments_changed);
        self.put_leader(&leader, condition, expr).await?;
        Ok(leader)
    }

    async fn resign_leader(&self, current: &LeaderRecord) -> Result<()> {
        let t = &self.table;
        let mut expr = Expr::default();
        let condition = Self::is_still(&mut expr, current);
        let result = t
            .call(&AtomicBool::new(false), || async {
                t.client
                    .delete_item()
                    .table_name(&t.name)
                    .key(KEY, s(LEADER_KEY))
                    .condition_expression(&condition)
                    .set_expression_attribute_names(Some(expr.names.clone()))
                    .set_expression_attribute_values(Some(expr.values.clone()))
                    .send()
                    .await
                    .map_err(|e| t.sdk_error("DeleteItem", e))
            })
            .await;
        match result {
            Ok(_) | Err(CallError::ConditionFailed) => Ok(()),
            Err(e) => Err(e.into_error()),
        }
    }
}
