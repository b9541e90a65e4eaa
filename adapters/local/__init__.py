"""An in-process runtime on the real clock: runs one flow instance to its end, no server."""
