"""A finished run, loaded back: evaluate it, predict with it, export it."""
