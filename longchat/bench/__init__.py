"""Benchmarks: long-context tasks (passkey ...) run through a profile, timed and scored.

`tasks` holds the registry of tasks by name, `run` drives a task over lengths and samples
(optionally against plain transformers), `report` renders the results, `startup` times the CLI.
"""
