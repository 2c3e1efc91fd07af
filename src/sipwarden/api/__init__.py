"""The REST API (aiohttp, in the daemon's own loop): ``/api/v1``.

Bans: ``GET /api/v1/bans`` (the array `sipwarden bans list --json` prints),
``POST /api/v1/bans`` with ``{"ip": ..., "for": "1h" | "permanent": true,
"reason": ...}``, ``GET /api/v1/bans/{ip}`` (why, evidence, history) and
``DELETE /api/v1/bans/{ip}`` (a CIDR's slash may be written as is or %2F).
``GET /api/v1/status`` gives the counters, ``GET /api/v1/sources`` the
busiest sources over ``?since=`` (each source's flows summed). The
dashboard is at ``/`` (``pages``). Intel: ``GET /api/v1/intel``
(each feed's size, last success and last error; the country policy) and
``GET /api/v1/intel/lookup/{ip}`` (country, the feeds that list it since
when, ban, and what its next packet meets). Sharing: ``GET
/api/v1/export/bans.{txt,json,nft}``. Prometheus: ``GET /metrics``
(``metrics``: the counters of ``status``, summed over workers).

Every request that changes state needs ``Authorization: Bearer <token>``
or the dashboard's login session with this API's Origin (on loopback
too), and every request must name this API in its Host header
(``guard``); the token is configured or made at first start and kept in
a 0600 file (``token``); a login session is a cookie (``session``).
"""

from .guard import Guard, Refusal, guard_middleware
from .server import ApiServer, serve_api
from .token import ApiToken, TokenError, api_token, token_file

__all__ = [
    "ApiServer",
    "ApiToken",
    "Guard",
    "Refusal",
    "TokenError",
    "api_token",
    "guard_middleware",
    "serve_api",
    "token_file",
]
