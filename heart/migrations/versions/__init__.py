"""One module per revision of the inference table, oldest first; each a frozen snapshot, never edited once released."""
