"""The row count of an uploaded parquet file, read from its footer in pure Python.

The upload checks run in the web process, on files anyone with an upload right sends.
A parquet library (pyarrow) would parse that untrusted metadata in C++ inside the web
process, and pyarrow has had a bug where reading an untrusted file ran code
(CVE-2023-47248); it is not among the platform's own dependencies either. The footer
is small and one field is needed: FileMetaData.num_rows, field 3 of a Thrift struct in
the compact protocol. Everything else is skipped, with every count and length checked
against the bytes there are, so a corrupt footer is a None, never a crash or a loop.
"""

from __future__ import annotations

from typing import BinaryIO

PARQUET_MAGIC = b"PAR1"
PARQUET_NUM_ROWS_FIELD = 3  # FileMetaData.num_rows, an i64 (parquet.thrift)


class ThriftCompact:
    """Just enough of Thrift's compact protocol to find one integer field of a struct and
    skip every other value (parquet footers are written with it). A footer that does not
    parse raises IndexError (it ends early) or ValueError."""

    MAX_DEPTH = 64
    BOOLEANS = (1, 2)  # a field's value is its type; an element's is one byte
    FIXED_SIZES = {3: 1, 7: 8}  # byte, double
    VARINTS = (4, 5, 6)  # i16, i32, i64
    BINARY, LIST, SET, MAP, STRUCT = 8, 9, 10, 11, 12

    def __init__(self, data: bytes):
        self.data = data
        self.at = 0

    def struct_field(self, wanted: int) -> int | None:
        """The integer field `wanted` of the struct that starts here, or None."""
        field = 0
        while True:
            kind, field = self._field_header(field)
            if kind == 0:  # STOP: the struct has no such field
                return None
            if field == wanted and kind in self.VARINTS:
                return self._zigzag()
            self._skip_field(kind, 0)

    def _byte(self) -> int:
        value = self.data[self.at]
        self.at += 1
        return value

    def _varint(self) -> int:
        value = shift = 0
        while True:
            byte = self._byte()
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7
            if shift > 63:
                raise ValueError("varint too long")

    def _zigzag(self) -> int:
        value = self._varint()
        return (value >> 1) ^ -(value & 1)

    def _field_header(self, previous: int) -> tuple[int, int]:
        """(type, field id) of the next field; type 0 ends the struct."""
        byte = self._byte()
        kind, delta = byte & 0x0F, byte >> 4
        if kind == 0:
            return 0, previous
        return kind, (previous + delta if delta else self._zigzag())

    def _advance(self, count: int) -> None:
        self._check_room(count)
        self.at += count

    def _skip_field(self, kind: int, depth: int) -> None:
        if kind not in self.BOOLEANS:
            self._skip(kind, depth)

    def _skip(self, kind: int, depth: int) -> None:
        """Skip one value of type `kind` (a container's element: booleans take a byte)."""
        if depth > self.MAX_DEPTH:
            raise ValueError("nested too deeply")
        if kind in self.BOOLEANS:
            self._advance(1)
        elif kind in self.FIXED_SIZES:
            self._advance(self.FIXED_SIZES[kind])
        elif kind in self.VARINTS:
            self._varint()
        elif kind == self.BINARY:
            self._advance(self._varint())
        elif kind in (self.LIST, self.SET):
            header = self._byte()
            count = header >> 4 if header >> 4 != 15 else self._varint()
            self._check_room(count)
            for _ in range(count):
                self._skip(header & 0x0F, depth + 1)
        elif kind == self.MAP:
            count = self._varint()
            if count:
                self._check_room(count)
                types = self._byte()
                for _ in range(count):
                    self._skip(types >> 4, depth + 1)
                    self._skip(types & 0x0F, depth + 1)
        elif kind == self.STRUCT:
            field = 0
            while True:
                member, field = self._field_header(field)
                if member == 0:
                    return
                self._skip_field(member, depth + 1)
        else:
            raise ValueError(f"unknown Thrift type {kind}")

    def _check_room(self, count: int) -> None:
        # A container's elements take a byte each at least: a count past the footer's end
        # is a corrupt one, not a loop to run.
        if count > len(self.data) - self.at:
            raise ValueError("truncated")


class NotParquet(ValueError):
    """The file is not a parquet file that can be read (its markers, or its footer)."""


# Footers hold a few kilobytes per row group and column: one past this is left unread
# (the run reads the file) rather than held in the web process's memory.
MAX_FOOTER_BYTES = 16 * 1024 * 1024


def parquet_rows(file: BinaryIO, size: int) -> int | None:
    """The row count the footer of a parquet file of `size` bytes records; None when its
    footer is too large to read here. NotParquet for a file that is not parquet. The
    file is left at its start."""
    try:
        if size < 12:  # the two markers and the footer's length
            raise NotParquet("too short")
        file.seek(0)
        head = file.read(4)
        file.seek(size - 8)
        tail = file.read(8)
        footer_size = int.from_bytes(tail[:4], "little")
        if head != PARQUET_MAGIC or tail[4:] != PARQUET_MAGIC or not 0 < footer_size <= size - 12:
            raise NotParquet("no parquet markers, or a footer longer than the file")
        if footer_size > MAX_FOOTER_BYTES:
            return None
        file.seek(size - 8 - footer_size)
        footer = file.read(footer_size)
        try:
            rows = ThriftCompact(footer).struct_field(PARQUET_NUM_ROWS_FIELD)
        except (IndexError, ValueError, RecursionError):
            raise NotParquet("its footer does not parse") from None
        if rows is None or rows < 0:
            raise NotParquet("its footer has no row count")
        return rows
    finally:
        file.seek(0)
