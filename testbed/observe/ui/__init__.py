"""`testbed ui`: the lab as a live page (server.py serves index.html and a small JSON API)."""
