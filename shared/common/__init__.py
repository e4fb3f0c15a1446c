"""The small base every capability stands on: reading settings (`settings`), log lines that
carry no secret and no full number (`logs`, `redact`), JSON and TwiML answers (`responses`), the
app's URL paths (`routes`) and which origin is the app's own (`public_url`)."""
