"""Checks that scripts/moto_server.py answers as stock moto does.

moto_server.py replaces parts of moto's DynamoDB to make its time
proportional to the work (see its docstring). This runs one set of calls
against a stock moto_server and against moto_server.py, each on a free
loopback port, and compares every answer and the tables afterwards: index
queries paged forward and backward, with and without Limit, with a range
condition and with writes between pages; GetItem, BatchGetItem, Query and
Scan of every attribute type; and transactions of updates, both the shape
applied directly and the ones left to moto, including the refused ones.

Then check_emulator_extras.py checks what stock moto lacks (the recorder
of `fn-` keys' calls and the index lag) against the patched server, and
against one with the meter installed too.

`make test` runs it. Usage: python check_emulator.py
"""

import json
import os
import random
import sys

import boto3

import check_emulator_extras
from emulator_process import start

HERE = os.path.dirname(os.path.abspath(__file__))


def client(url):
    return boto3.client(
        "dynamodb", endpoint_url=url, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )


def outcome(call):
    try:
        return ["ok", call()]
    except Exception as e:  # noqa: BLE001 - the refusal is the answer
        r = getattr(e, "response", {})
        return [type(e).__name__, r.get("Error", {}).get("Message", str(e)), r.get("CancellationReasons")]


def queries(d, out):
    t = "paging"
    d.create_table(
        TableName=t,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": a, "AttributeType": "S"} for a in ["pk", "sk", "q", "qo", "j"]],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "queue",
                "KeySchema": [{"AttributeName": "q", "KeyType": "HASH"}, {"AttributeName": "qo", "KeyType": "RANGE"}],
                "Projection": {"ProjectionType": "ALL"},
            },
            {"IndexName": "job", "KeySchema": [{"AttributeName": "j", "KeyType": "HASH"}], "Projection": {"ProjectionType": "ALL"}},
        ],
    )
    rnd = random.Random(5)
    for i in range(1200):
        item = {"pk": {"S": f"r{rnd.randrange(10**6):06d}"}, "sk": {"S": "state" if i % 3 else "body"}, "n": {"N": str(i)}}
        if i % 3:
            item["q"] = {"S": f"g{i % 2}"}
            item["qo"] = {"S": f"{rnd.randrange(50):03d}"}  # ties: the table key orders them
            item["j"] = {"S": f"job{i % 4}"}
        d.put_item(TableName=t, Item=item)

    def pages(index, cond, values, limit, forward=True, take=False):
        got, start = [], None
        while True:
            kw = dict(TableName=t, IndexName=index, KeyConditionExpression=cond, ExpressionAttributeValues=values, ScanIndexForward=forward)
            if limit:
                kw["Limit"] = limit
            if start:
                kw["ExclusiveStartKey"] = start
            r = d.query(**kw)
            got.append([[i["pk"]["S"], i["sk"]["S"]] for i in r["Items"]] + [r.get("LastEvaluatedKey"), r["Count"], r["ScannedCount"]])
            if take:  # take the page out of the queue, as submit's claim does
                for i in r["Items"]:
                    d.update_item(
                        TableName=t,
                        Key={"pk": i["pk"], "sk": i["sk"]},
                        UpdateExpression="REMOVE q SET c = :c",
                        ExpressionAttributeValues={":c": {"S": "x"}},
                    )
            start = r.get("LastEvaluatedKey")
            if not start:
                return got

    out.append(pages("job", "j = :j", {":j": {"S": "job1"}}, 40))
    out.append(pages("job", "j = :j", {":j": {"S": "job2"}}, 7, forward=False))
    out.append(pages("job", "j = :j", {":j": {"S": "job3"}}, None))
    out.append(pages("queue", "q = :q AND qo > :o", {":q": {"S": "g1"}, ":o": {"S": "025"}}, 30))
    out.append(pages("queue", "q = :q", {":q": {"S": "g0"}}, 50, take=True))
    out.append(pages("queue", "q = :q", {":q": {"S": "g1"}}, 111))
    out.append(pages("queue", "q = :q", {":q": {"S": "nobody"}}, 10))

    every = {
        "pk": {"S": "all"}, "sk": {"S": "types"}, "q": {"S": "types"}, "qo": {"S": "1"},
        "s": {"S": 'é"\\\n☃'}, "n": {"N": "-1.50e3"}, "b": {"B": b"\x00\xffbin"}, "t": {"BOOL": True},
        "f": {"BOOL": False}, "z": {"NULL": True}, "l": {"L": [{"S": "a"}, {"N": "1"}, {"M": {"k": {"B": b"x"}}}]},
        "m": {"M": {"a": {"SS": ["x", "y"]}, "b": {"NS": ["1", "2.5"]}, "c": {"BS": [b"1", b"2"]}}},
        "e": {"S": ""}, "em": {"M": {}}, "el": {"L": []},
    }  # fmt: skip
    d.put_item(TableName=t, Item=every)
    key = {"pk": {"S": "all"}, "sk": {"S": "types"}}
    none = {"pk": {"S": "none"}, "sk": {"S": "x"}}
    out.append(d.get_item(TableName=t, Key=key)["Item"])
    out.append(d.get_item(TableName=t, Key=none).get("Item"))
    out.append(d.batch_get_item(RequestItems={t: {"Keys": [key, none]}})["Responses"])
    out.append(d.query(TableName=t, IndexName="queue", KeyConditionExpression="q = :q", ExpressionAttributeValues={":q": {"S": "types"}})["Items"])
    out.append(d.query(TableName=t, KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": "all"}}, ReturnConsumedCapacity="TOTAL")["Items"])
    out.append(d.query(TableName=t, KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": "all"}}, Select="COUNT")["Count"])
    out.append(sorted(json.dumps(i, sort_keys=True, default=repr) for i in d.scan(TableName=t)["Items"]))


def updates(d, out):
    t = "updates"
    d.create_table(
        TableName=t,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": a, "AttributeType": "S"} for a in ["pk", "sk", "q"]],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        GlobalSecondaryIndexes=[{"IndexName": "queue", "KeySchema": [{"AttributeName": "q", "KeyType": "HASH"}], "Projection": {"ProjectionType": "ALL"}}],
    )
    for i in range(6):
        d.put_item(
            TableName=t,
            Item={
                "pk": {"S": f"r{i}"}, "sk": {"S": "state"}, "status": {"S": "queued"}, "attempts": {"N": "0"},
                "q": {"S": "g"}, "qo": {"S": "1"}, "amount": {"N": "1.5"}, "txt": {"S": "a"},
            },
        )  # fmt: skip

    def upd(i, expr, values=None, names=None, cond=None):
        u = {"TableName": t, "Key": {"pk": {"S": f"r{i}"}, "sk": {"S": "state"}}, "UpdateExpression": expr}
        if values:
            u["ExpressionAttributeValues"] = values
        if names:
            u["ExpressionAttributeNames"] = names
        if cond:
            u["ConditionExpression"] = cond
            u["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
        return {"Update": u}

    one = {":one": {"N": "1"}}
    v1 = {":v": {"S": "1"}}
    cases = [
        # batchq's shapes (applied directly by moto_server.py)
        [upd(0, "SET #s = :to, updated_at = :now, job_id = :claim_for, attempts = attempts + :one REMOVE queue, qo",
             {":to": {"S": "claimed"}, ":now": {"N": "17"}, ":claim_for": {"S": "j1"}, ":one": {"N": "1"}, ":from": {"S": "queued"}},
             {"#s": "status"}, "#s = :from")],
        [upd(0, "SET #s = :to, updated_at = :now, expires_at = :exp, last_error = :err",
             {":to": {"S": "failed"}, ":now": {"N": "18"}, ":exp": {"N": "99"}, ":err": {"S": "{}"}}, {"#s": "status"})],
        [upd(1, "SET attempts = attempts - :one, amount = amount + :h", {":one": {"N": "1"}, ":h": {"N": "0.25"}})],
        [upd(2, "set m = :m, l = :l, copied = txt", {":m": {"M": {"a": {"N": "1"}}}, ":l": {"L": [{"S": "x"}]}})],
        [upd(3, "SET #n = :v", v1, {"#n": "name1"})],
        [upd(3, "SET e = :e", {":e": {"S": ""}})],
        # refused, by moto, with moto's message
        [upd(3, "SET dec = :v", v1)],
        [upd(3, "SET status = :v", v1)],
        [upd(3, "SET absent = nothing + :one", one)],
        [upd(3, "SET txt = txt + :one", one)],
        [upd(3, "SET pk = :v", {":v": {"S": "other"}})],
        [upd(3, "SET a = :v, a = :w", {":v": {"S": "1"}, ":w": {"S": "2"}})],
        [upd(3, "SET a = :v REMOVE a", v1)],
        [upd(3, "SET q = :e", {":e": {"S": ""}})],
        [upd(3, "SET a = :v", {":v": {"S": "1"}, ":unused": {"S": "2"}})],
        [upd(3, "SET a = :nope", v1)],
        [upd(3, "SET a = #missing", v1)],
        [upd(5, "SET big = :v", {":v": {"S": "x" * 500000}})],
        # other shapes, left to moto
        [upd(3, "SET a = if_not_exists(a, :v)", v1)],
        [upd(3, "SET l = list_append(l, :v)", {":v": {"L": [{"S": "1"}]}})],
        [upd(3, "REMOVE txt SET b = :v", v1)],
        [upd(3, "SET c = :v ADD n :one", {":v": {"S": "1"}, ":one": {"N": "1"}})],
        [upd(3, "SET m.a = :v", v1)],
        [upd(9, "SET a = :v", {":v": {"S": "new item"}})],
        # transactions: a failed condition or a repeated item cancels the whole
        [upd(4, "SET a = :v", v1), upd(5, "SET b = :v", v1, None, "attribute_not_exists(pk)")],
        [upd(4, "SET a = :v", v1), upd(4, "SET b = :v", v1)],
    ]  # fmt: skip
    for c in cases:
        out.append(outcome(lambda: d.transact_write_items(TransactItems=c) and None))
    out.append(sorted(json.dumps(i, sort_keys=True) for i in d.scan(TableName=t)["Items"]))
    out.append(len(d.query(TableName=t, IndexName="queue", KeyConditionExpression="q = :q", ExpressionAttributeValues={":q": {"S": "g"}})["Items"]))
    return len(cases)


def answers(url):
    d = client(url)
    out = []
    queries(d, out)
    n = updates(d, out)
    return out, n


def main():
    python = sys.executable
    server = os.path.join(HERE, "moto_server.py")
    stock, stock_url = start([os.path.join(os.path.dirname(python), "moto_server")])
    patched, patched_url = start([python, server])
    metered, metered_url = start([python, server], env={**os.environ, "BATCHQ_MOTO_METER": "1"})
    try:
        expected, n = answers(stock_url)
        got, _ = answers(patched_url)
        # What stock moto lacks, checked against the patched servers only.
        extra_failures, extra_summary = check_emulator_extras.check(patched_url, metered_url)
    finally:
        for p in (stock, patched, metered):
            p.kill()
            p.wait()
    exp = json.dumps(expected, indent=1, sort_keys=True, default=repr).splitlines()
    act = json.dumps(got, indent=1, sort_keys=True, default=repr).splitlines()
    if exp != act:
        import difflib

        sys.stdout.writelines(line + "\n" for line in list(difflib.unified_diff(exp, act, "stock moto", "moto_server.py", lineterm=""))[:80])
        sys.exit("check_emulator: moto_server.py answers differently from stock moto")
    print(f"check_emulator: moto_server.py answers as stock moto ({len(expected)} answers, {n} transactions)")
    check_emulator_extras.report(extra_failures, extra_summary)


if __name__ == "__main__":
    main()
