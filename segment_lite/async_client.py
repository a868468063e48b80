"""The asyncio client: ``Client``'s six calls and options, delivery in tasks on the running loop.

Messages are built, validated, encoded and counted by the same code as
``Client`` (an inner ``Client`` whose pipeline is the asyncio one); batches go
out through the same delivery rules (``batch_core``), driven by
``async_sender`` over httpx. See docs/async.md.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Callable, Optional

from segment_lite.async_pipeline import AsyncPipeline
from segment_lite.async_transport import AsyncTransportFactory, HttpxTransport, _httpx
from segment_lite.client import Client, ClientBase, Result
from segment_lite.errors import ValidationError

__all__ = ["AsyncClient"]


class _Captured:
    """Stands in for the pipeline of the immediate-send builder: keeps the encoded message to await."""

    def __init__(self, pipeline: AsyncPipeline) -> None:
        self._pipeline = pipeline
        self.data: Optional[bytes] = None

    @property
    def ledger(self) -> Any:
        return self._pipeline.ledger

    @property
    def closed(self) -> bool:
        return self._pipeline.closed

    @property
    def queue(self) -> Any:
        return self._pipeline.queue

    def send_now(self, data: bytes) -> None:
        self.data = data

    def take(self) -> Optional[bytes]:
        data, self.data = self.data, None
        return data


class AsyncClient(ClientBase):
    """A Segment client for asyncio applications: the calls of ``Client``, delivery without threads.

    ``track()`` and the other five calls are synchronous, non-blocking enqueues
    with ``Client``'s signatures and return values. ``await flush()``,
    ``await shutdown()`` and ``async with`` wait without blocking the loop;
    ``await track_now()`` (and ``identify_now``, ...) send one message at once
    and return the server's verdict. The constructor takes ``Client``'s
    options, except ``sync_mode`` (use the ``*_now`` calls), ``on_full="block"``,
    ``spool_dir`` and OAuth, which would block the loop. ``transport`` is a
    factory of ``AsyncTransport`` (httpx by default).
    """

    _pipeline: AsyncPipeline

    def __init__(
        self,
        write_key: Optional[str] = None,
        *args: Any,
        transport: Optional[AsyncTransportFactory] = None,
        **options: Any,
    ) -> None:
        for name, refused, why in (
            ("sync_mode", True, "await client.track_now(...) (and identify_now, ...) send at once"),
            ("on_full", "block", "waiting for room would block the event loop; use on_full='drop'"),
        ):
            if options.get(name) == refused:
                raise ValidationError(f"AsyncClient does not take {name}={refused!r}: {why}", name)
        for name, why in (
            ("spool_dir", "the disk spool's file I/O would block the event loop"),
            ("oauth_client_id", "OAuth token requests are synchronous"),
        ):
            if options.get(name) is not None:
                raise ValidationError(f"AsyncClient does not support {name}: {why} (use Client)", name)
        if len(args) > 14 and args[14] is not None:  # oauth_client_id, passed by position
            raise ValidationError(
                "AsyncClient does not support oauth_client_id (use Client)", "oauth_client_id"
            )
        client = Client(write_key, *args, **options)  # its threaded transport serves only salvage
        if client.sync_mode:  # passed by position
            client._pipeline.close()
            raise ValidationError(
                "AsyncClient does not take sync_mode=True: use the *_now calls", "sync_mode"
            )
        threaded = client._pipeline
        threaded.close()  # built by Client, never used: this client delivers from tasks
        proxies = client.options.proxies
        if transport is None:
            _httpx()  # imported now, not on the loop at the first request (it takes a few hundred ms)

            url = client.url

            def transport_factory() -> HttpxTransport:
                return HttpxTransport(proxies, url=url)

            def immediate_factory() -> HttpxTransport:
                return HttpxTransport(proxies, max_connections=100, url=url)

            factory: Any = transport_factory
            immediate: Any = immediate_factory
        else:
            factory = immediate = transport
        pipeline = AsyncPipeline(
            threaded._queue_factory,
            threaded.delivery,
            threaded.batching,
            factory,
            on_error=client.options.on_error,
            log=client.log,
            shutdown_timeout_s=client.options.shutdown_timeout,
            on_drop=client.options.on_drop,
            credentials=threaded.credentials,
            observers=threaded.observers,  # the list add_observer() appends to
        )
        pipeline.immediate_transport_factory = immediate
        pipeline.prepare_transports()  # now, not on the loop at the first request
        pipeline.salvage_transport_factory = client._transport_factory if transport is None else transport
        pipeline.flush_at_exit = threaded.flush_at_exit
        client._pipeline = pipeline  # type: ignore[assignment]
        self._client = client
        self._enqueue = client._enqueue  # the six calls (ClientBase) build and queue as Client's do
        self._pipeline = pipeline
        # The immediate calls build with the same code, in sync mode, onto a capture.
        self._captured = _Captured(pipeline)
        self._now = copy.copy(client)
        self._now.sync_mode = True
        self._now._pipeline = self._captured  # type: ignore[assignment]

    # -- options and state -------------------------------------------------------

    def __getattr__(self, name: str) -> Any:
        # Options and read-only state (host, url, gzip, timeout, strict, upload_size, ...) as Client has them.
        if name.startswith("__") or name in ("_client", "_enqueue", "_pipeline", "_now", "_captured"):
            raise AttributeError(name)
        return getattr(self._client, name)

    @property
    def write_key(self) -> str:
        """The write key (never in logs, errors or repr); assigning it sends with the new one."""
        return self._client.write_key

    @write_key.setter
    def write_key(self, write_key: str) -> None:
        self._client.write_key = write_key

    @property
    def flush_at_exit(self) -> bool:
        """Whether messages a closed loop left queued are delivered at interpreter exit (default True)."""
        return self._pipeline.flush_at_exit

    @flush_at_exit.setter
    def flush_at_exit(self, flush_at_exit: bool) -> None:
        self._pipeline.flush_at_exit = bool(flush_at_exit)

    def __repr__(self) -> str:
        return (
            f"<segment_lite.AsyncClient url={self._client.url!r} write_key='***' "
            f"tasks={self._client.options.thread} queued={self._pipeline.queue.qsize()}>"
        )

    # -- immediate sends: one request each, awaited ---------------------------------

    async def identify_now(
        self,
        user_id: Any = None,
        traits: Optional[Mapping[str, Any]] = None,
        context: Optional[Mapping[str, Any]] = None,
        timestamp: Any = None,
        anonymous_id: Any = None,
        integrations: Optional[Mapping[str, Any]] = None,
        message_id: Optional[str] = None,
    ) -> Result:
        """``identify`` sent now, in one request: ``(True, message)`` once the server took it.

        Raises ``APIError`` when the server refused it, ``RetriesExhaustedError`` when no answer came.
        """
        return await self._send_now(self._now.identify, locals())

    async def track_now(
        self,
        user_id: Any = None,
        event: Optional[str] = None,
        properties: Optional[Mapping[str, Any]] = None,
        context: Optional[Mapping[str, Any]] = None,
        timestamp: Any = None,
        anonymous_id: Any = None,
        integrations: Optional[Mapping[str, Any]] = None,
        message_id: Optional[str] = None,
    ) -> Result:
        """``track`` sent now, in one request: ``(True, message)`` once the server took it.

        Raises ``APIError`` when the server refused it, ``RetriesExhaustedError`` when no answer came.
        """
        return await self._send_now(self._now.track, locals())

    async def alias_now(
        self,
        previous_id: Any = None,
        user_id: Any = None,
        context: Optional[Mapping[str, Any]] = None,
        timestamp: Any = None,
        integrations: Optional[Mapping[str, Any]] = None,
        message_id: Optional[str] = None,
    ) -> Result:
        """``alias`` sent now, in one request: ``(True, message)`` once the server took it.

        Raises ``APIError`` when the server refused it, ``RetriesExhaustedError`` when no answer came.
        """
        return await self._send_now(self._now.alias, locals())

    async def group_now(
        self,
        user_id: Any = None,
        group_id: Any = None,
        traits: Optional[Mapping[str, Any]] = None,
        context: Optional[Mapping[str, Any]] = None,
        timestamp: Any = None,
        anonymous_id: Any = None,
        integrations: Optional[Mapping[str, Any]] = None,
        message_id: Optional[str] = None,
    ) -> Result:
        """``group`` sent now, in one request: ``(True, message)`` once the server took it.

        Raises ``APIError`` when the server refused it, ``RetriesExhaustedError`` when no answer came.
        """
        return await self._send_now(self._now.group, locals())

    async def page_now(
        self,
        user_id: Any = None,
        category: Optional[str] = None,
        name: Optional[str] = None,
        properties: Optional[Mapping[str, Any]] = None,
        context: Optional[Mapping[str, Any]] = None,
        timestamp: Any = None,
        anonymous_id: Any = None,
        integrations: Optional[Mapping[str, Any]] = None,
        message_id: Optional[str] = None,
    ) -> Result:
        """``page`` sent now, in one request: ``(True, message)`` once the server took it.

        Raises ``APIError`` when the server refused it, ``RetriesExhaustedError`` when no answer came.
        """
        return await self._send_now(self._now.page, locals())

    async def screen_now(
        self,
        user_id: Any = None,
        category: Optional[str] = None,
        name: Optional[str] = None,
        properties: Optional[Mapping[str, Any]] = None,
        context: Optional[Mapping[str, Any]] = None,
        timestamp: Any = None,
        anonymous_id: Any = None,
        integrations: Optional[Mapping[str, Any]] = None,
        message_id: Optional[str] = None,
    ) -> Result:
        """``screen`` sent now, in one request: ``(True, message)`` once the server took it.

        Raises ``APIError`` when the server refused it, ``RetriesExhaustedError`` when no answer came.
        """
        return await self._send_now(self._now.screen, locals())

    async def _send_now(self, call: Callable[..., Result], arguments: dict[str, Any]) -> Result:
        """Build with ``call`` (the sync-mode copy's) from a ``*_now`` call's ``locals()``, then send it."""
        result = call(**{name: value for name, value in arguments.items() if name != "self"})
        data = self._captured.take()
        if data is not None:  # None: filtered, refused, or send=False
            await self._pipeline.send_now(data)
        return result

    # -- lifecycle -----------------------------------------------------------------

    async def flush(self, timeout: Optional[float] = None) -> bool:
        """Send what is queued now and wait (without blocking the loop) until it is settled.

        Returns True when every message accepted before the call is delivered or
        definitively dropped, False if ``timeout`` seconds passed first (they
        stay queued). Cancelling the awaiting task loses nothing: delivery goes on.
        """
        if not self._client.send:
            self._pipeline.ledger.flush_reports()
            return True
        return await self._pipeline.flush(timeout)

    async def wait_settled(self, mark: int, timeout: Optional[float] = None) -> bool:
        """Wait until every message accepted before ``mark()`` returned ``mark`` is settled.

        Unlike ``flush`` this does not make the tasks send early. False if ``timeout`` passed first.
        """
        if not self._client.send:
            return True
        return await self._pipeline.wait_settled(mark, timeout)

    async def shutdown(self, timeout: Optional[float] = None) -> bool:
        """Deliver what is queued, then stop; later calls are refused and counted.

        At the deadline requests in flight are cancelled and what is undelivered
        is dropped as ``shutdown_timeout`` (counted, reported); returns False then.
        """
        if not self._client.send:
            self._pipeline.close()
            return True
        return await self._pipeline.shutdown(timeout)

    async def __aenter__(self) -> AsyncClient:
        """Use the client in an ``async with`` block; it is shut down when the block ends."""
        return self

    async def __aexit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        traceback: Optional[TracebackType],
    ) -> None:
        """Shut down (waiting at most ``shutdown_timeout``), whether or not the block raised."""
        await self.shutdown(self._client.options.shutdown_timeout)
