"""Size caps keel adds to the schema it compiles, where the caller's schema leaves sizes open.

Small models fill an unbounded string or number until the token limit runs out
(`"Laptop 1000001111…`). So the grammar keel compiles caps string lengths, integer digits,
fraction digits, array items, free-form object keys and the nesting of free-form values.
Each cap only narrows the language: it is added only where the schema says nothing, and it
never goes below a minimum the schema sets, so every output still validates against the
caller's schema unchanged (validation always uses that one).

The caps are overridable per schema with a top-level `"x-keel"` object, e.g.
`{"x-keel": {"max_string_length": 200}}`, or `{"x-keel": {"bounded": false}}` to compile the
schema as given. They are part of the constraint key, and so of fingerprints and cache keys.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from ..errors import InvalidConstraintError

EXTENSION = "x-keel"


@dataclass(frozen=True)
class Bounds:
    bounded: bool = True
    max_string_length: int = 48
    max_items: int = 6
    integer_digits: int = 9  # |integer| < 10**9
    fraction_digits: int = 4  # numbers are multiples of 10**-4
    max_properties: int = 6  # keys of an object that lists none
    max_depth: int = 2  # nesting of values a schema leaves free (`{}`, `true`)

    def describe(self) -> dict[str, Any]:
        return asdict(self)


def bounds_of(schema: dict[str, Any]) -> Bounds:
    """The caps for this schema: keel's defaults, overridden by its `x-keel` object."""
    overrides = schema.get(EXTENSION, {})
    known = {f.name: f.type for f in fields(Bounds)}
    if not isinstance(overrides, dict) or not set(overrides) <= set(known):
        raise InvalidConstraintError(
            f'"{EXTENSION}" must be an object with some of {sorted(known)}, got {overrides!r}'
        )
    for name, value in overrides.items():
        wanted = bool if name == "bounded" else int
        if type(value) is not wanted or (wanted is int and value < 0):
            raise InvalidConstraintError(
                f'"{EXTENSION}".{name} must be a {"bool" if wanted is bool else "int >= 0"}, '
                f"got {value!r}"
            )
    return replace(Bounds(), **overrides)


def bounded_schema(schema: dict[str, Any]) -> tuple[dict[str, Any], Bounds]:
    """The schema to compile (caps added where sizes are open) and the caps used."""
    bounds = bounds_of(schema)
    body = {key: value for key, value in schema.items() if key != EXTENSION}
    if not bounds.bounded:
        return body, bounds
    return _Capper(bounds).node(body, depth=0), bounds


def _types(node: dict[str, Any]) -> set[str]:
    declared = node.get("type")
    if isinstance(declared, str):
        return {declared}
    if isinstance(declared, list):
        return {t for t in declared if isinstance(t, str)}
    if "properties" in node:  # an object by its keywords
        return {"object"}
    if "items" in node or "prefixItems" in node:
        return {"array"}
    return set()


_SUBSCHEMA_LISTS = ("anyOf", "oneOf", "prefixItems")
_SUBSCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions")
_SUBSCHEMAS = ("items", "additionalProperties", "not", "if", "then", "else")


class _Capper:
    def __init__(self, bounds: Bounds) -> None:
        self.bounds = bounds

    def free_value(self, depth: int) -> dict[str, Any]:
        """Any JSON value, with every size capped and nesting ending at max_depth."""
        kinds = ["string", "number", "boolean", "null"]
        if depth < self.bounds.max_depth:
            kinds += ["array", "object"]
        return {"anyOf": [self.node({"type": kind}, depth) for kind in kinds]}

    def node(self, node: Any, depth: int, closed: bool = True) -> Any:
        """`closed`: an object listing its properties gets no others. Not inside allOf,
        where the branches' properties are meant to add up."""
        if node is True or node == {}:
            return self.free_value(depth)
        if not isinstance(node, dict):
            return node
        out = dict(node)
        if isinstance(out.get("allOf"), list):
            out["allOf"] = [self.node(item, depth, closed=False) for item in out["allOf"]]
        for key in _SUBSCHEMA_LISTS:
            if isinstance(out.get(key), list):
                out[key] = [self.node(item, depth, closed) for item in out[key]]
        for key in _SUBSCHEMA_MAPS:
            if isinstance(out.get(key), dict):
                inner = depth + 1 if key in ("properties", "patternProperties") else depth
                out[key] = {name: self.node(sub, inner) for name, sub in out[key].items()}
        for key in _SUBSCHEMAS:
            if key in out and out[key] is not False:
                inner = depth + 1 if key in ("items", "additionalProperties") else depth
                out[key] = self.node(out[key], inner)
        if "enum" in out or "const" in out:
            return out
        types = _types(out)
        if "string" in types:
            self._string(out)
        if "integer" in types or "number" in types:
            self._number(out, integer="number" not in types)
        if "array" in types:
            self._array(out, depth)
        if "object" in types:
            self._object(out, depth, closed)
        return out

    def _string(self, out: dict[str, Any]) -> None:
        if "maxLength" not in out:
            out["maxLength"] = max(self.bounds.max_string_length, out.get("minLength", 0))

    def _number(self, out: dict[str, Any], integer: bool) -> None:
        limit = 10**self.bounds.integer_digits - 1
        low = [out[key] for key in ("minimum", "exclusiveMinimum") if key in out]
        high = [out[key] for key in ("maximum", "exclusiveMaximum") if key in out]
        if not high:
            out["maximum"] = max([limit, *low])
        if not low:
            out["minimum"] = min([-limit, *high])
        if not integer and "multipleOf" not in out:
            out["multipleOf"] = 10.0**-self.bounds.fraction_digits

    def _array(self, out: dict[str, Any], depth: int) -> None:
        if "maxItems" not in out:
            prefix = len(out.get("prefixItems", []))
            out["maxItems"] = max(self.bounds.max_items, out.get("minItems", 0), prefix)
        if "items" not in out and "prefixItems" not in out:
            out["items"] = self.free_value(depth + 1)

    def _object(self, out: dict[str, Any], depth: int, closed: bool) -> None:
        listed = out.get("properties")
        if isinstance(listed, dict):
            open_keys = "additionalProperties" in out or "patternProperties" in out
            unlisted = set(out.get("required", ())) - set(listed)
            if closed and not open_keys and not unlisted:
                out["additionalProperties"] = False  # the listed keys, none invented
            return
        if out.get("additionalProperties") is False:
            return
        if "additionalProperties" not in out and "patternProperties" not in out:
            out["additionalProperties"] = self.free_value(depth + 1)
        if "maxProperties" not in out:  # a map: cap how many keys it gets
            out["maxProperties"] = max(self.bounds.max_properties, out.get("minProperties", 0))
