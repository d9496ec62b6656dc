"""A meter in the emulator, for `make bench`: every S3, DynamoDB and other
AWS call the server answers is counted by operation, and every DynamoDB call
is charged the read and write capacity units DynamoDB would charge.

Why here and not from ReturnConsumedCapacity: moto answers
ReturnConsumedCapacity with constants (1.0 per write whatever its size, an
empty list for TransactWriteItems), so the answers say nothing. The meter
applies DynamoDB's published rules to the items moto actually holds:

- a write costs ceil(max(item size before, after) / 1 KB) WCU, at least 1;
  twice that inside TransactWriteItems (ConditionCheck included); a write
  whose condition fails still costs its units; a cancelled transaction
  writes nothing but is charged for every action;
- each global secondary index the item is in (before or after) costs a
  write of the projected item; a write that moves the item's index key costs
  a delete plus a put;
- GetItem and each BatchGetItem key cost ceil(size / 4 KB) units, at least
  one, halved for eventually consistent reads; TransactGetItems doubles;
- Query and Scan cost ceil(total size of the returned items / 4 KB),
  at least one, halved for eventually consistent reads.

Item sizes are moto's (`Item.size()`: attribute names plus values).

A call that asks for ReturnConsumedCapacity (TOTAL or INDEXES) gets these
units in its answer's `ConsumedCapacity`, as DynamoDB answers it: one entry
(`TableName`, `CapacityUnits`, `ReadCapacityUnits`, `WriteCapacityUnits`)
for a one-table call, a list of them, one per table, for BatchWriteItem,
BatchGetItem, TransactWriteItems and TransactGetItems. A refused call
(a failed condition, a cancelled transaction) answers no units, as
DynamoDB's errors carry none, though it is charged for them.
Each operation also adds up the seconds the emulator spent answering it
(for DynamoDB: under its lock, metering included), to show where a phase's
wall time goes. `GET /_batchq/meter` answers the totals as JSON (`?key=K`:
only the calls signed with access key K, a `fn-` key as moto_calls.py
records; `refused_wcu`/`refused_rcu`: the units of refused calls, which
their answers do not report); `DELETE` resets them.
Installed by moto_server.py when BATCHQ_MOTO_METER=1.
"""

import json
import math
import threading
import time
import zlib

from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.responses import DynamoHandler
from moto.moto_server.werkzeug_app import DomainDispatcherApplication

import moto_calls
from moto_calls import s3_operation as _s3_op


def _key_of(environ):
    who = moto_calls.environ_key(environ)
    return who[0] if who else None

_lock = threading.Lock()
_totals = {}  # service -> op -> {"calls", "rcu", "wcu"}
_query_bytes = threading.local()


_by_key = {}  # `fn-` access key -> the same shape, that key's calls only


def _bump(service, op, rcu=0.0, wcu=0.0, seconds=0.0, key=None, refused=False):
    with _lock:
        for totals in [_totals] + ([_by_key.setdefault(key, {})] if key else []):
            entry = totals.setdefault(service, {}).setdefault(
                op, {"calls": 0, "rcu": 0.0, "wcu": 0.0, "seconds": 0.0, "refused_rcu": 0.0, "refused_wcu": 0.0}
            )
            entry["calls"] += 1
            entry["rcu"] += rcu
            entry["wcu"] += wcu
            entry["seconds"] += seconds
            if refused:
                entry["refused_rcu"] += rcu
                entry["refused_wcu"] += wcu


# The WSGI app the meter wraps: set by install (moto_server.py's, which
# answers the other /_batchq/ endpoints and records `fn-` keys' calls).
_dispatch = None


def _app(self, environ, start_response):
    path = environ.get("PATH_INFO", "")
    if path == "/_batchq/meter":
        query = environ.get("QUERY_STRING", "")
        key = query[4:] if query.startswith("key=") else None
        with _lock:
            if environ.get("REQUEST_METHOD") == "DELETE":
                _totals.clear()
                _by_key.clear()
            body = json.dumps(_by_key.get(key, {}) if key else _totals, sort_keys=True).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    started = time.perf_counter()
    # The answer is built here (moto answers with whole bodies), so this is
    # the emulator's time for the call, without the client's reading of it.
    response = _dispatch(self, environ, start_response)
    seconds = time.perf_counter() - started
    if target.startswith("DynamoDB_"):
        pass  # counted with its capacity and time in metered_call
    elif target:
        service, _, op = target.partition(".")
        _bump(service.lower(), op, seconds=seconds, key=_key_of(environ))
    elif not path.startswith(("/moto-api", "/_batchq/")):
        _bump("s3", _s3_op(environ), seconds=seconds, key=_key_of(environ))
    return response


# ---- DynamoDB capacity


def _units(size, per):
    return max(1, math.ceil(size / per))


def _snapshot(backend, table_name, key):
    """(size, {index: (index key, projected size)}) of the item now, or None."""
    try:
        table = backend.get_table(table_name)
        hash_key, range_key = backend.get_keys_value(table, key)
        item = table.get_item(hash_key, range_key)
    except Exception:  # noqa: BLE001 - a bad request is moto's to refuse
        return None
    if item is None:
        return None
    indexes = {}
    for index in table.global_indexes or []:
        attrs = index.schema_key_attrs
        if all(a in item.attrs for a in attrs):
            index_key = tuple(str(item.attrs[a].value) for a in attrs)
            indexes[index.name] = (index_key, index.project(item).size())
    return item.size(), indexes


def _item_key(backend, table_name, item):
    try:
        table = backend.get_table(table_name)
    except Exception:  # noqa: BLE001
        return {}
    key = {table.hash_key_attr: item.get(table.hash_key_attr)}
    if table.range_key_attr is not None:
        key[table.range_key_attr] = item.get(table.range_key_attr)
    return key


def _write_targets(backend, op, body):
    """[(table, key, factor, writes)] of a write call; writes=False for a ConditionCheck."""
    if op == "PutItem":
        return [(body["TableName"], _item_key(backend, body["TableName"], body.get("Item", {})), 1, True)]
    if op in ("UpdateItem", "DeleteItem"):
        return [(body["TableName"], body.get("Key", {}), 1, True)]
    if op == "BatchWriteItem":
        out = []
        for table_name, requests in body.get("RequestItems", {}).items():
            for r in requests:
                if "PutRequest" in r:
                    out.append((table_name, _item_key(backend, table_name, r["PutRequest"]["Item"]), 1, True))
                elif "DeleteRequest" in r:
                    out.append((table_name, r["DeleteRequest"]["Key"], 1, True))
        return out
    if op == "TransactWriteItems":
        out = []
        for action in body.get("TransactItems", []):
            kind, spec = next(iter(action.items()))
            key = _item_key(backend, spec["TableName"], spec["Item"]) if kind == "Put" else spec.get("Key", {})
            out.append((spec["TableName"], key, 2, kind != "ConditionCheck"))
        return out
    return []


def _write_units(before, after, factor, wrote):
    size_before = before[0] if before else 0
    size_after = after[0] if (after and wrote) else size_before
    units = factor * _units(max(size_before, size_after), 1024)
    if not wrote:
        return units
    old = before[1] if before else {}
    new = after[1] if after else {}
    for name in set(old) | set(new):
        o, n = old.get(name), new.get(name)
        if o and n and o[0] == n[0]:
            units += _units(n[1], 1024)
        else:
            if o:
                units += _units(o[1], 1024)
            if n:
                units += _units(n[1], 1024)
    return units


def _read_units(backend, op, body):
    """{table: read units} of a read call."""
    if op == "GetItem":
        snap = _snapshot(backend, body["TableName"], body.get("Key", {}))
        factor = 1.0 if body.get("ConsistentRead") else 0.5
        return {body["TableName"]: factor * _units(snap[0] if snap else 0, 4096)}
    if op == "BatchGetItem":
        out = {}
        for table_name, spec in body.get("RequestItems", {}).items():
            factor = 1.0 if spec.get("ConsistentRead") else 0.5
            for key in spec.get("Keys", []):
                snap = _snapshot(backend, table_name, key)
                out[table_name] = out.get(table_name, 0.0) + factor * _units(snap[0] if snap else 0, 4096)
        return out
    if op == "TransactGetItems":
        out = {}
        for action in body.get("TransactItems", []):
            spec = action.get("Get", {})
            table_name = spec.get("TableName", "")
            snap = _snapshot(backend, table_name, spec.get("Key", {}))
            out[table_name] = out.get(table_name, 0.0) + 2.0 * _units(snap[0] if snap else 0, 4096)
        return out
    if op in ("Query", "Scan"):
        factor = 1.0 if body.get("ConsistentRead") else 0.5
        return {body.get("TableName", ""): factor * _units(getattr(_query_bytes, "n", 0), 4096)}
    return {}


_MULTI_TABLE = ("BatchWriteItem", "BatchGetItem", "TransactWriteItems", "TransactGetItems")


def _with_consumed(response, op, body, rcu, wcu):
    """The answer with `ConsumedCapacity` as DynamoDB gives it, when asked."""
    if body.get("ReturnConsumedCapacity") not in ("TOTAL", "INDEXES"):
        return response
    status, headers, text = response if isinstance(response, tuple) else (200, {}, response)
    if status != 200:
        return response
    try:
        answer = json.loads(text) if text else {}
    except ValueError:
        return response
    entries = [
        {
            "TableName": t,
            "CapacityUnits": rcu.get(t, 0.0) + wcu.get(t, 0.0),
            "ReadCapacityUnits": rcu.get(t, 0.0),
            "WriteCapacityUnits": wcu.get(t, 0.0),
        }
        for t in sorted(set(rcu) | set(wcu))
    ]
    if op in _MULTI_TABLE:
        answer["ConsumedCapacity"] = entries
    elif entries:
        answer["ConsumedCapacity"] = entries[0]
    else:
        answer.pop("ConsumedCapacity", None)
    text = json.dumps(answer)
    if isinstance(headers, dict):
        # The checksum DynamoDB sends of its answer, of the new one.
        headers = {k: v for k, v in headers.items() if k.lower() not in ("content-length", "x-amz-crc32")}
        headers["x-amz-crc32"] = str(zlib.crc32(text.encode()))
    return (status, headers, text) if isinstance(response, tuple) else text


def _capture(original):
    def wrapper(self, *args, **kwargs):
        result = original(self, *args, **kwargs)
        _query_bytes.n = getattr(_query_bytes, "n", 0) + sum(item.size() for item in result[0])
        return result

    return wrapper


def install(lock, call_action):
    """Wraps the WSGI app and moto's DynamoHandler.call_action; `lock` is the
    one moto_server.py serves DynamoDB under, held here across the before
    and after look-ups too."""
    global _dispatch
    _dispatch = DomainDispatcherApplication.__call__
    DomainDispatcherApplication.__call__ = _app
    DynamoDBBackend.query = _capture(DynamoDBBackend.query)
    DynamoDBBackend.scan = _capture(DynamoDBBackend.scan)

    def metered_call(self):
        op = (self.headers.get("X-Amz-Target") or "").rpartition(".")[2]
        body = getattr(self, "params", None) or {}
        started = time.perf_counter()
        with lock:
            backend = self.dynamodb_backend
            try:
                targets = _write_targets(backend, op, body)
            except Exception:  # noqa: BLE001 - malformed: moto refuses it below
                targets = []
            before = [_snapshot(backend, t, k) for t, k, _, _ in targets]
            _query_bytes.n = 0
            response = call_action(self)
            status = response[0] if isinstance(response, tuple) else 200
            ok = status == 200
            wcu = {}
            for (t, k, factor, writes), b in zip(targets, before):
                after = _snapshot(backend, t, k) if ok else b
                wcu[t] = wcu.get(t, 0.0) + _write_units(b, after, factor, writes and ok)
            rcu = _read_units(backend, op, body) if ok or op in ("Query", "Scan") else {}
        who = moto_calls.header_key(self.headers.get("Authorization"))
        _bump(
            "dynamodb",
            op,
            sum(rcu.values()),
            sum(wcu.values()),
            time.perf_counter() - started,
            key=who[0] if who else None,
            refused=not ok,
        )
        return _with_consumed(response, op, body, rcu, wcu)

    DynamoHandler.call_action = metered_call
