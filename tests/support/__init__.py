"""Test support: local page server, forward proxy, process stacks."""
