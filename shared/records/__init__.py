"""Records: what the app keeps in Azure Storage, through the Functions host's own connection.

Entry points: `queries` (GET /api/calls, /api/messages), `callbacks` (the status callbacks'
storing), `idempotency` (an Idempotency-Key claimed, replayed or looked up). The durable record of
every call and message and its status events: `store`. The clients, their deadlines and errors:
`storage`; where storage is: `settings`.
"""
