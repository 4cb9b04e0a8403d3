import json

from testbed.agent import workload

IDENT = workload.Identity("web-1", "default", "node2", ("10.244.1.2", "fd00:10:244:1::2"))


def test_http_paths_answer_like_agnhost_netexec():
    assert workload.answer(IDENT, "/hostname", ("10.244.0.3", 4000), 8080)[2] == "web-1"
    assert workload.answer(IDENT, "/clientip", ("10.244.0.3", 4000), 8080)[2] == "10.244.0.3:4000"
    assert workload.answer(IDENT, "/clientip", ("fd00::3", 4000), 8080)[2] == "[fd00::3]:4000"
    assert workload.answer(IDENT, "/echo?msg=hi", ("10.0.0.1", 1), 8080)[2] == "hi"



def test_any_other_path_echoes_the_request():
    request = {"method": "POST", "host": "a.example.com", "proto": "HTTP/1.1", "headers": {"X-One": ["1"]}}
    status, kind, body = workload.answer(IDENT, "/some/path?q=1", ("10.0.0.1", 1), 8080, request)
    doc = json.loads(body)
    assert (status, kind) == (200, "application/json")
    assert (doc["path"], doc["query"], doc["method"], doc["host"], doc["proto"]) == \
        ("/some/path", "q=1", "POST", "a.example.com", "HTTP/1.1")
    assert (doc["headers"], doc["pod"], doc["port"]) == ({"X-One": ["1"]}, "web-1", 8080)


def test_udp_commands():
    assert workload.udp_answer(IDENT, b"hostname\n", ("10.0.0.1", 9)) == b"web-1"
    assert workload.udp_answer(IDENT, b"clientip", ("10.0.0.1", 9)) == b"10.0.0.1:9"
    assert workload.udp_answer(IDENT, b"echo abc", ("10.0.0.1", 9)) == b"abc"
    assert workload.udp_answer(IDENT, b"raw", ("10.0.0.1", 9)) == b"raw"


def test_v4_mapped_clients_are_shown_as_v4():
    assert workload._client(("::ffff:10.244.0.3", 5, 0, 0)) == ("10.244.0.3", 5)


def test_each_protocol_gets_its_own_socket_kind():
    import socket

    import pytest

    for proto, kind in (("TCP", socket.SOCK_STREAM), ("UDP", socket.SOCK_DGRAM)):
        with workload.open_socket(proto, 0, False) as s:
            assert s.type == kind
    try:
        s = workload.open_socket("SCTP", 0, False)
    except OSError:
        pytest.skip("this kernel has no SCTP sockets")
    with s:
        assert s.proto == socket.IPPROTO_SCTP
