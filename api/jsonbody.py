"""Every JSON request body is parsed here, within INFERQ_MAX_JSON_BYTES and INFERQ_MAX_JSON_DEPTH.

The depth is measured with a flat scan before parsing, so a body nested 100,000 deep costs one
pass over its bytes and never reaches a recursive parser."""
import json

from api.errors import ApiError

_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_OPEN = frozenset(b"[{")


def parse_json(raw: bytes | str, settings) -> object:
    """The parsed body. Raises ApiError: 413 `json_too_large` over `settings.max_json_bytes`,
    400 `json_too_deep` when arrays and objects nest deeper than `settings.max_json_depth`,
    400 `invalid_json` for anything that is not UTF-8 JSON."""
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "surrogatepass")
    if len(raw) > settings.max_json_bytes:
        raise ApiError(413, "json_too_large", f"the JSON body is {len(raw)} bytes, over the "
                       f"limit of {settings.max_json_bytes} (INFERQ_MAX_JSON_BYTES)")
    if nesting_depth(raw, settings.max_json_depth) > settings.max_json_depth:
        raise ApiError(400, "json_too_deep", f"the JSON body nests arrays and objects deeper "
                       f"than {settings.max_json_depth} levels (INFERQ_MAX_JSON_DEPTH)")
    try:
        # UTF-8 only (RFC 8259): json.loads would also guess UTF-16/32 from bytes, whose
        # multi-byte characters could hide a quote or a bracket from the scan above.
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ApiError(400, "invalid_json", "the JSON body is not UTF-8 text") from None
    except ValueError as exc:
        raise ApiError(400, "invalid_json", f"the body is not valid JSON: {exc}") from None
    except RecursionError:  # not reachable within the depth limit; never a 500 if it were
        raise ApiError(400, "json_too_deep", "the JSON body is nested too deeply") from None


def nesting_depth(raw: bytes, stop_above: int | None = None) -> int:
    """The deepest nesting of arrays and objects in `raw`, outside strings. Stops counting once
    past `stop_above`, so a hostile body ends the scan early."""
    # In valid JSON a backslash only appears in a string, where it starts an escape: once the
    # escaped backslashes and quotes are gone, each quote left opens or closes a string, and the
    # even pieces between quotes lie outside strings. (Invalid JSON may be counted wrongly; the
    # parser rejects it anyway, and no valid prefix can hide a bracket from this count.)
    unescaped = raw.replace(b"\\\\", b"").replace(b'\\"', b"")
    outside = b"".join(unescaped.split(b'"')[::2])
    brackets = outside.translate(None, _NOT_BRACKETS)
    depth = deepest = 0
    for byte in brackets:
        if byte in _OPEN:
            depth += 1
            if depth > deepest:
                deepest = depth
                if stop_above is not None and deepest > stop_above:
                    break
        else:
            depth -= 1
    return deepest
