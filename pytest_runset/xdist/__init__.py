"""Cooperation with pytest-xdist: the controller keeps the run (directories, services, journal,
report), its workers run the flows through pytest's own protocol.
"""
