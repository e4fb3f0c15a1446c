"""The Azure Storage Queues extension's listener, played locally for queue-triggered functions.

Where Core Tools run the app, the host's queue extension polls each queueTrigger's queue and
hands every message to the worker. Without them this module does that part, over the real queue
service (Azurite locally), following the extension (Microsoft.Azure.WebJobs.Extensions.Storage.
Queues: QueueListener, QueueProcessor, QueuesOptions):

- one listener per queue-triggered function, on the connection its `connection` setting names
  (AzureWebJobsStorage by default; `UseDevelopmentStorage=true` is Azurite's default account);
- a queue that does not exist is not created: the listener checks again after each back-off, so
  it starts as soon as something creates the queue (as the extension does);
- Get Messages takes up to batchSize messages, hidden for 10 minutes while they are processed
  (the extension's fixed processing visibility, renewed at half-time for long invocations);
- a new batch is fetched once the messages in flight drop to newBatchThreshold, so at most
  batchSize + newBatchThreshold run at once per function;
- an empty queue is polled again after a randomised exponential back-off: 100 ms after a
  message, then about 200 ms, 400 ms, ... up to maxPollingInterval (2 s by default locally, as
  under `func start`, where the host runs in the Development environment);
- messageEncoding base64 (the default): the body is base64-decoded before the function sees it;
  a message that is not valid base64 goes straight to the poison queue;
- success deletes the message; failure releases it with host.json's visibilityTimeout, or, on
  its maxDequeueCount-th delivery, copies its body to `<queue>-poison` (created if missing) and
  deletes it. A message already dequeued more than maxDequeueCount times (a crash mid-run) is
  poisoned without running. A queue with no poison queue (its name ends in -poison, or would be
  too long) keeps a failed message invisible until the processing visibility runs out.

The listeners run on their own event loop thread ("devhost-queues"); invocations go to the
worker's loop through `WorkerHost.ainvoke_queue`. `stop()` (or `WorkerHost.close()`) lets the
messages in flight finish, then closes the clients and joins the thread.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import os
import random
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from devhost import appconfig
from devhost.appconfig import FunctionSpec, QueuesOptions

if TYPE_CHECKING:
    from devhost.worker_host import WorkerHost

logger = logging.getLogger("devhost.queues")
# The listener's own storage calls (a poll every few seconds, 404s while a queue does not exist
# yet) would each log their URL and headers at INFO through azure-core, drowning the app's lines.
logging.getLogger("azure.core.pipeline.policies.http_logging_policy").setLevel(logging.WARNING)
# When a read fails (Azurite answers 500 to every read of a queue holding a message with control
# characters: an emulator bug), the SDK logs a WARNING with a traceback for the error body it
# cannot parse, on every poll; the listener's own one-line "unreachable" says the same.
logging.getLogger("azure.storage.queue._generated._utils").setLevel(logging.ERROR)

# The extension receives messages with this visibility timeout and renews it at half-time while
# the function runs (QueueListener), so no other instance gets the message meanwhile.
PROCESSING_VISIBILITY_TIMEOUT = 600.0
MIN_POLLING_INTERVAL = appconfig.MIN_POLLING_INTERVAL
RANDOMIZATION_FACTOR = 0.2  # RandomizedExponentialBackoffStrategy
STOP_TIMEOUT = 30.0
_SETTING_EXPRESSION = re.compile(r"%([^%]+)%")

DELETED = "deleted"  # succeeded: the message is gone
RELEASED = "released"  # failed: visible again after visibilityTimeout, for another try
POISONED = "poisoned"  # failed maxDequeueCount times (or undecodable): moved to <queue>-poison
KEPT = "kept"  # failed, and the queue has no poison queue: left invisible
ERROR = "error"  # storage failed while completing: invisible until the processing visibility ends


class QueueConfigError(RuntimeError):
    """Queue triggers that cannot listen: `errors` maps each function to the reason."""

    def __init__(self, errors: Mapping[str, str]) -> None:
        self.errors = dict(errors)
        super().__init__("\n".join(f"function {name!r}: {reason}"
                                   for name, reason in self.errors.items()))


@dataclass(frozen=True)
class QueueOutcome:
    """What the listener did with one delivery of a message.

    `action` is DELETED, RELEASED, POISONED or KEPT; `invoked` is False for a message poisoned
    without running (undecodable, or dequeued more than maxDequeueCount times); `error` is the
    function's exception and stack trace when it failed.
    """

    function: str
    queue: str
    message_id: str
    dequeue_count: int
    action: str
    invoked: bool
    error: str | None = None
    elapsed: float = 0.0
    finished: float = field(default_factory=time.monotonic)


@dataclass(frozen=True)
class ListenerConfig:
    """One queue trigger's listener: its queue (resolved, lower-cased), poison queue and
    connection (the setting that held it)."""

    function: str
    queue: str
    poison_queue: str | None
    connection_setting: str
    connection_string: str = field(repr=False)


def resolve_connection(name: str, environ: Mapping[str, str]) -> tuple[str, str]:
    """(setting name, connection string) for a binding's `connection`, as the host resolves it:
    the setting itself, else `AzureWebJobs<name>`; `UseDevelopmentStorage=true` means Azurite's
    default account. Raises ValueError naming what is missing."""
    from shared.records.settings import DEVELOPMENT_STORAGE

    candidates = [name]
    if not name.lower().startswith(appconfig.STORAGE_CONNECTION_PREFIX.lower()):
        candidates.append(appconfig.STORAGE_CONNECTION_PREFIX + name)
    for candidate in candidates:
        value = (environ.get(candidate) or "").strip()
        if not value:
            continue
        if value.replace(" ", "").lower().startswith("usedevelopmentstorage=true"):
            return candidate, DEVELOPMENT_STORAGE
        if "=" not in value:
            raise ValueError(f"app setting {candidate!r} is not a storage connection string")
        return candidate, value
    identity = [f"{c}__{suffix}" for c in candidates
                for suffix in ("queueServiceUri", "serviceUri", "accountName")
                if environ.get(f"{c}__{suffix}")]
    if identity:
        raise ValueError(
            f"{identity[0]} is an identity-based connection, which devhost's queue listener does "
            f"not support: set {candidates[-1]} to a connection string (locally "
            "UseDevelopmentStorage=true)")
    raise ValueError(f"Storage account connection string '{candidates[-1]}' does not exist. "
                     "Make sure that it is a defined App Setting.")


def resolve_queue_name(raw: str, environ: Mapping[str, str]) -> str:
    """queueName with `%Setting%` expressions resolved from app settings, lower-cased and checked
    as the extension does (QueueTriggerAttributeBindingProvider). Raises ValueError."""

    def setting(match: re.Match[str]) -> str:
        value = environ.get(match.group(1))
        if value is None:
            raise ValueError(f"queueName {raw!r}: app setting {match.group(1)!r} is not set")
        return value

    name = _SETTING_EXPRESSION.sub(setting, raw).lower()
    if not appconfig.valid_queue_name(name):
        raise ValueError(f"queueName {name!r} is not a valid queue name")
    return name


class _Backoff:
    """RandomizedExponentialBackoffStrategy: the minimum after a found message, else the last
    delay plus minimum * 2^(n-1) * [0.8, 1.2), up to the maximum."""

    def __init__(self, minimum: float, maximum: float) -> None:
        self.minimum = minimum
        self.maximum = max(minimum, maximum)
        self.current = 0.0
        self.exponent = 0

    def next(self, found_message: bool) -> float:
        if found_message:
            self.current, self.exponent = self.minimum, 1
        elif self.current != self.maximum:
            delay = self.minimum
            if self.exponent > 0:
                factor = random.uniform(1 - RANDOMIZATION_FACTOR, 1 + RANDOMIZATION_FACTOR)  # noqa: S311
                delay += factor * 2 ** (self.exponent - 1) * self.minimum
            if delay < self.maximum:
                self.current = delay
                self.exponent += 1
            else:
                self.current = self.maximum
        return self.current


def _seconds(value: float) -> int:
    """The service takes whole seconds; the .NET SDK truncates a TimeSpan the same way."""
    return max(0, int(value))


# Options added to every listener's queue clients (devhost.storage_ops counts the listener's
# operations with a request hook).
CLIENT_OPTIONS: dict[str, Any] = {}


class _Listener:
    """One function's QueueListener + QueueProcessor, on the poller's loop."""

    def __init__(self, poller: QueuePoller, config: ListenerConfig, spec: FunctionSpec) -> None:
        from azure.storage.queue.aio import QueueClient

        self.poller = poller
        self.config = config
        self.spec = spec
        self.options: QueuesOptions = poller.options
        # No encode/decode policy: the listener sees the raw text and decodes it itself, so one
        # undecodable message is poisoned instead of failing the whole batch.
        extra = dict(CLIENT_OPTIONS)
        self.client = QueueClient.from_connection_string(config.connection_string, config.queue,
                                                         **extra)
        self.poison = (QueueClient.from_connection_string(config.connection_string,
                                                          config.poison_queue, **extra)
                       if config.poison_queue else None)
        self.backoff = _Backoff(MIN_POLLING_INTERVAL,
                                self.options.polling_interval_limit(poller.development))
        self.wake = asyncio.Event()
        self.stopping = False
        self.processing: set[asyncio.Task[None]] = set()
        self._found_since_delay = False
        self._queue_exists: bool | None = None
        self._storage_down = False

    @property
    def url(self) -> str:
        return str(self.client.url).rstrip("/")

    async def run(self) -> None:
        """Poll until cancelled (a stop); the messages in flight are `processing`, drained by
        the poller after this returns."""
        logger.debug("queue listener started (function %s, queue %s)", self.spec.name,
                     self.config.queue)
        while not self.stopping:
            messages = await self._receive()
            if not messages:
                await self._delay(self.backoff.next(self._found_since_delay))
                self._found_since_delay = False
                continue
            self._found_since_delay = True
            for message in messages:
                task = asyncio.create_task(self._process(message))
                self.processing.add(task)
                task.add_done_callback(self.processing.discard)
            # WaitForNewBatchThreshold: the next batch once few enough are in flight.
            while len(self.processing) > self.options.new_batch_threshold:
                await asyncio.wait(set(self.processing), return_when=asyncio.FIRST_COMPLETED)

    async def drain(self, timeout: float | None = None) -> None:
        """Let the messages in flight finish (graceful stop), cancelling them after `timeout`."""
        if not self.processing:
            return
        _, pending = await asyncio.wait(set(self.processing), timeout=timeout)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)

    async def _delay(self, seconds: float) -> None:
        """The back-off delay, cut short by `notify` (a message moved to this poison queue) or a
        stop."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wake.wait(), seconds)
        self.wake.clear()

    def notify(self) -> None:
        self.wake.set()

    async def _receive(self) -> list[Any]:
        from azure.core.exceptions import AzureError, ResourceNotFoundError

        try:
            if not self._queue_exists:
                self._queue_exists = await self._exists()
                if not self._queue_exists:
                    return []
            batch = [m async for m in self.client.receive_messages(
                messages_per_page=self.options.batch_size, max_messages=self.options.batch_size,
                visibility_timeout=_seconds(self.poller.processing_visibility_timeout))]
        except ResourceNotFoundError:
            self._queue_exists = None
            return []
        except AzureError as error:
            self._queue_exists = None
            if not self._storage_down:
                logger.warning("queue %s (function %s) is unreachable, retrying with back-off: "
                               "%s", self.config.queue, self.spec.name,
                               str(error).splitlines()[0] if str(error) else type(error).__name__)
            self._storage_down = True
            return []
        if self._storage_down:
            logger.info("queue %s is reachable again", self.config.queue)
            self._storage_down = False
        return batch

    async def _exists(self) -> bool:
        from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError

        try:
            await self.client.get_queue_properties()
            return True
        except ResourceNotFoundError:
            if not self.poller.create_queues:
                return False
        with contextlib.suppress(ResourceExistsError):
            await self.client.create_queue()
        return True

    def _body(self, content: str | None) -> bytes | None:
        raw = (content or "").encode("utf-8")
        if self.options.message_encoding == "none":
            return raw
        try:
            return base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            return None

    async def _process(self, message: Any) -> None:
        began = time.perf_counter()
        try:
            await self._process_message(message, began)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # the extension reports it and carries on
            logger.error("processing message %s from %s failed", message.id, self.config.queue,
                         exc_info=True)
            self.poller._record(QueueOutcome(
                self.spec.name, self.config.queue, message.id, int(message.dequeue_count or 1),
                ERROR, invoked=False, error=f"{type(error).__name__}: {error}",
                elapsed=time.perf_counter() - began))

    async def _process_message(self, message: Any, began: float) -> None:
        from devhost.worker_host import QueueMessageData

        dequeue_count = int(message.dequeue_count or 1)
        name = self.spec.name

        def outcome(action: str, invoked: bool, error: str | None = None) -> None:
            self.poller._record(QueueOutcome(
                name, self.config.queue, message.id, dequeue_count, action, invoked, error,
                time.perf_counter() - began))

        if dequeue_count > self.options.max_dequeue_count and self.poison is not None:
            await self._poison(message)
            outcome(POISONED, invoked=False, error="dequeued more than maxDequeueCount times")
            return
        body = self._body(message.content)
        if body is None:
            logger.warning("message %s on %s is not valid base64 (messageEncoding base64)",
                           message.id, self.config.queue)
            if self.poison is not None:
                await self._poison(message)
                outcome(POISONED, invoked=False, error="not valid base64")
            else:
                outcome(KEPT, invoked=False, error="not valid base64")
            return
        receipt = _Receipt(message.pop_receipt)
        renewal = asyncio.create_task(self._renew(message.id, receipt))
        try:
            result = await self.poller.host.ainvoke_queue(name, QueueMessageData(
                id=message.id,
                body=body,
                dequeue_count=dequeue_count,
                insertion_time=message.inserted_on,
                expiration_time=message.expires_on,
                next_visible_time=message.next_visible_on,
                pop_receipt=message.pop_receipt,
            ), queue_name=self.config.queue)
        finally:
            renewal.cancel()
            await asyncio.gather(renewal, return_exceptions=True)
        message.pop_receipt = receipt.value
        if result.succeeded:
            await self._delete(message)
            outcome(DELETED, invoked=True)
        elif self.poison is None:
            outcome(KEPT, invoked=True, error=result.error)
        elif dequeue_count >= self.options.max_dequeue_count:
            await self._poison(message)
            outcome(POISONED, invoked=True, error=result.error)
        else:
            await self._release(message)
            outcome(RELEASED, invoked=True, error=result.error)

    async def _renew(self, message_id: str, receipt: _Receipt) -> None:
        """UpdateQueueMessageVisibilityCommand: keep a long-running message hidden."""
        from azure.core.exceptions import AzureError

        visibility = self.poller.processing_visibility_timeout
        while True:
            await asyncio.sleep(max(visibility / 2, 0.5))
            try:
                updated = await self.client.update_message(
                    message_id, receipt.value, visibility_timeout=_seconds(visibility))
            except AzureError as error:
                logger.warning("could not renew the visibility of message %s: %s", message_id,
                               error)
                return
            receipt.value = updated.pop_receipt

    async def _delete(self, message: Any) -> None:
        from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

        try:
            await self.client.delete_message(message.id, message.pop_receipt)
        except ResourceNotFoundError:
            logger.debug("message %s was already gone from %s", message.id, self.config.queue)
        except HttpResponseError as error:
            if error.status_code != 400:  # PopReceiptMismatch: someone else has it now
                raise
            logger.debug("message %s: pop receipt mismatch on delete", message.id)

    async def _release(self, message: Any) -> None:
        from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

        try:
            await self.client.update_message(
                message.id, message.pop_receipt,
                visibility_timeout=_seconds(self.options.visibility_timeout))
        except ResourceNotFoundError:
            pass
        except HttpResponseError as error:
            if error.status_code != 400:
                raise

    async def _poison(self, message: Any) -> None:
        """CopyMessageToPoisonQueueAsync (same content, the poison queue created if missing),
        then delete; a listener on the poison queue is woken at once (SharedQueueWatcher)."""
        from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError

        assert self.poison is not None
        logger.warning("Message has reached MaxDequeueCount of %d. Moving message to queue "
                       "'%s'.", self.options.max_dequeue_count, self.config.poison_queue)
        try:
            await self.poison.send_message(message.content)
        except ResourceNotFoundError:
            with contextlib.suppress(ResourceExistsError):
                await self.poison.create_queue()
            await self.poison.send_message(message.content)
        await self._delete(message)
        self.poller._notify(str(self.poison.url).rstrip("/"))

    async def close(self) -> None:
        await self.client.close()
        if self.poison is not None:
            await self.poison.close()


@dataclass
class _Receipt:
    value: str


class QueuePoller:
    """The queue listeners of one WorkerHost's queue-triggered functions.

    `WorkerHost.start_queues(...)` builds, starts and (on close) stops one. Arguments:
    `functions` (names; default every enabled queue-triggered function), `environ` (where the
    `connection` settings are read; default os.environ, read at `start()`), `development`
    (True: maxPollingInterval defaults to 2 s, as under `func start`), `processing_visibility_
    timeout` (seconds a received message stays hidden while it runs; the extension's 10 min),
    `create_queues` (False, like the extension: a missing queue is waited for, not created).

    Tests wait with `wait_for(count, ...)`, which returns the outcomes recorded so far.
    """

    def __init__(
        self,
        host: WorkerHost,
        *,
        functions: Iterable[str] | None = None,
        environ: Mapping[str, str] | None = None,
        development: bool = True,
        processing_visibility_timeout: float = PROCESSING_VISIBILITY_TIMEOUT,
        create_queues: bool = False,
    ) -> None:
        self.host = host
        self.options = host.config.queues
        self.development = development
        self.processing_visibility_timeout = processing_visibility_timeout
        self.create_queues = create_queues
        self._environ = environ
        specs = {spec.name: spec for spec in host.queue_functions}
        if functions is not None:
            wanted = list(functions)
            unknown = [name for name in wanted if name not in specs]
            if unknown:
                raise ValueError(f"not queue-triggered functions of this app: {unknown}")
            specs = {name: specs[name] for name in wanted}
        self._specs = specs
        self.listeners: list[ListenerConfig] = []
        self.errors: dict[str, str] = {}
        self._outcomes: list[QueueOutcome] = []
        self._condition = threading.Condition()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._stop_event: asyncio.Event | None = None
        self._startup_error: BaseException | None = None
        self._running: list[_Listener] = []

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self, strict: bool = True) -> QueuePoller:
        """Resolve every listener's queue and connection, then start polling on a new thread.

        Raises QueueConfigError for functions that cannot listen (missing connection setting,
        bad queue name); with `strict=False` they are left out and listed in `errors`.
        """
        if self._thread is not None:
            raise RuntimeError("this QueuePoller was already started")
        environ = os.environ if self._environ is None else self._environ
        for name, spec in self._specs.items():
            trigger = spec.queue_trigger
            assert trigger is not None
            try:
                queue = resolve_queue_name(trigger.queue_name, environ)
                setting, connection = resolve_connection(trigger.connection, environ)
            except ValueError as error:
                self.errors[name] = str(error)
                continue
            self.listeners.append(ListenerConfig(name, queue, appconfig.poison_queue_name(queue),
                                                 setting, connection))
        if strict and self.errors:
            raise QueueConfigError(self.errors)
        if not self.listeners:
            return self
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="devhost-queues", daemon=True)
        self._thread.start()
        self._started.wait()
        if self._startup_error is not None:
            self._thread.join()
            raise self._startup_error
        return self

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def in_flight(self) -> int:
        """Messages received and not yet completed (their invocation is running, or the
        message is being deleted, released or poisoned)."""
        return sum(len(listener.processing) for listener in list(self._running))

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Stop polling: messages in flight finish (up to `timeout` s, then they are cancelled
        and reappear once their visibility runs out), the clients close and the thread ends."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None or not thread.is_alive():
            return
        stop_event = self._stop_event

        def request_stop() -> None:
            self._drain_timeout = timeout
            if stop_event is not None:
                stop_event.set()

        loop.call_soon_threadsafe(request_stop)
        thread.join(timeout + 5)
        if thread.is_alive():
            logger.warning("queue listeners did not stop within %s s", timeout + 5)

    def __enter__(self) -> QueuePoller:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def describe(self) -> str:
        """One line for start-up: each function and the queue it listens on."""
        parts = [f"{c.function} <- {c.queue}" + (f" (poison: {c.poison_queue})"
                                                   if c.poison_queue else " (no poison queue)")
                 for c in self.listeners]
        return ", ".join(parts)

    def _run(self) -> None:
        assert self._loop is not None
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._main())
        finally:
            self._loop.run_until_complete(self._loop.shutdown_asyncgens())
            self._loop.close()

    async def _main(self) -> None:
        self._stop_event = asyncio.Event()
        self._drain_timeout = STOP_TIMEOUT
        try:
            for config in self.listeners:
                self._running.append(_Listener(self, config, self.host.functions[config.function]))
        except BaseException as error:  # reported to start()'s caller
            self._startup_error = error
            self._started.set()
            await self._close_clients()
            return
        tasks = [asyncio.create_task(listener.run(), name=f"queue:{listener.config.queue}")
                 for listener in self._running]
        self._started.set()
        stopper = asyncio.create_task(self._stop_event.wait())
        await asyncio.wait([stopper, *tasks], return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                logger.error("queue listener for %s failed", task.get_name(),
                             exc_info=task.exception())
        # Stop: no more polling (a receive in progress is abandoned, as the extension cancels
        # it), the messages in flight finish, then the clients close.
        for listener in self._running:
            listener.stopping = True
        for task in (*tasks, stopper):
            task.cancel()
        await asyncio.gather(*tasks, stopper, return_exceptions=True)
        deadline = time.monotonic() + self._drain_timeout
        for listener in self._running:
            await listener.drain(timeout=max(0.0, deadline - time.monotonic()))
        await self._close_clients()

    async def _close_clients(self) -> None:
        for listener in self._running:
            try:
                await listener.close()
            except Exception:  # closing; nothing left to do with it
                logger.debug("closing a queue client failed", exc_info=True)

    def _notify(self, queue_url: str) -> None:
        """Wake the listener polling `queue_url` (SharedQueueWatcher.Notify)."""
        for listener in self._running:
            if listener.url == queue_url:
                listener.notify()

    # -- outcomes ----------------------------------------------------------------------------

    def _record(self, outcome: QueueOutcome) -> None:
        with self._condition:
            self._outcomes.append(outcome)
            self._condition.notify_all()

    @property
    def outcomes(self) -> list[QueueOutcome]:
        """Every delivery handled so far, in the order they finished."""
        with self._condition:
            return list(self._outcomes)

    def wait_for(
        self,
        count: int,
        *,
        function: str | None = None,
        action: str | None = None,
        where: Callable[[QueueOutcome], bool] | None = None,
        timeout: float = 10.0,
    ) -> list[QueueOutcome]:
        """Block until `count` outcomes match (`function`, `action`, `where`); returns the
        matching ones. Raises TimeoutError listing every outcome seen when `timeout` passes."""

        def matching() -> list[QueueOutcome]:
            return [o for o in self._outcomes
                    if (function is None or o.function == function)
                    and (action is None or o.action == action)
                    and (where is None or where(o))]

        deadline = time.monotonic() + timeout
        with self._condition:
            while len(found := matching()) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(
                        f"{len(found)} of {count} queue outcomes after {timeout} s; all so far: "
                        f"{self._outcomes}")
                self._condition.wait(remaining)
            return found
