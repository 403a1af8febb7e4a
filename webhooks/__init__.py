"""Signed webhook delivery: SSRF guard, signing, the delivery worker."""
