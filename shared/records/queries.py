"""Reading the records back over HTTP: GET /api/calls[/{sid}] and GET /api/messages[/{sid}].

One record is 200 with its events, 404 for a SID never seen, 400 for one that is not a SID of
that kind. A list is the newest first, `?limit=` (default 20, at most 100) records a page, and
`next` holds the continuation token of the next page (`?continuation=`), or null on the last.
"""

from __future__ import annotations

from urllib.parse import urlencode

import azure.functions as func

from shared.common import logs, responses, routes
from shared.common.settings import SettingsError
from shared.common.text import small_count
from shared.console import signin
from shared.records import sids, storage, store
from shared.records.storage import StorageUnavailable

logger = logs.get_logger(__name__)

DEFAULT_LIMIT = 20
MAX_LIMIT = 100
PLURAL = {"call": "calls", "message": "messages"}


async def handle(req: func.HttpRequest, kind: str) -> func.HttpResponse:
    """GET /api/{calls|messages}[/{sid}]: one record, or a page of them (`kind`: call or
    message)."""
    if refused := signin.refusal(req):
        return refused
    sid = req.route_params.get("sid")
    if sid is None:
        return await page(req, kind)
    return await one(kind, sid)


async def one(kind: str, sid: str) -> func.HttpResponse:
    if not sids.BY_KIND[kind].fullmatch(sid):
        return responses.json_error(
            400, f"'{sid[:40]}' is not a {kind} SID, like {sids.DESCRIBED[kind]}.")
    try:
        record = await storage.within_deadline(store.read(kind, sid))
    except (SettingsError, StorageUnavailable) as error:
        return _unavailable(kind, error)
    if record is None:
        return responses.json_error(404, f"No {kind} with the SID {sid} is recorded.")
    return responses.json_body(record, 200)


def page_query(
    req: func.HttpRequest, default: int, maximum: int
) -> tuple[int, dict[str, str] | None] | func.HttpResponse:
    """A paged GET's `?limit=` and `?continuation=` (the token of a page this app gave out), or
    the 400 that says which is wrong."""
    limit = small_count(req.params.get("limit") or str(default), 6)
    if limit is None or not 1 <= limit <= maximum:
        return responses.json_error(400, f"'limit' must be a whole number from 1 to {maximum}.")
    token = None
    if req.params.get("continuation"):
        try:
            token = store.decode_token(req.params["continuation"])
        except ValueError:
            return responses.json_error(
                400, "'continuation' is not a token this app gave out: use the 'next' of a page."
            )
    return limit, token


def next_url(path: str, limit: int, next_token: str | None,
             **filters: str | None) -> str | None:
    """The URL of the next page (the same limit and filters), or None on the last."""
    if not next_token:
        return None
    kept = {name: value for name, value in filters.items() if value is not None}
    return f"{path}?{urlencode({**kept, 'limit': limit, 'continuation': next_token})}"


async def page(req: func.HttpRequest, kind: str) -> func.HttpResponse:
    query = page_query(req, DEFAULT_LIMIT, MAX_LIMIT)
    if isinstance(query, func.HttpResponse):
        return query
    limit, token = query
    try:
        items, next_token = await storage.within_deadline(store.recent(kind, limit, token))
    except (SettingsError, StorageUnavailable) as error:
        return _unavailable(kind, error)
    plural = PLURAL[kind]
    following = next_url(routes.path(plural), limit, next_token)
    return responses.json_body({plural: items, "next": next_token, "next_url": following}, 200)


def _unavailable(kind: str, error: Exception) -> func.HttpResponse:
    if isinstance(error, storage.StorageRefused):
        logger.warning("%s outcome=refused status=400 reason=%s", PLURAL[kind], error)
        return responses.json_error(
            400, "Storage cannot look that up: the SID or 'continuation' is malformed."
        )
    if isinstance(error, SettingsError):
        logger.error("%s outcome=failed reason=settings: %s", PLURAL[kind], error.describe())
        return responses.not_configured(error)
    logger.error("%s outcome=unavailable reason=%s", PLURAL[kind], error)
    return responses.json_error(
        503, "The records cannot be read now: storage is unavailable. Try again shortly.",
        headers={"Retry-After": "5"},
    )
