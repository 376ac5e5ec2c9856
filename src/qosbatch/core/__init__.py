"""Plain data types shared by every layer; no torch, no I/O beyond JSON files."""
