"""The courier's HTTP face: an aiohttp app whose handlers only parse, call the Courier and reply."""
