"""ALTO server of the SFC eXchange Platform (RFC 7285, with RFC 8189 multi-cost, RFC 9240
entity property maps, RFC 9275 path vector and the RFC 9439 delay metric).

The documents are pure functions of a `sdn.view.View` (`resources` for the GET resources,
`queries` for the POST services, `requests` for validating POST bodies); `server` is the thin
aiohttp layer (`make_app`, `AltoConfig`).  Names (resource ids, media types, cost types,
property names) are in `catalog`.  See docs/sfc.md, section "ALTO".
"""

from sdn.alto.requests import AltoError

__all__ = ["AltoError"]
