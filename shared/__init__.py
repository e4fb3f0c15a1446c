"""Code shared by the function folders and deployed with them.

The function folders stay thin (read the request, call in here, return the response) so that
a user's own call and message logic goes in one obvious place: the responder each webhook
passes to `shared.webhooks.respond`, and `shared.twiml`.
"""
