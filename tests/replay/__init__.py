"""Replay of peer scenario files (Deckard and testbound) against the resolver, in-process."""
