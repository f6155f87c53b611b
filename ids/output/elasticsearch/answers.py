"""Reading a `_bulk` answer that came over the network, which may be anything: a proxy's HTML page, JSON of
the wrong shape, a truncated or huge body (issue #16). `bulk_items` returns exactly one small, well-formed
result per document sent, or raises BadAnswer with a one-line reason of bounded length; the shipper then
treats the request as failed as a whole (retry, then spool), so no answer can stop the sender or lose a
document silently. Error text kept from an answer is cut to MAX_REASON characters.
"""
from __future__ import annotations

import json

MAX_REASON = 500  # characters of error text kept from an answer (dead-letter record, log line)
_PEEK = 4096  # characters of a body looked at to describe it


class BadAnswer(Exception):
    """The answer cannot be read as one result per document sent."""


def cut(text, n: int = MAX_REASON) -> str:
    """One line of at most `n` characters, whatever `text` is (huge, binary, nested)."""
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text[:n * 4]).decode("utf-8", "replace")
    elif not isinstance(text, str):
        text = repr(text) if isinstance(text, (int, float, bool, type(None))) else _short_repr(text, n)
    text = " ".join(text[:n * 4].split())
    return text if len(text) <= n else text[:n - 3] + "..."


def _short_repr(v, n: int) -> str:
    # repr of a deep or huge structure would cost its size; JSON with a character budget does not
    try:
        out = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str).iterencode(v)
        buf, size = [], 0
        for piece in out:
            buf.append(piece)
            size += len(piece)
            if size > n:
                break
        return "".join(buf)
    except (ValueError, RecursionError):
        return type(v).__name__


def bounded_error(err):
    """A per-document `error` as a small value: type, reason and the cause's reason, each cut."""
    if isinstance(err, dict):
        out = {"type": cut(err.get("type", "?"), 100), "reason": cut(err.get("reason", ""))}
        cause = err.get("caused_by")
        if isinstance(cause, dict) and cause.get("reason") is not None:
            out["caused_by"] = {"type": cut(cause.get("type", "?"), 100), "reason": cut(cause.get("reason"))}
        return out
    return cut(err)


def describe(body) -> str:
    """What a body that is not a bulk answer looks like, in one short line (an HTML page loses its tags)."""
    if isinstance(body, (bytes, bytearray)):
        body = bytes(body[:_PEEK]).decode("utf-8", "replace")
    if isinstance(body, str):
        import re
        return cut(re.sub(r"<[^>]+>", " ", body[:_PEEK]), 160) or "an empty body"
    return f"a JSON {type(body).__name__}: " + cut(body, 120)


def what(v) -> str:
    """A value that came in an answer or a file where another type belongs, in a few words."""
    if v is None:
        return "null"
    if isinstance(v, str):
        return f"the string {cut(v, 80)!r}"
    return describe(v)


def bulk_items(body, n: int) -> list[dict]:
    """The `n` per-document results of a `_bulk` answer, each {"status": int, "error"?: small}, or
    {"status": None, "error": why} for an item whose status is not an integer (retried)."""
    if isinstance(body, (bytes, bytearray, str)):
        raise BadAnswer(f"bulk answer is not JSON: {describe(body)}")
    if not isinstance(body, dict):
        raise BadAnswer(f"bulk answer is not a JSON object: {describe(body)}")
    items = body.get("items")
    if not isinstance(items, list):
        raise BadAnswer("bulk answer has no list of items"
                        + (f" (items is {describe(items)})" if "items" in body else f": {describe(body)}"))
    if len(items) != n:
        raise BadAnswer(f"bulk answered {len(items)} items for {n} documents")
    out = []
    for i, it in enumerate(items):
        if not isinstance(it, dict) or len(it) != 1:
            raise BadAnswer(f"bulk answer item {i} is not an object with one action: {describe(it)}")
        res = next(iter(it.values()))
        if not isinstance(res, dict):
            raise BadAnswer(f"bulk answer item {i} is not an object: {describe(res)}")
        status = res.get("status")
        if type(status) is not int:
            out.append({"status": None, "error": f"item status is not an integer: {cut(status, 80)}"})
            continue
        r = {"status": status}
        if "error" in res:
            r["error"] = bounded_error(res["error"])
        out.append(r)
    return out
