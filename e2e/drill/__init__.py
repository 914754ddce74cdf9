"""The crash drill: SIGKILL berthd and shims at random moments under a concurrent workload and
check after each kill that nothing acknowledged was lost and nothing half-made was left.

Run it as ``python -m e2e.drill --seed N --crashes 200`` (root; runc, CNI plugins and Debian's
docker-registry installed). The seed is printed; the exit status is 1 if any check failed.
"""
