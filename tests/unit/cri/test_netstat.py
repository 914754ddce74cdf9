from __future__ import annotations

from cri.netstat import parse_net_dev

HEADER = (
    "Inter-|   Receive                                                |  Transmit\n"
    " face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs"
    " drop fifo colls carrier compressed\n"
)
NET_DEV = (
    HEADER
    + "    lo:     140       2    0    0    0     0          0         0"
    + "      140       2    0    0    0     0       0          0\n"
    + "  eth0: 1234567    890    3    4    0     0          0         1"
    + "   765432     321    5    6    0     0       0          0\n"
)


def test_parse_net_dev() -> None:
    stats = parse_net_dev(NET_DEV)
    assert sorted(stats) == ["eth0", "lo"]
    eth0 = stats["eth0"]
    assert (eth0.rx_bytes, eth0.rx_packets, eth0.rx_errors, eth0.rx_dropped) == (1234567, 890, 3, 4)
    assert (eth0.tx_bytes, eth0.tx_packets, eth0.tx_errors, eth0.tx_dropped) == (765432, 321, 5, 6)


def test_parse_net_dev_skips_garbage() -> None:
    assert parse_net_dev("h1\nh2\nnot a line\n  x: 1 2 3\n") == {}
