"""Secrets never reach a file, a message, a lock or a log: URLs are shown with their password masked.

A password can only be given in a URL's userinfo (``redis://user:PASSWORD@host``); :func:`redact`
masks every such password in a text, :func:`has_password` says whether a URL carries one.
"""
from __future__ import annotations

import re
from urllib.parse import urlsplit

__all__ = ["redact", "has_password", "MASK"]

MASK = "***"
# scheme://[user]:password@  -- the password runs up to the last '@' before the host part.
_USERINFO = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s/@:]*:)(?P<password>[^\s/]*)@")


def redact(text: str) -> str:
    """``text`` with every URL password replaced by ``***`` (``redis://u:***@host``)."""
    return _USERINFO.sub(lambda m: f"{m['head']}{MASK}@", str(text))


def has_password(url: str) -> bool:
    try:
        return bool(urlsplit(url).password)
    except ValueError:
        return False
