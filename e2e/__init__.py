"""Black-box end-to-end tooling: the critest conformance run and the images it pulls."""
