"""segment-analytics-python's ``oauth_manager`` module name: segment_lite's OAuth is ``segment_lite.oauth``.

Code and tests written for the reference import ``segment.analytics.oauth_manager``;
with the import changed to ``segment_lite`` they import this. The client itself
takes the reference's OAuth options (``oauth_client_id``, ``oauth_client_key``,
``oauth_key_id``, ...) and builds what it needs from ``segment_lite.oauth``.
"""

from __future__ import annotations

from segment_lite.oauth import OAuthConfig, OAuthError, OAuthTokenSource, OAuthTransport

__all__ = ["OAuthConfig", "OAuthError", "OAuthTokenSource", "OAuthTransport"]
