"""PartHeaders (groups/uploads.py): the part headers of a multipart body, seen as it
is read, whatever the sizes of the reads."""

from __future__ import annotations

import io

import pytest

from groups.uploads import PartHeaders

BOUNDARY = b"b0und"
BODY = (
    b"--b0und\r\n"
    b'Content-Disposition: form-data; name="note"\r\n\r\n'
    b"hello\r\n"
    b"--b0und\r\n"
    b'Content-Disposition: form-data; name="file"; filename="a.csv"\r\n'
    b"Content-Type: text/csv\r\n\r\n"
    b"x,y\r\n1,2\r\n--b0un is not a delimiter\r\n\r\n\r\n"
    b"\r\n--b0und\r\n"
    b'Content-Disposition: form-data; name="other"; filename="."\r\n\r\n'
    b"z\r\n"
    b"--b0und--\r\n"
)
EXPECTED = [
    b'\r\nContent-Disposition: form-data; name="file"; filename="a.csv"\r\nContent-Type: text/csv',
    b'\r\nContent-Disposition: form-data; name="other"; filename="."',
]


@pytest.mark.parametrize("size", [1, 2, 3, 7, 11, 64, len(BODY), -1])
def test_every_part_naming_a_file_is_kept_whatever_the_read_sizes(size):
    watched = PartHeaders(io.BytesIO(BODY), BOUNDARY)
    read = b""
    while chunk := watched.read(size):
        read += chunk
        if size == -1:
            break
    assert read == BODY  # passed through untouched
    assert watched.blocks == EXPECTED


def test_headers_too_long_to_be_headers_are_not_kept():
    body = (
        b"--b0und\r\n"
        + b"x" * 20_000
        + b'\r\n\r\n--b0und\r\nContent-Disposition: form-data; filename="a"\r\n\r\n'
    )
    watched = PartHeaders(io.BytesIO(body), BOUNDARY)
    while watched.read(1000):
        pass
    assert watched.blocks == [b'\r\nContent-Disposition: form-data; filename="a"']
