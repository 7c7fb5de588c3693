"""Textual screens of the operator console."""
