"""Downstream: the listener, client connections, commands and the hub they share."""
