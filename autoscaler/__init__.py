"""Capacity controller for Amazon GameLift Streams."""

__version__ = "0.1.0"
