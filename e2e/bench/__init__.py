"""Side-by-side CRI benchmark: the same workloads against berth and containerd, alternating.

Run as root: ``python -m e2e.bench [--quick] [--out DIR]`` (or ``e2e/bench.sh``). It starts a
loopback registry with the images, berthd and containerd on private roots, sockets and CNI
bridges, drives both over CRI gRPC, and writes ``results.json`` (every raw sample),
``results.md`` (the table) and PNG plots. Everything it created is removed at the end, on
Ctrl-C too. ``--endpoint NAME=unix:///path`` drives runtimes that are already running instead.

Layout: ``stats``/``records``/``report``/``plots`` are the pure core (unit-tested);
``procfs`` reads process figures; ``environment``, ``berth``, ``containerd`` and ``cleanup``
set up and tear down; ``workloads/`` holds one module per workload; ``runner`` alternates them.
"""
