"""Serve the web app on 127.0.0.1: right MIME types for .mjs/.wasm, and the COOP/COEP headers
that let onnxruntime-web use threads. `--models DIR` serves DIR under /models/ as well.

    python3 apps/web/serve.py [--port 8000] [--models exports/]

Only regular files whose real path lies inside the app folder or DIR are served, never folder
listings or hidden files, and only to requests addressed to the loopback names (a page on
another site can reach a loopback server through DNS rebinding, but it cannot choose the Host).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import stat
import sys
import threading
import urllib.parse
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import BinaryIO

APP = Path(__file__).resolve().parent
LOOPBACK = ("127.0.0.1", "localhost", "[::1]")
WORKERS = 16  # requests served at once; a browser opens about six connections per site
TIMEOUT = 30.0  # seconds a connection may stay silent before it is closed


class Handler(SimpleHTTPRequestHandler):
    """GET and HEAD of the files `servable` allows; 404 for everything else."""

    extensions_map = {
        **SimpleHTTPRequestHandler.extensions_map,
        ".mjs": "text/javascript",
        ".js": "text/javascript",
        ".wasm": "application/wasm",
        ".onnx": "application/octet-stream",
        ".bin": "application/octet-stream",
    }

    def __init__(
        self, *args, models: Path | None = None, timeout: float = TIMEOUT, **kwargs
    ) -> None:
        self.models = models
        self.timeout = timeout  # StreamRequestHandler applies it to the connection's socket
        super().__init__(*args, directory=str(APP), **kwargs)

    def servable(self, url: str) -> tuple[BinaryIO, Path] | None:
        """The file that `url` names, opened, and its real path; or None. The one place that
        decides what is served.

        Refused: NUL bytes, hidden names (which include `..` and export scratch folders), paths
        whose real path (links followed) leaves the served folder, and anything but a regular
        file. The file is opened without following a link and checked to be the one resolved,
        so a link swapped in meanwhile is not followed either.
        """
        path = urllib.parse.unquote(urllib.parse.urlsplit(url).path, errors="surrogatepass")
        root = APP
        if path == "/":
            path = "/index.html"
        elif self.models is not None and path.startswith("/models/"):
            root, path = self.models, path.removeprefix("/models")
        parts = path.split("/")[1:]  # an empty part: a folder ("sub/") or "//"
        if "\0" in path or any(p == "" or p.startswith(".") for p in parts):
            return None
        try:
            real = root.joinpath(*parts).resolve(strict=True)
            inside = real.relative_to(root).parts
            info = real.stat()
            if any(p.startswith(".") for p in inside) or not stat.S_ISREG(info.st_mode):
                return None
            fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except (OSError, ValueError):  # missing, a loop, outside `root`, unencodable name
            return None
        opened = os.fstat(fd)
        if (opened.st_dev, opened.st_ino) != (info.st_dev, info.st_ino):
            os.close(fd)
            return None
        return os.fdopen(fd, "rb"), real

    def host_allowed(self) -> bool:
        """Whether the Host header names this server by a loopback name and its port."""
        port = self.server.server_address[1]
        names = {f"{name}:{port}" for name in LOOPBACK}
        if port == 80:
            names.update(LOOPBACK)
        return (self.headers.get("Host") or "").strip().lower() in names

    def send_head(self) -> BinaryIO | None:
        if not self.host_allowed():
            port = self.server.server_address[1]
            answers = f"http://127.0.0.1:{port}/ and http://localhost:{port}/"
            self.send_error(
                HTTPStatus.MISDIRECTED_REQUEST, explain=f"this server answers {answers}"
            )
            return None
        found = self.servable(self.path)
        if found is None:
            self.send_error(HTTPStatus.NOT_FOUND, "File not found")
            return None
        f, real = found
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", self.guess_type(real))
        self.send_header("Content-Length", str(os.fstat(f.fileno()).st_size))
        self.end_headers()
        return f

    def end_headers(self) -> None:
        self.send_header("Cross-Origin-Opener-Policy", "same-origin")
        self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
        self.send_header("Cache-Control", "no-store")
        super().end_headers()


class Server(ThreadingHTTPServer):
    """A thread per request, at most `workers` at once: the next connection waits to be
    accepted until a worker is free, so a flood of connections cannot exhaust the machine."""

    daemon_threads = True

    def __init__(self, *args, workers: int = WORKERS, **kwargs) -> None:
        self.slots = threading.BoundedSemaphore(workers)
        super().__init__(*args, **kwargs)

    def process_request(self, request, client_address) -> None:
        self.slots.acquire()
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.slots.release()  # no thread was started to release it
            raise

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()

    def handle_error(self, request, client_address) -> None:
        """One line instead of socketserver's traceback (a browser that hangs up, say)."""
        error = sys.exc_info()[1]
        print(f"serve.py: {client_address[0]}: {type(error).__name__}: {error}", file=sys.stderr)


class ArgumentParser(argparse.ArgumentParser):
    """Argument errors as one line (no usage dump), exit status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _port(text: str) -> int:
    if not text.strip().isdigit() or not 0 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"port {text!r} must be 0..65535 (0 picks a free port)")
    return int(text)


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive number of seconds")
    return value


def main(argv: list[str] | None = None) -> int:
    """Serve until Ctrl-C; bad arguments and a port that cannot be used are one line, exit 2."""
    parser = ArgumentParser(prog="serve.py", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=_port, default=8000, help="0 picks a free port")
    parser.add_argument("--models", type=Path, help="a folder of exported models, at /models/")
    parser.add_argument(
        "--timeout", type=_positive, default=TIMEOUT, help=f"idle seconds (default {TIMEOUT:g})"
    )
    args = parser.parse_args(argv)
    models = None
    if args.models is not None:
        if not args.models.is_dir():
            parser.exit(
                2,
                f"serve.py: error: --models {args.models} is not a folder; pass the folder "
                "tn-export wrote into (e.g. --models exports)\n",
            )
        models = args.models.resolve()
    handler = functools.partial(Handler, models=models, timeout=args.timeout)
    try:
        server = Server(("127.0.0.1", args.port), handler)
    except OSError as e:
        parser.exit(
            2,
            f"serve.py: error: cannot listen on 127.0.0.1:{args.port} ({e.strerror or e}); "
            "choose another --port, or --port 0 for a free one\n",
        )
    with server:
        print(f"serving http://127.0.0.1:{server.server_address[1]}/", flush=True)
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C ends it quietly
            server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
