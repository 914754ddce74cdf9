"""The web servers critest talks to: Debian's nginx, and busybox httpd standing in for Apache.

Both go on top of the busybox base layer (the specs exec `sh`, `cat`, `grep` and `sleep` in
them). nginx runs as PID 1 in the foreground, so `/proc/1/cmdline` reads
`nginx: master process ...`, and writes `/var/run/nginx.pid`.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Final

from e2e.images.elf import SharedLib, shared_libraries
from e2e.images.rootfs import library_entries, with_parents
from tests.support.oci_builder import Entry, directory, file

INDEX_HTML: Final = b"<html><body><h1>berth critest stand-in</h1></body></html>\n"

NGINX_CONF: Final = """\
user www-data;
worker_processes 1;
pid /var/run/nginx.pid;
error_log stderr notice;

events {{
    worker_connections 64;
}}

http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log /dev/stdout;
    server {{
        listen {port};
        root /usr/share/nginx/html;
        index index.html;
    }}
}}
"""

NGINX_DIRS: Final = ("var/lib/nginx", "var/log/nginx", "var/cache/nginx", "run")

HTTPD_FOREGROUND: Final = """\
#!/bin/sh
# Stand-in for Apache's httpd-foreground: busybox httpd serving on :80.
echo "httpd: serving /usr/local/apache2/htdocs on :80"
exec httpd -f -v -p 80 -h /usr/local/apache2/htdocs
"""


def nginx_entries(
    nginx_root: Path, nginx_common_root: Path, *, port: int, base_libs: Iterable[SharedLib]
) -> list[Entry]:
    """Debian's nginx binary, its mime.types, a foreground config on `port`, its libraries."""
    binary = nginx_root / "usr/sbin/nginx"
    entries = [directory(p) for p in NGINX_DIRS]
    entries.append(file("usr/sbin/nginx", binary.read_bytes(), mode=0o755))
    mime = nginx_common_root / "etc/nginx/mime.types"
    entries.append(file("etc/nginx/mime.types", mime.read_bytes()))
    entries.append(file("etc/nginx/nginx.conf", NGINX_CONF.format(port=port).encode()))
    entries.append(file("usr/share/nginx/html/index.html", INDEX_HTML))
    have = {lib.path for lib in base_libs}
    entries += library_entries(shared_libraries(binary), skip=have)
    return with_parents(entries)


def httpd_entries() -> list[Entry]:
    return with_parents(
        [
            file("usr/local/bin/httpd-foreground", HTTPD_FOREGROUND.encode(), mode=0o755),
            file("usr/local/apache2/htdocs/index.html", INDEX_HTML),
        ]
    )
