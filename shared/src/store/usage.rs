//! The AWS side of [`crate::overhead`]: interceptors on the SDK clients that
//! add what each call uses to the process's [`UsageTally`].
//!
//! * DynamoDB: every call that can report capacity is sent with
//!   `ReturnConsumedCapacity=TOTAL` (set here, so no call site can forget
//!   it), and the units its answer reports are added: write calls' as write
//!   units, read calls' as read units. A refused call (a failed condition, a
//!   cancelled transaction) reports none, though DynamoDB charges it: those
//!   are not counted (an undercount, docs/api.md).
//! * S3: every attempt sent is counted by its price class, from its HTTP
//!   method: PUT and POST (PutObject, CopyObject, the multipart calls) and
//!   bucket listings at the PUT rate; GET and HEAD at the GET rate; DELETE
//!   and the multi-object delete free.

use std::sync::Arc;

use aws_sdk_dynamodb::config::interceptors::{
    AfterDeserializationInterceptorContextRef, BeforeSerializationInterceptorContextMut,
    BeforeTransmitInterceptorContextRef,
};
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::types::{ConsumedCapacity, ReturnConsumedCapacity};

use crate::overhead::UsageTally;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Asks every DynamoDB call for its consumed capacity and adds it to the tally.
#[derive(Debug, Clone)]
pub struct DynamoUsage(pub Arc<UsageTally>);

/// Sets `return_consumed_capacity` on each input type named.
macro_rules! ask_capacity {
    ($input:expr, $($t:path),+ $(,)?) => {
        $(
            if let Some(i) = $input.downcast_mut::<$t>() {
                i.return_consumed_capacity = Some(ReturnConsumedCapacity::Total);
                return Ok(());
            }
        )+
    };
}

/// (write units, read units) an answer of one of the output types named
/// reports: the first list is write calls, the second read calls.
macro_rules! units_of {
    ($output:expr; writes: $($w:path),+; reads: $($r:path),+ $(,)?) => {{
        let mut out = (0.0, 0.0);
        $(
            if let Some(o) = $output.downcast_ref::<$w>() {
                out = (Reported::units(o.consumed_capacity()), 0.0);
            }
        )+
        $(
            if let Some(o) = $output.downcast_ref::<$r>() {
                out = (0.0, Reported::units(o.consumed_capacity()));
            }
        )+
        out
    }};
}

/// What a call's answer reports: one entry or one per table.
trait Reported {
    fn units(self) -> f64;
}

impl Reported for Option<&ConsumedCapacity> {
    fn units(self) -> f64 {
        self.and_then(ConsumedCapacity::capacity_units).unwrap_or(0.0)
    }
}

impl Reported for &[ConsumedCapacity] {
    fn units(self) -> f64 {
        self.iter().filter_map(ConsumedCapacity::capacity_units).sum()
    }
}

impl Intercept for DynamoUsage {
    fn name(&self) -> &'static str {
        "batchq-dynamodb-usage"
    }

    fn modify_before_serialization(
        &self,
        context: &mut BeforeSerializationInterceptorContextMut<'_>,
        _rc: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        use aws_sdk_dynamodb::operation::*;
        let input = context.input_mut();
        ask_capacity!(
            input,
            put_item::PutItemInput,
            update_item::UpdateItemInput,
            delete_item::DeleteItemInput,
            get_item::GetItemInput,
            batch_get_item::BatchGetItemInput,
            batch_write_item::BatchWriteItemInput,
            transact_write_items::TransactWriteItemsInput,
            transact_get_items::TransactGetItemsInput,
            query::QueryInput,
            scan::ScanInput,
        );
        Ok(())
    }

    fn read_after_deserialization(
        &self,
        context: &AfterDeserializationInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Ok(output) = context.output_or_error() {
            use aws_sdk_dynamodb::operation::*;
            let (wcu, rcu): (f64, f64) = units_of!(output;
                writes: put_item::PutItemOutput, update_item::UpdateItemOutput, delete_item::DeleteItemOutput,
                    batch_write_item::BatchWriteItemOutput, transact_write_items::TransactWriteItemsOutput;
                reads: get_item::GetItemOutput, batch_get_item::BatchGetItemOutput,
                    transact_get_items::TransactGetItemsOutput, query::QueryOutput, scan::ScanOutput,
            );
            if wcu > 0.0 || rcu > 0.0 {
                self.0.record(|u| {
                    u.wcu += wcu;
                    u.rcu += rcu;
                });
            }
        }
        Ok(())
    }
}

/// Counts every S3 request sent by its price class.
#[derive(Debug, Clone)]
pub struct S3Usage(pub Arc<UsageTally>);

/// An S3 request's price class, from its method and query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum S3Class {
    /// PUT, COPY, POST, LIST (and the multipart calls).
    Put,
    /// GET, HEAD and the rest.
    Get,
    /// DELETE, the multi-object delete and aborting an upload.
    Free,
}

impl S3Class {
    /// The class of a request of `method` with `query` (no leading `?`).
    pub fn of(method: &str, query: &str) -> Self {
        let has = |name: &str| query.split('&').any(|p| p.split('=').next().is_some_and(|k| k == name));
        match method {
            "DELETE" => S3Class::Free,
            "POST" if has("delete") => S3Class::Free,
            "PUT" | "POST" => S3Class::Put,
            // Listings: objects (v2 and v1) and multipart uploads.
            "GET" if has("list-type") || has("prefix") || has("uploads") => S3Class::Put,
            _ => S3Class::Get,
        }
    }
}

impl Intercept for S3Usage {
    fn name(&self) -> &'static str {
        "batchq-s3-usage"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let req = context.request();
        let query = req.uri().split_once('?').map_or("", |(_, q)| q);
        match S3Class::of(req.method(), query) {
            S3Class::Put => self.0.record(|u| u.s3_put_class += 1),
            S3Class::Get => self.0.record(|u| u.s3_get_class += 1),
            S3Class::Free => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::S3Class;

    #[test]
    fn s3_requests_are_classed_as_aws_prices_them() {
        assert_eq!(S3Class::of("PUT", ""), S3Class::Put);
        assert_eq!(S3Class::of("PUT", "partNumber=1&uploadId=x"), S3Class::Put);
        assert_eq!(S3Class::of("POST", "uploads"), S3Class::Put);
        assert_eq!(S3Class::of("GET", "list-type=2&prefix=a"), S3Class::Put);
        assert_eq!(S3Class::of("GET", ""), S3Class::Get);
        assert_eq!(S3Class::of("HEAD", ""), S3Class::Get);
        assert_eq!(S3Class::of("DELETE", "uploadId=x"), S3Class::Free);
        assert_eq!(S3Class::of("POST", "delete"), S3Class::Free);
    }
}
