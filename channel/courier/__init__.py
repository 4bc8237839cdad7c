"""The courier service: its logic (`service`), the only Redis module (`store`) and its Lua
scripts, the embedded redis-server, settings, and the HTTP server (`server/`)."""
