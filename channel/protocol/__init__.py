"""What both ends share: canonical JSON, party names, the wire models, the letter lifecycle, the
seal and receipts, request signatures and the error tree. Pure logic: no Redis, no HTTP server."""
