"""Stand-ins for the images critest pulls, built from Debian packages by berth's own code.

`debs` fetches and unpacks Debian packages into a cache, `elf` finds the shared libraries a
binary needs, `programs` compiles the two tiny static helpers (pause, nonewprivs), `rootfs`
assembles root filesystems, `catalog` names every image critest asks for and `cache` keeps the
built images as OCI layouts between runs.
"""
