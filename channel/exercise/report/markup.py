"""Building HTML and SVG markup safely: every plain `str` is escaped, only `Html` is not.

Every piece of text in the after-action report is scenario or player input, so `el` escapes every
plain `str` child and every attribute value it is given and only inserts `Html` (markup built
here) as is.
"""

from __future__ import annotations

import html
from collections.abc import Iterable


class Html(str):
    """Markup built by `el`: inserted as is, where a plain `str` is escaped."""


def _attr_name(key: str) -> str:
    """Python keyword arguments to attribute names: class_ → class, data_party → data-party."""
    return key.rstrip("_").replace("_", "-")


def el(tag: str, *children: str, **attrs: object) -> Html:
    """An element; plain-text children and every attribute value are escaped."""
    rendered = "".join(
        f' {_attr_name(key)}="{html.escape(str(value))}"'
        for key, value in attrs.items()
        if value is not None
    )
    body = "".join(child if isinstance(child, Html) else html.escape(child) for child in children)
    return Html(f"<{tag}{rendered}>{body}</{tag}>")


def join(parts: Iterable[str]) -> Html:
    """Parts side by side; plain-text parts are escaped."""
    return Html("".join(part if isinstance(part, Html) else html.escape(part) for part in parts))
