"""Parse WeCom's callback XML into plain dicts, safely (defusedxml: no entity bombs)."""

from __future__ import annotations

from typing import Any

from defusedxml import ElementTree
from defusedxml.common import DefusedXmlException


class BadXml(ValueError):
    """The body is not the XML WeCom sends."""


def parse(text: str | bytes) -> dict[str, Any]:
    """``<xml><A>1</A><L><Item>x</Item><Item>y</Item></L></xml>`` → ``{"A": "1", "L": [...]}``.

    An element with children becomes a dict, or a list when its children all share one tag
    (WeCom's ``MemChangeList``/``Item`` style). Text is stripped; CDATA is plain text.
    """
    try:
        root = ElementTree.fromstring(text)
    except (ElementTree.ParseError, DefusedXmlException, ValueError) as error:
        raise BadXml(str(error)) from error
    value = _convert(root)
    if not isinstance(value, dict):
        raise BadXml("the root element holds no fields")
    return value


def _convert(element: Any) -> Any:
    children = list(element)
    if not children:
        return (element.text or "").strip()
    tags = {child.tag for child in children}
    if len(children) > 1 and len(tags) == 1:
        return [_convert(child) for child in children]
    if len(children) == 1 and children[0].tag == "Item":
        return [_convert(children[0])]
    return {child.tag: _convert(child) for child in children}
