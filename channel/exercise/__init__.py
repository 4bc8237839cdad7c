"""Tabletop exercises played through the real courier: scenario, clocks, bots, runner, report."""
