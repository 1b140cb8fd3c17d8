"""Test support: local processes (redis-server, stand-ins, the Firestore emulator) and fixtures."""
