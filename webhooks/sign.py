"""Standard Webhooks signatures: one `v1,<base64 HMAC-SHA256>` per active secret, so receivers
keep verifying while a secret is rotated."""
from datetime import datetime, timezone

from standardwebhooks.webhooks import Webhook


def signed_headers(webhook_id: str, body: str, secrets: list[str], now: datetime | None = None
                   ) -> dict:
    now = now or datetime.now(timezone.utc)
    signatures = " ".join(Webhook(secret).sign(webhook_id, now, body) for secret in secrets)
    return {"webhook-id": webhook_id, "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": signatures, "content-type": "application/json",
            "user-agent": "inferq-webhooks/1"}
