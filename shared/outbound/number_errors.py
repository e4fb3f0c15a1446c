"""The errors of the number policy (shared.outbound.numbers), apart from it so that they can be
named without importing phonenumbers (docs/benchmark.md, cold start)."""

from __future__ import annotations


class InvalidNumber(ValueError):
    """Not a valid number written in E.164: the request is malformed."""


class ForbiddenDestination(ValueError):
    """A valid number the policy will not call or text."""
