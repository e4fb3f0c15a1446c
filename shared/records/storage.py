"""Azure Table Storage (records) and Queue Storage (broadcasts), through the Functions host's own
connection.

The connection follows the AzureWebJobsStorage convention (see shared.records.settings): a
connection string (locally UseDevelopmentStorage=true, which is Azurite), or identity-based on Azure
with azure-identity's managed identity credential for the app's user-assigned identity. No account
key is configured anywhere on Azure.

The Azure SDKs are imported on first use (docs/benchmark.md, cold start). Clients are built once
per process and event loop (the async transport binds to its loop: shared.common.loop_bound)
and reused.

Every storage call is bounded (`TIMEOUT`) and retried at most once by the SDK, so a caller such
as a status callback can answer 503 well inside Twilio's 15-second webhook deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from shared.common.loop_bound import PerLoop, close_on
from shared.records.settings import StorageSettings, load_storage_settings
from shared.telemetry import names

if TYPE_CHECKING:
    from azure.data.tables.aio import TableClient, TableServiceClient

T = TypeVar("T")

# Seconds a whole piece of storage work may take (a callback's record and event, a record and its
# index, a page of records): under the host's 12 s functionTimeout, so the function itself still
# answers (503 for a callback, "recorded": false for make_call) and Twilio's 15 s never runs out.
DEADLINE = 8.0

# Seconds one storage operation may take, retries included: well inside the 12 s function
# timeout and Twilio's 15 s webhook deadline.
TIMEOUT = 5.0
_TRANSPORT = {
    "connection_timeout": 2,
    "read_timeout": 3,
    "retry_total": 1,
    "retry_backoff_factor": 0.2,
}
# The queue SDK retries with a storage policy of its own, which ignores retry_backoff_factor: by
# default it waits initial_backoff + increment_base ** try (15 + 3 s) before its retry, so
# TIMEOUT ran out first and a storage error's status was never seen. Its one retry now comes
# after 0.2 s (± 0.1 s).
_QUEUE_RETRY = {"initial_backoff": 0.1, "increment_base": 0.1, "random_jitter_range": 0.1}


class StorageUnavailable(Exception):
    """Storage could not be reached, refused, or did not answer in time; the reason is safe to
    log (no key, no connection string). `status`: storage's HTTP status, 0 when none came.
    `unknown`: the request may have been carried out all the same (it was sent, and no answer
    said otherwise: a time-out, a connection lost mid-answer, a 500), where a caller must not
    report it as not done."""

    def __init__(self, reason: str, status: int = 0, unknown: bool = False) -> None:
        super().__init__(reason)
        self.status = status
        self.unknown = unknown


class StorageRefused(StorageUnavailable):
    """Storage answered 400: the request itself is wrong (a key or value it does not take), so
    trying again cannot help. A caller that can blame its own caller answers 4xx; the others
    treat it as unavailable."""


# azure-core logs every storage request and response (URL, headers) at INFO: several lines per
# table or queue operation, which on Azure all go to Application Insights (billed by volume)
# and locally drown the app's own lines. Its warnings and errors still come through.
_SDK_HTTP_LOGGER = "azure.core.pipeline.policies.http_logging_policy"


def _quiet_sdk_http_logs() -> None:
    import logging

    sdk = logging.getLogger(_SDK_HTTP_LOGGER)
    if sdk.level == logging.NOTSET:  # a level someone set on purpose is kept
        sdk.setLevel(logging.WARNING)


@dataclass
class _Clients:
    """The storage clients of one event loop (shared.common.loop_bound): the table service for
    the current settings, the client of each table used on it, and each queue's client.

    A TableClient configures a whole request pipeline when built (some 180 µs of CPU), so each
    is built once per table, not once per operation: its table was created (or found) then. It
    shares the service's connections and needs no closing of its own."""

    settings: StorageSettings | None = None
    service: TableServiceClient | None = None
    tables: dict[str, TableClient] = field(default_factory=dict)
    queues: dict[tuple[StorageSettings, str], Any] = field(default_factory=dict)
    # Without a connection string: the one credential the service and every queue sign in with
    # (one token, fetched once, where a credential per client fetched its own), for the
    # managed identity it was made for; it holds a session of its own, closed with the rest.
    credential: Any = None
    credential_for: str | None = None


_clients: PerLoop[_Clients] = PerLoop(_Clients)


def _service(settings: StorageSettings) -> TableServiceClient:
    clients = _clients.here()
    if clients.service is not None and clients.settings == settings:
        return clients.service
    from azure.data.tables.aio import TableServiceClient

    _quiet_sdk_http_logs()
    if settings.connection_string:
        with _unusable_connection_string():
            service = TableServiceClient.from_connection_string(
                settings.connection_string, **_TRANSPORT
            )
    else:
        service = TableServiceClient(
            endpoint=settings.table_endpoint or "", credential=_credential(settings), **_TRANSPORT
        )
    if clients.service is not None:  # the settings changed: the old service is closed
        close_on(asyncio.get_running_loop(), clients.service.close)
    clients.settings, clients.service = settings, service
    clients.tables.clear()
    return service


@contextlib.contextmanager
def _unusable_connection_string() -> Any:
    """A connection string the settings' check let through but the storage library refuses
    (ValueError, quoting it): a SettingsError naming AzureWebJobsStorage, never its value."""
    try:
        yield
    except ValueError:
        from shared.common.settings import SettingsError

        raise SettingsError([("AzureWebJobsStorage", "is malformed: the storage library cannot "
                              "build a client from this connection string")]) from None


def _credential(settings: StorageSettings) -> Any:
    """This loop's credential for the settings' identity: made on first use, then shared."""
    clients = _clients.here()
    wanted = settings.managed_identity_client_id  # None: the default chain
    if clients.credential is not None and clients.credential_for == wanted:
        return clients.credential
    if wanted is not None:
        from azure.identity.aio import ManagedIdentityCredential

        credential = ManagedIdentityCredential(client_id=wanted or None)
    else:
        # The host's convention without __credential: the default chain (az login locally).
        from azure.identity.aio import DefaultAzureCredential

        credential = DefaultAzureCredential()
    if clients.credential is not None:  # the settings changed: the old one is closed
        close_on(asyncio.get_running_loop(), clients.credential.close)
    clients.credential, clients.credential_for = credential, wanted
    return credential


async def queue(name: str) -> Any:
    """The named queue (an async QueueClient), created on first use in this process. Messages
    are plain text (host.json's messageEncoding is none: the functions decode what they get, so
    a malformed message is theirs to log and drop, not the host's to fail on)."""
    settings = load_storage_settings()
    queues = _clients.here().queues
    cached = queues.get((settings, name))
    if cached is not None:
        return cached
    from azure.core.exceptions import ResourceExistsError
    from azure.storage.queue.aio import QueueClient

    _quiet_sdk_http_logs()
    if settings.connection_string:
        with _unusable_connection_string():
            client = QueueClient.from_connection_string(
                settings.connection_string, name, **_TRANSPORT, **_QUEUE_RETRY
            )
    else:
        client = QueueClient(
            settings.queue_endpoint or "", name, credential=_credential(settings), **_TRANSPORT,
            **_QUEUE_RETRY,
        )
    try:
        with contextlib.suppress(ResourceExistsError):
            await bounded(client.create_queue(), "queue")
    except BaseException:
        with contextlib.suppress(Exception):  # never cached, so closed here
            await client.close()
        raise
    queues[(settings, name)] = client
    return client


async def on_queue(name: str, operation: Callable[[Any], Awaitable[T]]) -> T:
    """`operation(queue)`, bounded; if the queue is gone (deleted, or an emulator restarted with
    its data in memory) it is created again and the operation tried once more."""
    from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError

    client = await queue(name)
    try:
        return await bounded(operation(client), "queue")
    except ResourceNotFoundError as error:
        if "QueueNotFound" not in (str(getattr(error, "error_code", "") or "") + str(error)):
            raise
        with contextlib.suppress(ResourceExistsError):
            await bounded(client.create_queue(), "queue")
        return await bounded(operation(client), "queue")


async def table(name: str) -> TableClient:
    """The named table, created on first use in this process. Raises StorageUnavailable, or
    SettingsError when the connection is not configured."""
    service = _service(load_storage_settings())
    tables = _clients.here().tables
    client = tables.get(name)
    if client is None:
        from azure.core.exceptions import ResourceExistsError

        with contextlib.suppress(ResourceExistsError):
            await bounded(service.create_table(name))
        client = tables[name] = service.get_table_client(name)
    return client


def forget_table(name: str) -> None:
    """Forget the table's clients on every loop, so that its next use creates the table again
    (for a test or a tool that deleted it; `on_table` finds a deleted table by itself, at the
    cost of a failed operation)."""
    for clients in _clients.values():
        clients.tables.pop(name, None)


async def within_deadline(work: Awaitable[T]) -> T:
    """`work`, or StorageUnavailable when it takes longer than DEADLINE altogether."""
    try:
        return await asyncio.wait_for(work, DEADLINE)
    except TimeoutError:
        raise StorageUnavailable(f"storage work took longer than {DEADLINE:g} s") from None


async def on_table(name: str, operation: Callable[[TableClient], Awaitable[T]]) -> T:
    """`operation(table)`, bounded; if the table is gone (deleted, or an emulator restarted
    with its data in memory) it is created again and the operation tried once more."""
    from azure.core.exceptions import ResourceNotFoundError

    client = await table(name)
    try:
        return await bounded(operation(client))
    except ResourceNotFoundError as error:
        # The SDK leaves error_code unset here; the service's code is in the message.
        if "TableNotFound" not in (str(getattr(error, "error_code", "") or "") + str(error)):
            raise
        _clients.here().tables.pop(name, None)
        return await bounded(operation(await table(name)))


async def bounded(operation: Any, service: str = "table") -> Any:
    """Await a storage operation within TIMEOUT; any failure becomes StorageUnavailable (or
    StorageRefused, for a request storage will never take) except the three a caller decides on:
    ResourceExistsError, ResourceNotFoundError and ResourceModifiedError (a conditional write
    that lost a race). Each unavailable answer is counted (storage.unavailable) under `service`:
    table or queue."""
    try:
        return await _bounded(operation)
    except StorageRefused:
        raise
    except StorageUnavailable as error:
        from shared import telemetry

        telemetry.count(names.STORAGE_UNAVAILABLE, {names.STORAGE_SERVICE: service,
                                                   names.HTTP_STATUS: error.status})
        raise


async def _bounded(operation: Any) -> Any:
    from azure.core.exceptions import (
        AzureError,
        ClientAuthenticationError,
        HttpResponseError,
        ResourceExistsError,
        ResourceModifiedError,
        ResourceNotFoundError,
        ServiceRequestError,
        ServiceResponseError,
    )

    try:
        return await asyncio.wait_for(operation, TIMEOUT)
    except (ResourceExistsError, ResourceNotFoundError, ResourceModifiedError):
        raise
    except TimeoutError:
        raise StorageUnavailable(f"storage did not answer within {TIMEOUT:g} s",
                                 unknown=True) from None
    except ClientAuthenticationError as error:  # before HttpResponseError, of which it is one
        if not error.status_code:  # no answer from storage: the credential found no sign-in
            raise StorageUnavailable(
                "no credential could sign in to storage (ClientAuthenticationError): on Azure, "
                "the app's managed identity; locally, `az login`, or AzureWebJobsStorage set to "
                "a connection string") from None
        raise _refused_credentials(error) from None
    except HttpResponseError as error:
        status = error.status_code or 0
        if status in (401, 403):
            raise _refused_credentials(error) from None
        if getattr(error, "error_code", None) == "TableNotFound":
            # A transaction on a table that is gone: the SDK raises TableTransactionError, not
            # ResourceNotFoundError as for one operation, so on_table would not create it again
            # and every broadcast was refused until the process restarted.
            raise ResourceNotFoundError(message="TableNotFound") from None
        if 400 <= status < 500 and status not in (401, 403, 408, 429):
            # The request itself is wrong (a key or value storage does not take): trying again
            # cannot help. Credentials (401, 403), time-outs and throttling (408, 429) can pass.
            code = getattr(error, "error_code", None) or f"HTTP {status}"
            raise StorageRefused(f"storage refused the request: {code}", status) from None
        # 503 (server busy) and the like refuse the request; a 500 may come after the work.
        raise StorageUnavailable(f"storage failed: {type(error).__name__}", status,
                                 unknown=status in (0, 500, 504)) from None
    except ServiceResponseError:  # sent, and the answer was lost: it may have been done
        raise StorageUnavailable("storage's answer was lost (ServiceResponseError)",
                                 unknown=True) from None
    except ServiceRequestError:  # no answer at all: refused, unresolved or timed out
        raise StorageUnavailable(
            "storage could not be reached (ServiceRequestError): on Azure, the storage "
            "account's network rules; locally, is Azurite running? (scripts/start.sh starts it)"
        ) from None
    except AzureError as error:
        raise StorageUnavailable(f"storage failed: {type(error).__name__}") from None
    except OSError as error:
        raise StorageUnavailable(f"storage unreachable: {type(error).__name__}") from None


def _refused_credentials(error: Any) -> StorageUnavailable:
    code = getattr(error, "error_code", None) or ""
    return StorageUnavailable(
        f"storage refused the app's credentials (HTTP {error.status_code} {code}".rstrip()
        + "): check AzureWebJobsStorage's key, or on Azure the role of the app's managed "
        "identity on the storage account", error.status_code or 0)


async def close() -> None:
    """Close the storage clients made on the running loop (their aiohttp sessions), for a host
    shutting down or a test ending; the next use on this loop builds them again."""
    clients = _clients.take_here()
    if clients is None:
        return
    for client in ([clients.service] if clients.service else []) + list(clients.queues.values()):
        with contextlib.suppress(Exception):
            await client.close()
    if clients.credential is not None:
        with contextlib.suppress(Exception):
            await clients.credential.close()
