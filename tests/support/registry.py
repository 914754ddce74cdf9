"""A real OCI registry for tests: Debian's docker-registry (distribution v2.8) on loopback.

    ca = make_ca(tmp / "ca")
    with start_registry(tmp / "reg", tls=ca.issue(tmp / "srv", "127.0.0.1")) as reg:
        push_image(reg.url, "library/busybox", "latest", busybox_image(), verify=reg.ssl_context())

Variants: plain HTTP; TLS with a test CA (and optionally client certificates
required); htpasswd Basic auth (bcrypt hashes from the system libcrypt, no
apache2-utils needed); Bearer token auth with `TokenServer`, a small Python
token service signing RS256 JWTs with an openssl-generated key whose
certificate is the registry's `rootcertbundle`. Certificates and keys come
from the `openssl` CLI. Processes are stopped by their PID.
"""

from __future__ import annotations

import base64
import ctypes
import hashlib
import json
import os
import secrets
import socket
import ssl
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Final

import httpx

from snapshotter.registry.auth import parse_challenges
from tests.support.oci_builder import Image, Index

REGISTRY_BINARY: Final = Path("/usr/bin/docker-registry")
TOKEN_SERVICE: Final = "berth-test-registry"
TOKEN_ISSUER: Final = "berth-test-token-issuer"
_READY_TIMEOUT: Final = 15.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)


# -- certificates --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyPair:
    cert: Path
    key: Path


@dataclass(frozen=True, slots=True, kw_only=True)
class CertAuthority:
    """A throwaway certificate authority (EC P-256 keys, valid two days)."""

    cert: Path
    key: Path

    def issue(self, dest: Path, name: str = "127.0.0.1", *, client: bool = False) -> KeyPair:
        """A leaf certificate for `name` (IP or DNS) signed by this CA."""
        dest.mkdir(parents=True, exist_ok=True)
        pair = KeyPair(cert=dest / "cert.pem", key=dest / "key.pem")
        san = f"IP:{name}" if name.replace(".", "").isdigit() else f"DNS:{name}"
        usage = "clientAuth" if client else "serverAuth"
        ext = dest / "ext.cnf"
        ext.write_text(
            f"subjectAltName={san},DNS:localhost\nextendedKeyUsage={usage}\n"
            "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
        )
        _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", pair.key)
        csr = dest / "req.csr"
        _openssl("req", "-new", "-key", pair.key, "-subj", f"/CN={name}", "-out", csr)
        _openssl(
            "x509", "-req", "-in", csr, "-CA", self.cert, "-CAkey", self.key, "-set_serial",
            str(secrets.randbits(60)), "-days", "2", "-extfile", ext, "-out", pair.cert,
        )  # fmt: skip
        return pair


def make_ca(dest: Path, name: str = "berth test CA") -> CertAuthority:
    dest.mkdir(parents=True, exist_ok=True)
    ca = CertAuthority(cert=dest / "ca.pem", key=dest / "ca.key")
    _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", ca.key)
    _openssl(
        "req", "-x509", "-new", "-key", ca.key, "-subj", f"/CN={name}", "-days", "2",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-out", ca.cert,
    )  # fmt: skip
    return ca


# -- htpasswd (bcrypt through libcrypt) ---------------------------------------------------


def bcrypt_hash(password: str, *, cost: int = 5) -> str:
    """A $2b$ bcrypt hash from the system libcrypt (libxcrypt), as htpasswd -B makes."""
    lib = ctypes.CDLL("libcrypt.so.1")
    lib.crypt_gensalt.restype = ctypes.c_char_p
    lib.crypt_gensalt.argtypes = [ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p, ctypes.c_int]
    lib.crypt.restype = ctypes.c_char_p
    lib.crypt.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    salt = lib.crypt_gensalt(b"$2b$", cost, os.urandom(16), 16)
    hashed = lib.crypt(password.encode(), salt)
    if not hashed or not hashed.startswith(b"$2b$"):
        raise RuntimeError("libcrypt has no bcrypt support")
    return str(hashed.decode())


def write_htpasswd(path: Path, users: Mapping[str, str]) -> Path:
    path.write_text("".join(f"{u}:{bcrypt_hash(p)}\n" for u, p in users.items()))
    return path


# -- token server (RS256 JWTs) -------------------------------------------------------------


def _der_integers(der: bytes) -> list[int]:
    """The INTEGERs of a DER SEQUENCE (enough to read a PKCS#1 RSAPrivateKey)."""

    def length(pos: int) -> tuple[int, int]:
        first = der[pos]
        if first < 0x80:
            return first, pos + 1
        n = first & 0x7F
        return int.from_bytes(der[pos + 1 : pos + 1 + n], "big"), pos + 1 + n

    assert der[0] == 0x30
    _, pos = length(1)
    out = []
    while pos < len(der):
        assert der[pos] == 0x02
        size, pos = length(pos + 1)
        out.append(int.from_bytes(der[pos : pos + size], "big"))
        pos += size
    return out


_SHA256_PREFIX: Final = bytes.fromhex("3031300d060960864801650304020105000420")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass(frozen=True, slots=True, kw_only=True)
class SigningKey:
    """An RSA key (n, d) and its self-signed certificate, for RS256 JWTs."""

    cert: Path
    cert_der: bytes
    n: int
    d: int

    def sign(self, claims: Mapping[str, Any]) -> str:
        header = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(self.cert_der).decode()]}
        signing_input = (
            f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        )
        k = (self.n.bit_length() + 7) // 8
        digest_info = _SHA256_PREFIX + hashlib.sha256(signing_input.encode()).digest()
        em = b"\x00\x01" + b"\xff" * (k - len(digest_info) - 3) + b"\x00" + digest_info
        signature = pow(int.from_bytes(em, "big"), self.d, self.n).to_bytes(k, "big")
        return f"{signing_input}.{_b64url(signature)}"


def make_signing_key(dest: Path) -> SigningKey:
    dest.mkdir(parents=True, exist_ok=True)
    key, cert = dest / "token.key", dest / "token.pem"
    _openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", key)
    _openssl(
        "req", "-x509", "-new", "-key", key, "-subj", "/CN=berth token", "-days", "2", "-out", cert
    )
    der = subprocess.run(
        ["openssl", "rsa", "-in", key, "-traditional", "-outform", "DER"],
        check=True,
        capture_output=True,
    ).stdout
    _, n, _, d, *_ = _der_integers(der)
    cert_der = subprocess.run(
        ["openssl", "x509", "-in", cert, "-outform", "DER"], check=True, capture_output=True
    ).stdout
    return SigningKey(cert=cert, cert_der=cert_der, n=n, d=d)


@dataclass(slots=True, kw_only=True)
class TokenServer:
    """A Docker-style token service on loopback; records every request it gets.

    Users with the right Basic password, and holders of an identity (refresh)
    token, get every action they ask for; anonymous callers get pull only if
    `anonymous_pull`, else a token without access.
    """

    key: SigningKey
    users: Mapping[str, str] = field(default_factory=dict)
    identity_tokens: Mapping[str, str] = field(default_factory=dict)
    anonymous_pull: bool = False
    requests: list[tuple[str, str]] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/token"

    def start(self) -> TokenServer:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner._handle(self, None)

            def do_POST(self) -> None:
                size = int(self.headers.get("Content-Length", "0"))
                form = urllib.parse.parse_qs(self.rfile.read(size).decode())
                owner._handle(self, {k: v[0] for k, v in form.items()})

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def _handle(self, req: BaseHTTPRequestHandler, form: dict[str, str] | None) -> None:
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(req.path).query)
        self.requests.append((req.command, req.path))
        user = self._authenticate(req, form)
        if user is None:
            _reply(req, 401, {"details": "bad credentials"})
            return
        scopes = (form or {}).get("scope", "").split() if form else query.get("scope", [])
        token = self.key.sign(self._claims(user, scopes))
        _reply(req, 200, {"token": token, "access_token": token, "expires_in": 300})

    def _authenticate(self, req: BaseHTTPRequestHandler, form: dict[str, str] | None) -> str | None:
        """The user name ("" for anonymous), or None when credentials are wrong."""
        if form is not None:
            return self.identity_tokens.get(form.get("refresh_token", ""))
        header = req.headers.get("Authorization", "")
        if not header:
            return ""
        if not header.startswith("Basic "):
            return None
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        return user if self.users.get(user) == password else None

    def _claims(self, user: str, scopes: list[str]) -> dict[str, Any]:
        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            granted = actions.split(",") if user else (["pull"] if self.anonymous_pull else [])
            access.append({"type": kind, "name": name, "actions": granted})
        now = int(time.time())
        return {
            "iss": TOKEN_ISSUER,
            "sub": user,
            "aud": TOKEN_SERVICE,
            "exp": now + 300,
            "nbf": now - 10,
            "iat": now,
            "jti": secrets.token_hex(8),
            "access": access,
        }


def _reply(req: BaseHTTPRequestHandler, status: int, doc: Mapping[str, Any]) -> None:
    body = json.dumps(doc).encode()
    req.send_response(status)
    req.send_header("Content-Type", "application/json")
    req.send_header("Content-Length", str(len(body)))
    req.end_headers()
    req.wfile.write(body)


# -- the registry process --------------------------------------------------------------------


@dataclass(slots=True, kw_only=True)
class RegistryServer:
    """A running docker-registry; `url` is scheme://127.0.0.1:port, `host` is 127.0.0.1:port."""

    url: str
    host: str
    root: Path
    process: subprocess.Popen[bytes]
    ca: Path | None = None
    client_cert: KeyPair | None = None
    log_path: Path | None = None

    def ssl_context(self) -> ssl.SSLContext | bool:
        """What httpx should verify this registry with (True for plain http)."""
        if self.ca is None:
            return True
        ctx = ssl.create_default_context(cafile=str(self.ca))
        if self.client_cert is not None:
            ctx.load_cert_chain(self.client_cert.cert, self.client_cert.key)
        return ctx

    def blob_data_path(self, digest: str) -> Path:
        """Where the registry keeps blob `digest` on disk (filesystem driver layout)."""
        hex_ = digest.removeprefix("sha256:")
        return self.root / "docker/registry/v2/blobs/sha256" / hex_[:2] / hex_ / "data"

    def corrupt_blob(self, digest: str, data: bytes) -> None:
        """Make the registry serve `data` for `digest` (it does not re-verify on reads)."""
        self.blob_data_path(digest).write_bytes(data)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _config(
    root: Path,
    port: int,
    tls: KeyPair | None,
    client_ca: Path | None,
    htpasswd: Path | None,
    token: TokenServer | None,
) -> dict[str, Any]:
    http: dict[str, Any] = {"addr": f"127.0.0.1:{port}", "secret": secrets.token_hex(16)}
    if tls is not None:
        http["tls"] = {"certificate": str(tls.cert), "key": str(tls.key)}
        if client_ca is not None:
            http["tls"]["clientcas"] = [str(client_ca)]
    config: dict[str, Any] = {
        "version": "0.1",
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {
            "filesystem": {"rootdirectory": str(root / "data")},
            "delete": {"enabled": True},
            "maintenance": {"uploadpurging": {"enabled": False}},
        },
        "http": http,
    }
    if htpasswd is not None:
        config["auth"] = {"htpasswd": {"realm": "berth-test", "path": str(htpasswd)}}
    if token is not None:
        config["auth"] = {
            "token": {
                "realm": token.url,
                "service": TOKEN_SERVICE,
                "issuer": TOKEN_ISSUER,
                "rootcertbundle": str(token.key.cert),
            }
        }
    return config


def start_registry(
    root: Path,
    *,
    tls: KeyPair | None = None,
    ca: Path | None = None,
    client_ca: CertAuthority | None = None,
    users: Mapping[str, str] | None = None,
    token: TokenServer | None = None,
) -> RegistryServer:
    """Start docker-registry with storage under `root`; returns once /v2/ answers.

    `tls` (+ `ca`, the CA that signed it) serves https; `client_ca` also requires
    client certificates from that CA; `users` turns on htpasswd Basic auth;
    `token` turns on Bearer auth through that TokenServer.
    """
    root.mkdir(parents=True, exist_ok=True)
    htpasswd = write_htpasswd(root / "htpasswd", users) if users else None
    client_cert = (
        client_ca.issue(root / "client", "berth-client", client=True) if client_ca else None
    )
    last_error = ""
    for _ in range(5):  # the free port may be taken between probe and bind
        port = free_port()
        config = _config(root, port, tls, client_ca.cert if client_ca else None, htpasswd, token)
        (root / "config.yml").write_text(json.dumps(config, indent=1))  # JSON is YAML
        log_path = root / "registry.log"
        with open(log_path, "wb") as log_file:
            process = subprocess.Popen(
                [REGISTRY_BINARY, "serve", root / "config.yml"],
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        server = RegistryServer(
            url=f"{'https' if tls else 'http'}://127.0.0.1:{port}",
            host=f"127.0.0.1:{port}",
            root=root / "data",
            process=process,
            ca=ca,
            client_cert=client_cert,
            log_path=log_path,
        )
        if _wait_ready(server):
            return server
        server.stop()
        last_error = log_path.read_text(errors="replace")[-2000:]
    raise RuntimeError(f"docker-registry did not start: {last_error}")


def _wait_ready(server: RegistryServer) -> bool:
    deadline = time.monotonic() + _READY_TIMEOUT
    with httpx.Client(verify=server.ssl_context(), timeout=2.0, trust_env=False) as client:
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                return False
            try:
                client.get(f"{server.url}/v2/")
                return True
            except httpx.TransportError:
                time.sleep(0.01)  # polling a port that has no readiness event
    return False


@contextmanager
def running_registry(root: Path, **kwargs: Any) -> Iterator[RegistryServer]:
    """`start_registry` as a context manager that always stops the process."""
    server = start_registry(root, **kwargs)
    try:
        yield server
    finally:
        server.stop()


# -- pushing -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class PushAuth:
    username: str
    password: str


def _push_client(
    registry_url: str, repo: str, auth: PushAuth | None, verify: ssl.SSLContext | bool
) -> httpx.Client:
    """A client for `repo` that answers the registry's auth challenge up front."""
    client = httpx.Client(base_url=registry_url, verify=verify, timeout=60.0, trust_env=False)
    response = client.get("/v2/")
    if response.status_code != 401:
        return client
    if auth is None:
        client.close()
        raise RuntimeError(f"{registry_url} wants credentials for pushing")
    challenge = {
        c.scheme: c for c in parse_challenges(response.headers.get_list("www-authenticate"))
    }
    basic = httpx.BasicAuth(auth.username, auth.password)
    if "bearer" not in challenge:
        client.auth = basic
        return client
    params = challenge["bearer"].params
    answer = httpx.get(
        params["realm"],
        params={"service": params.get("service", ""), "scope": f"repository:{repo}:pull,push"},
        auth=basic,
        verify=verify,
        trust_env=False,
    )
    answer.raise_for_status()
    client.headers["Authorization"] = f"Bearer {answer.json()['token']}"
    return client


def push_blob(client: httpx.Client, repo: str, digest: str, data: bytes) -> None:
    """Monolithic upload (POST then PUT), skipped if the registry has the blob."""
    if client.head(f"/v2/{repo}/blobs/{digest}").status_code == 200:
        return
    started = client.post(f"/v2/{repo}/blobs/uploads/")
    if started.status_code != 202:
        raise RuntimeError(f"upload of {digest} refused: {started.status_code} {started.text}")
    location = started.headers["location"]
    sep = "&" if "?" in location else "?"
    done = client.put(
        f"{location}{sep}digest={digest}",
        content=data,
        headers={"Content-Type": "application/octet-stream"},
    )
    if done.status_code != 201:
        raise RuntimeError(f"upload of {digest} failed: {done.status_code} {done.text}")


def push_manifest(client: httpx.Client, repo: str, ref: str, data: bytes, media_type: str) -> None:
    response = client.put(
        f"/v2/{repo}/manifests/{ref}", content=data, headers={"Content-Type": media_type}
    )
    if response.status_code != 201:
        raise RuntimeError(f"manifest {repo}:{ref} refused: {response.status_code} {response.text}")


def push_image(
    registry_url: str,
    repo: str,
    tag: str | None,
    image: Image | Index,
    *,
    auth: PushAuth | None = None,
    verify: ssl.SSLContext | bool = True,
) -> str:
    """Upload `image` (or every image of an index, then the index) as `repo:tag`.

    Without a tag it is pushed by digest only. Returns the digest pushed last
    (the index's for an index).
    """
    client = _push_client(registry_url, repo, auth, verify)
    try:
        images = image.images if isinstance(image, Index) else (image,)
        for one in images:
            for digest, data in one.blobs().items():
                push_blob(client, repo, digest, data)
            ref = tag if isinstance(image, Image) and tag else one.digest
            push_manifest(client, repo, ref, one.manifest, one.media_type)
        if isinstance(image, Index):
            push_manifest(client, repo, tag or image.digest, image.data, image.media_type)
        return image.digest
    finally:
        client.close()
