"""Customer analytics that work on plain arrays: lifetime-value models and their helpers."""
