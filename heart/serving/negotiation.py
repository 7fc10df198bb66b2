"""Content negotiation (RFC 9110, 12.4 and 12.5): the one parser of q-weighted header lists, for
Accept (the page at / or JSON) and Accept-Encoding (the metrics port's gzip)."""

from __future__ import annotations

import re

QVALUE = re.compile(r"0(\.[0-9]{0,3})?|1(\.0{0,3})?")  # RFC 9110, 12.4.2: weight = q= qvalue, in [0, 1]


def weights(header: str | None) -> dict[str, float]:
    """Each item of the list, lower-cased and without its parameters, -> its weight (q, 1 by
    default; the highest when listed twice). q=0 is "not acceptable" and kept as 0; an item
    whose q is not a qvalue (q=2, q=inf, q=-1, q=abc) is left out, as if not sent."""
    out: dict[str, float] = {}
    for part in (header or "").split(","):
        item, *params = [p.strip() for p in part.split(";")]
        q = 1.0
        for p in params:
            if p[:2].lower() == "q=":
                q = float(p[2:]) if QVALUE.fullmatch(p[2:]) else -1.0
        if q >= 0 and item:
            item = item.lower()
            out[item] = max(q, out.get(item, 0.0))
    return out


def accepts_gzip(accept_encoding: str | None) -> bool:
    """gzip is acceptable (12.5.3): named (or as x-gzip) with q > 0, or not named and `*` with q > 0.
    `gzip;q=0` refuses it, as no header, `identity` or an unknown coding alone do not ask for it."""
    w = weights(accept_encoding)
    return w.get("gzip", w.get("x-gzip", w.get("*", 0.0))) > 0
