"""Builds what a Client runs on from its options: credentials, transports, logger, queue and pipeline."""

from __future__ import annotations

import functools
import logging
from typing import Any, Callable

from segment_lite.ledger import Credentials
from segment_lite.options import ClientOptions
from segment_lite.pipeline import DeliveryConfig, Pipeline, QueueFactory
from segment_lite.queue import MemoryQueue, MessageQueue
from segment_lite.transport import Transport, TransportFactory, default_transport_factory

__all__ = ["build_pipeline", "configure_logger", "credentials_of", "queue_factory_of", "transport_factory_of"]


def credentials_of(options: ClientOptions) -> Credentials:
    """Every credential the client sends, to mask wherever text reaches a log or an error."""
    credentials = Credentials()
    credentials.add(options.write_key or "")
    for proxy in (options.proxies or {}).values():  # a proxy's password goes out in Proxy-Authorization
        credentials.add_proxy_credentials(str(proxy))
    return credentials


def configure_logger(log: logging.Logger, options: ClientOptions) -> None:
    """Apply ``log_handler`` and ``debug`` to the ``segment`` logger, as segment-analytics-python does."""
    if options.log_handler is not None and options.log_handler not in log.handlers:
        log.addHandler(options.log_handler)
    if options.debug:
        log.setLevel(logging.DEBUG)
        if not log.handlers:
            log.addHandler(logging.StreamHandler())


def transport_factory_of(
    options: ClientOptions, credentials: Credentials, log: logging.Logger
) -> TransportFactory:
    """The factory of each consumer's transport: ``transport``, with the reference's seams and OAuth."""
    factory = default_transport_factory(options.transport, options.proxies)
    if options.transport is None:  # so patches of the reference's ``post`` and ``_session`` apply
        from segment_lite.request import ReferenceSeamTransport

        factory = functools.partial(_wrap, ReferenceSeamTransport, factory, options.proxies)
    oauth = options.oauth
    if oauth is not None:  # every batch carries a Bearer token from one token source per client
        from segment_lite.oauth import OAuthConfig, OAuthTokenSource, OAuthTransport

        config = OAuthConfig(
            *oauth, options.oauth_auth_server, options.oauth_scope, options.timeout, options.proxies
        )
        tokens = OAuthTokenSource(config, options.timing, credentials=credentials)
        factory = functools.partial(_wrap, OAuthTransport, factory, tokens)
    elif options.oauth_client_id or options.oauth_client_key or options.oauth_key_id:
        log.warning(
            "OAuth needs oauth_client_id, oauth_client_key and oauth_key_id together; "
            "some are missing, so batches are authenticated with the write key"
        )
    return factory


def queue_factory_of(options: ClientOptions) -> QueueFactory:
    """``queue_factory``, else the disk spool with ``spool_dir``, else the bounded in-memory queue."""
    if options.queue_factory is not None:
        return options.queue_factory
    if options.uses_spool:
        from segment_lite.spool.factory import spool_factory

        assert options.spool_path is not None
        return spool_factory(
            options.spool_path,
            max_bytes=options.spool_max_bytes,
            fsync=options.spool_fsync,
            wake_at=options.wake_at,
            write_key=options.write_key or "",
        )
    max_size, max_bytes, wake_at = options.max_queue_size, options.max_queue_bytes, options.wake_at

    def memory_queue() -> MessageQueue:
        return MemoryQueue(max_size, max_bytes, wake_at=wake_at)

    return memory_queue


def build_pipeline(
    options: ClientOptions, transport_factory: TransportFactory, credentials: Credentials, log: logging.Logger
) -> Pipeline:
    """The client's pipeline: its queue, consumers, sender and ledger, configured by ``options``."""
    pipeline = Pipeline(
        queue_factory_of(options),
        DeliveryConfig(
            url=options.url,
            write_key=options.write_key or "",
            gzip=options.gzip,
            timeout_s=options.timeout,
            retry_policy=options.retry,
            transport_factory=transport_factory,
            clock=options.timing,
        ),
        options.batching(),
        on_error=options.on_error,
        on_drop=options.on_drop,
        log=log,
        shutdown_timeout_s=options.shutdown_timeout,
        credentials=credentials,
        observers=options.observer_list,
    )
    pipeline.flush_at_exit = options.flush_at_exit
    return pipeline


def _wrap(wrapper: Callable[[Transport, Any], Transport], inner: TransportFactory, extra: Any) -> Transport:
    return wrapper(inner(), extra)
