"""OCI distribution client: registry hosts (mirrors, TLS), authentication, HTTP transfers."""
