//! [`RequestMetrics`]: asks DynamoDB for the capacity each request consumed
//! and counts requests and capacity per table and operation.
//!
//! An SDK interceptor rather than code at each call site, so no request to a
//! lease or coordinator table can miss it: every item and query request gets
//! `ReturnConsumedCapacity = TOTAL`, every attempt is counted by result, and
//! the capacity units in each answer are added up. Table administration
//! (CreateTable, DescribeTable, UpdateTable) consumes no capacity and is only
//! counted.

use std::collections::BTreeMap;
use std::sync::Mutex;

use aws_sdk_dynamodb::config::interceptors::{
    BeforeSerializationInterceptorContextMut, FinalizerInterceptorContextRef,
};
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::operation::{delete_item, get_item, put_item, query, scan, update_item};
use aws_sdk_dynamodb::types::{ConsumedCapacity, ReturnConsumedCapacity};
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use kinesis_fleet_types::metrics::{
    DYNAMODB_CONSUMED_READ_CAPACITY_UNITS, DYNAMODB_CONSUMED_WRITE_CAPACITY_UNITS,
    DYNAMODB_REQUESTS, label, result,
};

use super::request::is_throttling;

/// Counts the requests to one table and the capacity they consumed.
#[derive(Debug)]
pub(super) struct RequestMetrics {
    pub(super) table: String,
}

/// `Some(body)` for the first of `types` that `erased` downcasts to.
macro_rules! on_first {
    ($erased:expr, $cast:ident, [$($ty:ty),+], |$typed:ident| $body:expr) => {{
        let mut done = None;
        $(
            if done.is_none() {
                if let Some($typed) = $erased.$cast::<$ty>() {
                    done = Some($body);
                }
            }
        )+
        done
    }};
}

/// Process-wide exact sums of consumed capacity, by table, operation and
/// read (`true`) or write: DynamoDB reports fractions (0.5 for an eventually
/// consistent read) and the facade's counters are integers, so the counters
/// are set to the whole units of the exact sums.
type CapacitySums = BTreeMap<(String, String, bool), f64>;
static CAPACITY: Mutex<CapacitySums> = Mutex::new(BTreeMap::new());

impl RequestMetrics {
    fn count(&self, operation: String, outcome: &'static str, used: Option<&ConsumedCapacity>) {
        ::metrics::counter!(DYNAMODB_REQUESTS.name,
            label::TABLE => self.table.clone(), label::OPERATION => operation.clone(), label::RESULT => outcome)
        .increment(1);
        let Some(used) = used else { return };
        // TOTAL answers carry the sum only; INDEXES ones split it.
        let (read, write) = match (used.read_capacity_units, used.write_capacity_units) {
            (None, None) if matches!(operation.as_str(), "GetItem" | "Query" | "Scan") => {
                (used.capacity_units, None)
            }
            (None, None) => (None, used.capacity_units),
            split => split,
        };
        for (is_read, units) in [(true, read), (false, write)] {
            let Some(units) = units.filter(|u| *u > 0.0) else {
                continue;
            };
            let total = {
                let mut sums = CAPACITY.lock().unwrap_or_else(|e| e.into_inner());
                let sum = sums
                    .entry((self.table.clone(), operation.clone(), is_read))
                    .or_default();
                *sum += units;
                *sum
            };
            let metric = if is_read {
                DYNAMODB_CONSUMED_READ_CAPACITY_UNITS
            } else {
                DYNAMODB_CONSUMED_WRITE_CAPACITY_UNITS
            };
            ::metrics::counter!(metric.name,
                label::TABLE => self.table.clone(), label::OPERATION => operation.clone())
            .absolute(total.floor() as u64);
        }
    }
}

impl Intercept for RequestMetrics {
    fn name(&self) -> &'static str {
        "kinesis_fleet_leases::RequestMetrics"
    }

    fn modify_before_serialization(
        &self,
        context: &mut BeforeSerializationInterceptorContextMut<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), aws_sdk_dynamodb::error::BoxError> {
        let input = context.input_mut();
        let total = || Some(ReturnConsumedCapacity::Total);
        on_first!(
            input,
            downcast_mut,
            [
                put_item::PutItemInput,
                get_item::GetItemInput,
                update_item::UpdateItemInput,
                delete_item::DeleteItemInput,
                query::QueryInput,
                scan::ScanInput
            ],
            |typed| typed.return_consumed_capacity = total()
        );
        Ok(())
    }

    fn read_after_attempt(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), aws_sdk_dynamodb::error::BoxError> {
        let operation = cfg
            .load::<Metadata>()
            .map_or("unknown", |m| m.name())
            .to_owned();
        let Some(answer) = context.output_or_error() else {
            return Ok(());
        };
        match answer {
            Ok(output) => {
                let used = on_first!(
                    output,
                    downcast_ref,
                    [
                        put_item::PutItemOutput,
                        get_item::GetItemOutput,
                        update_item::UpdateItemOutput,
                        delete_item::DeleteItemOutput,
                        query::QueryOutput,
                        scan::ScanOutput
                    ],
                    |typed| typed.consumed_capacity.as_ref()
                );
                self.count(operation, result::OK, used.flatten());
            }
            Err(err) => {
                let code = err.as_operation_error().and_then(|e| {
                    on_first!(
                        e,
                        downcast_ref,
                        [
                            put_item::PutItemError,
                            get_item::GetItemError,
                            update_item::UpdateItemError,
                            delete_item::DeleteItemError,
                            query::QueryError,
                            scan::ScanError
                        ],
                        |typed| typed.code()
                    )
                    .flatten()
                });
                let outcome = match code {
                    Some("ConditionalCheckFailedException") => result::CONDITION_FAILED,
                    Some(c) if is_throttling(c) => result::THROTTLED,
                    _ => result::ERROR,
                };
                self.count(operation, outcome, None);
            }
        }
        Ok(())
    }
}
