"""Textual-free core used by the console, the CLI and the worker."""
