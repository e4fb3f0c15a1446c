"""The small base every capability stands on: reading settings (`settings`), log lines that
carry no secret and no full number (`logs`, `redact`), JSON and TwiML answers (`responses`), the
app's URL paths (`routes`), which origin is the app's own (`public_url`), the shapes of a
phone number (`e164`) and of a browser's name in a dial (`client_names`), and text a caller
sends that nothing downstream can encode (`text`)."""
