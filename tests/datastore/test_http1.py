"""The sans-IO HTTP/1.1 response parser (``bgpd.datastore.http1``): bodies framed by
Content-Length, chunked (with extensions and trailers) and by the connection's end;
answers without a body; whether the connection can be reused; malformed answers
raising ``HttpError``; and the same body however the bytes are split."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bgpd.datastore.http1 import HttpError, ResponseParser, request


def parse(*pieces: bytes, eof: bool = False) -> tuple[ResponseParser, bytes]:
    """Feed ``pieces`` one after another (then the end of stream when ``eof``); the
    parser and the whole body taken."""
    parser = ResponseParser()
    body = b""
    for piece in pieces:
        parser.feed(piece)
        body += parser.take()
    if eof:
        parser.feed(b"")
        body += parser.take()
    return parser, body


def bytewise(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


def chunked(*chunks: bytes, trailers: bytes = b"") -> bytes:
    out = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n"
    for chunk in chunks:
        out += b"%x\r\n%s\r\n" % (len(chunk), chunk)
    return out + b"0\r\n" + trailers + b"\r\n"


# -- bodies ---------------------------------------------------------------------------


def test_content_length_body() -> None:
    data = b'HTTP/1.1 200 OK\r\nContent-Length: 11\r\nX-Thing:  spaced value \r\n\r\n{"a": true}'
    parser, body = parse(data)
    assert parser.done and parser.reusable
    assert (parser.status, parser.reason, body) == (200, "OK", b'{"a": true}')
    assert parser.headers["content-length"] == "11"
    assert parser.headers["x-thing"] == "spaced value"  # names lower-cased, values stripped


def test_content_length_body_byte_by_byte() -> None:
    data = b"HTTP/1.1 404 Not Found\r\nContent-Length: 5\r\n\r\nnope!"
    parser = ResponseParser()
    body = b""
    for i, piece in enumerate(bytewise(data)):
        assert not parser.done, i
        parser.feed(piece)
        body += parser.take()
    assert parser.done and (parser.status, parser.reason, body) == (404, "Not Found", b"nope!")


def test_bytes_after_a_content_length_body_are_not_its_body() -> None:
    parser, body = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n")
    assert parser.done and body == b"ok"


def test_head_only_before_the_body() -> None:
    parser = ResponseParser()
    parser.feed(b"HTTP/1.1 200 OK\r\nContent-Len")
    assert not parser.head_done and parser.status == 0
    parser.feed(b"gth: 4\r\n\r\nab")
    assert parser.head_done and not parser.done and parser.status == 200
    assert parser.take() == b"ab"
    assert parser.take() == b""
    parser.feed(b"cd")
    assert parser.done and parser.take() == b"cd"


def test_zero_content_length() -> None:
    parser, body = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    assert parser.done and parser.reusable and body == b""


def test_chunked_body_with_extensions_and_trailers() -> None:
    data = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;name=value\r\nhello\r\n"
        b"1 ; another\r\n \r\n"
        b"A\r\n0123456789\r\n"
        b"0;last\r\nX-Trailer: yes\r\nX-Other: 2\r\n\r\n"
    )
    parser, body = parse(data)
    assert parser.done and parser.reusable
    assert body == b"hello 0123456789"
    parser, body = parse(*bytewise(data))
    assert parser.done and body == b"hello 0123456789"


def test_chunked_body_arrives_as_it_comes() -> None:
    parser = ResponseParser()
    parser.feed(b'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\n{"a":')
    assert parser.take() == b'{"a":'
    parser.feed(b"1\r\n")
    assert parser.take() == b"1" and not parser.done
    parser.feed(b"3\r\n}\r\n\r\n")
    assert parser.take() == b"}\r\n" and not parser.done
    parser.feed(b"0\r\n\r\n")
    assert parser.done


def test_chunked_body_is_unframed_at_eof_only_when_complete() -> None:
    parser, body = parse(chunked(b"abc", b"def"), eof=True)
    assert parser.done and body == b"abcdef"


def test_until_close_body() -> None:
    parser = ResponseParser()
    parser.feed(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nfirst ")
    assert parser.head_done and not parser.done
    parser.feed(b"second")
    assert not parser.done
    assert parser.take() == b"first second"
    parser.feed(b"")
    assert parser.done and not parser.reusable
    parser, body = parse(b"HTTP/1.1 200 OK\r\n\r\n", eof=True)
    assert parser.done and body == b"" and not parser.reusable


@pytest.mark.parametrize("status", [204, 304, 100])
def test_answers_without_a_body(status: int) -> None:
    parser, body = parse(b"HTTP/1.1 %d Whatever\r\nContent-Length: 7\r\n\r\n" % status)
    assert parser.done and parser.status == status and body == b""
    assert parser.reusable


def test_a_head_only_parser_reads_no_body() -> None:
    parser = ResponseParser(head_only=True)
    parser.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
    assert parser.done and parser.take() == b""


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nconnection:  Close\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
    ],
)
def test_connection_close_is_not_reusable(head: bytes) -> None:
    parser, body = parse(head)
    assert parser.done and body == b"ok"
    assert not parser.reusable


def test_keep_alive_is_reusable() -> None:
    parser, _ = parse(b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n")
    assert parser.done and parser.reusable


# -- malformed answers -------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"HTTP/2 200 OK\r\n\r\n",
        b"ICY 200 OK\r\n\r\n",
        b"HTTP/1.1 two hundred\r\n\r\n",
        b"HTTP/1.1\r\n\r\n",
        b"garbage\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: ten\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\nabc",
        b"HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\nabcde",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1_0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n",
    ],
)
def test_malformed_heads_raise_http_error(data: bytes) -> None:
    with pytest.raises(HttpError):
        ResponseParser().feed(data)


@pytest.mark.parametrize("size", [b"zz", b"", b"-1", b"+5", b"1 2", b"0x5", b"1_0", b";ext"])
def test_bad_chunk_sizes_raise_http_error(size: bytes) -> None:
    with pytest.raises(HttpError):
        parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + size + b"\r\nhello\r\n")


def test_a_chunk_not_followed_by_crlf_raises_http_error() -> None:
    with pytest.raises(HttpError):
        parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n")


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"HTTP/1.1 200 OK\r\nContent-Len",
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-Trailer: 1\r\n",
    ],
)
def test_a_body_cut_short_at_eof_raises_http_error(data: bytes) -> None:
    parser = ResponseParser()
    if data:
        parser.feed(data)
    with pytest.raises(HttpError):
        parser.feed(b"")


def test_an_endless_head_raises_http_error() -> None:
    parser = ResponseParser()
    parser.feed(b"HTTP/1.1 200 OK\r\n")
    with pytest.raises(HttpError):
        for _ in range(100):
            parser.feed(b"X-Filler: " + b"x" * 1000 + b"\r\n")


def test_an_endless_chunk_size_line_raises_http_error() -> None:
    parser = ResponseParser()
    parser.feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    with pytest.raises(HttpError):
        for _ in range(100):
            parser.feed(b"0" * 1000)


# -- requests ------------------------------------------------------------------------------


def test_request_bytes() -> None:
    data = request("POST", "127.0.0.1:2379", "/v3/kv/range", b'{"key":"YQ=="}',
                   {"Authorization": "token"})  # fmt: skip
    head, _, body = data.partition(b"\r\n\r\n")
    assert body == b'{"key":"YQ=="}'
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /v3/kv/range HTTP/1.1"
    assert b"Host: 127.0.0.1:2379" in lines
    assert b"Content-Length: 14" in lines
    assert b"Content-Type: application/json" in lines
    assert b"Authorization: token" in lines
    assert request("GET", "h", "/") == b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n"


def test_request_refuses_header_injection() -> None:
    with pytest.raises(ValueError, match="line breaks"):
        request("POST", "h", "/", b"", {"Authorization": "x\r\nEvil: 1"})


# -- any split ------------------------------------------------------------------------------


@given(
    chunks=st.lists(st.binary(min_size=1, max_size=300), max_size=8),
    extensions=st.booleans(),
    trailers=st.booleans(),
    cuts=st.lists(st.integers(min_value=0, max_value=4000), max_size=20),
)
def test_a_chunked_answer_split_anywhere_gives_the_same_body(
    chunks: list[bytes], extensions: bool, trailers: bool, cuts: list[int]
) -> None:
    data = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    for chunk in chunks:
        data += b"%X%s\r\n%s\r\n" % (len(chunk), b";ext=1" if extensions else b"", chunk)
    data += b"0\r\n" + (b"X-Checksum: 1\r\n" if trailers else b"") + b"\r\n"
    whole, whole_body = parse(data)
    assert whole.done and whole_body == b"".join(chunks)
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    pieces = [data[a:b] for a, b in itertools.pairwise(points) if b > a]
    split, split_body = parse(*pieces)
    assert split.done and split.reusable
    assert split_body == whole_body
    assert (split.status, split.headers) == (whole.status, whole.headers)
