"""What parallel flows must not share, and what they share on purpose: leases (personas, ports,
tag limits), the run's services, private workspaces.
"""
