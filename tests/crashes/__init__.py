"""Agents built from cubeloop's own features, crashed for real and resumed by the supervisor.

`agents.py` holds one small agent per feature (scripted with FauxProvider,
every side effect counted from inside its tool), `child.py` runs one of them
in a process that SIGKILLs itself at a chosen point, and the `test_*.py`
files crash each at its meaningful points and resume through the CLI.
"""
