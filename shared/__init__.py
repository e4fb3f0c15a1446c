"""Code shared by the function folders and deployed with them, one package per capability:

- `shared.webhooks`: what Twilio sends the app, checked and answered with TwiML;
- `shared.outbound`: calls and texts created through Twilio's REST API, and their policy;
- `shared.records`: what is kept in Azure Storage (records, status events, Idempotency-Keys);
- `shared.broadcasts`: one text or call to many numbers, through a queue;
- `shared.common`: settings, logs, answers and routes, used by all of them.

Each package's `__init__` names its entry point; docs/extending.md has the map.
"""
