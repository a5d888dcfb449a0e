"""The online prediction service, a process of its own: `ml-platform serve` (see app.py)."""
