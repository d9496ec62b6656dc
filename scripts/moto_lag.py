"""Global secondary index lag in the emulator, per table, on request.

A real DynamoDB global secondary index is eventually consistent: an item
written at t shows up in (or changes in, or leaves) an index query some
time after t, usually under a second, more under load. moto's indexes are
exact, so code that is only correct with an exact index (an item claimed
and removed from the queue index is listed again by the next query; a new
request is not listed yet) passes every test here and fails in AWS. A test
can ask for the lag instead:

  POST /_batchq/index-lag  {"table": "<table name>", "ms": 300}
       -> {"tables": {"<table name>": 300, ...}}   (ms 0 removes the lag)
  GET  /_batchq/index-lag  -> {"tables": {...}}

Per table, because many tests with their own table names share one emulator.

With a lag of `ms` on a table, a Query or Scan on one of its global
secondary indexes answers as if the index were the table `ms` ago: each
item as it was then, with the attributes it had then, or absent if it did
not exist then (or lacked the index key then). Every write newer than that
is invisible to the index, removals of index attributes included. Queries
on the table's key, GetItem, BatchGetItem, TransactGetItems and local
secondary indexes (which can be read consistently) are never lagged.

How: for a lagged table, moto_server.py calls before_write/after_write
around each DynamoDB write call (PutItem, UpdateItem, DeleteItem,
BatchWriteItem, TransactWriteItems), under its DynamoDB lock. The items the
call names are copied before and after; an item that changed gets a
version (time of the call, its attributes or None when deleted) in the
table's history. The call is the unit, so a cancelled transaction, whose
rollback puts everything back, leaves no history, and a transaction's
writes appear in the index together, as they happen together. An index
query builds its candidates from each item's version at now - ms (its
current version when it has no history newer than that) and moto filters,
sorts and pages them as usual; ExclusiveStartKey works on that view.

History is kept from the moment the lag is set (items written before it
are seen as they are now) and pruned to the lag: versions older than
now - ms collapse into one, and an item whose history is all older than
that goes back to being read from the table. So memory is one copy per
item written within the last `ms`, plus a copy of each item's state before
its oldest kept version.

Limits: writes through PartiQL (ExecuteStatement, ExecuteTransaction,
BatchExecuteStatement) are not seen (a lagged index shows them at once,
once the item's other history has aged out); the lag is a fixed delay per
table (real lag varies and is not monotonic between items); lags are named
by table name across accounts and regions.
"""

import copy
import json
import threading
import time

from moto.dynamodb.models.dynamo_type import DynamoType

_lag_ms = {}  # table name -> ms (> 0)
_histories = {}  # table name -> (Table, {(hash, range): _Entry})
_guard = threading.Lock()  # the admin's own; writes and queries hold the DynamoDB lock


class _Entry:
    """An item's history: `base` (an Item or None) until the first of
    `versions`, [(monotonic time, Item or None)], oldest first."""

    __slots__ = ("base", "versions")

    def __init__(self, base):
        self.base = base
        self.versions = []


def active():
    return bool(_lag_ms)


def index_lag(table, index_name):
    """Seconds of lag of a Query or Scan on `index_name`, or None."""
    if not _lag_ms or not index_name:
        return None
    ms = _lag_ms.get(table.name)
    if ms is None or not any(i.name == index_name for i in table.global_indexes or ()):
        return None
    return ms / 1000.0


def _table_name(name):
    # A TableName may be the table's ARN: arn:aws:dynamodb:REGION:ACCOUNT:table/NAME
    if isinstance(name, str) and name.startswith("arn:"):
        return name.rpartition("/")[2]
    return name


def _targets(op, params):
    """(table name, "Item" or "Key", attributes) of each item a write call names."""
    if op == "PutItem":
        yield params.get("TableName"), "Item", params.get("Item")
    elif op in ("UpdateItem", "DeleteItem"):
        yield params.get("TableName"), "Key", params.get("Key")
    elif op == "BatchWriteItem":
        for table_name, requests in (params.get("RequestItems") or {}).items():
            for r in requests or ():
                if "PutRequest" in r:
                    yield table_name, "Item", r["PutRequest"].get("Item")
                elif "DeleteRequest" in r:
                    yield table_name, "Key", r["DeleteRequest"].get("Key")
    elif op == "TransactWriteItems":
        for action in params.get("TransactItems") or ():
            for kind, spec in action.items():
                if kind == "Put":
                    yield spec.get("TableName"), "Item", spec.get("Item")
                elif kind in ("Update", "Delete"):
                    yield spec.get("TableName"), "Key", spec.get("Key")


def _key(table, attrs):
    hash_key = DynamoType(attrs[table.hash_key_attr])
    range_key = DynamoType(attrs[table.range_key_attr]) if table.range_key_attr else None
    return hash_key, range_key


def _current(table, key):
    bucket = table.items.get(key[0])
    if bucket is None or key[1] is None:
        return bucket
    return bucket.get(key[1])


def before_write(backend, op, params):
    """The items of lagged tables a write call names, with their state now:
    [(table, key, Item copy or None)], or None when none is lagged."""
    pending = {}
    for table_name, _, attrs in _targets(op, params or {}):
        name = _table_name(table_name)
        if name not in _lag_ms or not isinstance(attrs, dict):
            continue
        try:
            table = backend.get_table(table_name)
            key = _key(table, attrs)
        except Exception:  # noqa: BLE001 - a malformed request is moto's to refuse
            continue
        if (id(table), key) not in pending:
            pending[(id(table), key)] = (table, key, copy.deepcopy(_current(table, key)))
    return list(pending.values()) or None


def _json(item):
    return None if item is None else item.to_json()


def _settle(entry, horizon):
    """Folds the versions at or before `horizon` into `base`."""
    versions = entry.versions
    n = 0
    while n < len(versions) and versions[n][0] <= horizon:
        n += 1
    if n:
        entry.base = versions[n - 1][1]
        del versions[:n]


def _entries(table):
    held = _histories.get(table.name)
    if held is None or held[0] is not table:  # a new table of that name
        held = _histories[table.name] = (table, {})
    return held[1]


def after_write(pending):
    """Records a version of each pending item the call changed."""
    now = time.monotonic()
    for table, key, before in pending:
        ms = _lag_ms.get(table.name)
        if ms is None:
            continue
        after = _current(table, key)
        if _json(before) == _json(after):
            continue  # not written: a failed condition, a cancelled transaction
        entries = _entries(table)
        entry = entries.get(key)
        if entry is None:
            entry = entries[key] = _Entry(before)
        entry.versions.append((now, copy.deepcopy(after)))
        _settle(entry, now - ms / 1000.0)


def view(table, items, seconds):
    """The items of `table` as they were `seconds` ago (`items`: its items now)."""
    held = _histories.get(table.name)
    if held is None or held[0] is not table or not held[1]:
        return list(items)
    entries = held[1]
    horizon = time.monotonic() - seconds
    out = [item for item in items if (item.hash_key, item.range_key) not in entries]
    for key, entry in list(entries.items()):
        _settle(entry, horizon)
        if entry.versions:
            if entry.base is not None:
                out.append(entry.base)
        else:  # all its history is older than the lag: it is as it is now
            del entries[key]
            current = _current(table, key)
            if current is not None:
                out.append(current)
    return out


def admin(environ, lock):
    """(status, JSON answer) of /_batchq/index-lag; `lock` is the DynamoDB lock."""
    method = environ.get("REQUEST_METHOD", "GET")
    if method == "POST":
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = json.loads(environ["wsgi.input"].read(length) or b"{}")
            table, ms = body["table"], body["ms"]
            if not isinstance(table, str) or not table or isinstance(ms, bool) or not isinstance(ms, int) or ms < 0:
                raise ValueError
        except (KeyError, TypeError, ValueError):
            return 400, {"error": 'expected {"table": "<table name>", "ms": <int >= 0>}'}
        table = _table_name(table)
        with lock, _guard:
            # History starts (or ends) now: none of the old one is right for the new lag.
            _histories.pop(table, None)
            if ms:
                _lag_ms[table] = ms
            else:
                _lag_ms.pop(table, None)
    elif method != "GET":
        return 405, {"error": "GET or POST"}
    with _guard:
        return 200, {"tables": dict(sorted(_lag_ms.items()))}
