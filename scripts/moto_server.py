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
is the same: moto filters on that key anyway). A Query on an index walks the
whole table, sorts the matches and walks them to the page's start on every
page; see "Index queries" below for how that is made proportional to the
page (a 50,000-request submit or ingest spent most of its time there).

moto also parses an UpdateExpression on every call (kept per string here)
and a transaction's conditions twice (once here).

moto_server answers requests on several threads, and moto's DynamoDB
backend takes no lock: two conditional writes to one item can both pass
their condition and the later one silently overwrites the earlier (and an
`attempts + 1` can be lost). DynamoDB never does that, and batchq's
correctness rests on it, so every DynamoDB request is served under one lock
here (a test saw a request claimed by two concurrent submit runs before).

Two things moto lacks, for tests, each costing a look-up when unused:
- the calls of every access key id starting with `fn-` (one per Lambda
  function in the tests) are recorded, for the IAM check: see moto_calls.py
  (`GET /_batchq/calls?key=...`);
- a table's global secondary indexes can lag behind it, as DynamoDB's do:
  see moto_lag.py (`POST /_batchq/index-lag`).

With BATCHQ_MOTO_METER=1 (`make bench`) it also counts every call and the
DynamoDB capacity units it would consume: see moto_meter.py.

Everything else is stock moto. Usage: python moto_server.py -H HOST -p PORT
"""

import bisect
import copy
import json
import operator
import os
import re
import sys
import threading

from moto.dynamodb.exceptions import (
    ConditionalCheckFailed,
    ItemSizeTooLarge,
    ItemSizeToUpdateTooLarge,
    MockValidationException,
    MultipleTransactionsException,
    TooManyTransactionsException,
    TransactionCanceledException,
    TransactWriteSingleOpException,
)
from moto.dynamodb.comparisons import get_filter_expression
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.dynamo_type import DynamoType
from moto.dynamodb.parsing.expressions import UpdateExpressionParser
from moto.dynamodb.parsing.reserved_keywords import ReservedKeywords
from moto.dynamodb.models.table import Table
from moto.core.responses import ActionResult
from moto.dynamodb.responses import DynamoHandler, DynamoResult
from moto.moto_server.werkzeug_app import DomainDispatcherApplication

import moto_calls
import moto_lag


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
                    condition_expression=None,  # checked above, under the lock
                    expression_attribute_names=names,
                    expression_attribute_values=values,
                )
            elif op_type == "Delete":
                self.delete_item(
                    table_name,
                    key,
                    condition_expression=None,  # checked above, under the lock
                    expression_attribute_names=names,
                    expression_attribute_values=values,
                )
            elif op_type == "Update":
                expression = op["UpdateExpression"]
                table = self.get_table(table_name)
                if not _simple_update(table, current, expression, names or {}, values or {}):
                    self.update_item(
                        table_name,
                        key,
                        update_expression=expression,
                        condition_expression=None,  # checked above, under the lock
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


# moto validates an UpdateExpression by walking its tree a dozen times (on a
# deep copy), which was most of a transaction's time. The shape batchq sends,
# `SET a = :v, #b = c + :w REMOVE d, e` on plain top-level names, is applied
# here directly, as moto would; anything else, or anything moto would refuse
# (a missing value or attribute, a key attribute, a number that is not one,
# two actions on one attribute, an empty string), goes to moto's
# update_item, which refuses it with moto's own message. The expression has
# been parsed by moto already (moto's transact handler), so its syntax and
# reserved words are checked. Applied only inside a transaction (its
# rollback covers a failure half-way) to an existing item of a table
# without a stream.
_NAME = r"#?[A-Za-z_][A-Za-z0-9_]*"
_OPERAND = rf"(?::[A-Za-z0-9_]+|{_NAME})"
_SET_ACTION = re.compile(rf"^\s*({_NAME})\s*=\s*({_OPERAND})\s*(?:([+-])\s*({_OPERAND})\s*)?$")
_CLAUSES = re.compile(r"^\s*SET\s+(.*?)(?:\s+REMOVE\s+(.*?))?\s*$", re.IGNORECASE | re.DOTALL)
_REMOVE_NAME = re.compile(rf"^\s*({_NAME})\s*$")


_RESERVED = frozenset(ReservedKeywords.get_reserved_keywords())
_shapes = {}  # expression -> ([(target, left, sign, right)], [removed]) or None


def _update_shape(expression):
    """The SET actions and REMOVE names of an expression of the simple shape,
    or None; read once per expression string (it depends on nothing else)."""
    if expression in _shapes:
        return _shapes[expression]
    shape = None
    clauses = _CLAUSES.match(expression)
    plain = re.findall(r"(?<![:#A-Za-z0-9_])[A-Za-z_][A-Za-z0-9_]*", expression)
    if (
        clauses
        and not re.search(r"\b(SET|REMOVE|ADD|DELETE)\b", clauses.group(1), re.IGNORECASE)
        # moto refuses a reserved word as a name
        and not any(n.upper() in _RESERVED for n in plain if n.upper() not in ("SET", "REMOVE"))
    ):
        sets = [_SET_ACTION.match(action) for action in clauses.group(1).split(",")]
        removes = [_REMOVE_NAME.match(raw) for raw in (clauses.group(2) or "").split(",") if clauses.group(2)]
        if all(sets) and all(removes):
            shape = ([m.groups() for m in sets], [m.group(1) for m in removes])
    if len(_shapes) < 10_000:
        _shapes[expression] = shape
    return shape


def _simple_update(table, item, expression, names, values):
    if item is None or table.stream_shard is not None:
        return False
    shape = _update_shape(expression)
    if shape is None:
        return False

    def name(raw):
        return names.get(raw) if raw.startswith("#") else raw

    def operand(raw):
        if raw.startswith(":"):
            v = values.get(raw)
            return None if v is None else DynamoType(v)
        n = name(raw)
        v = item.attrs.get(n) if n is not None else None
        return None if v is None else copy.deepcopy(v)

    sets = []
    for target, left, sign, right in shape[0]:
        value = operand(left)
        if value is None:
            return False
        if sign:
            other = operand(right)
            if other is None or value.type != "N" or other.type != "N":
                return False
            value = value + other if sign == "+" else value - other
        if value.type in ("S", "B") and value.value == "":
            return False
        sets.append((name(target), value))
    removes = [name(raw) for raw in shape[1]]
    targets = [t for t, _ in sets] + removes
    if None in targets or len(set(targets)) != len(targets) or set(targets) & set(table.table_key_attrs):
        return False
    try:
        for target, value in sets:
            item.attrs[target] = value
    except ItemSizeTooLarge:
        raise ItemSizeToUpdateTooLarge()
    for target in removes:
        item.attrs.pop(target, None)
    return True


_partition = threading.local()
_all_items = Table.all_items
_query = Table.query


def _items(self):
    if self.range_key_attr:
        return (item for bucket in self.items.values() for item in bucket.values())
    return iter(self.items.values())


# Index queries. moto answers each page of a Query on an index by walking
# every item of the table, checking each with typed comparisons, sorting the
# matches by comparing DynamoType tuples, and walking them again up to the
# page's ExclusiveStartKey. Paging through a 50,000-request partition made
# each page cost about a second, most of a 50,000-request submit or ingest.
# Here, for a query on an index partition key alone (what batchq sends):
# - the walk keeps only items whose partition key is the queried string,
#   compared raw, before moto's own checks (which still run);
# - the matches are sorted once on cast values computed once per item, and
#   the sorted list is kept until the next DynamoDB call that may write
#   (any operation but a read bumps `_generation`, under the lock);
# - a page starts by binary search after its ExclusiveStartKey (moto skips
#   every item whose key tuple is at or before it) and, without a range
#   condition or a legacy filter, holds at most Limit + 1 items: moto stops
#   at Limit and needs the next one only to know there is more.
_generation = [0]
_sorted_matches = {}  # (table id, index, wanted) -> (generation, attrs, keys, items)


class _IndexQuery:
    def __init__(self, table, wanted, cache_key, start, limit, lag):
        self.table = table
        self.wanted = wanted  # ((attribute, raw string value), ...) to keep
        self.cache_key = cache_key  # None: not cacheable
        self.start = start  # ExclusiveStartKey (forward queries only) or None
        self.limit = limit  # page bound or None
        self.lag = lag  # seconds the index lags behind the table (moto_lag.py) or None
        self.hit = None


_first = operator.itemgetter(0)


def _value(v):
    return v.value if v.type == "S" else v.cast_value


def _page(query, attrs, keys, items):
    first = 0
    if query.start is not None and all(key in query.start for key in attrs):
        bound = tuple(_value(DynamoType(query.start[key])) for key in attrs)
        first = bisect.bisect_right(keys, bound)
    last = len(items) if query.limit is None else first + query.limit + 1
    return items[first:last]


def all_items(self):
    only = getattr(_partition, "only", None)
    if only is None or only[0] is not self:
        query = getattr(_partition, "index_query", None)
        if query is not None and query.table is self:
            if query.hit is not None:
                _, attrs, keys, items = query.hit
                return _page(query, attrs, keys, items)
            wanted = query.wanted
            items = _items(self) if query.lag is None else moto_lag.view(self, _items(self), query.lag)
            if not wanted:
                return list(items)
            out = []
            for item in items:
                attrs = item.attrs
                for name, value in wanted:
                    v = attrs.get(name)
                    if v is None or v.type != "S" or v.value != value:
                        break
                else:
                    out.append(item)
            return out
        return _all_items(self)
    bucket = self.items.get(only[1])
    if bucket is None:
        return []
    items = list(bucket.values()) if self.range_key_attr else [bucket]
    return sorted(items, key=lambda x: (x.hash_key, x.range_key) if x.range_key else x.hash_key)


def _arg(args, kwargs, name, position, default=None):
    if name in kwargs:
        return kwargs[name]
    return args[position] if len(args) > position else default


def query(self, *args, **kwargs):
    hash_key = _arg(args, kwargs, "hash_key", 0)
    index_name = _arg(args, kwargs, "index_name", 7)
    if index_name:
        conditions = kwargs.get("hash_key_conditions") or []
        wanted = tuple((name, v.value) for name, v in conditions if v.type == "S")
        forward = _arg(args, kwargs, "scan_index_forward", 5, True) is not False
        plain = (
            forward
            and len(wanted) == len(conditions) > 0
            and not _arg(args, kwargs, "range_comparison", 1)
            and not kwargs.get("range_key_conditions")
            and not (set(kwargs) - _QUERY_KWARGS)
        )
        start = _arg(args, kwargs, "exclusive_start_key", 4) if forward else None
        limit = _arg(args, kwargs, "limit", 3) if plain else None
        # A lagged index's view changes with time, not only with writes: never kept.
        lag = moto_lag.index_lag(self, index_name)
        cache_key = (id(self), index_name, wanted) if plain and lag is None else None
        query = _IndexQuery(self, wanted, cache_key, start or None, limit or None, lag)
        if query.cache_key is not None:
            cached = _sorted_matches.get(query.cache_key)
            if cached is not None and cached[0] == _generation[0]:
                query.hit = cached
        _partition.index_query = query
        try:
            return _query(self, *args, **kwargs)
        finally:
            _partition.index_query = None
    if hash_key is None:
        return _query(self, *args, **kwargs)
    _partition.only = (self, hash_key)
    try:
        return _query(self, *args, **kwargs)
    finally:
        _partition.only = None


# Keyword arguments of Table.query that are not legacy filters (`**filter_kwargs`).
_QUERY_KWARGS = {
    "hash_key",
    "range_comparison",
    "range_objs",
    "limit",
    "exclusive_start_key",
    "scan_index_forward",
    "projection_expressions",
    "index_name",
    "consistent_read",
    "filter_expression",
    "hash_key_conditions",
    "range_key_conditions",
}


def sorted_items(self, hash_key_attrs, range_key_attrs, items):
    query = getattr(_partition, "index_query", None)
    if query is not None and query.table is self and query.hit is not None:
        return items  # a page of the kept sorted list, in order
    # moto's key is a tuple of DynamoType, whose comparisons compute
    # cast_value on each call; the key attributes of a table or index have
    # one scalar type each, so comparing the cast values orders alike.
    attrs = self._generate_attr_to_sort_by(hash_key_attrs, range_key_attrs)
    getter = operator.itemgetter(*attrs)
    if len(attrs) == 1:
        keyed = sorted((((_value(getter(x.attrs)),), x) for x in items), key=_first)
    else:
        keyed = sorted(((tuple(map(_value, getter(x.attrs))), x) for x in items), key=_first)
    keys = [k for k, _ in keyed]
    ordered = [x for _, x in keyed]
    if query is None or query.table is not self:
        items[:] = ordered
        return items
    if query.cache_key is not None:
        _sorted_matches[query.cache_key] = (_generation[0], attrs, keys, ordered)
        if len(_sorted_matches) > 64:
            _sorted_matches.pop(next(iter(_sorted_matches)))
    items[:] = _page(query, attrs, keys, ordered)
    return items


_has_idx_items = Table.has_idx_items


def has_idx_items(self, index_name):
    """The items of a Scan on an index: those with every index key attribute,
    as they were `lag` ago on a lagged index."""
    lag = moto_lag.index_lag(self, index_name)
    if lag is None:
        return _has_idx_items(self, index_name)
    names = {k["AttributeName"] for k in self.get_index(index_name).schema}
    return [item for item in moto_lag.view(self, _items(self), lag) if names.issubset(item.attrs)]


Table.all_items = all_items
Table.query = query
Table.sorted_items = sorted_items
Table.has_idx_items = has_idx_items

# moto parses an UpdateExpression on every call; the validator works on a
# deep copy of the tree it is given, so one tree per expression string can
# be shared (batchq sends a handful of distinct expressions, many times).
_update_trees = {}
_make_update_tree = UpdateExpressionParser.make.__func__


def make_update_tree(cls, expression_str):
    tree = _update_trees.get(expression_str)
    if tree is None:
        tree = _make_update_tree(cls, expression_str)
        if len(_update_trees) < 10_000:
            _update_trees[expression_str] = tree
    return tree


UpdateExpressionParser.make = classmethod(make_update_tree)

# moto serializes an answer by walking it against the botocore model, value
# by value: a page of 1,000 items took over half a second, more than finding
# them. Items are DynamoDB JSON already (moto's `dynamo_to_dict`), which is
# their wire form, so the answer without its items goes through moto's
# serializer and the items are put in as they are. Anything that is not
# plain JSON falls back to moto's way.
_ITEM_MEMBERS = ("Items", "Item", "Responses")
_execute_result = DynamoResult.execute_result


def execute_result(self, context):
    result = self.result
    heavy = {}
    if isinstance(result, dict) and context.operation_model.name in ("Query", "Scan", "GetItem", "BatchGetItem"):
        heavy = {k: result[k] for k in _ITEM_MEMBERS if k in result}
    if not heavy:
        return _execute_result(self, context)
    try:
        items = json.dumps(heavy, separators=(",", ":"))
    except (TypeError, ValueError):
        return _execute_result(self, context)
    light = ActionResult({k: v for k, v in result.items() if k not in heavy})
    status, headers, body = _execute_result(light, context)
    envelope = (body or "{}").strip()
    if not (envelope.startswith("{") and envelope.endswith("}")):
        return _execute_result(self, context)
    if envelope[1:-1].strip():
        body = envelope[:-1] + "," + items[1:]
    else:
        body = items
    return status, headers, body


DynamoResult.execute_result = execute_result

_dynamodb_lock = threading.Lock()
_call_action = DynamoHandler.call_action

# Operations that never change an item; any other one invalidates the kept
# sorted index matches (see all_items).
_READS = {
    "GetItem",
    "BatchGetItem",
    "Query",
    "Scan",
    "TransactGetItems",
    "DescribeTable",
    "ListTables",
    "DescribeTimeToLive",
    "DescribeContinuousBackups",
    "ListTagsOfResource",
    "DescribeEndpoints",
    "DescribeLimits",
}


def _answer(self):
    """Answers a DynamoDB call; the caller holds _dynamodb_lock. Also keeps
    the history of lagged tables (moto_lag.py) and records the calls of
    `fn-` keys (moto_calls.py); each costs a look-up when not needed."""
    op = (self.headers.get("X-Amz-Target") or "").rpartition(".")[2]
    pending = None
    if op not in _READS:
        _generation[0] += 1
        if moto_lag.active():
            pending = moto_lag.before_write(self.dynamodb_backend, op, getattr(self, "params", None))
    who = moto_calls.header_key(self.headers.get("Authorization"))
    status = 500
    try:
        response = _call_action(self)
        status = response[0] if isinstance(response, tuple) else 200
        return response
    finally:
        if pending:
            moto_lag.after_write(pending)
        if who is not None:
            moto_calls.record_dynamodb(who[0], op, getattr(self, "params", None), status)


def call_action(self):
    with _dynamodb_lock:
        return _answer(self)


DynamoHandler.call_action = call_action

# The emulator's own endpoints, and the recorder of `fn-` keys' calls around
# every other request (moto_calls.py). The meter, when installed, wraps this.
_dispatch = DomainDispatcherApplication.__call__
_ADMIN = {
    "/_batchq/calls": moto_calls.admin,
    "/_batchq/index-lag": lambda environ: moto_lag.admin(environ, _dynamodb_lock),
}


def _app(self, environ, start_response):
    path = environ.get("PATH_INFO", "")
    if path.startswith("/_batchq/"):
        answer = _ADMIN.get(path)
        status, obj = answer(environ) if answer else (404, {"error": f"no {path} here"})
        body = json.dumps(obj, sort_keys=True).encode()
        reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}.get(status, "")
        start_response(f"{status} {reason}", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]
    who = moto_calls.environ_key(environ)
    if who is None:
        return _dispatch(self, environ, start_response)
    return moto_calls.recorded(who, lambda e, s: _dispatch(self, e, s), environ, start_response)


DomainDispatcherApplication.__call__ = _app

if os.environ.get("BATCHQ_MOTO_METER") == "1":
    import moto_meter

    moto_meter.install(_dynamodb_lock, _answer)

if __name__ == "__main__":
    from moto.server import main

    sys.exit(main())
