"""Local mode: a relay rendered as the operator would, run with this machine's Postfix."""
