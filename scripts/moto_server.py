"""moto_server with two DynamoDB hot spots made proportional to the work.

moto 5.2.5 makes a deep copy of a whole table before *each* action of a
TransactWriteItems call, so it can restore the table if the transaction is
cancelled. A 100-action transaction against a table of a few thousand items
copies the table 100 times: a test of a few thousand requests then spends
minutes (and gigabytes) in moto instead of in batchq.

The replacement keeps moto's semantics (conditions checked in order,
all-or-nothing, CancellationReasons per action, ALL_OLD on a failed
condition) but records only the items the transaction touches and puts them
back on rollback.

A Query on a table's own key also walks and sorts every item of the table;
here it looks at the items under the queried partition key only (the result
is the same: moto filters on that key anyway). A Query on an index walks
the table without sorting it first (moto sorts the matches by the index key
and the table key anyway): sorting 150,000 items took a second per page.

moto_server answers requests on several threads, and moto's DynamoDB
backend takes no lock: two conditional writes to one item can both pass
their condition and the later one silently overwrites the earlier (and an
`attempts + 1` can be lost). DynamoDB never does that, and batchq's
correctness rests on it, so every DynamoDB request is served under one lock
here (a test saw a request claimed by two concurrent submit runs before).

With BATCHQ_MOTO_METER=1 (`make bench`) it also counts every call and the
DynamoDB capacity units it would consume: see moto_meter.py.

Everything else is stock moto. Usage: python moto_server.py -H HOST -p PORT
"""

import copy
import os
import sys
import threading

from moto.dynamodb.exceptions import (
    ConditionalCheckFailed,
    MockValidationException,
    MultipleTransactionsException,
    TooManyTransactionsException,
    TransactionCanceledException,
    TransactWriteSingleOpException,
)
from moto.dynamodb.comparisons import get_filter_expression
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.table import Table
from moto.dynamodb.responses import DynamoHandler


def transact_write_items(self, transact_items):
    if len(transact_items) > 100:
        raise TooManyTransactionsException()
    undo = []  # (table_name, key, item before the action or None)
    targets = set()
    errors = []

    def rollback():
        for table_name, key, before in reversed(undo):
            if before is None:
                self.delete_item(table_name, key)
            else:
                self.put_item(table_name, before.to_json()["Attributes"], overwrite=True)

    for action in transact_items:
        original_item = None
        if len(action) > 1:
            raise TransactWriteSingleOpException
        try:
            op_type, op = next(iter(action.items()))
            if op_type not in {"ConditionCheck", "Put", "Delete", "Update"}:
                raise ValueError("Unsupported transaction operation")
            table_name = op["TableName"]
            cond = op.get("ConditionExpression")
            names = op.get("ExpressionAttributeNames")
            values = op.get("ExpressionAttributeValues")
            if op_type == "Put":
                attrs = op["Item"]
                table = self.get_table(table_name)
                key = {table.hash_key_attr: attrs[table.hash_key_attr]}
                if table.range_key_attr is not None:
                    key[table.range_key_attr] = attrs[table.range_key_attr]
            else:
                key = op["Key"]
            unique = (str(table_name), str(dict(sorted(key.items()))))
            if unique in targets:
                raise MultipleTransactionsException()
            targets.add(unique)

            current = self.get_item(table_name, key)
            if cond is not None and not get_filter_expression(cond, names, values).expr(current):
                if op.get("ReturnValuesOnConditionCheckFailure") == "ALL_OLD" and current:
                    original_item = current.to_json()["Attributes"]
                raise ConditionalCheckFailed(item=original_item)

            if op_type != "ConditionCheck":
                undo.append((table_name, key, copy.deepcopy(current)))
            if op_type == "Put":
                self.put_item(
                    table_name,
                    op["Item"],
                    condition_expression=cond,
                    expression_attribute_names=names,
                    expression_attribute_values=values,
                )
            elif op_type == "Delete":
                self.delete_item(
                    table_name,
                    key,
                    condition_expression=cond,
                    expression_attribute_names=names,
                    expression_attribute_values=values,
                )
            elif op_type == "Update":
                self.update_item(
                    table_name,
                    key,
                    update_expression=op["UpdateExpression"],
                    condition_expression=cond,
                    expression_attribute_names=names,
                    expression_attribute_values=values,
                )
            errors.append((None, None, None))
        except (MultipleTransactionsException, MockValidationException):
            rollback()
            raise
        except ConditionalCheckFailed as e:
            errors.append(("ConditionalCheckFailed", str(e.message), original_item))
        except Exception as e:  # noqa: BLE001 - reported per action, as moto does
            errors.append((type(e).__name__, str(e), original_item))

    if any(code is not None for code, _, _ in errors):
        rollback()
        raise TransactionCanceledException(errors)


DynamoDBBackend.transact_write_items = transact_write_items

_partition = threading.local()
_all_items = Table.all_items
_query = Table.query


def all_items(self):
    only = getattr(_partition, "only", None)
    if only is None or only[0] is not self:
        if getattr(_partition, "unsorted", None) is self:
            if self.range_key_attr:
                return [item for bucket in self.items.values() for item in bucket.values()]
            return list(self.items.values())
        return _all_items(self)
    bucket = self.items.get(only[1])
    if bucket is None:
        return []
    items = list(bucket.values()) if self.range_key_attr else [bucket]
    return sorted(items, key=lambda x: (x.hash_key, x.range_key) if x.range_key else x.hash_key)


def query(self, *args, **kwargs):
    hash_key = args[0] if args else kwargs.get("hash_key")
    index_name = kwargs["index_name"] if "index_name" in kwargs else (args[7] if len(args) > 7 else None)
    if index_name:
        # moto sorts the index's matches by the index key and the table key
        # afterwards, so the sort of the whole table first changes nothing.
        _partition.unsorted = self
        try:
            return _query(self, *args, **kwargs)
        finally:
            _partition.unsorted = None
    if hash_key is None:
        return _query(self, *args, **kwargs)
    _partition.only = (self, hash_key)
    try:
        return _query(self, *args, **kwargs)
    finally:
        _partition.only = None


Table.all_items = all_items
Table.query = query

_dynamodb_lock = threading.Lock()
_call_action = DynamoHandler.call_action


def call_action(self):
    with _dynamodb_lock:
        return _call_action(self)


DynamoHandler.call_action = call_action

if os.environ.get("BATCHQ_MOTO_METER") == "1":
    import moto_meter

    moto_meter.install(_dynamodb_lock, _call_action)

if __name__ == "__main__":
    from moto.server import main

    sys.exit(main())
