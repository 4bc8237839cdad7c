"""Backchannel: sealed letters via a courier that can prove who sent them but never read them."""

__version__ = "0.1.0"
