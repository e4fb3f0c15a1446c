"""Broadcasts: one text or call to many numbers, through an Azure Storage Queue.

Entry points: `endpoint.handle` (POST and GET /api/broadcasts), `sending.handle` (broadcast_send:
one queue message, a chunk of recipients or one that had to wait) and `sending.poisoned`
(broadcast_poison). Starting one: `start` (its rows, then its chunks on the queue); what a
broadcast and its queue messages are: `model`; its rows and each recipient's state: `table`; the
queue: `queue`; the pace: `settings`. Each recipient is sent through shared.outbound's code, once,
under shared.records.idempotency.
"""
