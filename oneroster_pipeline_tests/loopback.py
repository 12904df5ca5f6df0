"""A loopback port nothing listens on, for the tests: a server's port to take, or the port of a dead provider URL."""

import socket


def free_port() -> int:
    """A port on 127.0.0.1 that was free a moment ago: bound, then closed, so nothing listens there now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
