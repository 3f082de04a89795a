"""TLS for the Kafka tests: certificates made with openssl, a TLS-terminating proxy in
front of the (plaintext) Tansu broker, and a listener that records what a client sends.

Tansu speaks plaintext only, so the proxy terminates TLS with a certificate of a test
CA and relays bytes to the broker, which advertises the proxy's address: every
connection a client makes then goes through TLS.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Certs:
    ca: Path
    cert: Path
    key: Path


def make_certs(d: Path, name: str = "test", host: str = "localhost") -> Certs:
    """A CA and a server certificate it signs, for DNS name ``host``."""
    d.mkdir(parents=True, exist_ok=True)
    ca, ca_key = d / f"{name}-ca.pem", d / f"{name}-ca.key"
    key, csr, cert = d / f"{name}.key", d / f"{name}.csr", d / f"{name}.pem"
    ext = d / f"{name}.ext"
    ext.write_text(f"subjectAltName=DNS:{host}\n")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)

    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        str(ca_key),
        "-out",
        str(ca),
        "-days",
        "2",
        "-subj",
        f"/CN={name}-ca",
    )
    openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        str(key),
        "-out",
        str(csr),
        "-subj",
        f"/CN={host}",
    )
    openssl(
        "x509",
        "-req",
        "-in",
        str(csr),
        "-CA",
        str(ca),
        "-CAkey",
        str(ca_key),
        "-CAcreateserial",
        "-out",
        str(cert),
        "-days",
        "2",
        "-extfile",
        str(ext),
    )
    return Certs(ca, cert, key)


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)


@contextlib.contextmanager
def tls_proxy(listen: socket.socket, upstream: tuple[str, int], certs: Certs) -> Iterator[None]:
    """Accept TLS on ``listen`` (already bound) and relay to ``upstream`` in plaintext."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(certs.cert, certs.key)
    listen.listen(16)
    listen.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                raw, _ = listen.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            raw.settimeout(None)
            threading.Thread(target=_handshake_and_relay, args=(raw,), daemon=True).start()

    def _handshake_and_relay(raw: socket.socket) -> None:
        try:
            conn = ctx.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError):
            raw.close()
            return
        up = socket.create_connection(upstream)
        threading.Thread(target=_pipe, args=(conn, up), daemon=True).start()
        _pipe(up, conn)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        yield
    finally:
        stop.set()
        t.join(timeout=5)
        listen.close()


@contextlib.contextmanager
def recorder() -> Iterator[tuple[int, list[bytes]]]:
    """A listener that accepts connections, keeps the first bytes of each and answers
    nothing: it shows what a client sends before it knows what the server speaks."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    srv.settimeout(0.2)
    got: list[bytes] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(2)
            try:
                got.append(conn.recv(4096))
            except OSError:
                pass
            finally:
                conn.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        yield int(srv.getsockname()[1]), got
    finally:
        stop.set()
        t.join(timeout=5)
        srv.close()
