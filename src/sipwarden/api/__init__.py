"""The REST API (aiohttp, in the daemon's own loop): ``/api/v1``.

Bans: ``GET /api/v1/bans`` (the array `sipwarden bans list --json` prints),
``POST /api/v1/bans`` with ``{"ip": ..., "for": "1h" | "permanent": true,
"reason": ...}``, ``GET /api/v1/bans/{ip}`` (why, evidence, history) and
``DELETE /api/v1/bans/{ip}`` (a CIDR's slash may be written as is or %2F).
``GET /api/v1/status`` gives the counters. Intel: ``GET /api/v1/intel``
(each feed's size, last success and last error; the country policy) and
``GET /api/v1/intel/lookup/{ip}`` (country, the feeds that list it since
when, ban, and what its next packet meets). Sharing: ``GET
/api/v1/export/bans.{txt,json,nft}``. With a token configured
(``[api] token`` or SIPWARDEN_API_TOKEN) every request needs
``Authorization: Bearer <token>``.
"""

from .server import ApiServer, serve_api

__all__ = ["ApiServer", "serve_api"]
