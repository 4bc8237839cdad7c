"""The party's desk: its letters in a browser, served from its own machine (docs/desk.md)."""
