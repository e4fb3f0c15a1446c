"""The errors of the number policy (shared.outbound.numbers), apart from it so that a function
module can name them at import without importing phonenumbers: every function module is imported at
a cold start, and the webhooks never need phonenumbers."""

from __future__ import annotations


class InvalidNumber(ValueError):
    """Not a valid number written in E.164: the request is malformed."""


class ForbiddenDestination(ValueError):
    """A valid number the policy will not call or text."""
