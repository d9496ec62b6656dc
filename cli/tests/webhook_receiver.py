"""A webhook receiver for cli/tests/webhooks.rs: verifies every message with
the `standardwebhooks` package from PyPI (an implementation independent of
batchq's) and logs every attempt, one JSON line each, to a file.

    python webhook_receiver.py PORT SECRET LOG_FILE HANG_SECONDS DOWN_AFTER

Faults, chosen per event id so each id sees them at most on its first
attempt (the test then proves batchq retried):
  - sha256(id) % 10 == 0: first attempt answered 500;
  - sha256(id) % 50 == 1: first attempt hangs HANG_SECONDS (past batchq's
    timeout), then answers 504;
  - anything else (and every later attempt): 200.
A message that does not verify is answered 400 and logged `verified: false`.

After its DOWN_AFTER-th 200 (0: never), or on `POST /shutdown`, it closes
the port once the attempts under way are answered and logged, and exits:
"the receiver is down" (the test starts it again later on the same port).
Going down at a count, not at a time, makes sure events are still waiting.
"""

import hashlib
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

PORT = int(sys.argv[1])
WEBHOOK = Webhook(sys.argv[2])
LOG_PATH = sys.argv[3]
HANG_SECONDS = float(sys.argv[4])
DOWN_AFTER = int(sys.argv[5])

LOCK = threading.Lock()
SEEN = set()  # ids that have had an attempt in this process
OK_COUNT = [0]  # 200s answered by this process


def log(entry):
    with LOCK:
        with open(LOG_PATH, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_POST(self):
        length = int(self.headers.get("content-length", "0"))
        body = self.rfile.read(length)
        if self.path == "/shutdown":
            self.send_response(200)
            self.end_headers()
            threading.Thread(target=self.server.shutdown, daemon=True).start()
            return
        msg_id = self.headers.get("webhook-id", "")
        headers = {
            "webhook-id": msg_id,
            "webhook-timestamp": self.headers.get("webhook-timestamp", ""),
            "webhook-signature": self.headers.get("webhook-signature", ""),
        }
        try:
            payload = WEBHOOK.verify(body, headers)
            verified = True
        except WebhookVerificationError:
            payload = None
            verified = False
        if not verified:
            log({"id": msg_id, "verified": False, "answer": 400})
            self.answer(400)
            return
        with LOCK:
            first = msg_id not in SEEN
            SEEN.add(msg_id)
        h = int(hashlib.sha256(msg_id.encode()).hexdigest(), 16)
        data = payload.get("data", {})
        entry = {
            "id": msg_id,
            "verified": True,
            "type": payload.get("type"),
            "custom_id": data.get("custom_id"),
            "job_id": data.get("job_id") if payload.get("type") != "job.finished" else data.get("id"),
        }
        if first and h % 10 == 0:
            entry["answer"] = 500
            log(entry)
            self.answer(500)
        elif first and h % 50 == 1:
            time.sleep(HANG_SECONDS)
            entry["answer"] = "hang"
            log(entry)
            self.answer(504)
        else:
            entry["answer"] = 200
            # Logged before the answer: a 2xx logged twice for one id means
            # batchq sent it again after it had been answered 2xx.
            log(entry)
            self.answer(200)
            with LOCK:
                OK_COUNT[0] += 1
                going_down = OK_COUNT[0] == DOWN_AFTER
            if going_down:
                threading.Thread(target=self.server.shutdown, daemon=True).start()

    def answer(self, code):
        try:
            self.send_response(code)
            self.send_header("content-length", "0")
            self.end_headers()
        except (BrokenPipeError, ConnectionResetError):
            pass


class Server(ThreadingHTTPServer):
    daemon_threads = False  # shutdown waits for the attempts under way
    block_on_close = True
    allow_reuse_address = True


if __name__ == "__main__":
    server = Server(("127.0.0.1", PORT), Handler)
    print("listening", flush=True)
    server.serve_forever()
    server.server_close()
