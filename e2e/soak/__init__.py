"""The density and churn soak: many pods for a long time, pods created and removed all along,
and afterwards nothing left over and berthd's memory flat.

Run it as ``python -m e2e.soak --pods 110 --containers 2 --minutes 30`` (root; runc, CNI
plugins and Debian's docker-registry installed). See ``e2e/soak/README.md``; the exit status
is 1 if a call failed, something leaked or berthd's memory grew.
"""
