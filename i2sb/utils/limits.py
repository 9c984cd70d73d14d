"""Limits on what the tools read, in a module without torch (the config schemas take their defaults from here)."""

DEFAULT_MAX_PIXELS = 2 * 89_478_485  # Pillow's own hard limit (its warning starts at half); 0 = no limit
