"""Remote ``$ref`` documents: fetched once at load time from allowed bases, never by a validator.

By default a plan resolves only references inside itself: a validator library
left to itself would fetch any URL a plan names while compiling it (a request
to an internal address from CI, or a traceback when it is unreachable).
``load_plan(..., ref_bases=[...])`` allows address prefixes; their documents are
fetched here, checked against the same limits as the plan, and kept on the plan.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator, Mapping
from typing import Any, Callable, Optional

from segment_lite.plan.model import PlanError

__all__ = [
    "FETCH_TIMEOUT_S",
    "MAX_REMOTE_DOCUMENTS",
    "fast_handlers",
    "fetch_remote_schemas",
    "registry",
]

#: How long one remote document may take to arrive.
FETCH_TIMEOUT_S = 10.0
#: How many remote documents one plan may pull in (references inside fetched documents count).
MAX_REMOTE_DOCUMENTS = 50


def fetch_remote_schemas(
    targets: Mapping[str, str], ref_bases: tuple[str, ...], source: Optional[str]
) -> dict[str, Any]:
    """The documents at ``targets`` (address -> path of a ``$ref`` to it), and at the addresses they name."""
    from segment_lite.plan.limits import MAX_PLAN_BYTES, check_document, check_schema

    documents: dict[str, Any] = {}
    pending = sorted(targets.items(), reverse=True)
    while pending:
        address, where = pending.pop()
        if address in documents:
            continue
        if len(documents) >= MAX_REMOTE_DOCUMENTS:
            raise PlanError(f"refers to more than {MAX_REMOTE_DOCUMENTS} remote documents", where, source)
        if not address.startswith(("http://", "https://")):
            raise PlanError(f"cannot fetch $ref {address}: only http and https are fetched", where, source)
        try:
            with urllib.request.urlopen(address, timeout=FETCH_TIMEOUT_S) as response:
                body = response.read(MAX_PLAN_BYTES + 1)
        except (OSError, ValueError) as exc:
            raise PlanError(f"cannot fetch $ref {address}: {exc}", where, source) from None
        if len(body) > MAX_PLAN_BYTES:
            raise PlanError(f"cannot use $ref {address}: larger than {MAX_PLAN_BYTES} bytes", where, source)
        try:
            document = json.loads(body)
        except (ValueError, RecursionError) as exc:
            raise PlanError(
                f"cannot use $ref {address}: not a JSON document ({exc})", where, source
            ) from None
        check_document(document, source=address)
        documents[address] = document
        pending.extend(sorted(check_schema(document, address, source, ref_bases)[1].items(), reverse=True))
    return documents


def _lookup(documents: Mapping[str, Any], address: str) -> Any:
    from urllib.parse import urldefrag

    document = documents.get(urldefrag(address).url)
    if document is None:
        raise PlanError(f"$ref {address} points outside the plan and was not fetched when it was loaded")
    return document


class _Handlers(Mapping[str, Callable[[str], Any]]):
    """fastjsonschema's remote-reference handlers: every scheme served from the fetched documents."""

    def __init__(self, documents: Mapping[str, Any]) -> None:
        self._documents = documents

    def __getitem__(self, scheme: str) -> Callable[[str], Any]:
        return lambda address: _lookup(self._documents, address)

    def __contains__(self, scheme: object) -> bool:
        return True  # so fastjsonschema never falls back to urlopen

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def fast_handlers(documents: Mapping[str, Any]) -> Mapping[str, Callable[[str], Any]]:
    """Handlers for ``fastjsonschema.compile`` that never touch the network."""
    return _Handlers(documents)


def registry(documents: Mapping[str, Any]) -> Any:
    """A ``referencing`` registry for jsonschema that never touches the network."""
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT7

    def retrieve(address: str) -> Any:
        return Resource.from_contents(_lookup(documents, address), default_specification=DRAFT7)

    return Registry(retrieve=retrieve)  # type: ignore[call-arg]
