"""apps/web/serve.py as a real process on a free port: it serves only regular files inside its
folders to requests addressed to a loopback name, and says what is wrong in one line.

Every request and every process here is bounded in time; no browser is needed (test_web.py drives
one through the same server).
"""

from __future__ import annotations

import functools
import http.client
import importlib.util
import os
import selectors
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SERVE = Path(__file__).resolve().parents[1] / "apps" / "web" / "serve.py"
WAIT = 20  # seconds before a server that never answers fails the test
MODEL = b"not really an onnx model, but served as one"


@dataclass
class Served:
    """A running serve.py: its port, the folder it serves at /models/, and the process."""

    port: int
    models: Path
    process: subprocess.Popen

    def get(self, path: str, host: str | None = None) -> tuple[int, bytes]:
        """GET `path` with the Host header `host` (default: the one http.client sends)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=WAIT)
        try:
            conn.putrequest("GET", path, skip_host=host is not None)
            if host is not None:
                conn.putheader("Host", host)
            conn.endheaders()
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def raw(self, request: bytes) -> bytes:
        """Send `request` as it is (http.client refuses NUL bytes) and read the whole answer."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=WAIT) as s:
            s.sendall(request)
            return b"".join(iter(lambda: s.recv(65536), b""))

    def stop(self) -> str:
        """Stop the server; what it printed on stderr."""
        self.process.terminate()
        _, stderr = self.process.communicate(timeout=WAIT)
        return stderr


def _first_line(process: subprocess.Popen) -> str:
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        assert selector.select(WAIT), "serve.py printed nothing"
    return process.stdout.readline()


def _start(*args: str) -> subprocess.Popen:
    command = [sys.executable, str(SERVE), "--port", "0", *args]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    """serve.py --models M, where M holds a model, a link to it, a folder, hidden files, a FIFO
    and links to a folder and a file outside M."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("outside the served folder")
    models = tmp_path / "models"
    (models / "sub").mkdir(parents=True)
    (models / "ok.onnx").write_bytes(MODEL)
    (models / "sub" / "nested.onnx").write_bytes(MODEL)
    (models / ".hidden.onnx").write_bytes(MODEL)
    (models / ".ok.export-123").mkdir()
    (models / ".ok.export-123" / "ok.onnx").write_bytes(MODEL)
    (models / "inner.onnx").symlink_to(models / "ok.onnx")
    (models / "to-hidden.onnx").symlink_to(models / ".hidden.onnx")
    (models / "etc").symlink_to(outside)
    (models / "secret.onnx").symlink_to(outside / "secret.txt")
    os.mkfifo(models / "fifo.onnx")
    process = _start("--models", str(models), "--timeout", "2")
    try:
        line = _first_line(process)
        assert line.startswith("serving http://127.0.0.1:"), line
        yield Served(int(line.rsplit(":", 1)[1].strip("/\n")), models, process)
    finally:
        process.kill()
        process.communicate(timeout=WAIT)


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/models/ok.onnx", 200),
        ("/models/inner.onnx", 200),  # a link that stays inside the folder
        ("/models/sub/nested.onnx", 200),
        ("/", 200),  # the page
        ("/index.html?model=/models/ok.onnx", 200),
        ("/models/etc/secret.txt", 404),  # a link to a folder outside
        ("/models/secret.onnx", 404),  # a link to a file outside
        ("/models/%2e%2e/outside/secret.txt", 404),
        ("/models/..%2foutside/secret.txt", 404),
        ("/models/", 404),  # no listings
        ("/models/sub", 404),
        ("/models/sub/", 404),
        ("/models/.hidden.onnx", 404),
        ("/models/.ok.export-123/ok.onnx", 404),  # an export's scratch folder
        ("/models/to-hidden.onnx", 404),  # a link to a hidden file
        ("/models/fifo.onnx", 404),  # not a regular file (and opening it would block)
        ("/models/missing.onnx", 404),
        ("/models/%ed%a0%80.onnx", 404),  # a name no file system can hold
        ("/serve.py/", 404),
    ],
)
def test_only_regular_files_inside_the_served_folders_are_served(served, path, status):
    code, body = served.get(path)
    assert code == status, body[:200]
    if path.startswith("/models/") and status == 200:
        assert body == MODEL
    if status == 404:
        assert b"outside the served folder" not in body and MODEL not in body


def test_symlinked_folder_to_outside_is_not_served_even_through_its_real_name(served):
    # The link and its target both exist; only the target's content would tell them apart.
    assert (served.models / "etc" / "secret.txt").read_text() == "outside the served folder"
    assert served.get("/models/etc/secret.txt")[0] == 404
    assert served.get("/models/etc/")[0] == 404


@pytest.mark.parametrize(
    ("host", "status"),
    [
        ("127.0.0.1:{port}", 200),
        ("localhost:{port}", 200),
        ("LOCALHOST:{port}", 200),
        ("[::1]:{port}", 200),
        ("attacker.example:{port}", 421),  # DNS rebinding: another site's name, our address
        ("attacker.example", 421),
        ("127.0.0.1", 421),  # port 80, not this server
        ("127.0.0.1:1", 421),
        ("", 421),
    ],
)
def test_requests_for_another_host_are_refused(served, host, status):
    code, body = served.get("/models/ok.onnx", host=host.format(port=served.port))
    assert code == status
    assert (body == MODEL) == (status == 200)


def test_a_request_without_host_is_refused(served):
    answer = served.raw(b"GET /models/ok.onnx HTTP/1.0\r\n\r\n")
    assert answer.startswith(b"HTTP/1.0 421 ")


@pytest.mark.parametrize(
    "target", [b"/models/ok.onnx%00.txt", b"/models/ok\x00.onnx", b"/%00", b"/models/\x00"]
)
def test_nul_bytes_get_404_and_no_traceback(served, target):
    host = f"Host: 127.0.0.1:{served.port}".encode()
    answer = served.raw(b"GET " + target + b" HTTP/1.0\r\n" + host + b"\r\n\r\n")
    assert answer.startswith(b"HTTP/1.0 404 ")
    assert served.get("/models/ok.onnx") == (200, MODEL)  # still serving
    assert "Traceback" not in served.stop()


def test_a_silent_connection_is_closed_after_the_timeout(served):
    start = time.perf_counter()
    with socket.create_connection(("127.0.0.1", served.port), timeout=WAIT) as s:
        assert s.recv(1) == b""  # closed by the server (the fixture's --timeout 2)
    assert time.perf_counter() - start < 2 + 5
    assert "Traceback" not in served.stop()


def _serve_module():
    spec = importlib.util.spec_from_file_location("serve", SERVE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_workers_are_bounded_and_freed_when_a_connection_ends(tmp_path):
    """With 2 workers, two silent connections hold both; a third request waits until one ends."""
    serve = _serve_module()
    (tmp_path / "ok.onnx").write_bytes(MODEL)
    handler = functools.partial(serve.Handler, models=tmp_path, timeout=WAIT)
    server = serve.Server(("127.0.0.1", 0), handler, workers=2)
    port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    idle = [socket.create_connection(("127.0.0.1", port), timeout=WAIT) for _ in range(2)]
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as third:
            third.sendall(
                f"GET /models/ok.onnx HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
            )
            with pytest.raises(TimeoutError):
                third.recv(1)  # no free worker
            idle.pop().close()  # its worker sees the end of the connection and is free again
            third.settimeout(WAIT)
            answer = b"".join(iter(lambda: third.recv(65536), b""))
        assert answer.startswith(b"HTTP/1.0 200 ") and answer.endswith(MODEL)
    finally:
        for s in idle:
            s.close()
        server.shutdown()
        server.server_close()
        thread.join(WAIT)


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--port", "70000"], "0..65535"),
        (["--port", "-1"], "0..65535"),
        (["--port", "http"], "0..65535"),
        (["--port", "{busy}"], "cannot listen on 127.0.0.1:{busy}"),
        (["--models", "{missing}"], "--models {missing} is not a folder"),
        (["--timeout", "0"], "positive number of seconds"),
    ],
)
def test_bad_arguments_are_one_line_and_exit_2(busy_port, tmp_path, args, says):
    values = {"busy": busy_port, "missing": tmp_path / "missing"}
    command = [sys.executable, str(SERVE), *[a.format(**values) for a in args]]
    done = subprocess.run(command, capture_output=True, text=True, timeout=WAIT)
    assert done.returncode == 2 and done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("serve.py: error: "), done.stderr
    assert says.format(**values) in lines[0]
