"""berth's CRI front: the daemon, its gRPC services and everything only berthd needs."""

__version__ = "0.1.0"
