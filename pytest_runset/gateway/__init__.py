"""What runs inside a gateway: the worker, the flow runners, process containment, readiness
probes, masking and file transfer. Stdlib only (Playwright imported lazily): it starts fast in
every gateway and runs on remote hosts that have the package.
"""
