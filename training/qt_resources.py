"""Read files out of Qt binary resource archives (``.rcc``, "qres" format) without Qt.

Some photographs we train on ship only inside Qt resource archives (for example the
Debian package ``gcompris-qt-data`` stores its pictures under /usr/share/gcompris-qt/rcc/).
Installing PyQt/PySide just to open them is heavy, so this module parses the format
directly with the standard library, offline.

Layout (from Qt's rcc.cpp / qresource.cpp), all integers big-endian:

* header: ``b"qres"``, version (1-3), tree offset, data offset, names offset, and for
  version 3 a flags word (OR of all entry flags);
* tree: fixed-size nodes (14 bytes in v1, 22 in v2+ which add a 64-bit mtime), node 0 is
  the root: name offset (u32), flags (u16: 1 = zlib, 2 = directory, 4 = zstd), then for a
  directory child count (u32) and first-child node index (u32), for a file country (u16),
  language (u16) and data offset (u32);
* names: u16 length in UTF-16 code units, u32 hash, UTF-16BE text;
* data: u32 length then the bytes; zlib entries start with a u32 uncompressed size.
"""

import struct
import zlib
from functools import lru_cache
from pathlib import Path

__all__ = ["ResourceError", "list_files", "read_file"]

_MAGIC = b"qres"
_FLAG_ZLIB = 0x01
_FLAG_DIRECTORY = 0x02
_FLAG_ZSTD = 0x04


class ResourceError(Exception):
    """The archive is truncated, malformed, or uses a feature this reader does not support."""


def _u16(blob: bytes, offset: int) -> int:
    if offset < 0 or offset + 2 > len(blob):
        raise ResourceError(f"truncated archive: u16 at offset {offset} is past the end ({len(blob)} bytes)")
    return struct.unpack_from(">H", blob, offset)[0]


def _u32(blob: bytes, offset: int) -> int:
    if offset < 0 or offset + 4 > len(blob):
        raise ResourceError(f"truncated archive: u32 at offset {offset} is past the end ({len(blob)} bytes)")
    return struct.unpack_from(">I", blob, offset)[0]


def _name(blob: bytes, names_offset: int, name_offset: int) -> str:
    start = names_offset + name_offset
    length = _u16(blob, start)
    text_start = start + 6  # u16 length, u32 hash
    if text_start + 2 * length > len(blob):
        raise ResourceError(f"truncated archive: name at offset {start} runs past the end")
    try:
        return blob[text_start:text_start + 2 * length].decode("utf-16-be")
    except UnicodeDecodeError as exc:
        raise ResourceError(f"malformed name at offset {start}: {exc}") from None


@lru_cache(maxsize=8)
def _parse(path: str, mtime_ns: int) -> tuple[bytes, dict[str, tuple[int, int]]]:
    blob = Path(path).read_bytes()
    if blob[:4] != _MAGIC:
        raise ResourceError(f"{path}: not a Qt resource archive (magic {blob[:4]!r}, expected {_MAGIC!r})")
    version = _u32(blob, 4)
    if version not in (1, 2, 3):
        raise ResourceError(f"{path}: unsupported qres version {version} (expected 1-3)")
    tree_offset, data_offset, names_offset = _u32(blob, 8), _u32(blob, 12), _u32(blob, 16)
    node_size = 14 if version == 1 else 22

    def node(index: int) -> tuple[int, int, int, int]:
        """(name offset, flags, a, b): a, b = child count, first child or locale, data offset."""
        start = tree_offset + index * node_size
        if start + node_size > len(blob):
            raise ResourceError(f"{path}: tree node {index} at offset {start} is past the end")
        # Directories hold child count + first child here; files hold country/language + data offset.
        return _u32(blob, start), _u16(blob, start + 4), _u32(blob, start + 6), _u32(blob, start + 10)

    files: dict[str, tuple[int, int]] = {}
    root_flags = node(0)[1]
    if not root_flags & _FLAG_DIRECTORY:
        raise ResourceError(f"{path}: root tree node is not a directory")
    pending = [(0, "")]
    visited = {0}
    while pending:
        index, prefix = pending.pop()
        _, _, child_count, first_child = node(index)
        for child in range(first_child, first_child + child_count):
            if child in visited:
                raise ResourceError(f"{path}: tree node {child} is referenced twice (cycle or overlap)")
            visited.add(child)
            name_offset, flags, _, offset = node(child)
            full_name = prefix + _name(blob, names_offset, name_offset)
            if flags & _FLAG_DIRECTORY:
                pending.append((child, full_name + "/"))
                continue
            start = data_offset + offset
            if start + 4 + _u32(blob, start) > len(blob):
                raise ResourceError(f"{path}: data of {full_name!r} at offset {start} runs past the end")
            files.setdefault(full_name, (flags, start))  # same name in several locales: keep the first
    return blob, files


def _load(path) -> tuple[bytes, dict[str, tuple[int, int]]]:
    try:
        resolved = Path(path).resolve()
        return _parse(str(resolved), resolved.stat().st_mtime_ns)
    except OSError as exc:
        raise ResourceError(f"cannot read {path}: {exc}") from None


def list_files(path) -> dict[str, tuple[int, int]]:
    """Map every file in the archive ("dir/sub/name.ext") to (flags, absolute offset of its data record)."""
    return dict(_load(path)[1])


def read_file(path, name: str) -> bytes:
    """Return the bytes of file ``name`` inside the archive at ``path``, decompressed."""
    blob, files = _load(path)
    if name not in files:
        raise ResourceError(f"{path}: no file named {name!r} in the archive")
    flags, start = files[name]
    payload = blob[start + 4:start + 4 + _u32(blob, start)]
    if flags & _FLAG_ZSTD:
        raise ResourceError(f"{path}: {name!r} is zstd-compressed, which this reader does not support")
    if not flags & _FLAG_ZLIB:
        return payload
    expected = _u32(payload, 0)
    try:
        data = zlib.decompress(payload[4:])
    except zlib.error as exc:
        raise ResourceError(f"{path}: {name!r} has a corrupt zlib stream: {exc}") from None
    if len(data) != expected:
        raise ResourceError(f"{path}: {name!r} decompressed to {len(data)} bytes, header says {expected}")
    return data
