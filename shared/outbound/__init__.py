"""Outbound: calls and texts the app creates through Twilio's REST API, and the toll-fraud and
SMS-pumping policy they pass first.

Entry point: `endpoint.handle(req, endpoint.CALL | endpoint.MESSAGE)`, behind make_call and
send_sms. What a call or a text may hold and how it is created: `calls`, `sms` (each `parse`,
create, `find`, `record`); the number policy: `numbers`; the request body: `request_body`; the
answers that are not a 201: `answers`; the REST client: `twilio_client`; settings: `settings`.
An Idempotency-Key is kept by shared.records.idempotency.
"""
