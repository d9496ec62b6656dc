#!/usr/bin/env python3
"""Writes the demo workload as batch-format JSONL on stdout: product-review
sentiment classification (gpt-4o-mini) and news-article summaries
(gpt-4.1-mini) for OpenAI, and support-ticket triage (claude-haiku-4-5,
Anthropic's Messages API, `url: /v1/messages`) — the kind of work that can
wait a few hours for half price. Deterministic: the same arguments give the
same file.

    python3 demo/workload.py [REVIEWS] [ARTICLES] [TICKETS] > workload.jsonl
"""

import json
import random
import sys

PRODUCTS = ["wireless earbuds", "espresso machine", "running shoes", "standing desk", "e-reader",
            "air purifier", "mechanical keyboard", "robot vacuum", "hiking backpack", "smart thermostat"]
PRAISE = ["it works exactly as described", "the battery lasts for days", "the build quality is excellent",
          "setup took two minutes", "customer support was quick and helpful", "it is worth every cent"]
COMPLAINTS = ["it stopped working after a week", "the app keeps disconnecting", "it arrived with a cracked case",
              "it is far louder than advertised", "the manual is useless", "returns were a nightmare"]
TOPICS = ["city council budget", "regional rail strike", "new battery factory", "drought and farm output",
          "central bank rate decision", "school lunch programme", "stadium renovation", "port automation"]


def review(rng: random.Random, i: int) -> dict:
    product = rng.choice(PRODUCTS)
    good = rng.sample(PRAISE, rng.randint(0, 2))
    bad = rng.sample(COMPLAINTS, rng.randint(0, 2))
    text = f"I bought the {product} last month. " + " ".join(
        [f"Honestly, {g}." for g in good] + [f"Sadly, {b}." for b in bad]) + f" Order #{100000 + i}."
    return {
        "custom_id": f"review-{i:05d}",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {
            "model": "gpt-4o-mini",
            "messages": [
                {"role": "system", "content": "Classify the sentiment of the product review. "
                                              "Answer with exactly one word: positive, negative or mixed."},
                {"role": "user", "content": text},
            ],
            "max_tokens": 2,
            "temperature": 0,
        },
    }


def article(rng: random.Random, i: int) -> dict:
    topic = rng.choice(TOPICS)
    paragraphs = [
        f"Officials met on {rng.choice(['Monday', 'Tuesday', 'Wednesday', 'Thursday'])} to discuss the {topic}.",
        f"Supporters said the plan would create {rng.randint(50, 900)} jobs over {rng.randint(2, 6)} years.",
        f"Critics pointed to a projected cost of {rng.randint(3, 90)} million and asked for an independent review.",
        "A final decision is expected after a public consultation later this year.",
    ]
    return {
        "custom_id": f"article-{i:05d}",
        "url": "/v1/chat/completions",
        "body": {
            "model": "gpt-4.1-mini",
            "messages": [
                {"role": "system", "content": "Summarise the news article in two neutral sentences."},
                {"role": "user", "content": " ".join(paragraphs)},
            ],
            "max_tokens": 120,
        },
    }


def ticket(rng: random.Random, i: int) -> dict:
    product = rng.choice(PRODUCTS)
    problem = rng.choice(COMPLAINTS)
    return {
        "custom_id": f"ticket-{i:05d}",
        "url": "/v1/messages",
        "body": {
            "model": "claude-haiku-4-5",
            "max_tokens": 8,
            "system": "Triage the support ticket. Answer with one word: refund, repair or advice.",
            "messages": [{"role": "user", "content": f"My {product}: {problem}. Ticket #{200000 + i}."}],
        },
    }


def main() -> None:
    reviews = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    articles = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    tickets = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    rng = random.Random(20261125)
    out = sys.stdout
    for i in range(reviews):
        out.write(json.dumps(review(rng, i), separators=(",", ":")) + "\n")
    for i in range(articles):
        out.write(json.dumps(article(rng, i), separators=(",", ":")) + "\n")
    for i in range(tickets):
        out.write(json.dumps(ticket(rng, i), separators=(",", ":")) + "\n")


if __name__ == "__main__":
    main()
