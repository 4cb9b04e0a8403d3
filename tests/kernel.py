"""What this machine's kernel offers, for tests that skip what it lacks."""

import socket


def sctp_sockets() -> bool:
    try:
        socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_SCTP).close()
        return True
    except OSError:
        return False
