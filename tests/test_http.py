"""The HTTP details the tile fetcher and the VLM client share (sociogeo._http)."""

from __future__ import annotations

import email.utils
import socket
import time

import pytest
import requests

from sociogeo._http import caused_by, retry_after_s


@pytest.mark.parametrize(("header", "expected"), [("7", 7.0), (" 2.5 ", 2.5), ("-3", 0.0), ("", None), (None, None),
                                                    ("soon", None)])
def test_retry_after_in_seconds(header, expected):
    assert retry_after_s(header) == expected


def test_retry_after_as_an_http_date():
    later = email.utils.formatdate(time.time() + 120, usegmt=True)
    assert 100 < retry_after_s(later) <= 120
    assert retry_after_s(email.utils.formatdate(time.time() - 3600, usegmt=True)) == 0.0


def test_a_refused_connection_is_found_deep_in_requests_error_chain():
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(requests.ConnectionError) as info:
        requests.get(f"http://127.0.0.1:{port}/", timeout=5)
    assert caused_by(info.value, (ConnectionRefusedError,))
    assert not caused_by(info.value, (socket.gaierror,), ("NameResolutionError",))


def test_causes_are_followed_through_reason_and_first_argument_without_looping():
    class Wrapper(Exception):
        def __init__(self, reason):
            super().__init__("wrapped")
            self.reason = reason

    inner = socket.gaierror(-2, "Name or service not known")
    outer = RuntimeError(Wrapper(inner))
    assert caused_by(outer, (socket.gaierror,))
    assert caused_by(Wrapper(KeyError("x")), names=("KeyError",))
    loop = ValueError("a")
    loop.__context__ = TypeError("b")
    loop.__context__.__cause__ = loop  # a cycle ends the walk
    assert not caused_by(loop, (socket.gaierror,))
    assert not caused_by(None, (ValueError,))
