"""One pytest session: options and settings, collection of run-set files, shards and duration
history, the run loop of the plugin's own pool, replay into pytest's hooks, resume.
"""
