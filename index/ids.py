"""Stable, URL-safe image ids derived from archive-relative paths.

Letters, digits, ``.``, ``_`` and ``-`` are kept; every other UTF-8 byte,
including the ``/`` separator, becomes ``~`` plus two upper-case hex digits.
``~`` never appears unescaped, so the mapping is reversible and two paths
never share an id. Every character of an id is unreserved in RFC 3986, so
ids need no quoting in URL paths or query strings.
"""

from __future__ import annotations

import string

_KEPT = frozenset(string.ascii_letters + string.digits + "._-")


def image_id_from_path(relative_path: str) -> str:
    """Return the id of an archive-relative POSIX path such as ``a/b.jpg``."""
    parts = []
    for char in relative_path:
        if char in _KEPT:
            parts.append(char)
        else:
            parts.extend(f"~{byte:02X}" for byte in char.encode("utf-8"))
    return "".join(parts)


def path_from_image_id(image_id: str) -> str:
    """Invert ``image_id_from_path``; raise ValueError for a malformed id."""
    data = bytearray()
    position = 0
    while position < len(image_id):
        char = image_id[position]
        if char == "~":
            digits = image_id[position + 1:position + 3]
            if len(digits) != 2 or not all(d in string.hexdigits for d in digits):
                raise ValueError(f"invalid escape at offset {position} in image id {image_id!r}")
            data.append(int(digits, 16))
            position += 3
        elif char in _KEPT:
            data.extend(char.encode("ascii"))
            position += 1
        else:
            raise ValueError(f"invalid character {char!r} in image id {image_id!r}")
    return data.decode("utf-8")
