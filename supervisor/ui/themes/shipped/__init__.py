"""The themes shipped with agent-supervisor (TOML files of Textual theme fields).

This directory installs as the package `supervisor.ui.themes.shipped`
(see pyproject.toml); `supervisor.ui.themes` reads the files from there.
"""
