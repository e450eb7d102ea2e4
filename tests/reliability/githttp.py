"""A git server over HTTP that wants a password: `git http-backend` behind Basic authentication, on 127.0.0.1.

Remote URLs then carry credentials the way CI jobs write them (`http://ci:<token>@host/org/fleet.git`), and git
really sends them: the security tests check that flux-monitor never shows them.
"""
from __future__ import annotations

import base64
import os
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from http.server import ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit


class _Handler(BaseHTTPRequestHandler):
    server: _GitServer
    protocol_version = 'HTTP/1.0'  # one request per connection: no chunked responses to write

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def _serve(self) -> None:
        expected = 'Basic ' + base64.b64encode(self.server.credentials.encode()).decode()
        if self.headers.get('Authorization') != expected:
            self.send_response(401)
            self.send_header('WWW-Authenticate', 'Basic realm="fleet"')
            self.send_header('Content-Length', '0')
            self.end_headers()
            return
        parts = urlsplit(self.path)
        length = int(self.headers.get('Content-Length') or 0)
        body = self.rfile.read(length) if length else b''
        env = {key: value for key, value in os.environ.items() if not key.startswith('GIT_')}
        env.update({
            'GIT_PROJECT_ROOT': str(self.server.root), 'GIT_HTTP_EXPORT_ALL': '1', 'PATH_INFO': parts.path,
            'QUERY_STRING': parts.query, 'REQUEST_METHOD': self.command, 'REMOTE_USER': 'ci',
            'REMOTE_ADDR': '127.0.0.1', 'CONTENT_TYPE': self.headers.get('Content-Type', ''),
            'CONTENT_LENGTH': str(len(body)), 'GIT_CONFIG_NOSYSTEM': '1', 'GIT_CONFIG_GLOBAL': os.devnull,
        })
        for name, value in self.headers.items():
            env['HTTP_' + name.upper().replace('-', '_')] = value
        result = subprocess.run(['git', 'http-backend'], input=body, env=env, capture_output=True, timeout=120,
                                check=False)
        head, _, content = result.stdout.partition(b'\r\n\r\n')
        status = 200
        headers = []
        for line in head.decode('latin-1').split('\r\n'):
            name, _, value = line.partition(':')
            if name.lower() == 'status':
                status = int(value.split()[0])
            elif name:
                headers.append((name, value.strip()))
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(content)


class _GitServer(ThreadingHTTPServer):
    daemon_threads = True
    root: Path
    credentials: str


@contextmanager
def serve(root: Path, user: str, password: str) -> Iterator[str]:
    """Serve the bare repositories under root; yields the base URL with the credentials in it."""
    server = _GitServer(('127.0.0.1', 0), _Handler)
    server.root = root
    server.credentials = f'{user}:{password}'
    thread = threading.Thread(target=server.serve_forever, kwargs={'poll_interval': 0.05}, daemon=True)
    thread.start()
    try:
        yield f'http://{user}:{password}@127.0.0.1:{server.server_address[1]}'
    finally:
        server.shutdown()
        server.server_close()
