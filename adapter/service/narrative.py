"""Narrative (``text.div``) checks at acceptance, per FHIR R4's rules for Narrative.div.

https://hl7.org/fhir/R4/narrative-definitions.html: the div is an XHTML fragment in the XHTML
namespace holding only the basic formatting elements of HTML 4.0 chapters 7-11 and 15, ``<a>``
(name or href), images and internal styles; it SHALL NOT contain a head, a body, external stylesheet
references, scripts, forms, base/link/xlink, frames, iframes, objects or event attributes (txt-1), and
has some non-whitespace content (txt-2). Active content would run in whatever renders the system of
record's narrative, so it is refused here (422), with a message that never quotes the payload.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any

XHTML = "http://www.w3.org/1999/xhtml"
ALLOWED_ELEMENTS = frozenset(
    [
        "a",
        "abbr",
        "acronym",
        "address",
        "b",
        "bdo",
        "big",
        "blockquote",
        "br",
        "caption",
        "cite",
        "code",
        "col",
        "colgroup",
        "dd",
        "del",
        "dfn",
        "div",
        "dl",
        "dt",
        "em",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "hr",
        "i",
        "img",
        "ins",
        "kbd",
        "li",
        "ol",
        "p",
        "pre",
        "q",
        "samp",
        "small",
        "span",
        "strong",
        "sub",
        "sup",
        "table",
        "tbody",
        "td",
        "tfoot",
        "th",
        "thead",
        "tr",
        "tt",
        "ul",
        "var",
    ]
)
ALLOWED_ATTRIBUTES = frozenset(
    [
        "abbr",
        "align",
        "alt",
        "border",
        "cellpadding",
        "cellspacing",
        "cite",
        "class",
        "colspan",
        "datetime",
        "dir",
        "headers",
        "height",
        "href",
        "id",
        "lang",
        "name",
        "rowspan",
        "rules",
        "scope",
        "span",
        "src",
        "start",
        "style",
        "summary",
        "title",
        "type",
        "valign",
        "value",
        "width",
        "{http://www.w3.org/XML/1998/namespace}lang",
    ]
)
_UNSAFE_URL = re.compile(r"^\s*(javascript|vbscript|data\s*:\s*text/html)", re.IGNORECASE)
_UNSAFE_STYLE = re.compile(r"expression\s*\(|url\s*\(|@import|javascript:", re.IGNORECASE)


class NarrativeError(ValueError):
    """Why a narrative is refused; never the narrative's own text."""


def _divs(resource: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    yield (
        "text.div",
        (resource.get("text") or {}).get("div") if isinstance(resource.get("text"), dict) else None,
    )
    for index, contained in enumerate(resource.get("contained") or ()):
        if isinstance(contained, dict):
            for path, div in _divs(contained):
                yield f"contained[{index}].{path}", div


def check_narratives(resource: dict[str, Any]) -> None:
    """Raises NarrativeError(path: reason) for the first narrative that is not safe, valid XHTML."""
    for path, div in _divs(resource):
        if div is None:
            continue
        try:
            check_div(div)
        except NarrativeError as exc:
            raise NarrativeError(f"{path}: {exc}") from None


def check_div(div: Any) -> None:
    if not isinstance(div, str):
        raise NarrativeError("must be a string of XHTML")
    if re.search(r"<!DOCTYPE|<!ENTITY", div, re.IGNORECASE):
        raise NarrativeError("document type declarations and entities are not allowed")
    try:
        root = ET.fromstring(div)
    except ET.ParseError as exc:
        line, column = exc.position
        raise NarrativeError(f"not well-formed XHTML (line {line}, column {column})") from None
    if root.tag != f"{{{XHTML}}}div":
        raise NarrativeError('the root must be <div xmlns="http://www.w3.org/1999/xhtml">')
    if not "".join(root.itertext()).strip() and root.find(f".//{{{XHTML}}}img") is None:
        raise NarrativeError("has no content (txt-2)")
    for element in root.iter():
        namespace, _, name = element.tag.rpartition("}")
        if namespace.lstrip("{") != XHTML or name not in ALLOWED_ELEMENTS:
            raise NarrativeError(f"element <{_safe(name)}> is not allowed in a narrative")
        for attribute, value in element.attrib.items():
            if attribute not in ALLOWED_ATTRIBUTES:
                raise NarrativeError(f"attribute {_safe(attribute)} is not allowed in a narrative")
            if attribute in ("href", "src") and _UNSAFE_URL.match(value):
                raise NarrativeError(f"a script URL in {attribute} is not allowed")
            if attribute == "style" and _UNSAFE_STYLE.search(value):
                raise NarrativeError("external or active style content is not allowed")


def _safe(name: str) -> str:
    """An element or attribute name as it may appear in an error: short, letters and digits only."""
    name = name.rpartition("}")[2]
    return name[:30] if re.fullmatch(r"[A-Za-z][A-Za-z0-9_:-]*", name) else "(unnamed)"
