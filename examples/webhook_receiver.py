"""A tiny webhook receiver for trying inferq's webhooks on your own machine.

    INFERQ_WEBHOOK_SECRET=whsec_... python examples/webhook_receiver.py [PORT] [--events N]

It listens on 127.0.0.1:PORT (default 9000), checks each request's Standard Webhooks signature
with the secrets in INFERQ_WEBHOOK_SECRET (comma-separated, as the server takes them), prints
the event's type and the job's status, and answers 204 (400 when the signature is wrong or the
body is not a job event). A webhook-id seen before is a retry of the same event: it is answered
and not printed again. With --events N it exits after N events: 0 if each was a correctly
signed job event, else 1 (also 1 when no event came for --timeout seconds). The server refuses loopback URLs unless it runs with
INFERQ_WEBHOOK_ALLOW_NETWORKS=127.0.0.1/32.
"""
import argparse
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


def verify(secrets: list[str], body: bytes, headers: dict) -> dict:
    """The event, if any of the secrets signed it (one is enough while a secret is rotated)."""
    for secret in secrets:
        try:
            return Webhook(secret).verify(body, headers)
        except WebhookVerificationError:
            continue
    raise WebhookVerificationError("no secret in INFERQ_WEBHOOK_SECRET matches the signature")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("port", nargs="?", type=int, default=9000)
    parser.add_argument("--events", type=int, help="exit after this many events")
    parser.add_argument("--timeout", type=float, default=60,
                        help="with --events: give up after this many seconds without an event")
    args = parser.parse_args(argv)
    secrets = [s.strip() for s in os.environ.get("INFERQ_WEBHOOK_SECRET", "").split(",")
               if s.strip()]
    if not secrets:
        print("webhook_receiver: set INFERQ_WEBHOOK_SECRET to the server's secret "
              "(make run keeps it in .run/webhook_secret)", file=sys.stderr)
        return 2
    seen, outcome = set(), {"events": 0, "bad": 0}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            try:
                event = verify(secrets, body, dict(self.headers))
                line = (f"{event['type']}  job {event['data']['id']}  "
                        f"status {event['data']['status']}")
            except (WebhookVerificationError, KeyError, TypeError, ValueError) as exc:
                why = exc if isinstance(exc, WebhookVerificationError) else (
                    "not a job event: expected {type, timestamp, data: <the job>}")
                outcome["bad"] += 1
                outcome["events"] += 1
                print(f"refused: {why}", flush=True)
                self.send_response(400)
            else:
                webhook_id = self.headers["webhook-id"]
                if webhook_id not in seen:
                    seen.add(webhook_id)
                    outcome["events"] += 1
                    print(line, flush=True)
                self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass  # one line per event is printed above

    server = HTTPServer(("127.0.0.1", args.port), Handler)
    print(f"webhook_receiver: listening on http://127.0.0.1:{args.port}/", flush=True)
    with server:
        if args.events is None:
            try:
                server.serve_forever()
            except KeyboardInterrupt:
                return 0
        deadline = time.monotonic() + args.timeout
        while outcome["events"] < args.events:
            server.timeout = deadline - time.monotonic()
            if server.timeout <= 0:
                print(f"webhook_receiver: {outcome['events']} of {args.events} events in "
                      f"{args.timeout:g} s", file=sys.stderr)
                return 1
            before = outcome["events"]
            server.handle_request()
            if outcome["events"] > before:
                deadline = time.monotonic() + args.timeout
    return 1 if outcome["bad"] else 0


if __name__ == "__main__":
    sys.exit(main())
