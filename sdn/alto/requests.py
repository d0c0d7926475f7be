"""Validation of ALTO POST bodies: JSON in, typed requests out, or an `AltoError`.

Pure functions, so every error path is unit-tested without HTTP.  The codes and the fields
they carry follow RFC 7285 §8.5.2:
- E_SYNTAX: the body is not JSON (with an optional "syntax-error" text), and, as the RFC's
  table says, an identifier that does not parse (a PID name, a typed endpoint address);
- E_MISSING_FIELD: a required field is absent ("field" = its full path, e.g. "cost-type/cost-mode");
- E_INVALID_FIELD_TYPE: a field has the wrong JSON type ("field");
- E_INVALID_FIELD_VALUE: a well-typed field has a bad value ("field", and "value" as a string;
  a wrong-typed array element is a bad value of the array, not a bad type).
Undefined but well-formed PIDs are not errors: they are left out of the answer (RFC 7285
§11.3.1.6, §11.3.2.6), and so are undefined entities of a known domain (RFC 9240 §8.6).
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
from dataclasses import dataclass
from typing import Any

from sdn.alto import catalog as c
from sdn.alto.catalog import CostType

Json = dict[str, Any]


class AltoError(Exception):
    """An ALTO-level error (RFC 7285 §8.5): sent as HTTP 400 with application/alto-error+json."""

    def __init__(
        self, code: str, field: str | None = None, value: Any = None, syntax_error: str | None = None
    ):
        super().__init__(
            f"{code} {field or ''} {'' if value is None else value} {syntax_error or ''}".strip()
        )
        self.code = code
        self.field = field
        self.value = None if value is None else _text(value)
        self.syntax_error = syntax_error

    def document(self) -> Json:
        meta: Json = {"code": self.code}
        if self.field is not None:
            meta["field"] = self.field
            if self.value is not None:  # "value" only with "field" (RFC 7285 §8.5.2)
                meta["value"] = self.value
        if self.syntax_error is not None:
            meta["syntax-error"] = self.syntax_error
        return {"meta": meta}


def _text(value: Any) -> str:
    """The string form RFC 7285 §8.5.2 wants for "value"."""
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def missing(field: str) -> AltoError:
    return AltoError("E_MISSING_FIELD", field)


def bad_type(field: str) -> AltoError:
    return AltoError("E_INVALID_FIELD_TYPE", field)


def bad_value(field: str, value: Any = None) -> AltoError:
    return AltoError("E_INVALID_FIELD_VALUE", field, value)


def syntax(message: str) -> AltoError:
    return AltoError("E_SYNTAX", syntax_error=message)


# --- JSON and fields ----------------------------------------------------------------------


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_body(body: bytes) -> Json:
    """The request object; E_SYNTAX for anything but a JSON object."""
    try:
        value = json.loads(body.decode("utf-8"), parse_constant=_reject_constant)
    except UnicodeDecodeError as e:
        raise syntax(f"the body is not UTF-8 (byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise syntax(f"line {e.lineno} column {e.colno}: {e.msg}") from None
    except ValueError as e:
        raise syntax(str(e)) from None
    if not isinstance(value, dict):
        raise syntax("the request body must be a JSON object")
    return value


def _field(obj: Json, key: str, kind: type, path: str, required: bool = False) -> Any:
    """obj[key] checked against a JSON type; None when absent and optional."""
    if key not in obj:
        if required:
            raise missing(path)
        return None
    value = obj[key]
    if not isinstance(value, kind) or (kind in (int, float) and isinstance(value, bool)):
        raise bad_type(path)
    return value


def _strings(obj: Json, key: str, path: str, required: bool = False) -> list[str] | None:
    """An array of strings, duplicates dropped (the RFCs: entries appearing twice count once)."""
    items = _field(obj, key, list, path, required)
    if items is None:
        return None
    for item in items:
        if not isinstance(item, str):
            raise bad_value(path, item)
    return list(dict.fromkeys(items))


def _pid_names(obj: Json, key: str, path: str, required: bool = False) -> list[str] | None:
    names = _strings(obj, key, path, required)
    for name in names or ():
        if not c.PID_NAME.match(name):
            raise syntax(f"{path}: {name!r} is not a PID name")
    return names


# --- cost types and constraints -----------------------------------------------------------


@dataclass(frozen=True)
class CostCapabilities:
    """What a cost resource accepts (the validation side of its IRD capabilities)."""

    offered: tuple[CostType, ...]
    constraints: bool
    max_cost_types: int
    ane_properties: tuple[str, ...] = ()


FILTER_CAPS = CostCapabilities(tuple(c.COST_TYPES[n][0] for n in c.FILTER_TYPE_NAMES), True,
                               len(c.FILTER_TYPE_NAMES))  # fmt: skip
PATHVECTOR_CAPS = CostCapabilities((c.PATH_VECTOR,), False, 0, c.ANE_PROPERTIES)

OPERATORS = {
    "gt": float.__gt__,
    "lt": float.__lt__,
    "ge": float.__ge__,
    "le": float.__le__,
    "eq": float.__eq__,
}
_INDEX = re.compile(r"^\[(\d+)\]$")
_NUMBER = re.compile(r"^-?\d+(\.\d+)?([eE][+-]?\d+)?$")


@dataclass(frozen=True)
class Predicate:
    """An (extended) constraint test "[i] op value" (RFC 7285 §11.3.2.3, RFC 8189 §4.1.2)."""

    index: int
    op: str
    target: float

    def holds(self, values: list[Any]) -> bool:
        value = values[self.index]
        return value is not None and OPERATORS[self.op](float(value), self.target)


@dataclass(frozen=True)
class CostQuery:
    """A filtered cost map / path vector request, or the cost part of an endpoint cost request."""

    cost_types: tuple[CostType, ...]
    multi: bool  # multi-cost-types was used: costs are arrays (RFC 8189 §4.1.3)
    tested: tuple[CostType, ...]  # testable-cost-types, or the returned types
    or_constraints: tuple[tuple[Predicate, ...], ...]  # OR of ANDs; empty: no constraint
    srcs: tuple[str, ...] | None = None  # None: every PID
    dsts: tuple[str, ...] | None = None
    ane_properties: tuple[str, ...] = ()

    def accepts(self, tested_values: list[Any]) -> bool:
        return not self.or_constraints or any(all(p.holds(tested_values) for p in group)
                                              for group in self.or_constraints)  # fmt: skip

    def cost_meta(self) -> Json:
        """The meta fields naming the cost types of the answer."""
        if self.multi:
            return {"cost-type": {}, "multi-cost-types": [t.to_json() for t in self.cost_types]}
        return {"cost-type": self.cost_types[0].to_json()}


def _cost_type(value: Any, path: str) -> CostType:
    if not isinstance(value, dict):
        raise bad_type(path)
    metric = _field(value, "cost-metric", str, f"{path}/cost-metric", required=True)
    mode = _field(value, "cost-mode", str, f"{path}/cost-mode", required=True)
    return CostType(metric, mode)


def _offered_single(value: Any, path: str, offered: tuple[CostType, ...]) -> CostType:
    cost_type = _cost_type(value, path)
    if cost_type in offered:
        return cost_type
    if cost_type.metric not in {t.metric for t in offered}:
        raise bad_value(f"{path}/cost-metric", cost_type.metric)
    raise bad_value(f"{path}/cost-mode", cost_type.mode)


def _type_list(body: Json, key: str, offered: tuple[CostType, ...], limit: int) -> tuple[CostType, ...]:
    """multi-cost-types / testable-cost-types: 1..limit offered cost types."""
    items = _field(body, key, list, key, required=True)
    if not items or len(items) > limit:
        raise bad_value(key, items)
    types = []
    for item in items:
        if not isinstance(item, dict):
            raise bad_value(key, item)
        cost_type = _cost_type(item, key)
        if cost_type not in offered:
            raise bad_value(key, item)
        types.append(cost_type)
    return tuple(types)


def _predicate(text: str, field: str, count: int, indexed: bool) -> Predicate:
    tokens = text.split()
    index = 0
    if len(tokens) == 3 and (m := _INDEX.match(tokens[0])):
        index = int(m.group(1))
        tokens = tokens[1:]
    if len(tokens) != 2 or tokens[0] not in OPERATORS or not _NUMBER.match(tokens[1]):
        raise bad_value(field, text)
    target = float(tokens[1])
    if not math.isfinite(target) or index >= count or (index and not indexed):
        raise bad_value(field, text)
    return Predicate(index, tokens[0], target)


def _constraints(
    body: Json, caps: CostCapabilities, tested: int, indexed: bool
) -> tuple[tuple[Predicate, ...], ...]:
    if "constraints" in body and "or-constraints" in body:
        raise bad_value("or-constraints")  # RFC 8189 §4.1.2: one or the other
    if "constraints" in body:
        tests = _strings(body, "constraints", "constraints") or []
        if tests and not caps.constraints:
            raise bad_value("constraints", tests[0])
        return (tuple(_predicate(t, "constraints", tested, indexed) for t in tests),) if tests else ()
    if "or-constraints" not in body:
        return ()
    groups = _field(body, "or-constraints", list, "or-constraints")
    if not caps.constraints or not caps.max_cost_types or not groups:
        raise bad_value("or-constraints", groups)
    parsed = []
    for group in groups:  # no empty AND group (RFC 8189 §4.1.2)
        if not isinstance(group, list) or not group or not all(isinstance(t, str) for t in group):
            raise bad_value("or-constraints", group)
        parsed.append(tuple(_predicate(t, "or-constraints", tested, indexed) for t in group))
    return tuple(parsed)


def _cost_part(
    body: Json, caps: CostCapabilities
) -> tuple[tuple[CostType, ...], bool, tuple[CostType, ...], tuple]:
    if "cost-type" in body and "multi-cost-types" in body:
        raise bad_value("multi-cost-types")  # RFC 8189 §4.1.2: not both
    if "multi-cost-types" in body:
        if not caps.max_cost_types:
            raise bad_value("multi-cost-types")
        types, multi = _type_list(body, "multi-cost-types", caps.offered, caps.max_cost_types), True
    elif "cost-type" in body:
        types, multi = (_offered_single(body["cost-type"], "cost-type", caps.offered),), False
    else:
        raise missing("cost-type")
    tested = types
    if "testable-cost-types" in body:
        if not caps.constraints:
            raise bad_value("testable-cost-types")
        tested = _type_list(body, "testable-cost-types", caps.offered, len(caps.offered))
    indexed = multi or "testable-cost-types" in body
    return types, multi, tested, _constraints(body, caps, len(tested), indexed)


def _pid_filter(body: Json) -> tuple[tuple[str, ...] | None, tuple[str, ...] | None]:
    """pids: absent, or an empty list, means every PID; srcs and dsts are required inside it."""
    pids = _field(body, "pids", dict, "pids")
    if pids is None:
        return None, None
    srcs = _pid_names(pids, "srcs", "pids/srcs", required=True)
    dsts = _pid_names(pids, "dsts", "pids/dsts", required=True)
    return (tuple(srcs) or None), (tuple(dsts) or None)  # type: ignore[arg-type]


def cost_query(body: Json, caps: CostCapabilities = FILTER_CAPS) -> CostQuery:
    """A filtered cost map request (RFC 7285 §11.3.2.3, RFC 8189 §4.1.2, RFC 9275 §7.2.3)."""
    types, multi, tested, constraints = _cost_part(body, caps)
    srcs, dsts = _pid_filter(body)
    names = _strings(body, "ane-property-names", "ane-property-names") or []
    for name in names:
        if name not in caps.ane_properties:
            raise bad_value("ane-property-names", name)
    return CostQuery(types, multi, tested, constraints, srcs, dsts, tuple(names))


def pathvector_query(body: Json) -> CostQuery:
    return cost_query(body, PATHVECTOR_CAPS)


# --- endpoint costs -----------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    """A typed endpoint address: the text as the client wrote it and the parsed address."""

    text: str
    address: str


@dataclass(frozen=True)
class EndpointQuery:
    cost: CostQuery
    srcs: tuple[Endpoint, ...]
    dsts: tuple[Endpoint, ...]


def typed_endpoint(text: str, field: str) -> Endpoint:
    """TypedEndpointAddr (RFC 7285 §10.4.1): "ipv4:192.0.2.1", "ipv6:2001:db8::1"."""
    kind, sep, address = text.partition(":")
    if not sep or not c.ADDRESS_TYPE.match(kind):
        raise syntax(f"{field}: {text!r} is not a typed endpoint address")
    if kind not in c.ADDRESS_TYPES:
        raise bad_value(field, text)
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        raise syntax(f"{field}: {address!r} is not an {kind} address") from None
    if f"ipv{ip.version}" != kind:
        raise syntax(f"{field}: {address!r} is not an {kind} address")
    return Endpoint(text, str(ip))


def client_endpoint(address: str | None) -> Endpoint | None:
    """The connection's address as the endpoint an empty list stands for (RFC 7285 §11.5.1.3)."""
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return None
    ip = getattr(ip, "ipv4_mapped", None) or ip
    return Endpoint(f"ipv{ip.version}:{ip}", str(ip))


def _endpoints(obj: Json, key: str, client: Endpoint | None) -> tuple[Endpoint, ...]:
    field = f"endpoints/{key}"
    texts = _strings(obj, key, field) or []
    if not texts:
        if client is None:
            raise bad_value(field, "[]")
        return (client,)
    return tuple(typed_endpoint(t, field) for t in texts)


def endpoint_query(
    body: Json, client_address: str | None = None, caps: CostCapabilities = FILTER_CAPS
) -> EndpointQuery:
    """An endpoint cost request (RFC 7285 §11.5.1.3, RFC 8189 §4.2.2)."""
    types, multi, tested, constraints = _cost_part(body, caps)
    endpoints = _field(body, "endpoints", dict, "endpoints", required=True)
    if not endpoints.get("srcs") and not endpoints.get("dsts"):
        raise bad_value("endpoints")  # srcs and dsts MUST NOT be both empty
    client = client_endpoint(client_address)
    srcs, dsts = _endpoints(endpoints, "srcs", client), _endpoints(endpoints, "dsts", client)
    return EndpointQuery(CostQuery(types, multi, tested, constraints), srcs, dsts)


# --- network map and property map filters -------------------------------------------------


@dataclass(frozen=True)
class NetworkMapFilter:
    pids: tuple[str, ...] | None  # None: every PID
    address_types: frozenset[str] | None  # None: every type


def network_map_filter(body: Json) -> NetworkMapFilter:
    """RFC 7285 §11.3.1.3: pids (required, empty = all), address-types (optional)."""
    pids = _pid_names(body, "pids", "pids", required=True) or []
    types = _strings(body, "address-types", "address-types") or []
    for kind in types:
        if not c.ADDRESS_TYPE.match(kind):
            raise syntax(f"address-types: {kind!r} is not an address type")
    return NetworkMapFilter(tuple(pids) or None, frozenset(types) or None)


@dataclass(frozen=True)
class PropertyMapFilter:
    entities: tuple[str, ...] | None  # None: every entity
    properties: tuple[str, ...] | None  # None: answer {} per entity; () never (empty means all)


def _entity(text: str, domains: dict[str, list[str]]) -> str:
    for domain in domains:
        local = text.removeprefix(f"{domain}:")
        if local != text and c.PID_NAME.match(local):
            return text
    raise bad_value("entities", text)


def property_map_filter(body: Json, domains: dict[str, list[str]]) -> PropertyMapFilter:
    """RFC 9240 §8.3: entities (required, empty = all), properties (optional, empty = all)."""
    entities = [_entity(e, domains) for e in _strings(body, "entities", "entities", required=True) or []]
    properties = _strings(body, "properties", "properties")
    known = {p for names in domains.values() for p in names}
    for name in properties or ():
        if name not in known:
            raise bad_value("properties", name)
    chosen = None if properties is None else tuple(properties or sorted(known))
    return PropertyMapFilter(tuple(entities) or None, chosen)
