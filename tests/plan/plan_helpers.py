"""Shared plans and messages for the tracking-plan tests."""

from __future__ import annotations

import copy
from typing import Any

SHOP_PLAN: dict[str, Any] = {
    "name": "Shop",
    "description": "What the shop tracks.",
    "events": {
        "Order Completed": {
            "description": "A customer completed an order.",
            "properties": {
                "order_id": {"type": "string", "required": True, "description": "The order's id."},
                "total": {"type": "number", "required": True},
                "currency": {"type": "string", "enum": ["USD", "EUR"]},
                "coupon": "string",
                "placed_at": {"type": "string", "format": "date-time"},
                "products": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "sku": {"type": "string", "required": True},
                            "price": "number",
                            "quantity": "integer",
                        },
                    },
                },
            },
        },
        "Product Viewed": {"properties": {"product_id": {"type": "string", "required": True}}},
    },
    "identify": {
        "traits": {
            "email": {"type": "string", "format": "email", "required": True},
            "name": "string",
        }
    },
    "group": {"traits": {"name": {"type": "string", "required": True}}},
}


def shop_plan() -> dict[str, Any]:
    """A fresh copy of the authoring-form shop plan."""
    return copy.deepcopy(SHOP_PLAN)


def order(**properties: Any) -> dict[str, Any]:
    """A valid Order Completed track message, with ``properties`` overriding the defaults."""
    base: dict[str, Any] = {"order_id": "ord-1", "total": 27.5, "currency": "EUR"}
    base.update(properties)
    return {
        "type": "track",
        "event": "Order Completed",
        "userId": "user-1",
        "properties": {key: value for key, value in base.items() if value is not _OMIT},
        "messageId": "m-1",
        "timestamp": "2024-05-01T10:00:00.000Z",
        "context": {"library": {"name": "segment-lite", "version": "test"}},
    }


_OMIT = object()
OMIT: Any = _OMIT
