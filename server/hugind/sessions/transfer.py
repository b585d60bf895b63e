"""The session export file: one conversation's KV, movable to another server.

Layout (little-endian), the disk tier's with its own magic::

    b"HGSX" | u32 format version | u32 header length | header JSON
    | i32 tokens[n_tokens] | state bytes[data_len] | sha256 of everything before

The header holds the format name, the model fingerprint (the GGUF's sha256 and the context
parameters that shape the KV state, exactly as the disk tier writes them), the exporting
model's id (informational), ``n_tokens`` and ``data_len``. It names no API key nor session:
the importer files it under its own key and the name it is PUT to.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from hugind.sessions.disk import SessionFileError, canonical, decode, pack

EXPORT_MAGIC = b"HGSX"
FORMAT = "hugind-session"


@dataclass(frozen=True)
class SessionFile:
    fingerprint: dict[str, Any]
    model: str
    tokens: list[int]
    data: bytes


def export_bytes(tokens: list[int], data: bytes, fingerprint: dict[str, Any], *,
                 model: str) -> bytes:
    fields = {"format": FORMAT, "model": model, "exported_at": round(time.time(), 3)}
    return pack(fields, tokens, data, fingerprint, magic=EXPORT_MAGIC)


def read_export(raw: bytes) -> SessionFile:
    """Verify an export file (magic, version, sizes, checksum); raises ``SessionFileError``
    saying why it is unusable. The fingerprint is left to the caller to match."""
    header, tokens, data = decode(raw, None, magic=EXPORT_MAGIC)
    fingerprint = header.get("fingerprint")
    if header.get("format") != FORMAT or not isinstance(fingerprint, dict):
        raise SessionFileError("not a Hugind session export")
    return SessionFile(canonical(fingerprint), str(header.get("model", "")), tokens, data)
