"""Command-line tools built on the nodes (demo, monitor, bag recording)."""
