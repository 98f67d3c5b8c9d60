"""Runs localstripe (from PyPI) on 127.0.0.1 only, for the benchmarks.

localstripe's own command binds every interface ('::') and logs each request;
this starts the same aiohttp app on the loopback address with an empty store and
without the access log (so the peer is not slowed by logging to a pipe). Its
persistence is unchanged: localstripe pickles its whole store to
/tmp/localstripe.pickle on every write.

usage: python localstripe-loopback.py PORT
"""
import socket
import sys

from aiohttp import web

from localstripe.server import app  # noqa: E402  (registers every route)


def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8420
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    web.run_app(app, sock=sock, access_log=None, print=None)


if __name__ == "__main__":
    main()
