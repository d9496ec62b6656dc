#!/usr/bin/env python3
"""Writes demo/usage-sample.jsonl: one week (Monday 2026-11-02 00:00 UTC to
Monday 2026-11-09 00:00 UTC) of a company's real-time OpenAI usage, the input
of `batchq analyze`. Deterministic: the same script gives the same file.

    python3 demo/usage_sample.py > demo/usage-sample.jsonl
    python3 demo/usage_sample.py --figures     # the expected report, computed here

The workloads, each in the shape its own logger would write:
- support-chat: a customer chat (gpt-4.1-mini) that must answer at once;
  hourly roll-ups in business hours, chat-completion field names.
- nightly-summaries: summaries of the day's documents (dated gpt-4o-mini
  snapshot), run at night, read the next morning: can wait a day.
- search-indexing: embeddings for the search index, lines of the OpenAI
  organization usage export (daily buckets, start_time/end_time); the indexer
  tolerates two days. One extra bucket, a backfill already sent through the
  Batch API, is marked "batch": true.
- weekly-report: a reasoning model (o3) writing the Monday reports; the job
  is marked priority "batch".
- translations: gpt-4.1-nano, priority "low" (an hour is fine, a day is not).
- ad-hoc: analysts' calls to gpt-4o with no latency information at all.
- experiments: a self-hosted model the price table does not know.
- one line cut short by a crashing logger.

--figures prints, per (category, model), the figures `batchq analyze` must
report, computed here in integer picodollars from the prices below (copied
by hand from shared/data/prices.json), independently of the Rust code.
"""

import json
import random
import sys
from datetime import datetime, timedelta, timezone

START = datetime(2026, 11, 2, tzinfo=timezone.utc)
DAYS = 7

# USD per 1M tokens (realtime input, cached input, output; batch input, cached input, output).
# Batch cached None = billed at batch input; no output price = None.
PRICES = {
    "gpt-4.1-mini": ("0.40", "0.10", "1.60", "0.20", None, "0.80"),
    "gpt-4o-mini": ("0.15", "0.075", "0.60", "0.075", None, "0.30"),
    "text-embedding-3-small": ("0.02", None, None, "0.01", None, None),
    "o3": ("2.00", "0.50", "8.00", "1.00", None, "4.00"),
    "gpt-4.1-nano": ("0.10", "0.025", "0.40", "0.05", None, "0.20"),
    "gpt-4o": ("2.50", "1.25", "10.00", "1.25", None, "5.00"),
}
PRICED_AS = {"gpt-4o-mini-2024-07-18": "gpt-4o-mini"}


def iso(t: datetime, ms: bool = False) -> str:
    if ms:
        return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def unix(t: datetime) -> int:
    return int(t.timestamp())


def lines() -> list:
    rng = random.Random(20261102)
    out = []  # (sort time, text)

    def add(t: datetime, obj: dict):
        out.append((t, json.dumps(obj, separators=(", ", ": "))))

    for day in range(DAYS):
        date = START + timedelta(days=day)
        # support-chat: hourly roll-ups, 08:00-19:00.
        for hour in range(8, 20):
            t = date + timedelta(hours=hour)
            calls = rng.randint(400, 1500)
            prompt = sum(rng.randint(1600, 2400) for _ in range(calls))
            cached = calls * 1024
            add(t, {"timestamp": iso(t), "category": "support-chat", "model": "gpt-4.1-mini",
                    "num_model_requests": calls, "prompt_tokens": prompt, "cached_input_tokens": cached,
                    "completion_tokens": sum(rng.randint(150, 350) for _ in range(calls)),
                    "latency_tolerance": "realtime"})
        # nightly-summaries: 8 sources between 01:00 and 03:00.
        for source in range(8):
            t = date + timedelta(seconds=3600 + source * 900 + rng.randint(0, 800), milliseconds=rng.randint(0, 999))
            calls = rng.randint(1500, 6000)
            add(t, {"timestamp": iso(t, ms=True), "category": "nightly-summaries",
                    "model": "gpt-4o-mini-2024-07-18", "num_model_requests": calls,
                    "input_tokens": sum(rng.randint(2200, 4200) for _ in range(calls)),
                    "output_tokens": sum(rng.randint(300, 520) for _ in range(calls)),
                    "latency_tolerance": "day", "source": f"crm-{source}"})
        # search-indexing: one usage-export bucket per day.
        calls = rng.randint(140000, 220000)
        add(date, {"object": "organization.usage.embeddings.result", "start_time": unix(date),
                   "end_time": unix(date + timedelta(days=1)), "category": "search-indexing",
                   "model": "text-embedding-3-small", "input_tokens": calls * rng.randint(1800, 2600),
                   "num_model_requests": calls, "project_id": "proj_search", "user_id": None,
                   "api_key_id": None, "batch": False, "max_latency_seconds": 172800})
        # translations: one roll-up a day at noon.
        t = date + timedelta(hours=12)
        calls = rng.randint(3000, 8000)
        add(t, {"timestamp": iso(t), "category": "translations", "model": "gpt-4.1-nano",
                "num_model_requests": calls, "input_tokens": sum(rng.randint(300, 900) for _ in range(calls)),
                "output_tokens": sum(rng.randint(300, 900) for _ in range(calls)), "priority": "low"})
    # search-indexing backfill, already through the Batch API.
    t = START + timedelta(days=3)
    add(t, {"object": "organization.usage.embeddings.result", "start_time": unix(t),
            "end_time": unix(t + timedelta(days=1)), "category": "search-indexing",
            "model": "text-embedding-3-small", "input_tokens": 90000000, "num_model_requests": 40000,
            "project_id": "proj_search", "batch": True})
    # weekly-report: 24 reports on Monday morning, local time (UTC+01:00) in the log.
    for i in range(24):
        local = START + timedelta(hours=7, minutes=2 * i, seconds=rng.randint(0, 59))
        t = local - timedelta(hours=1)
        add(t, {"timestamp": local.strftime("%Y-%m-%dT%H:%M:%S+01:00"), "category": "weekly-report",
                "model": "o3", "input_tokens": rng.randint(14000, 30000), "cached_input_tokens": 2048,
                "output_tokens": rng.randint(4000, 9000), "priority": "batch"})
    # ad-hoc: analysts' calls, no latency information.
    for _ in range(20):
        t = START + timedelta(seconds=rng.randint(0, DAYS * 86400 - 1))
        add(t, {"timestamp": iso(t), "category": "ad-hoc", "model": "gpt-4o",
                "prompt_tokens": rng.randint(500, 6000), "completion_tokens": rng.randint(100, 1500)})
    # experiments: a self-hosted model.
    for i in range(4):
        t = START + timedelta(days=1 + i, hours=15)
        add(t, {"timestamp": iso(t), "category": "experiments", "model": "acme-llm-70b",
                "num_model_requests": 50, "input_tokens": 50 * 1200, "output_tokens": 50 * 300,
                "latency_tolerance": "hours"})
    out.sort(key=lambda x: (x[0], x[1]))
    text = [line for _, line in out]
    # The logger crashed mid-line on Thursday.
    broken = next(i for i, (t, _) in enumerate(out) if t >= START + timedelta(days=3, hours=9))
    text.insert(broken, text[broken][: len(text[broken]) // 2])
    return text


def picos(usd):
    if usd is None:
        return None
    whole, _, frac = usd.partition(".")
    return int(whole) * 10**6 + int((frac + "000000")[:6])


def cost(model, inp, cached, out, tier):
    p = PRICES[PRICED_AS.get(model, model)]
    i, c, o = (p[0], p[1], p[2]) if tier == "realtime" else (p[3], p[4], p[5])
    i, c, o = picos(i), picos(c), picos(o)
    if c is None:
        c = i
    assert out == 0 or o is not None
    return (inp - cached) * i + cached * c + out * (o or 0)


def div_round(n, d):
    return (n + d // 2) // d if n >= 0 else -((-n + d // 2) // d)


def usd(p):
    sign = "-" if p < 0 else ""
    p = abs(p)
    frac = f"{p % 10**12:012d}".rstrip("0")
    return f"{sign}{p // 10**12}.{frac:0<2}"


def figures(text):
    tolerance = {"realtime": 0, "day": 86400, "hours": 3600}
    priority = {"low": 3600, "batch": 86400}
    groups = {}
    for line in text:
        try:
            d = json.loads(line)
        except json.JSONDecodeError:
            continue
        if d.get("batch") is True or d["model"] not in list(PRICES) + list(PRICED_AS):
            continue
        inp = d.get("input_tokens", d.get("prompt_tokens"))
        cached = d.get("cached_input_tokens", 0)
        out = d.get("output_tokens", d.get("completion_tokens", 0))
        calls = d.get("num_model_requests", 1)
        if "max_latency_seconds" in d:
            tol = d["max_latency_seconds"]
        elif "latency_tolerance" in d:
            tol = tolerance[d["latency_tolerance"]]
        elif "priority" in d:
            tol = priority[d["priority"]]
        else:
            tol = None
        g = groups.setdefault((d["category"], d["model"]), dict.fromkeys(
            ["lines", "calls", "input", "cached", "output", "rt", "batch", "b_calls", "b_rt", "b_batch"], 0))
        rt, bt = cost(d["model"], inp, cached, out, "realtime"), cost(d["model"], inp, cached, out, "batch")
        for k, v in [("lines", 1), ("calls", calls), ("input", inp), ("cached", cached), ("output", out),
                     ("rt", rt), ("batch", bt)]:
            g[k] += v
        if tol is not None and tol >= 86400:
            g["b_calls"] += calls
            g["b_rt"] += rt
            g["b_batch"] += bt
    period_ms = DAYS * 86400 * 1000
    month_ms = 30 * 86400 * 1000
    total = dict.fromkeys(["calls", "rt", "batch", "b_rt", "b_batch"], 0)
    for (cat, model), g in sorted(groups.items()):
        saving = g["b_rt"] - g["b_batch"]
        print(f"{cat} {model}: lines {g['lines']} calls {g['calls']} tokens {g['input']}/{g['cached']}/{g['output']}"
              f" realtime {usd(g['rt'])} batch {usd(g['batch'])} batchable calls {g['b_calls']}"
              f" batchable realtime {usd(g['b_rt'])} batchable saving {usd(saving)}"
              f" monthly {usd(div_round(saving * month_ms, period_ms))}")
        for k in total:
            total[k] += g[k]
    saving = total["b_rt"] - total["b_batch"]
    share = div_round(total["b_rt"] * 10000, total["rt"])
    print(f"TOTAL calls {total['calls']} realtime {usd(total['rt'])} batch {usd(total['batch'])}"
          f" batchable realtime {usd(total['b_rt'])} share {share // 100}.{share % 100:02d}"
          f" batchable saving {usd(saving)} monthly {usd(div_round(saving * month_ms, period_ms))}")


if __name__ == "__main__":
    sample = lines()
    if sys.argv[1:] == ["--figures"]:
        figures(sample)
    else:
        sys.stdout.write("\n".join(sample) + "\n")
