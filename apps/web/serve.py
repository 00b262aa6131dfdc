"""Serve the web app on 127.0.0.1: right MIME types for .mjs/.wasm, and the COOP/COEP headers
that let onnxruntime-web use threads. `--models DIR` serves DIR under /models/ as well.

    python3 apps/web/serve.py [--port 8000] [--models exports/]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

APP = Path(__file__).resolve().parent


class Handler(SimpleHTTPRequestHandler):
    extensions_map = {
        **SimpleHTTPRequestHandler.extensions_map,
        ".mjs": "text/javascript",
        ".js": "text/javascript",
        ".wasm": "application/wasm",
        ".onnx": "application/octet-stream",
        ".bin": "application/octet-stream",
    }

    def __init__(self, *args, models: Path | None = None, **kwargs) -> None:
        self.models = models
        super().__init__(*args, directory=str(APP), **kwargs)

    def translate_path(self, path: str) -> str:
        if self.models is not None and path.startswith("/models/"):
            # The parent's translation (which refuses ".." escapes), rooted at the models folder.
            self.directory = str(self.models)
            try:
                return super().translate_path(path.removeprefix("/models"))
            finally:
                self.directory = str(APP)
        return super().translate_path(path)

    def end_headers(self) -> None:
        self.send_header("Cross-Origin-Opener-Policy", "same-origin")
        self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
        self.send_header("Cache-Control", "no-store")
        super().end_headers()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    parser.add_argument("--models", type=Path, help="a folder of exported models, at /models/")
    args = parser.parse_args()
    models = args.models.resolve() if args.models else None
    handler = functools.partial(Handler, models=models)
    with ThreadingHTTPServer(("127.0.0.1", args.port), handler) as server:
        print(f"serving http://127.0.0.1:{server.server_address[1]}/", flush=True)
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C ends it quietly
            server.serve_forever()


if __name__ == "__main__":
    main()
