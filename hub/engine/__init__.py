"""What a worker does with an event: sync across systems, then the rules."""
