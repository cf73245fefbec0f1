"""Tests for training/qt_resources.py: a pure-Python reader of Qt binary resource archives (.rcc, "qres").

The archives used here are written by ``build_qres`` below, which follows Qt's rcc.cpp (RCCResourceLibrary::
writeHeader / writeDataBlobs / writeDataNames / writeDataStructure) independently of the reader under test.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections import deque
from pathlib import Path

import pytest

from ganexport.training import qt_resources

FLAG_ZLIB = 0x01
FLAG_DIRECTORY = 0x02
FLAG_ZSTD = 0x04



def _u16(value: int) -> bytes:
    return struct.pack(">H", value)


def _u32(value: int) -> bytes:
    return struct.pack(">I", value)


def qt_hash(text: str) -> int:
    """Qt's qt_hash over the UTF-16 code units of ``text`` (what rcc stores next to each name)."""
    units = struct.unpack(f">{len(text.encode('utf-16-be')) // 2}H", text.encode("utf-16-be"))
    h = 0
    for unit in units:
        h = (h << 4) + unit
        h ^= (h & 0xF0000000) >> 23
        h &= 0x0FFFFFFF
    return h


def build_qres(files: dict[str, bytes], version: int = 3, compress: frozenset[str] | set[str] = frozenset(),
               flags_override: dict[str, int] | None = None) -> bytes:
    """Write a qres archive holding ``files`` ("dir/sub/name" -> bytes) the way Qt's rcc does.

    Paths in ``compress`` are stored zlib-compressed (flag 1, u32 uncompressed size, zlib stream), like qCompress.
    ``flags_override`` forces the flags word of a file node (e.g. 4 = zstd) while storing its bytes raw.
    Layout as rcc writes it: header, data blobs, names, tree; the tree is breadth-first with the children
    of each directory in consecutive nodes sorted by name hash.
    """
    flags_override = flags_override or {}
    root: dict = {}
    for path, content in files.items():
        *dirs, leaf = path.split("/")
        node = root
        for part in dirs:
            node = node.setdefault(part, {})
        node[leaf] = content

    # Breadth-first numbering: entries[i] = (name, value, full path); directories get (child count, first child).
    entries: list[tuple[str, object, str]] = [("", root, "")]
    dir_info: dict[int, tuple[int, int]] = {}
    queue = deque([(0, root, "")])
    while queue:
        index, directory, prefix = queue.popleft()
        children = sorted(directory.items(), key=lambda item: qt_hash(item[0]))
        dir_info[index] = (len(children), len(entries))
        for name, value in children:
            full = prefix + name
            entries.append((name, value, full))
            if isinstance(value, dict):
                queue.append((len(entries) - 1, value, full + "/"))

    names = bytearray()
    name_offsets: dict[str, int] = {}
    data = bytearray()
    overall_flags = 0
    nodes = []
    for index, (name, value, full) in enumerate(entries):
        if name not in name_offsets:
            name_offsets[name] = len(names)
            encoded = name.encode("utf-16-be")
            names += _u16(len(encoded) // 2) + _u32(qt_hash(name)) + encoded
        name_offset = 0 if index == 0 else name_offsets[name]
        if isinstance(value, dict):
            count, first = dir_info[index]
            record = _u32(name_offset) + _u16(FLAG_DIRECTORY) + _u32(count) + _u32(first)
        else:
            flags = 0
            payload = bytes(value)
            if full in compress:
                flags = FLAG_ZLIB
                payload = _u32(len(value)) + zlib.compress(value)
            if full in flags_override:
                flags = flags_override[full]
            overall_flags |= flags
            data_offset = len(data)
            data += _u32(len(payload)) + payload
            record = _u32(name_offset) + _u16(flags) + _u16(0) + _u16(1) + _u32(data_offset)  # AnyCountry, C
        if version >= 2:
            record += struct.pack(">Q", 1_700_000_000_000)  # last-modified, ms since epoch
        nodes.append(record)

    header_size = 24 if version >= 3 else 20
    data_offset = header_size
    names_offset = data_offset + len(data)
    tree_offset = names_offset + len(names)
    header = b"qres" + _u32(version) + _u32(tree_offset) + _u32(data_offset) + _u32(names_offset)
    if version >= 3:
        header += _u32(overall_flags)
    blob = header + bytes(data) + bytes(names) + b"".join(nodes)
    assert len(nodes[0]) == (14 if version == 1 else 22)
    return blob


def _write(tmp_path: Path, name: str, blob: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(blob)
    return path


SAMPLE = {
    "dir/sub/name.txt": b"hello from a nested directory\n",
    "dir/other.bin": bytes(range(256)) * 3,
    "top.txt": b"",
    "fotos/\u010daj.png": b"\x89PNG\r\n\x1a\n" + b"not really a png" * 20,
    "emoji/\U0001f600.txt": b"a name with a surrogate pair",
}
COMPRESSED = {"dir/other.bin", "fotos/\u010daj.png"}


@pytest.mark.parametrize("version", [1, 2, 3])
def test_list_and_read_round_trip(tmp_path, version):
    path = _write(tmp_path, f"sample-v{version}.rcc", build_qres(SAMPLE, version=version, compress=COMPRESSED))
    listing = qt_resources.list_files(path)
    assert set(listing) == set(SAMPLE)
    for name, content in SAMPLE.items():
        flags, _ = listing[name]
        assert bool(flags & FLAG_ZLIB) == (name in COMPRESSED)
        assert qt_resources.read_file(path, name) == content
    # str paths work as well as Path objects
    assert qt_resources.read_file(str(path), "fotos/\u010daj.png") == SAMPLE["fotos/\u010daj.png"]


def test_raw_and_compressed_entry_bytes(tmp_path):
    raw = b"raw bytes \x00\x01\x02" * 7
    packed = b"compress me " * 500
    blob = build_qres({"a/raw.dat": raw, "a/packed.dat": packed}, compress={"a/packed.dat"})
    # the compressed entry really is smaller on disk than its content
    assert len(blob) < len(packed)
    path = _write(tmp_path, "mixed.rcc", blob)
    assert qt_resources.read_file(path, "a/raw.dat") == raw
    assert qt_resources.read_file(path, "a/packed.dat") == packed


def test_directories_are_not_listed(tmp_path):
    path = _write(tmp_path, "dirs.rcc", build_qres({"x/y/z/leaf": b"1", "x/y/leaf2": b"2"}))
    assert sorted(qt_resources.list_files(path)) == ["x/y/leaf2", "x/y/z/leaf"]
    with pytest.raises((qt_resources.ResourceError, KeyError)):
        qt_resources.read_file(path, "x/y")


def test_wrong_magic(tmp_path):
    blob = b"qrez" + build_qres({"a": b"1"})[4:]
    path = _write(tmp_path, "magic.rcc", blob)
    with pytest.raises(qt_resources.ResourceError, match="magic"):
        qt_resources.list_files(path)


@pytest.mark.parametrize("content", [b"", b"qr", b"PK\x03\x04" + b"\x00" * 40])
def test_not_an_archive(tmp_path, content):
    path = _write(tmp_path, "junk.rcc", content)
    with pytest.raises(qt_resources.ResourceError):
        qt_resources.list_files(path)


@pytest.mark.parametrize("version", [0, 4, 0xFFFFFFFF])
def test_unsupported_version(tmp_path, version):
    blob = bytearray(build_qres({"a": b"1"}, version=3))
    blob[4:8] = _u32(version)
    path = _write(tmp_path, f"version{version}.rcc", bytes(blob))
    with pytest.raises(qt_resources.ResourceError, match="version"):
        qt_resources.list_files(path)


@pytest.mark.parametrize("version", [1, 3])
def test_every_truncation(tmp_path, version):
    files = {"d/one.txt": b"first file", "d/e/two.bin": b"second " * 10, "three": b"3"}
    blob = build_qres(files, version=version, compress={"d/e/two.bin"})
    raised = 0
    for length in range(len(blob)):
        path = _write(tmp_path, f"cut-{length}.rcc", blob[:length])
        try:
            listing = qt_resources.list_files(path)
            for name in listing:
                # whatever the reader still returns must be the true content, not garbage
                assert qt_resources.read_file(path, name) == files[name]
        except qt_resources.ResourceError:
            raised += 1
    # the tree is written last, so no strict prefix holds a complete archive
    assert raised == len(blob)


def test_zstd_entry_is_rejected(tmp_path):
    blob = build_qres({"z/pic.webp": b"\x28\xb5\x2f\xfd" + b"zstd frame", "z/ok.txt": b"fine"},
                      flags_override={"z/pic.webp": FLAG_ZSTD})
    path = _write(tmp_path, "zstd.rcc", blob)
    assert qt_resources.read_file(path, "z/ok.txt") == b"fine"
    with pytest.raises(qt_resources.ResourceError, match="zstd"):
        qt_resources.read_file(path, "z/pic.webp")


def test_corrupt_zlib_stream(tmp_path):
    blob = bytearray(build_qres({"c.bin": b"payload " * 50}, compress={"c.bin"}))
    # data block starts right after the 24-byte v3 header: u32 record length, u32 size, zlib stream
    stream_start = 24 + 8
    blob[stream_start + 2:stream_start + 12] = b"\xff" * 10
    path = _write(tmp_path, "badzlib.rcc", bytes(blob))
    with pytest.raises(qt_resources.ResourceError):
        qt_resources.read_file(path, "c.bin")


def test_wrong_uncompressed_size(tmp_path):
    blob = bytearray(build_qres({"c.bin": b"payload " * 50}, compress={"c.bin"}))
    blob[24 + 4:24 + 8] = _u32(7)
    path = _write(tmp_path, "badsize.rcc", bytes(blob))
    with pytest.raises(qt_resources.ResourceError):
        qt_resources.read_file(path, "c.bin")


def test_missing_entry_names_it(tmp_path):
    path = _write(tmp_path, "small.rcc", build_qres({"a/b.txt": b"x"}))
    with pytest.raises(qt_resources.ResourceError) as excinfo:
        qt_resources.read_file(path, "a/nope.txt")
    assert "a/nope.txt" in str(excinfo.value)


def test_missing_archive(tmp_path):
    with pytest.raises(qt_resources.ResourceError):
        qt_resources.list_files(tmp_path / "does-not-exist.rcc")
    with pytest.raises(qt_resources.ResourceError):
        qt_resources.read_file(tmp_path / "does-not-exist.rcc", "a")


def test_directory_instead_of_archive(tmp_path):
    with pytest.raises(qt_resources.ResourceError):
        qt_resources.list_files(tmp_path)


def test_real_gcompris_archive():
    """A photo inside gcompris-qt-data's archives, found where the photo collection finds it: installed, or
    unpacked by `make setup` under PHOTO_ROOT."""
    from ganexport.training import photos

    in_archives = [p for p in photos.catalogue() if ".rcc!" in p.location]
    assert in_archives, "photo_sources.tsv references no ARCHIVE.rcc!entry locations"
    present = [p for p in in_archives if p.file is not None]
    if not present:
        pytest.skip(f"gcompris-qt-data is neither installed nor unpacked under {photos.PHOTO_ROOT} (make setup)")
    Image = pytest.importorskip("PIL.Image")
    archive, entry = present[0].file, present[0].location.split("!", 1)[1]
    assert entry in qt_resources.list_files(archive)
    content = qt_resources.read_file(archive, entry)
    with Image.open(io.BytesIO(content)) as image:
        image.load()
        assert min(image.size) >= 240, f"{archive}!{entry} is only {image.size}"
