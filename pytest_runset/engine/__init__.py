"""Running flow attempts: the pure scheduler, attempt specs, the gateway pool, and supervision
(deadlines, the backstop, the global timeout, lost workers): one implementation shared by the
plugin's own pool and pytest-xdist workers. pytest objects are handed in, never looked up.
"""
