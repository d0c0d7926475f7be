"""The HTTP layer of the ALTO server (aiohttp): routing, content negotiation, errors, auth.

    app = make_app(get_view, AltoConfig(base_url="http://127.0.0.1:8181", prefix="/alto"))
    app.router.add_get("/sxp/paths", other_handler)   # more routes, before the app starts

`make_app` returns a plain `web.Application` whose ALTO routes are absolute paths under
`config.prefix` ({prefix}/{resource-id}, e.g. /alto/directory); other routes can be added to
it until it starts, or `add_routes` installs the ALTO routes on an application of your own.
Authentication, error handling and negotiation live in a wrapper around each ALTO handler, not
in a middleware, so they never touch the routes mounted beside them.

`get_view()` is called on every request.  HTTP statuses: 400 + application/alto-error+json for
ALTO errors (RFC 7285 §8.5), 401 (Basic, when `auth` is set), 404/405 from the router, 406
when the Accept header excludes the answer's media type, 415 when a POST body is not of the
media type the resource accepts, 503 when the view cannot be had, 500 (no details) for a bug.
ALTO errors are sent as application/alto-error+json whatever the Accept header says (RFC 9110
lets an error answer ignore it); 401/404/405/406/415/5xx carry no ALTO error document, since
RFC 7285 defines no ALTO code for them (§8.5: the error resource may then be omitted).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from sdn.alto import catalog as c
from sdn.alto import queries as q
from sdn.alto import requests as rq
from sdn.alto import resources as r
from sdn.view import View

log = logging.getLogger("sdn.alto")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class AltoConfig:
    """base_url: scheme://host[:port] the IRD's absolute URIs start with ("" = the request's
    own origin); prefix: where the ALTO routes live; auth: (user, password) for HTTP Basic."""

    base_url: str = ""
    prefix: str = "/alto"
    auth: tuple[str, str] | None = None

    def root(self) -> str:
        """The prefix as a path: "" or "/alto" (leading slash, no trailing one)."""
        p = self.prefix.strip("/")
        return f"/{p}" if p else ""


@dataclass(frozen=True)
class Reply:
    """What a service produces: the Content-Type header value and the body."""

    content_type: str
    body: bytes


def json_reply(media: str, doc: dict[str, Any]) -> Reply:
    return Reply(media, json.dumps(doc, separators=(",", ":")).encode())


@dataclass(frozen=True)
class Context:
    """Request facts a service may need beyond the view and the body."""

    base: str  # URL preceding "/<resource-id>"
    client: str | None  # the peer's address (the endpoint cost service's default endpoint)


Service = Callable[[View, dict[str, Any], Context], Reply]


@dataclass(frozen=True)
class PostResource:
    accepts: str  # media type of the request body
    produces: str  # media type for content negotiation
    run: Service


POST_RESOURCES: dict[str, PostResource] = {
    c.FILTERED_NETWORKMAP: PostResource(c.NETWORKMAPFILTER_MT, c.NETWORKMAP_MT, lambda v, b, x: json_reply(
        c.NETWORKMAP_MT, q.filtered_network_map(v, rq.network_map_filter(b)))),
    c.FILTERED_COSTMAP: PostResource(c.COSTMAPFILTER_MT, c.COSTMAP_MT, lambda v, b, x: json_reply(
        c.COSTMAP_MT, q.filtered_cost_map(v, rq.cost_query(b)))),
    c.ENDPOINTCOST: PostResource(c.ENDPOINTCOSTPARAMS_MT, c.ENDPOINTCOST_MT, lambda v, b, x: json_reply(
        c.ENDPOINTCOST_MT, q.endpoint_cost(v, rq.endpoint_query(b, x.client)))),
    c.PATHVECTOR: PostResource(c.COSTMAPFILTER_MT, c.MULTIPART_COSTMAP_MT, lambda v, b, x: _multipart(
        q.path_vector(v, rq.pathvector_query(b), x.base))),
    c.FILTERED_DOMAIN_PROPS: PostResource(c.PROPMAPPARAMS_MT, c.PROPMAP_MT, lambda v, b, x: json_reply(
        c.PROPMAP_MT, q.filtered_property_map(v, rq.property_map_filter(b, r.mappings())))),
}  # fmt: skip


def _multipart(answer: q.Multipart) -> Reply:
    return Reply(answer.content_type, answer.body)


# --- content negotiation ------------------------------------------------------------------


def parse_media(text: str) -> tuple[str, str, dict[str, str]]:
    """ "type/subtype; k=v" -> (type, subtype, params), lower-cased, quotes removed."""
    head, *params = [p.strip() for p in text.split(";")]
    kind, _, sub = head.lower().partition("/")
    parsed = {}
    for p in params:
        key, _, value = p.partition("=")
        if key.strip():
            parsed[key.strip().lower()] = value.strip().strip('"').lower()
    return kind, sub, parsed


def _split_accept(header: str) -> list[str]:
    """Splits on commas outside quoted strings."""
    items, current, quoted = [], [], False
    for ch in header:
        if ch == '"':
            quoted = not quoted
        if ch == "," and not quoted:
            items.append("".join(current))
            current = []
        else:
            current.append(ch)
    items.append("".join(current))
    return [i.strip() for i in items if i.strip()]


def acceptable(header: str | None, media: str) -> bool:
    """Whether an Accept header admits `media` (RFC 9110 §12.5.1: the most specific matching
    range decides, q=0 excludes; a range's parameters must all match the media type's)."""
    if header is None or not header.strip():
        return True
    kind, sub, params = parse_media(media)
    best: tuple[int, float] | None = None
    for item in _split_accept(header):
        rkind, rsub, rparams = parse_media(item)
        try:
            weight = float(rparams.pop("q", "1"))
        except ValueError:
            weight = 1.0
        if not (rkind == "*" and rsub == "*" or rkind == kind and rsub in ("*", sub)):
            continue
        if any(params.get(k) != v for k, v in rparams.items()):
            continue
        specificity = (rkind != "*") + (rsub != "*") + len(rparams)
        if best is None or specificity > best[0]:
            best = (specificity, weight)
    return best is not None and best[1] > 0


# --- the handlers -------------------------------------------------------------------------


def authorized(header: str | None, auth: tuple[str, str] | None) -> bool:
    """HTTP Basic check in constant time."""
    if auth is None:
        return True
    scheme, _, token = (header or "").partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        user, sep, password = base64.b64decode(token.strip(), validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return False
    ok_user = hmac.compare_digest(user.encode(), auth[0].encode())
    ok_password = hmac.compare_digest(password.encode(), auth[1].encode())
    return bool(sep) and ok_user and ok_password


def _plain(status: int, text: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, text=text + "\n", headers=headers)


def _send(reply: Reply, status: int = 200) -> web.Response:
    return web.Response(status=status, body=reply.body, headers={"Content-Type": reply.content_type})


def _error(error: rq.AltoError) -> web.Response:
    return _send(json_reply(c.ERROR_MT, error.document()), status=400)


class Alto:
    """The ALTO handlers of one application."""

    def __init__(self, get_view: Callable[[], View], config: AltoConfig) -> None:
        self.get_view = get_view
        self.config = config

    def base(self, request: web.Request) -> str:
        origin = self.config.base_url.rstrip("/") or f"{request.scheme}://{request.host}"
        return origin + self.config.root()

    def wrap(self, media: str, answer: Callable[[web.Request], Awaitable[Reply]]) -> Handler:
        """Auth, negotiation and error handling around a service; nothing escapes as a traceback."""

        async def handler(request: web.Request) -> web.StreamResponse:
            if not authorized(request.headers.get("Authorization"), self.config.auth):
                return _plain(
                    401,
                    "authentication required",
                    {"WWW-Authenticate": 'Basic realm="ALTO", charset="UTF-8"'},
                )
            if not acceptable(request.headers.get("Accept"), media):
                return _plain(406, f"this resource answers with {media}")
            try:
                return _send(await answer(request))
            except rq.AltoError as e:
                return _error(e)
            except UnsupportedMedia as e:
                return _plain(415, f"send {e.expected} here")
            except web.HTTPException:
                raise
            except ViewUnavailable as e:
                log.warning("no view for %s: %s", request.path, e)
                return _plain(503, "the network view is not available")
            except Exception:
                log.exception("ALTO handler failed on %s %s", request.method, request.path)
                return _plain(500, "internal error")

        return handler

    def view(self) -> View:
        try:
            return self.get_view()
        except Exception as e:
            raise ViewUnavailable(str(e)) from e

    def get(self, resource_id: str) -> Handler:
        async def answer(request: web.Request) -> Reply:
            return json_reply(
                r.GET_MEDIA[resource_id], r.get_document(self.view(), resource_id, self.base(request))
            )

        return self.wrap(r.GET_MEDIA[resource_id], answer)

    def post(self, resource: PostResource) -> Handler:
        async def answer(request: web.Request) -> Reply:
            if request.content_type != resource.accepts:
                raise UnsupportedMedia(resource.accepts)
            body = rq.parse_body(await request.read())
            return resource.run(self.view(), body, Context(self.base(request), request.remote))

        return self.wrap(resource.produces, answer)


class ViewUnavailable(Exception):
    """get_view() failed: the server answers 503 and goes on."""


class UnsupportedMedia(Exception):
    """The POST body's Content-Type is not the one the resource accepts: 415."""

    def __init__(self, expected: str) -> None:
        super().__init__(expected)
        self.expected = expected


def add_routes(app: web.Application, get_view: Callable[[], View], config: AltoConfig) -> None:
    """Installs the ALTO routes, {prefix}/{resource-id}, on an application that has not started."""
    alto = Alto(get_view, config)
    root = config.root()
    for resource_id in r.GET_MEDIA:
        app.router.add_get(f"{root}/{resource_id}", alto.get(resource_id))
    for resource_id, resource in POST_RESOURCES.items():
        app.router.add_post(f"{root}/{resource_id}", alto.post(resource))


def make_app(get_view: Callable[[], View], config: AltoConfig) -> web.Application:
    """A new application serving the ALTO resources; add your own routes before it starts."""
    app = web.Application()
    add_routes(app, get_view, config)
    return app
