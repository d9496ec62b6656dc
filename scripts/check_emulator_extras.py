"""Checks what scripts/moto_server.py adds to moto, which stock moto cannot
be compared with: the recorder of `fn-` keys' calls (moto_calls.py) and the
index lag (moto_lag.py).

- Recorder: a handful of boto3 calls signed with an `fn-check-...` key
  (DynamoDB put, update, index and table queries, transactions with two
  actions, one of them cancelled, a batch get over two tables; S3 put, head
  and get answered 404, get, multipart uploads, a listing; a presigned GET
  fetched with urllib; Secrets Manager create and get) must be recorded as
  exactly the expected records, a key not starting with `fn-` not at all,
  and DELETE forgets a key. With the meter installed too (a second server,
  BATCHQ_MOTO_METER=1) both answer and the meter still counts the calls.
- Index lag: with 300 ms on a table, an item put now is absent from an
  index query (and a Scan of the index) and present after ~350 ms; an item
  whose index attribute is removed, or that is deleted, is still listed,
  with its old attributes, until the lag passes; GetItem and table queries
  see every write at once; a cancelled transaction leaves nothing behind
  (not even between its time + lag and the next write's); pages with
  ExclusiveStartKey walk the lagged view; a table without lag next to it
  is unaffected; ms 0 restores immediate visibility. Then rounds of random
  writes to a lagged and an unlagged table alike: right after them the
  lagged index answers every query shape (forward, backward, Limit, range
  condition, Scan, paged) as both did before them, and once settled as
  the unlagged one.

check_emulator.py runs it against a patched server. Usage on its own:
python check_emulator_extras.py (starts its servers).
"""

import json
import os
import random
import secrets
import sys
import time
import urllib.request

import boto3
from botocore.config import Config

HERE = os.path.dirname(os.path.abspath(__file__))
LAG_MS = 300


def _show(value):
    return json.dumps(value, sort_keys=True, default=repr)


class Failures(list):
    def check(self, ok, what, got=None, expected=None):
        if ok:
            return
        if isinstance(got, list) and isinstance(expected, list) and len(got) + len(expected) > 6:
            missing = [_show(x) for x in expected if x not in got]
            extra = [_show(x) for x in got if x not in expected]
            detail = "".join(f"\n    missing: {m}" for m in missing) + "".join(f"\n    extra:   {e}" for e in extra)
            self.append(what + (detail or f"\n    got (in another order): {_show(got)}"))
        elif got is not None or expected is not None:
            self.append(f"{what}\n    got:      {_show(got)}\n    expected: {_show(expected)}")
        else:
            self.append(what)


def clients(url, key):
    common = dict(endpoint_url=url, region_name="us-east-1", aws_access_key_id=key, aws_secret_access_key="x")
    s3config = Config(signature_version="s3v4", s3={"addressing_style": "path"})
    return (
        boto3.client("dynamodb", **common),
        boto3.client("s3", config=s3config, **common),
        boto3.client("secretsmanager", **common),
    )


def admin(url, path, method="GET", body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url + path, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def quietly(call):
    try:
        call()
    except Exception:  # noqa: BLE001 - the refusal is part of what is recorded
        pass


def create_table(d, name, key="pk"):
    d.create_table(
        TableName=name,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": a, "AttributeType": "S"} for a in [key, "sk", "q", "qo"]],
        KeySchema=[{"AttributeName": key, "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "queue",
                "KeySchema": [{"AttributeName": "q", "KeyType": "HASH"}, {"AttributeName": "qo", "KeyType": "RANGE"}],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
    )


# ---- recorder


def rec(service, operation, resource, status, index=None):
    r = {"service": service, "operation": operation, "resource": resource, "status": status}
    if index:
        r["index"] = index
    return r


def ordered(records):
    return sorted(records, key=lambda r: (r["service"], r["operation"], r["resource"], r.get("index", ""), r["status"]))


def recorder(url, fail):
    run = secrets.token_hex(4)
    key = f"fn-check-{run}"
    presign_key = f"fn-check-presign-{run}"
    other = "AKIACHECKOTHER"
    od, os3, _ = clients(url, other)
    d, s3, sm = clients(url, key)
    t1, t2, bucket = f"calls-{run}", f"calls2-{run}", f"calls-{run}"
    create_table(od, t1)
    create_table(od, t2)
    os3.create_bucket(Bucket=bucket)
    od.put_item(TableName=t1, Item={"pk": {"S": "o"}, "sk": {"S": "o"}})
    os3.put_object(Bucket=bucket, Key="other/x", Body=b"o")

    item = {"pk": {"S": "a"}, "sk": {"S": "s"}, "q": {"S": "g"}, "qo": {"S": "1"}}
    d.put_item(TableName=t1, Item=item)
    d.update_item(TableName=t1, Key={"pk": {"S": "a"}, "sk": {"S": "s"}}, UpdateExpression="SET n = :n", ExpressionAttributeValues={":n": {"N": "1"}})
    d.query(TableName=t1, IndexName="queue", KeyConditionExpression="q = :q", ExpressionAttributeValues={":q": {"S": "g"}})
    d.query(TableName=t1, KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": "a"}})
    d.transact_write_items(
        TransactItems=[
            {"ConditionCheck": {"TableName": t1, "Key": {"pk": {"S": "a"}, "sk": {"S": "s"}}, "ConditionExpression": "attribute_exists(pk)"}},
            {"Delete": {"TableName": t2, "Key": {"pk": {"S": "b"}, "sk": {"S": "s"}}}},
        ]
    )
    quietly(
        lambda: d.transact_write_items(
            TransactItems=[
                {"Put": {"TableName": t1, "Item": item, "ConditionExpression": "attribute_not_exists(pk)"}},
                {"Update": {"TableName": t2, "Key": {"pk": {"S": "b"}, "sk": {"S": "s"}}, "UpdateExpression": "SET n = :n", "ExpressionAttributeValues": {":n": {"N": "1"}}}},
            ]
        )
    )
    d.batch_get_item(RequestItems={t1: {"Keys": [{"pk": {"S": "a"}, "sk": {"S": "s"}}]}, t2: {"Keys": [{"pk": {"S": "b"}, "sk": {"S": "s"}}]}})

    s3.put_object(Bucket=bucket, Key="bodies/a.json", Body=b"{}")
    quietly(lambda: s3.head_object(Bucket=bucket, Key="bodies/missing.json"))
    s3.get_object(Bucket=bucket, Key="bodies/a.json")["Body"].read()
    quietly(lambda: s3.get_object(Bucket=bucket, Key="top.txt"))
    up = s3.create_multipart_upload(Bucket=bucket, Key="results/big/1")["UploadId"]
    etag = s3.upload_part(Bucket=bucket, Key="results/big/1", UploadId=up, PartNumber=1, Body=b"x" * 10)["ETag"]
    s3.complete_multipart_upload(Bucket=bucket, Key="results/big/1", UploadId=up, MultipartUpload={"Parts": [{"ETag": etag, "PartNumber": 1}]})
    up = s3.create_multipart_upload(Bucket=bucket, Key="results/abandoned")["UploadId"]
    s3.list_multipart_uploads(Bucket=bucket)
    s3.abort_multipart_upload(Bucket=bucket, Key="results/abandoned", UploadId=up)
    s3.list_objects_v2(Bucket=bucket, Prefix="bodies/")

    sm.create_secret(Name=f"check/{run}", SecretString="s")
    sm.get_secret_value(SecretId=f"check/{run}")
    quietly(lambda: sm.get_secret_value(SecretId=f"check/missing-{run}"))

    _, ps3, _ = clients(url, presign_key)
    link = ps3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "bodies/a.json"}, ExpiresIn=60)
    fail.check("X-Amz-Credential=fn-check-presign-" in link, "the presigned URL is SigV4 with the fn- key", link)
    with urllib.request.urlopen(link, timeout=10) as r:
        fail.check(r.read() == b"{}", "the presigned GET answers the object")

    ddb = lambda op, table, status=200, index=None: rec("dynamodb", op, table, status, index)  # noqa: E731
    s3r = lambda op, resource, status=200: rec("s3", op, resource, status)  # noqa: E731
    expected = ordered(
        [
            ddb("PutItem", t1),
            ddb("UpdateItem", t1),
            ddb("Query", t1, index="queue"),
            ddb("Query", t1),
            ddb("ConditionCheckItem", t1),
            ddb("DeleteItem", t2),
            ddb("TransactWriteItems", t1),
            ddb("TransactWriteItems", t2),
            ddb("PutItem", t1, 400),
            ddb("UpdateItem", t2, 400),
            ddb("TransactWriteItems", t1, 400),
            ddb("TransactWriteItems", t2, 400),
            ddb("BatchGetItem", t1),
            ddb("BatchGetItem", t2),
            s3r("PutObject", f"{bucket}/bodies/"),
            s3r("HeadObject", f"{bucket}/bodies/", 404),
            s3r("GetObject", f"{bucket}/bodies/"),
            s3r("GetObject", f"{bucket}/top.txt", 404),
            s3r("CreateMultipartUpload", f"{bucket}/results/"),
            s3r("UploadPart", f"{bucket}/results/"),
            s3r("CompleteMultipartUpload", f"{bucket}/results/"),
            s3r("ListMultipartUploads", bucket),
            s3r("AbortMultipartUpload", f"{bucket}/results/", 204),
            s3r("ListObjectsV2", bucket),
            rec("secretsmanager", "CreateSecret", f"check/{run}", 200),
            rec("secretsmanager", "GetSecretValue", f"check/{run}", 200),
            rec("secretsmanager", "GetSecretValue", f"check/missing-{run}", 404),  # moto's status (AWS: 400)
        ]
    )
    got = admin(url, f"/_batchq/calls?key={key}")
    fail.check(got.get("key") == key, "calls?key= names the key", got.get("key"), key)
    fail.check(got.get("calls") == expected, "the calls of an fn- key are recorded as expected", got.get("calls"), expected)
    presigned = admin(url, f"/_batchq/calls?key={presign_key}")["calls"]
    fail.check(presigned == [s3r("GetObject", f"{bucket}/bodies/")], "a presigned GET is recorded under its URL's key", presigned)
    fail.check(admin(url, f"/_batchq/calls?key={other}")["calls"] == [], "a key not starting with fn- is not recorded")
    keys = admin(url, "/_batchq/calls")["keys"]
    fail.check(sorted(keys) == sorted([key, presign_key]), "all keys: exactly the fn- keys", sorted(keys))
    admin(url, f"/_batchq/calls?key={key}", "DELETE")
    fail.check(admin(url, f"/_batchq/calls?key={key}")["calls"] == [], "DELETE forgets the key")
    fail.check(sorted(admin(url, "/_batchq/calls")["keys"]) == [presign_key], "DELETE forgets that key only")
    return len(expected) + 1


def meter_and_recorder(url, fail):
    """Both wrap the WSGI app when the meter is on: each must still answer."""
    key = f"fn-check-meter-{secrets.token_hex(4)}"
    d, s3, _ = clients(url, key)
    s3.create_bucket(Bucket="metered")
    s3.put_object(Bucket="metered", Key="k", Body=b"x")
    quietly(lambda: d.get_item(TableName="metered", Key={"pk": {"S": "k"}}))
    admin(url, "/_batchq/calls")
    calls = admin(url, f"/_batchq/calls?key={key}")["calls"]
    expected = [rec("dynamodb", "GetItem", "metered", 400), rec("s3", "CreateBucket", "metered", 200), rec("s3", "PutObject", "metered/k", 200)]
    fail.check(calls == expected, "with the meter on, calls are recorded", calls, expected)
    meter = admin(url, "/_batchq/meter")
    counted = {op: meter.get("s3", {}).get(op, {}).get("calls") for op in ("CreateBucket", "PutObject")}
    counted["GetItem"] = meter.get("dynamodb", {}).get("GetItem", {}).get("calls")
    fail.check(
        counted == {"CreateBucket": 1, "PutObject": 1, "GetItem": 1} and len(meter["s3"]) == 2,
        "with the recorder on, the meter counts the calls (and not the admin ones)",
        meter,
    )


def consumed_capacity(url, fail):
    """The meter answers ReturnConsumedCapacity with the units it charges
    (DynamoDB's rules), not moto's constants."""
    d, _, _ = clients(url, "x")
    t = f"capacity-{secrets.token_hex(4)}"
    create_table(d, t)
    big = "x" * 3000  # with its names and key, an item of 3,000-odd bytes: 3 KB
    item = {"pk": {"S": "a"}, "sk": {"S": "s"}, "v": {"S": big}}
    out = d.put_item(TableName=t, Item=item, ReturnConsumedCapacity="TOTAL")
    fail.check(out.get("ConsumedCapacity", {}).get("CapacityUnits") == 3.0, "a 3 KB put reports 3 WCU", out.get("ConsumedCapacity"))
    out = d.transact_write_items(
        TransactItems=[{"Put": {"TableName": t, "Item": {**item, "pk": {"S": "b"}}}}], ReturnConsumedCapacity="TOTAL"
    )
    got = out.get("ConsumedCapacity")
    fail.check(
        got == [{"TableName": t, "CapacityUnits": 6.0, "ReadCapacityUnits": 0.0, "WriteCapacityUnits": 6.0}],
        "the same put in a transaction reports 6 WCU, in a per-table list",
        got,
    )
    out = d.batch_write_item(
        RequestItems={t: [{"PutRequest": {"Item": {**item, "pk": {"S": k}}}} for k in "cd"]}, ReturnConsumedCapacity="TOTAL"
    )
    got = [(c["TableName"], c["CapacityUnits"]) for c in out.get("ConsumedCapacity", [])]
    fail.check(got == [(t, 6.0)], "two 3 KB puts in BatchWriteItem report 6 WCU for their table", got)
    out = d.get_item(TableName=t, Key={"pk": {"S": "a"}, "sk": {"S": "s"}}, ReturnConsumedCapacity="TOTAL")
    fail.check(out.get("ConsumedCapacity", {}).get("CapacityUnits") == 0.5, "an eventually consistent 3 KB read reports 0.5 RCU", out.get("ConsumedCapacity"))
    out = d.put_item(TableName=t, Item={**item, "pk": {"S": "e"}})
    fail.check("ConsumedCapacity" not in out, "a call that does not ask gets no ConsumedCapacity", out.get("ConsumedCapacity"))
    before = admin(url, "/_batchq/meter")["dynamodb"]["PutItem"]["wcu"]
    d.update_item(
        TableName=t,
        Key={"pk": {"S": "a"}, "sk": {"S": "s"}},
        UpdateExpression="SET n = :n",
        ExpressionAttributeValues={":n": {"N": "1"}},
        ReturnConsumedCapacity="TOTAL",
    )
    after = admin(url, "/_batchq/meter")["dynamodb"]
    fail.check(after["PutItem"]["wcu"] == before and after["UpdateItem"]["wcu"] == 3.0, "the meter's totals are what the answers report", after)
    return 6


# ---- index lag


def lag_checks(url, fail):
    """The index lag checks at LAG_MS, or at a longer lag when the machine
    is too busy to make the calls of a check within LAG_MS (then the
    attempt's answers say nothing); returns the lag checked."""
    ms = LAG_MS
    while True:
        attempt = Failures()
        if not lag(url, attempt, ms):
            fail.extend(attempt)
            return ms
        if ms >= LAG_MS * 16:
            fail.append(f"index lag: this machine cannot make a check's calls within {ms} ms")
            return ms
        ms *= 4


def lag(url, fail, ms):
    """Checks with a lag of `ms`; returns True if a check's calls took too long."""
    run = secrets.token_hex(4)
    d, _, _ = clients(url, "x")
    lagged, prompt = f"lagged-{run}", f"prompt-{run}"
    create_table(d, lagged)
    create_table(d, prompt)
    fail.check(admin(url, "/_batchq/index-lag").get("tables", {}).get(lagged) is None, "no lag by default")
    listing = admin(url, "/_batchq/index-lag", "POST", {"table": lagged, "ms": ms})
    fail.check(listing["tables"].get(lagged) == ms, "POST sets the lag", listing)
    fail.check(admin(url, "/_batchq/index-lag")["tables"].get(lagged) == ms, "GET lists the lag")
    lag_s = ms / 1000
    slow = []

    def key(pk):
        return {"pk": {"S": pk}, "sk": {"S": "s"}}

    def item(pk, qo, n=1):
        return {**key(pk), "q": {"S": "g"}, "qo": {"S": qo}, "n": {"N": str(n)}}

    def listed(table, limit=None, scan=False):
        """[(pk, n)] of the index partition "g", through every page."""
        out, start = [], None
        while True:
            kw = {"TableName": table, "IndexName": "queue"}
            if not scan:
                kw.update(KeyConditionExpression="q = :q", ExpressionAttributeValues={":q": {"S": "g"}})
            if limit:
                kw["Limit"] = limit
            if start:
                kw["ExclusiveStartKey"] = start
            r = d.scan(**kw) if scan else d.query(**kw)
            out += [(i["pk"]["S"], int(i["n"]["N"])) for i in r["Items"]]
            start = r.get("LastEvaluatedKey")
            if not start:
                return out

    def within_lag(since, what):
        """Whether the calls since `since` (before a write) were made within the lag."""
        if time.monotonic() - since > lag_s * 0.9:
            slow.append(what)

    def after_lag(since):
        time.sleep(max(0.0, since + lag_s + 0.05 - time.monotonic()))

    # A new item: absent until the lag has passed, at once without lag.
    t = time.monotonic()
    for table in (lagged, prompt):
        d.put_item(TableName=table, Item=item("a", "1"))
    done = time.monotonic()
    early = listed(lagged), listed(lagged, scan=True), listed(prompt)
    got = d.get_item(TableName=lagged, Key=key("a")).get("Item")
    by_key = d.query(TableName=lagged, KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": "a"}})["Items"]
    within_lag(t, "new item")
    fail.check(early[0] == [], "a new item is not in the lagged index at once", early[0], [])
    fail.check(early[1] == [], "a new item is not in a Scan of the lagged index at once", early[1], [])
    fail.check(early[2] == [("a", 1)], "a new item is in an index without lag at once", early[2])
    fail.check(got is not None and len(by_key) == 1, "GetItem and a table query are never lagged", [got, by_key])
    time.sleep(max(0.0, t + lag_s * 0.5 - time.monotonic()))
    mid = listed(lagged)
    within_lag(t, "new item, later")
    fail.check(mid == [], "a new item is still not in the lagged index before the lag", mid, [])
    after_lag(done)
    late = listed(lagged), listed(lagged, scan=True)
    fail.check(late == ([("a", 1)], [("a", 1)]), "a new item is in the lagged index after the lag", late)

    # Removed from the index, changed, deleted: listed as it was until the lag has passed.
    for table in (lagged, prompt):
        d.put_item(TableName=table, Item=item("b", "2"))
        d.put_item(TableName=table, Item=item("c", "3"))
    after_lag(time.monotonic())
    t = time.monotonic()
    for table in (lagged, prompt):
        d.update_item(TableName=table, Key=key("a"), UpdateExpression="REMOVE q SET n = :n", ExpressionAttributeValues={":n": {"N": "5"}})
        d.update_item(TableName=table, Key=key("b"), UpdateExpression="SET n = :n", ExpressionAttributeValues={":n": {"N": "7"}})
        d.delete_item(TableName=table, Key=key("c"))
    done = time.monotonic()
    early = listed(lagged), listed(prompt)
    within_lag(t, "removed item")
    old = [("a", 1), ("b", 1), ("c", 1)]
    fail.check(early[0] == old, "removed, changed and deleted items are listed as they were until the lag", early[0], old)
    fail.check(early[1] == [("b", 7)], "... and at once without lag", early[1], [("b", 7)])
    after_lag(done)
    late = listed(lagged)
    fail.check(late == [("b", 7)], "... and as they are after the lag", late, [("b", 7)])

    # A cancelled transaction leaves no history; a committed one shows after the lag.
    quietly(
        lambda: d.transact_write_items(
            TransactItems=[
                {"Put": {"TableName": lagged, "Item": item("d", "4")}},
                {"Update": {"TableName": lagged, "Key": key("b"), "UpdateExpression": "SET n = :n", "ConditionExpression": "n = :zero", "ExpressionAttributeValues": {":n": {"N": "9"}, ":zero": {"N": "0"}}}},
            ]
        )
    )
    t = time.monotonic()
    d.transact_write_items(TransactItems=[{"Put": {"TableName": lagged, "Item": item("e", "5")}}, {"Delete": {"TableName": lagged, "Key": key("b")}}])
    done = time.monotonic()
    early = listed(lagged)
    within_lag(t, "transaction")
    fail.check(early == [("b", 7)], "a transaction is not in the lagged index at once", early, [("b", 7)])
    after_lag(done)
    late = listed(lagged)
    fail.check(late == [("e", 1)], "a committed transaction is in it after the lag, a cancelled one never", late, [("e", 1)])

    # A cancelled transaction leaves no version behind: had it left one (the
    # item moved out of the partition), it would show between its time + lag
    # and the next real write's time + lag.
    d.put_item(TableName=lagged, Item=item("f", "6"))
    after_lag(time.monotonic())
    check = {"TableName": lagged, "Key": key("nobody"), "ConditionExpression": "attribute_exists(pk)"}
    move = {"TableName": lagged, "Key": key("f"), "UpdateExpression": "SET q = :h", "ExpressionAttributeValues": {":h": {"S": "h"}}}
    quietly(lambda: d.transact_write_items(TransactItems=[{"Update": move}, {"ConditionCheck": check}]))
    cancelled = time.monotonic()
    time.sleep(lag_s / 2)
    d.update_item(TableName=lagged, Key=key("f"), UpdateExpression="SET n = :n", ExpressionAttributeValues={":n": {"N": "2"}})
    written = time.monotonic()
    after_lag(cancelled)
    between = listed(lagged)
    within_lag(written, "cancelled transaction")
    fail.check(between == [("e", 1), ("f", 1)], "a cancelled transaction leaves nothing in a lagged index's history", between, [("e", 1), ("f", 1)])
    after_lag(written)
    d.delete_item(TableName=lagged, Key=key("f"))
    after_lag(time.monotonic())

    # Pages with ExclusiveStartKey walk the lagged view.
    for i in range(25):
        d.put_item(TableName=lagged, Item=item(f"p{i:02d}", f"{i % 7}", i))
    after_lag(time.monotonic())
    before = listed(lagged)
    t = time.monotonic()
    for i in range(0, 25, 5):
        d.update_item(TableName=lagged, Key=key(f"p{i:02d}"), UpdateExpression="REMOVE q")
        d.put_item(TableName=lagged, Item=item(f"n{i:02d}", f"{i % 7}", 100 + i))
    done = time.monotonic()
    paged = listed(lagged, limit=4), listed(lagged, limit=4, scan=True)
    within_lag(t, "pages")
    fail.check(len(before) == 26 and paged == (before, before), "pages of the lagged index list it as it was", paged, before)
    after_lag(done)
    now = listed(lagged, limit=4)
    fail.check(len(now) == 26 and now == listed(lagged), "pages of the lagged index after the lag", now)

    # ms 0: immediate again.
    admin(url, "/_batchq/index-lag", "POST", {"table": lagged, "ms": 0})
    d.put_item(TableName=lagged, Item=item("z", "9"))
    fail.check(("z", 1) in listed(lagged), "ms 0 restores immediate visibility")
    fail.check(admin(url, "/_batchq/index-lag")["tables"].get(lagged) is None, "ms 0 removes the lag from the listing")
    for bad in ({"table": lagged}, {"table": "", "ms": 5}, {"table": lagged, "ms": -1}, {"table": lagged, "ms": "5"}):
        try:
            admin(url, "/_batchq/index-lag", "POST", bad)
            fail.check(False, f"a bad lag setting is refused: {bad}")
        except urllib.error.HTTPError as e:
            fail.check(e.code == 400, f"a bad lag setting is refused with 400: {bad}", e.code)
    return bool(slow)


def lag_snapshots(url, fail, rounds=3, ms=600):
    """Random writes (puts, index attributes removed and changed, deletes,
    transactions, some cancelled) to a lagged and an unlagged table alike:
    right after them the lagged index answers every query shape (forward,
    backward, Limit, range condition, Scan, all paged) exactly as both
    answered before them, and once the lag has passed as the unlagged one.
    A round whose calls took longer than the lag says nothing: the next one
    runs with twice the lag."""
    run = secrets.token_hex(4)
    d, _, _ = clients(url, "x")
    lagged, prompt = f"snap-lagged-{run}", f"snap-prompt-{run}"
    create_table(d, lagged)
    create_table(d, prompt)
    admin(url, "/_batchq/index-lag", "POST", {"table": lagged, "ms": ms})
    rnd = random.Random(7)

    def pages(call, **kw):
        out, start = [], None
        while True:
            r = call(**kw, **({"ExclusiveStartKey": start} if start else {}))
            out.append(r["Items"])
            start = r.get("LastEvaluatedKey")
            if not start:
                return out

    def answers(table):
        out = []
        for forward in (True, False):
            for limit in ({}, {"Limit": 3}):
                for cond, values in (("q = :q", {}), ("q = :q AND qo > :o", {":o": {"S": "004"}})):
                    kw = dict(TableName=table, IndexName="queue", ScanIndexForward=forward, KeyConditionExpression=cond)
                    out.append(pages(d.query, ExpressionAttributeValues={":q": {"S": "g"}, **values}, **kw, **limit))
        out.append(pages(d.scan, TableName=table, IndexName="queue", Limit=4))
        return out

    def write(table, op, key, q, qo):
        if op == "put":
            d.put_item(TableName=table, Item={**key, "q": {"S": q}, "qo": {"S": qo}})
        elif op == "remove":
            d.update_item(TableName=table, Key=key, UpdateExpression="REMOVE q")
        elif op == "move":
            d.update_item(TableName=table, Key=key, UpdateExpression="SET q = :q, qo = :o", ExpressionAttributeValues={":q": {"S": q}, ":o": {"S": qo}})
        elif op == "delete":
            d.delete_item(TableName=table, Key=key)
        else:  # cancelled unless p0 exists
            check = {"TableName": table, "Key": {"pk": {"S": "p0"}, "sk": {"S": "s"}}, "ConditionExpression": "attribute_exists(pk)"}
            quietly(lambda: d.transact_write_items(TransactItems=[{"Put": {"TableName": table, "Item": {**key, "q": {"S": q}, "qo": {"S": qo}}}}, {"ConditionCheck": check}]))

    conclusive = tried = 0
    while conclusive < rounds and tried < rounds * 3:
        n = tried
        tried += 1
        time.sleep(ms / 1000 + 0.05)
        before = answers(lagged)
        fail.check(before == answers(prompt), f"round {n}: a settled lagged index answers as one without lag")
        started = time.monotonic()
        for _ in range(8):
            op = rnd.choice(["put", "put", "remove", "move", "delete", "transaction"])
            args = {"pk": {"S": f"p{rnd.randrange(10)}"}, "sk": {"S": "s"}}, rnd.choice("gh"), f"{rnd.randrange(9):03d}"
            for table in (lagged, prompt):
                write(table, op, *args)
        during = answers(lagged)
        if time.monotonic() - started < ms / 1000 * 0.9:
            conclusive += 1
            fail.check(during == before, f"round {n} ({ms} ms): right after writes a lagged index answers as before them")
        else:  # too busy a machine: try again with a longer lag
            ms *= 2
            admin(url, "/_batchq/index-lag", "POST", {"table": lagged, "ms": ms})
    fail.check(conclusive == rounds, f"index lag snapshots: only {conclusive} of {tried} rounds within the lag (machine too slow)")
    time.sleep(ms / 1000 + 0.05)
    fail.check(answers(lagged) == answers(prompt), "a settled lagged index answers as one without lag, at the end")


def check(url, metered_url=None):
    """Runs every check against a patched server (and `metered_url`, one
    started with BATCHQ_MOTO_METER=1); returns (failures, number of checks)."""
    fail = Failures()
    done = {}
    sections = [(recorder, url), (lag_checks, url), (lag_snapshots, url)] + ([(meter_and_recorder, metered_url), (consumed_capacity, metered_url)] if metered_url else [])
    for section, where in sections:
        try:
            done[section.__name__] = section(where, fail)
        except Exception as e:  # noqa: BLE001 - reported with the other failures
            fail.append(f"{section.__name__}: {type(e).__name__}: {e}")
    return fail, f"recorder ({done.get('recorder')} records) and index lag ({done.get('lag_checks')} ms)"


def main():
    sys.path.insert(0, HERE)
    from emulator_process import start

    python = sys.executable
    server = os.path.join(HERE, "moto_server.py")
    patched, url = start([python, server])
    metered, metered_url = start([python, server], env={**os.environ, "BATCHQ_MOTO_METER": "1"})
    try:
        fail, summary = check(url, metered_url)
    finally:
        for p in (patched, metered):
            p.kill()
            p.wait()
    report(fail, summary)


def report(fail, summary):
    if fail:
        for f in fail:
            print("FAIL " + f)
        sys.exit(f"check_emulator_extras: {len(fail)} checks failed")
    print(f"check_emulator_extras: {summary} as expected")


if __name__ == "__main__":
    main()
