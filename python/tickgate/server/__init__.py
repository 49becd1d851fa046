"""Downstream: the listener, client connections and the client protocol."""
