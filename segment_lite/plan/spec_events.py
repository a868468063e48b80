"""The Segment Spec's semantic events: their names and the property names (and types) the Spec gives them."""

from __future__ import annotations

__all__ = ["PRODUCT_PROPERTIES", "SEMANTIC_EVENTS", "SEMANTIC_PROPERTY_TYPES"]

#: The fields of one product, in ``products`` arrays and in the single-product events.
PRODUCT_PROPERTIES = (
    "product_id",
    "sku",
    "category",
    "name",
    "brand",
    "variant",
    "price",
    "quantity",
    "coupon",
    "position",
    "url",
    "image_url",
)

_ORDER = (
    "order_id",
    "affiliation",
    "total",
    "revenue",
    "shipping",
    "tax",
    "discount",
    "coupon",
    "currency",
    "products",
)
_CHECKOUT_STEP = ("checkout_id", "step", "shipping_method", "payment_method")
_SHARE = ("share_via", "share_message", "recipient")
_WISHLIST = ("wishlist_id", "wishlist_name")

#: Semantic event name -> the property names the Spec documents for it (empty: names only).
SEMANTIC_EVENTS: dict[str, tuple[str, ...]] = {
    # Ecommerce (v2)
    "Products Searched": ("query",),
    "Product List Viewed": ("list_id", "category", "products"),
    "Product List Filtered": ("list_id", "filters", "sorts", "products"),
    "Promotion Viewed": ("promotion_id", "creative", "name", "position"),
    "Promotion Clicked": ("promotion_id", "creative", "name", "position"),
    "Product Clicked": PRODUCT_PROPERTIES,
    "Product Viewed": (*PRODUCT_PROPERTIES, "currency", "value"),
    "Product Added": ("cart_id", *PRODUCT_PROPERTIES),
    "Product Removed": ("cart_id", *PRODUCT_PROPERTIES),
    "Cart Viewed": ("cart_id", "products"),
    "Checkout Started": (
        "order_id",
        "affiliation",
        "value",
        "revenue",
        "shipping",
        "tax",
        "discount",
        "coupon",
        "currency",
        "products",
    ),
    "Checkout Step Viewed": _CHECKOUT_STEP,
    "Checkout Step Completed": _CHECKOUT_STEP,
    "Payment Info Entered": ("checkout_id", "order_id", "step", "shipping_method", "payment_method"),
    "Order Updated": _ORDER,
    "Order Completed": ("checkout_id", "subtotal", *_ORDER),
    "Order Refunded": ("order_id", "total", "currency", "products"),
    "Order Cancelled": _ORDER,
    "Coupon Entered": ("order_id", "cart_id", "coupon_id"),
    "Coupon Applied": ("order_id", "cart_id", "coupon_id", "coupon_name", "discount"),
    "Coupon Denied": ("order_id", "cart_id", "coupon", "reason"),
    "Coupon Removed": ("order_id", "cart_id", "coupon_id", "coupon_name", "discount"),
    "Product Added to Wishlist": (*_WISHLIST, *PRODUCT_PROPERTIES),
    "Product Removed from Wishlist": (*_WISHLIST, *PRODUCT_PROPERTIES),
    "Wishlist Product Added to Cart": (*_WISHLIST, "cart_id", *PRODUCT_PROPERTIES),
    "Product Shared": (*_SHARE, *PRODUCT_PROPERTIES),
    "Cart Shared": (*_SHARE, "cart_id", "products"),
    "Product Reviewed": ("product_id", "review_id", "review_body", "rating"),
    # Mobile lifecycle and campaigns
    "Application Installed": ("version", "build"),
    "Application Opened": ("from_background", "referring_application", "url", "version", "build"),
    "Application Backgrounded": (),
    "Application Updated": ("previous_version", "previous_build", "version", "build"),
    "Application Uninstalled": (),
    "Application Crashed": (),
    "Install Attributed": ("provider", "campaign"),
    "Push Notification Received": ("campaign",),
    "Push Notification Tapped": ("campaign",),
    "Push Notification Bounced": ("campaign",),
    "Deep Link Opened": ("provider", "url"),
    "Deep Link Clicked": ("provider", "url"),
    # B2B SaaS
    "Signed Up": ("type",),
    "Signed In": ("username",),
    "Signed Out": ("username",),
    "Invite Sent": ("invitee_email", "invitee_first_name", "invitee_last_name", "invitee_role"),
    "Account Created": ("account_name",),
    "Account Deleted": ("account_name",),
    "Account Added User": ("role",),
    "Account Removed User": (),
    "Trial Started": ("trial_start_date", "trial_end_date", "trial_plan_name"),
    "Trial Ended": ("trial_start_date", "trial_end_date", "trial_plan_name"),
    # Video
    "Video Playback Started": (
        "session_id",
        "content_asset_id",
        "position",
        "total_length",
        "bitrate",
        "framerate",
        "video_player",
        "sound",
        "full_screen",
        "ad_enabled",
        "quality",
    ),
    "Video Playback Paused": ("session_id", "position"),
    "Video Playback Interrupted": ("session_id", "position"),
    "Video Playback Buffer Started": ("session_id", "position"),
    "Video Playback Buffer Completed": ("session_id", "position"),
    "Video Playback Seek Started": ("session_id", "position", "seek_position"),
    "Video Playback Seek Completed": ("session_id", "position"),
    "Video Playback Resumed": ("session_id", "position"),
    "Video Playback Completed": ("session_id", "position"),
    "Video Playback Exited": ("session_id", "position"),
    "Video Content Started": ("session_id", "asset_id", "title", "position", "total_length"),
    "Video Content Playing": ("session_id", "asset_id", "position"),
    "Video Content Completed": ("session_id", "asset_id", "position"),
    "Video Ad Started": ("session_id", "asset_id", "type", "position", "total_length"),
    "Video Ad Playing": ("session_id", "asset_id", "position"),
    "Video Ad Completed": ("session_id", "asset_id", "position"),
    # Email
    "Email Bounced": ("email_id", "email_subject", "campaign_id", "campaign_name"),
    "Email Delivered": ("email_id", "email_subject", "campaign_id", "campaign_name"),
    "Email Link Clicked": (
        "email_id",
        "email_subject",
        "campaign_id",
        "campaign_name",
        "link_id",
        "link_url",
    ),
    "Email Marked as Spam": ("email_id", "email_subject", "campaign_id", "campaign_name"),
    "Email Opened": ("email_id", "email_subject", "campaign_id", "campaign_name"),
    "Unsubscribed": ("list_id", "list_name"),
}

#: The JSON type the Spec gives a property name wherever it appears (names not listed are unchecked).
SEMANTIC_PROPERTY_TYPES: dict[str, str] = {
    **dict.fromkeys(
        (
            "order_id",
            "checkout_id",
            "cart_id",
            "product_id",
            "sku",
            "promotion_id",
            "coupon_id",
            "list_id",
            "wishlist_id",
            "review_id",
            "currency",
            "affiliation",
            "query",
            "share_via",
        ),
        "string",
    ),
    **dict.fromkeys(
        ("total", "subtotal", "revenue", "value", "shipping", "tax", "discount", "price"), "number"
    ),
    **dict.fromkeys(("quantity", "position", "step"), "integer"),
    **dict.fromkeys(("products", "filters", "sorts"), "array"),
}
