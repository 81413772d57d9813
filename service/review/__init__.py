"""The manual-review channel: review cases, four eyes, the clock, and callbacks to the bank."""
